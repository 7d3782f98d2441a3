"""The host path of generation: the null model, tokenising only the prompt, vectorised bookkeeping, sampling
without a draw for confident rows, stop checks every few steps; each against what it replaces."""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from generator.core.model_registry import load_causal_lm, load_tokenizer
from generator.write.decode import _Row, collect, inputs, pick_tokens
from generator.write.generate import GenerationRequest, Generator
from generator.write.null_lm import NullLM, null_lm

SHARED = ("<|im_start|>system\nYou write push notifications.<|im_end|>\n<|im_start|>user\nTents<|im_end|>\n"
          "<|im_start|>assistant\nTitle: Tents\nBody: Tents are here.<|im_end|>\n")
OWN = [f"<|im_start|>user\nWrite a push about {x}.<|im_end|>\n<|im_start|>assistant\nTitle:"
       for x in ("lanterns", "a French press", "mugs", "lanterns", "帐篷 $149.00", "kettles")]


@pytest.fixture(scope="module")
def tok():  # type: ignore[no-untyped-def]
    return load_tokenizer("smollm2-135m")


def test_the_null_model_ends_every_row_after_its_length_through_the_real_path(tok) -> None:  # type: ignore[no-untyped-def]
    from peft import LoraConfig, get_peft_model

    model, _ = null_lm(tok, length=12)
    assert len(model.answer) == 12 and model.config.vocab_size == 64
    reqs = [GenerationRequest(key=str(i), prompt=p, prefix=SHARED) for i, p in enumerate(OWN)]
    gen = Generator(model=model, tokenizer=tok, batch_size=4, max_new_tokens=20)
    out = gen.generate(reqs, n_candidates=3, seed=1)
    answer = tok.decode(model.answer)
    assert all(len(row) == 3 for row in out)
    assert {(c.raw, c.new_tokens, c.finished) for row in out for c in row} == {(answer, 12, True)}
    title, body = out[0][0].title, out[0][0].body
    assert len(title.split()) == 4 and len(body.split()) == 12 - 9 and "\n" not in title + body
    cut = gen.generate(reqs[:2], n_candidates=2, max_new_tokens=8)  # the cap comes first: cut off, not finished
    assert {(c.new_tokens, c.finished) for row in cut for c in row} == {(8, False)}
    # adapters per row (on its one Linear layer) run through the fused LoRA forward and leave the answer as it is
    torch.manual_seed(0)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["proj"], init_lora_weights=False)
    adapted = get_peft_model(null_lm(tok, length=12)[0], cfg, adapter_name="a")
    adapted.add_adapter("b", cfg)
    mixed = Generator(model=adapted.eval(), tokenizer=tok, batch_size=4, max_new_tokens=20)
    assert mixed._fused is not None
    reqs = [GenerationRequest(key=str(i), prompt=p, prefix=SHARED, adapter="ab"[i % 2]) for i, p in enumerate(OWN)]
    assert {c.raw for row in mixed.generate(reqs, n_candidates=2) for c in row} == {answer}
    with pytest.raises(ValueError, match="hold the answer"):
        NullLM(tok, length=40, head=16)


def test_prompts_after_an_added_token_are_tokenised_alone_and_give_the_whole_prompts_tokens(tok) -> None:  # type: ignore[no-untyped-def]
    model, _ = null_lm(tok, length=8)
    gen = Generator(model=model, tokenizer=tok, batch_size=4, max_new_tokens=8)
    plain = "You write pushes.\n\n"  # no chat template: the prompt does not start with an added token
    reqs = [GenerationRequest(key=str(i), prompt=p, prefix=SHARED) for i, p in enumerate(OWN)]
    reqs += [GenerationRequest(key="x", prompt="Write a push.\nTitle:", prefix=plain),
             GenerationRequest(key="y", prompt=OWN[0])]
    assert gen._splits(reqs, {SHARED: tok(SHARED, add_special_tokens=False).input_ids,
                              plain: tok(plain, add_special_tokens=False).input_ids}) == [True] * 6 + [False, False]
    rows = gen._prepare(reqs)
    for r, row in zip(reqs, rows, strict=True):
        assert list(row.prefix) + list(row.suffix) == tok(r.prefix + r.prompt, add_special_tokens=False).input_ids
        assert row.suffix  # the model always gets at least one token of its own
    assert rows[0].suffix is rows[3].suffix  # the same prompt is tokenised once
    assert rows[0].prefix is rows[1].prefix and rows[0].group == rows[5].group != rows[6].group
    # where text on both sides of the boundary tokenises differently alone (the check against the whole prompt
    # fails), the whole prompt is tokenised
    gen._added_start = re.compile("wor")
    merged = [GenerationRequest(key="m", prompt="world\nTitle:", prefix="Hello")]
    assert gen._splits(merged, {"Hello": tok("Hello", add_special_tokens=False).input_ids}) == [False]
    row = gen._prepare(merged)[0]
    assert list(row.prefix) + row.suffix == tok("Helloworld\nTitle:", add_special_tokens=False).input_ids


def test_vectorised_inputs_equal_the_row_by_row_construction(tok) -> None:  # type: ignore[no-untyped-def]
    gen = Generator(model=null_lm(tok, length=8)[0], tokenizer=tok, batch_size=4, max_new_tokens=8)
    rng = random.Random(0)
    batch = [_Row(i, tuple(rng.randrange(100) for _ in range(rng.choice((0, 3, 7)))),
                  [rng.randrange(1000) for _ in range(rng.randrange(1, 9))], None) for i in range(20)]
    p_max, s_max = 7, 9
    ids, mask, pos = inputs(gen, batch, p_max, s_max)
    want_ids = np.full((20, s_max), tok.pad_token_id)
    want_mask, want_pos = np.zeros((20, p_max + s_max), dtype=np.int64), np.zeros((20, s_max), dtype=np.int64)
    for i, r in enumerate(batch):  # the loop this replaced
        p, s = len(r.prefix), len(r.suffix)
        want_mask[i, p_max - p:p_max] = 1
        want_mask[i, p_max + s_max - s:] = 1
        want_ids[i, s_max - s:] = r.suffix
        want_pos[i, s_max - s:] = np.arange(p, p + s)
    assert (ids.numpy() == want_ids).all() and (mask.numpy() == want_mask).all() and (pos.numpy() == want_pos).all()


def test_collected_rows_are_their_kept_tokens() -> None:
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 500, (30, 12), generator=g)
    lengths = torch.randint(0, 13, (30,), generator=g)
    kept = torch.arange(12)[None, :] < lengths[:, None]  # what decoding keeps: a prefix of each row
    stopped = torch.rand(30, generator=g) > 0.5
    got = collect(tokens, kept, stopped)
    assert got.ids == [[t for t, k in zip(tr, kr, strict=True) if k] for tr, kr in zip(tokens.tolist(), kept.tolist(),
                                                                                       strict=True)]
    assert got.stopped == stopped.tolist()


def test_confident_rows_take_their_top_token_and_the_others_draw_as_before() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(40, 30, generator=g)
    confident = torch.arange(40) % 3 == 0
    logits[confident, 5] += 30.0  # far above the rest: token 5 alone holds more than top_p
    sampled = torch.arange(40) % 4 != 0
    kw = {"temperature": 0.8, "top_k": 10, "top_p": 0.9}
    fast = pick_tokens(logits, sampled.nonzero().squeeze(-1), torch.Generator().manual_seed(7), skip_confident=True,
                       **kw)
    assert (fast[confident] == 5).all() and (fast[~sampled] == logits[~sampled].argmax(-1)).all()
    unsure = (sampled & ~confident).nonzero().squeeze(-1)
    exact = pick_tokens(logits[unsure], torch.ones(len(unsure), dtype=torch.bool), torch.Generator().manual_seed(7),
                        **kw)
    assert torch.equal(fast[unsure], exact)  # the same draws, from the same generator state
    # without the shortcut every sampled row draws; a confident row still draws its top token
    slow = pick_tokens(logits, sampled, torch.Generator().manual_seed(7), **kw)
    assert (slow[confident] == 5).all()


@pytest.fixture(scope="module")
def tiny(tiny_llama: Path) -> Generator:
    model, tok = load_causal_lm(str(tiny_llama), device="cpu")
    return Generator(model=model, tokenizer=tok, batch_size=3, max_new_tokens=10)


def test_stop_checks_every_few_steps_and_planned_batches_keep_the_copy(tiny: Generator) -> None:
    reqs = [GenerationRequest(key=str(i), prompt=p, prefix=SHARED if i % 2 else "") for i, p in enumerate(OWN * 2)]
    every = tiny.generate(reqs, n_candidates=2, seed=4)
    tiny._stop_check_every = 4  # what a GPU does: whether all rows stopped is asked every 4 steps
    try:
        sparse = tiny.generate(reqs, n_candidates=2, seed=4)
    finally:
        tiny._stop_check_every = 1
    assert [[(c.raw, c.finished, c.new_tokens) for c in row] for row in every] == [
        [(c.raw, c.finished, c.new_tokens) for c in row] for row in sparse]
    plan = tiny._batches(reqs)
    assert sorted(i for b in plan for i in b) == list(range(len(reqs))) and max(map(len, plan)) == 3
    # greedy copy does not depend on how the requests were batched
    alone = [tiny.generate([r], n_candidates=1)[0][0].raw for r in reqs]
    assert alone == [row[0].raw for row in every]


def test_a_run_plan_made_once_applies_the_same_adapters_as_the_list(tiny_llama: Path) -> None:
    from peft import LoraConfig, get_peft_model

    from generator.write.multi_lora import FusedLora, RunPlan

    model, tok = load_causal_lm(str(tiny_llama), device="cpu")
    torch.manual_seed(2)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "up_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, cfg, adapter_name="brand_a")
    peft_model.add_adapter("brand_b", cfg)
    fused = FusedLora(peft_model.eval())
    names = ["brand_a", "brand_a", None, "brand_b", "brand_a", "brand_b"]
    plan = RunPlan(names)
    assert plan.runs == [(0, 2, "brand_a"), (2, 3, None), (3, 4, "brand_b"), (4, 5, "brand_a"), (5, 6, "brand_b")]
    assert plan.select([3, 0, 0]).adapters == ["brand_b", "brand_a", "brand_a"]
    ids = tok(["Tents", "Mugs", "Kettles"] * 2, return_tensors="pt", padding=True).input_ids
    with torch.inference_mode():
        with fused.rows(names):
            want = peft_model.get_base_model()(input_ids=ids).logits
        with fused.rows(plan):
            got = peft_model.get_base_model()(input_ids=ids).logits
    torch.testing.assert_close(got, want)
