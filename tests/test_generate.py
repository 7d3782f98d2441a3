"""Batched generation: parsing, stop rules, and batched output identical to one-at-a-time (tiny model)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from generator.core.model_registry import load_causal_lm
from generator.write.decode import pick_tokens
from generator.write.generate import GenerationRequest, Generator, parse_title_body


@pytest.mark.parametrize(("completion", "title", "body"), [
    (" Camp in comfort\nBody: The Trailblazer Tent is $149.00.\n", "Camp in comfort",
     "The Trailblazer Tent is $149.00."),
    (' "Camp in comfort"\n**Body:** Tent now $149.00', "Camp in comfort", "Tent now $149.00"),
    (" 帐篷降价啦\nBody：Trailblazer 帐篷现价 $149.00\n", "帐篷降价啦", "Trailblazer 帐篷现价 $149.00"),
    (" Only a title", "Only a title", ""),
    (" A title\nThe body without its label\n", "A title", "The body without its label"),
])
def test_parse_title_body(completion: str, title: str, body: str) -> None:
    assert parse_title_body(completion) == (title, body)


def test_pick_tokens_samples_only_the_nucleus_of_the_top_k_in_proportion() -> None:
    # probabilities 0.4, 0.3, 0.2, 0.06, 0.04 on tokens 7, 3, 9, 1, 5 of a 12-token vocabulary
    probs = torch.full((12,), 1e-9)
    probs[[7, 3, 9, 1, 5]] = torch.tensor([0.4, 0.3, 0.2, 0.06, 0.04])
    rows = 4000
    logits = probs.log().expand(rows, -1).clone()
    logits[0] = torch.arange(12.0)  # a greedy row: argmax, whatever the sampling settings
    sampled = torch.ones(rows, dtype=torch.bool)
    sampled[0] = False
    gen = torch.Generator().manual_seed(0)
    # top-p 0.8: tokens 7, 3 and 9 (0.4 + 0.3 < 0.8 <= 0.9); top-k 4 would have allowed token 1 too
    got = pick_tokens(logits, sampled, gen, temperature=1.0, top_k=4, top_p=0.8)
    assert got[0] == 11
    counts = torch.bincount(got[1:], minlength=12).float() / (rows - 1)
    assert set(torch.nonzero(counts).squeeze(-1).tolist()) == {3, 7, 9}
    assert torch.allclose(counts[[7, 3, 9]], torch.tensor([0.4, 0.3, 0.2]) / 0.9, atol=0.03)
    # top-k 2 cuts before top-p does; without sampled rows every row is its argmax
    got = pick_tokens(logits, sampled, gen, temperature=1.0, top_k=2, top_p=0.99)
    assert set(got[1:].tolist()) == {3, 7}
    assert pick_tokens(logits, torch.zeros(rows, dtype=torch.bool), gen, temperature=1.0, top_k=0,
                       top_p=0.5).tolist() == [11] + [7] * (rows - 1)


@pytest.fixture(scope="module")
def tiny(tiny_llama: Path) -> Generator:
    model, tok = load_causal_lm(str(tiny_llama), device="cpu")
    return Generator(model=model, tokenizer=tok, batch_size=4, max_new_tokens=12)


PROMPTS = ["Write a push about tents.\nTitle:", "Short\nTitle:",
           "A much longer prompt about a coffee set, mugs, kettles and a lot of other things.\nTitle:",
           "Sale!\nTitle:", "Lanterns for camping trips in the mountains\nTitle:"]


def test_texts_equal_batch_decode_and_progress_counts_every_batch(tiny: Generator) -> None:
    """Token ids become text through the fast tokenizer's own batch decode, in a worker thread while the next
    batch decodes: the same text as ``batch_decode``, and every batch still reported, in order."""
    import random

    tok = tiny.tokenizer
    rng = random.Random(0)
    ids = [[rng.randrange(len(tok)) for _ in range(rng.randrange(0, 30))] for _ in range(200)]
    ids.append(tok("Title: 帐篷降价啦\nBody: $149.00", add_special_tokens=False).input_ids + [tok.eos_token_id])
    assert hasattr(tok, "_tokenizer")  # the Rust path is the one under test
    assert tiny._texts(ids) == tok.batch_decode(ids, skip_special_tokens=True)
    done: list[int] = []
    reqs = [GenerationRequest(key=str(i), prompt=p) for i, p in enumerate(PROMPTS)]
    got = tiny.generate(reqs, progress=done.append)  # batch size 4: batches of 4 and 1
    assert sorted(done, reverse=True) == [4, 1] and all(len(c) == 1 and c[0].raw for c in got)


def test_batched_greedy_equals_one_at_a_time(tiny: Generator) -> None:
    reqs = [GenerationRequest(key=str(i), prompt=p) for i, p in enumerate(PROMPTS)]
    batched = tiny.generate(reqs)
    single = [tiny.generate([r])[0] for r in reqs]
    assert [c[0].raw for c in batched] == [c[0].raw for c in single]
    assert all(c[0].new_tokens <= 12 for c in batched)


def test_sampling_is_reproducible_under_a_seed(tiny: Generator) -> None:
    reqs = [GenerationRequest(key=str(i), prompt=p) for i, p in enumerate(PROMPTS)]
    a = tiny.generate(reqs, n_candidates=3, seed=5)
    b = tiny.generate(reqs, n_candidates=3, seed=5)
    assert [[c.raw for c in row] for row in a] == [[c.raw for c in row] for row in b]
    assert all(len(row) == 3 and not row[0].sampled and row[1].sampled for row in a)


def test_rows_stop_after_the_body_line_or_at_the_limit(tiny: Generator) -> None:
    reqs = [GenerationRequest(key=str(i), prompt=p) for i, p in enumerate(PROMPTS)]
    for row in tiny.generate(reqs, n_candidates=2, seed=1):
        for c in row:
            newlines = c.raw.count("\n")
            assert newlines <= 2 and c.new_tokens <= 12
            assert c.finished == (newlines == 2 or c.new_tokens < 12 or c.raw.endswith("\n"))


def test_shared_prefix_gives_the_same_output_as_the_whole_prompt(tiny: Generator) -> None:
    shared = "You write push notifications.\n\nExample: Title: Tents\nBody: Tents are here.\n\n"
    whole = [GenerationRequest(key=str(i), prompt=shared + p) for i, p in enumerate(PROMPTS)]
    split = [GenerationRequest(key=str(i), prompt=p, prefix=shared) for i, p in enumerate(PROMPTS)]
    rows = tiny._prepare(split)
    assert sum(bool(r.prefix) for r in rows) >= 3  # the prefix is really shared for most prompts
    assert [c[0].raw for c in tiny.generate(whole)] == [c[0].raw for c in tiny.generate(split)]


def test_greedy_matches_hugging_face_generate(tiny: Generator) -> None:
    reqs = [GenerationRequest(key=str(i), prompt=p) for i, p in enumerate(PROMPTS)]
    ours = tiny.generate(reqs)
    for r, c in zip(reqs, ours, strict=True):
        enc = tiny.tokenizer(r.prompt, return_tensors="pt", add_special_tokens=False)
        ref = tiny.model.generate(**enc, max_new_tokens=12, do_sample=False, pad_token_id=tiny.tokenizer.pad_token_id)
        text = tiny.tokenizer.decode(ref[0, enc.input_ids.shape[1]:], skip_special_tokens=True)
        assert text.startswith(c[0].raw)


@pytest.fixture(scope="module")
def tiny_with_adapters(tiny_llama: Path):  # type: ignore[no-untyped-def]
    """The tiny model carrying two random (non-zero) LoRA adapters."""
    import torch
    from peft import LoraConfig, get_peft_model

    model, tok = load_causal_lm(str(tiny_llama), device="cpu")
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"], init_lora_weights=False)
    torch.manual_seed(3)
    peft_model = get_peft_model(model, cfg, adapter_name="brand_a")
    peft_model.add_adapter("brand_b", cfg)
    return peft_model.eval(), tok


@pytest.mark.parametrize("with_adapters", [False, True])
def test_static_decoding_gives_the_dynamic_paths_greedy_output(tiny_llama: Path, tiny_with_adapters,  # type: ignore[no-untyped-def]
                                                               with_adapters: bool) -> None:
    """The fixed-shape path (preallocated cache, 4-D masks; what CUDA graphs replay) decodes the same tokens."""
    if with_adapters:
        model, tok = tiny_with_adapters
    else:
        model, tok = load_causal_lm(str(tiny_llama), device="cpu")
    shared = "You write push notifications.\n\nExample: Title: Tents\nBody: Tents are here.\n\n"
    adapters = ["brand_a", "brand_b", None] if with_adapters else [None]
    reqs = [GenerationRequest(key=str(i), prompt=p, prefix=shared if i % 2 else "", adapter=adapters[i % len(adapters)])
            for i, p in enumerate(PROMPTS * 2)]
    dynamic = Generator(model=model, tokenizer=tok, batch_size=4, max_new_tokens=12, decode="dynamic")
    static = Generator(model=model, tokenizer=tok, batch_size=4, max_new_tokens=12, decode="static")
    assert static.decode_mode == "static"
    static._prefill_tokens = 8  # prefill row by row: each row's suffix padded only to its own length
    want = dynamic.generate(reqs, n_candidates=2, seed=3)
    got = static.generate(reqs, n_candidates=2, seed=3)
    assert [c[0].raw for c in got] == [c[0].raw for c in want]
    assert [c[0].finished for c in got] == [c[0].finished for c in want]
    assert all(len(c) == 2 and c[1].sampled for c in got)
    if with_adapters:  # the adapters really change the output, so equality above is not trivial
        base = Generator(model=model, tokenizer=tok, batch_size=4, max_new_tokens=12, decode="static")
        plain = base.generate([GenerationRequest(key=r.key, prompt=r.prompt, prefix=r.prefix) for r in reqs])
        assert [c[0].raw for c in plain] != [c[0].raw for c in got]


def test_decode_mode_is_checked(tiny: Generator) -> None:
    with pytest.raises(ValueError, match="CUDA"):
        Generator(model=tiny.model, tokenizer=tiny.tokenizer, decode="graph")
    with pytest.raises(ValueError, match="decode must be"):
        Generator(model=tiny.model, tokenizer=tiny.tokenizer, decode="fast")
    assert Generator(model=tiny.model, tokenizer=tiny.tokenizer).decode_mode == "static"  # auto on CPU


@pytest.mark.parametrize("s", [1, 4])  # one query per row (decoding) and several (prefilling): two code paths
def test_grouped_attention_equals_sdpa_with_repeated_heads(s: int) -> None:
    """The fixed-shape path's attention: K/V heads shared by groups of query heads, an additive mask."""
    import torch

    from generator.write.decode import _grouped_attention

    g = torch.Generator().manual_seed(0)
    b, hq, hkv, length, d = 3, 6, 2, 9, 8
    q, k, v = (torch.randn(*shape, generator=g) for shape in ((b, hq, s, d), (b, hkv, length, d), (b, hkv, length, d)))
    keep = torch.rand(b, 1, s, length, generator=g) > 0.3
    keep[..., 0] = True
    mask = torch.where(keep, 0.0, torch.finfo(torch.float32).min)
    want = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(hq // hkv, dim=1), v.repeat_interleave(hq // hkv, dim=1), attn_mask=keep)
    got, _ = _grouped_attention(None, q, k, v, mask)
    assert got.shape == (b, s, hq, d)
    torch.testing.assert_close(got, want.transpose(1, 2), rtol=1e-5, atol=1e-5)
    if s > 1:  # the prefill's two forms: SDPA's own GQA (CPU) and K/V heads repeated first (CUDA's kernels)
        from generator.write.decode import _prefill_attention

        for native in (True, False):
            torch.testing.assert_close(_prefill_attention(q, k, v, mask, None, native_gqa=native), want,
                                       rtol=1e-5, atol=1e-5)


def test_int8_generation_quantises_the_base_layers_and_keeps_adapters_float(tiny_with_adapters) -> None:  # type: ignore[no-untyped-def]
    import torch

    model, tok = tiny_with_adapters
    gen = Generator(model=model, tokenizer=tok, batch_size=4, max_new_tokens=8, int8=True)
    int8_linear = torch.ao.nn.quantized.dynamic.Linear
    modules = dict(gen.model.named_modules())
    base = [m for n, m in modules.items() if n.endswith("q_proj.base_layer")]
    lora = [m for n, m in modules.items() if n.endswith(("lora_A.brand_a", "lora_B.brand_a"))]
    assert base and all(isinstance(m, int8_linear) for m in base)
    assert lora and all(type(m) is torch.nn.Linear for m in lora)
    assert not any(isinstance(m, int8_linear) for m in model.modules())  # the caller's model is left alone
    reqs = [GenerationRequest(key=str(i), prompt=p, adapter="brand_a") for i, p in enumerate(PROMPTS)]
    out = gen.generate(reqs)
    assert all(len(c) == 1 and 0 < c[0].new_tokens <= 8 for c in out)


def test_fused_lora_equals_peft_per_row_adapters(tiny_llama: Path, tiny_with_adapters) -> None:  # type: ignore[no-untyped-def]
    """The fused LoRA forward (runs of rows, in-place addmm) gives peft's logits for every row's adapter, leaves the
    model untouched outside its scope, and rejects adapters that are not loaded; DoRA keeps peft's forward."""
    import torch
    from peft import LoraConfig, get_peft_model

    from generator.write.multi_lora import FusedLora, runs

    model, tok = tiny_with_adapters
    assert runs(["a", "a", None, "b", "b", "a"]) == [(0, 2, "a"), (2, 3, None), (3, 5, "b"), (5, 6, "a")]
    dora = get_peft_model(load_causal_lm(str(tiny_llama), device="cpu")[0],
                          LoraConfig(r=4, target_modules=["q_proj"], use_dora=True))
    assert FusedLora.supports(model) and not FusedLora.supports(dora)
    assert not FusedLora.supports(load_causal_lm(str(tiny_llama), device="cpu")[0])  # no adapters at all
    fused = FusedLora(model)
    assert fused.adapters == {"brand_a", "brand_b"}
    ids = tok(PROMPTS[:3] * 2, return_tensors="pt", padding=True).input_ids
    adapters = ["brand_a", "brand_a", None, "brand_b", "brand_b", "brand_a"]
    with torch.inference_mode():
        want = model(input_ids=ids, adapter_names=[a or "__base__" for a in adapters]).logits
        with fused.rows(adapters):
            got = model.get_base_model()(input_ids=ids).logits
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        with fused.rows("brand_b"):
            every = model.get_base_model()(input_ids=ids).logits
        torch.testing.assert_close(every, model(input_ids=ids, adapter_names=["brand_b"] * 6).logits,
                                   rtol=1e-5, atol=1e-5)
        assert not torch.allclose(every, got)  # the adapters really differ
        layer = fused.layers[0]
        assert "forward" not in vars(layer)  # peft's forward again outside the scope
        with pytest.raises(KeyError, match="brand_c"), fused.rows(["brand_c"]):
            pass


def test_static_decoding_drops_finished_rows_and_keeps_the_output(tiny_with_adapters, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Rows that stop early leave the static cache (a gather of the live rows) without changing anyone's copy."""
    import torch

    from generator.write.decode import _StaticRunner

    model, tok = tiny_with_adapters
    reqs = [GenerationRequest(key=str(i), prompt=p, adapter=["brand_a", "brand_b"][i % 2])
            for i, p in enumerate(PROMPTS * 2)]
    dynamic = Generator(model=model, tokenizer=tok, batch_size=8, max_new_tokens=12, decode="dynamic")
    static = Generator(model=model, tokenizer=tok, batch_size=8, max_new_tokens=12, decode="static")
    first = dynamic.generate(reqs)
    # stop tokens that some rows emit early: their second generated token
    early = {tok(c[0].raw, add_special_tokens=False).input_ids[1] for c in first[:3]}
    for g in (dynamic, static):
        g._eos = torch.tensor(sorted(early))
    drops: list[tuple[int, int]] = []
    gather = _StaticRunner.gather

    def spy(self, src):  # type: ignore[no-untyped-def]
        drops.append((self.n, len(src)))
        gather(self, src)

    monkeypatch.setattr(_StaticRunner, "gather", spy)
    want = dynamic.generate(reqs)
    got = static.generate(reqs)
    assert sum(c[0].new_tokens < 12 for c in want) >= 2  # some rows did stop early
    assert any(after < before for before, after in drops)  # and left the cache
    assert [c[0].raw for c in got] == [c[0].raw for c in want]
    assert [(c[0].finished, c[0].new_tokens) for c in got] == [(c[0].finished, c[0].new_tokens) for c in want]
    # the steps are counted by how they ran (a benchmark reports them): on CPU every static step is eager
    assert static.decode_steps["eager"] > 0 and static.decode_steps["graph"] == 0 and not dynamic.decode_steps
