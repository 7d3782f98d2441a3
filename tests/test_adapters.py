"""LoRA brand adapters: training end to end on a tiny model, the registry, mixed-adapter batches, eval."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SHOP = REPO / "examples" / "shop"


def _write_pushes(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def _shop_rows(lang: str = "en", n: int = 40, skip: int = 0) -> list[dict[str, str]]:
    with (SHOP / "pushes.csv").open(encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["locale"].startswith(lang)]
    return rows[skip : skip + n]


def _shop_folder(folder: Path, rows: list[dict[str, str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(SHOP / "items.csv", folder / "items.csv")
    return _write_pushes(folder / "pushes.csv", rows)


def _cfg(tiny: Path, **kw):  # type: ignore[no-untyped-def]
    from generator.tune.train import LoraTrainConfig

    base = dict(base=str(tiny), brand="Acme", rank=4, alpha=8, batch_size=4, lr=2e-2, eval_every=3, epochs=1)
    return LoraTrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained_registry(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two tiny adapters trained once per module: (registry folder, push file of the first)."""
    from generator.core.config import get_settings
    from generator.tune.train import train_adapter

    root = tmp_path_factory.mktemp("adapters")
    first = _shop_folder(root / "a", _shop_rows())
    other = _shop_folder(root / "b", _shop_rows(n=30, skip=40))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PUSHGEN_ADAPTERS_DIR", str(root / "registry"))
        get_settings.cache_clear()
        train_adapter(first, "acme-en", _cfg(tiny_llama), progress=False, report=lambda s: None)
        train_adapter(
            other, "acme-b", _cfg(tiny_llama, seed=3, lr=5e-2), progress=False, report=lambda s: None
        )
    get_settings.cache_clear()
    return root / "registry", first


@pytest.fixture
def push_file(trained_registry: tuple[Path, Path]) -> Path:
    return trained_registry[1]


@pytest.fixture
def two_adapters(trained_registry: tuple[Path, Path]) -> tuple[str, str]:
    """The two adapters, copied into this test's own registry."""
    from generator.core.config import get_settings

    shutil.copytree(trained_registry[0], get_settings().adapters_dir)
    return "acme-en", "acme-b"


def test_trained_adapter_is_saved_with_metadata_and_listed(
    two_adapters: tuple[str, str], push_file: Path, tiny_llama: Path
) -> None:
    from generator.core.data import file_sha256
    from generator.write.adapters import get_adapter, list_adapters

    names = [a.name for a in list_adapters()]
    assert names == sorted(two_adapters)
    info = get_adapter("acme-en")
    assert (info.path / "adapter_model.safetensors").exists() and (info.path / "adapter_config.json").exists()
    assert info.base == str(tiny_llama) and info.data_hash == file_sha256(push_file)
    assert info.hyperparameters["rank"] == 4 and info.created_at
    assert info.metrics["steps"] > 0 and info.metrics["tokens_per_s"] > 0 and info.metrics["valid_texts"] > 0
    assert len(info.fewshot) == 5 and all(t["answer"].startswith("Title:") for t in info.fewshot)
    assert list_adapters(base="other-model") == []


def test_delete_and_unknown_adapter_errors(two_adapters: tuple[str, str]) -> None:
    from generator.write.adapters import AdapterError, delete_adapter, get_adapter, list_adapters

    delete_adapter("acme-b")
    assert [a.name for a in list_adapters()] == ["acme-en"]
    with pytest.raises(AdapterError, match="no adapter 'acme-b'"):
        get_adapter("acme-b")
    with pytest.raises(AdapterError, match="bad adapter name"):
        get_adapter("acme.en")


def test_each_row_of_a_mixed_batch_matches_its_adapter_alone(two_adapters: tuple[str, str]) -> None:
    from decimal import Decimal

    import torch

    from generator.core.data import Item
    from generator.write.adapters import get_adapter
    from generator.write.generate import GenerationRequest, Generator
    from generator.write.prompts import default_library, item_facts, prompt_parts

    gen = Generator(get_adapter(two_adapters[0]).base, batch_size=8, max_new_tokens=12)
    gen.use_adapters(list(two_adapters))
    from peft.tuners.lora import LoraLayer

    lora_layers = [m for m in gen.model.modules() if isinstance(m, LoraLayer)]
    assert lora_layers and not any(m.merged for m in lora_layers)  # never merged into the base
    lib = default_library()
    prompts = []
    for title in ("Ridge Trail Running Shoes", "Lumen Lantern", "Cedar Candle"):
        r = lib.render(
            "price_drop.en",
            brand="Acme",
            item=item_facts(Item(item_id=title, title=title, price=Decimal("9.99"), currency="USD", in_stock=True,
                                 url="https://shop.example.com/p/1")),
        )
        prompts.append(prompt_parts(gen.tokenizer, r, with_examples=False))
    reqs = [
        GenerationRequest(f"u{i}-{a}", own, a, shared)
        for i, (shared, own) in enumerate(prompts)
        for a in (*two_adapters, None)
    ]
    mixed = gen.generate(reqs, n_candidates=1)  # greedy: sampled rows share one RNG stream per batch
    for req, cands in zip(reqs, mixed, strict=True):
        alone = gen.generate([req], n_candidates=1)[0]
        assert [c.raw for c in cands] == [c.raw for c in alone], req.key
    # the adapters really change the model (otherwise the check above would prove nothing)
    ids = gen.tokenizer("".join(prompts[0]), return_tensors="pt").input_ids
    with torch.no_grad():
        logits = {
            a: gen.model(input_ids=ids, adapter_names=[a]).logits[0, -1] for a in (*two_adapters, "__base__")
        }
    assert not torch.allclose(logits["acme-en"], logits["__base__"])
    assert not torch.allclose(logits["acme-en"], logits["acme-b"])


def test_cached_prefix_gives_the_same_nll_as_the_whole_sequence(tiny_llama: Path) -> None:
    from generator.core.model_registry import load_causal_lm
    from generator.tune.evaluate import target_nll

    model, tok = load_causal_lm(str(tiny_llama), device="cpu")
    rows = [
        ("System text here.\n", "User asks a thing\nTitle:", " Short"),
        ("System text here.\n", "User asks\nTitle:", " A longer answer\nBody: with a body"),
    ]
    cached = target_nll(model, tok, rows, batch_size=2)
    whole = target_nll(model, tok, [("", s + o, t) for s, o, t in rows], batch_size=1)
    assert cached[1] == whole[1]
    assert cached[0] == pytest.approx(whole[0], rel=1e-4)


def test_eval_reports_three_perplexities_and_style(two_adapters: tuple[str, str], tmp_path: Path) -> None:
    from generator.tune.evaluate import MODELS, evaluate_adapter, report_table
    from generator.write.adapters import get_adapter

    (tmp_path / "held").mkdir()
    shutil.copy(SHOP / "items.csv", tmp_path / "held" / "items.csv")
    held = _write_pushes(tmp_path / "held" / "pushes.csv", _shop_rows(n=12, skip=80))
    report = evaluate_adapter(held, "acme-en", limit=12, n_generate=3, report=lambda s: None)
    assert set(report["models"]) == set(MODELS)
    assert all(m["ppl"] > 1 for m in report["models"].values())
    assert report["models"]["adapter"]["style"]["n"] == 3 and "distinct_2" in report["real"]["style"]
    assert report_table(report).row_count == 4
    assert 0 <= report["models"]["adapter"]["engagement"]["pairs"]
    assert get_adapter("acme-en").metrics["eval"]["texts"] == report["texts"]


def test_engagement_schemes_dedupe_and_weight_by_group_ctr() -> None:
    from datetime import UTC, datetime

    from generator.core.data import PastPush
    from generator.tune.train import select_texts

    def push(pid: str, gid: str, body: str, sends: int, clicks: int) -> PastPush:
        return PastPush(
            push_id=pid, group_id=gid, body=body, sends=sends, clicks=clicks, sent_at=datetime.now(UTC)
        )

    pushes = [
        push("1", "g", "Win", 100, 10),
        push("2", "g", "win ", 100, 10),  # same text, pooled
        push("3", "g", "Lose", 100, 2),
        push("4", "h", "Win", 100, 1),
        push("5", "h", "Other", 100, 5),
    ]
    ctr = {p.push_id: (w, c) for p, w, c in select_texts(pushes, "ctr")}
    assert set(ctr) == {"1", "3", "5"}  # "win" again in group h is a duplicate of group g's text
    assert ctr["1"][0] > 1 > ctr["3"][0] and ctr["1"][1] == pytest.approx(0.1)
    assert [p.push_id for p, _, _ in select_texts(pushes, "best")] == ["1", "5"]
    assert {w for _, w, _ in select_texts(pushes, "all")} == {1.0}


def test_splits_never_put_a_group_on_both_sides() -> None:
    from generator.tune.train import TextExample, split_by_group

    examples = [TextExample(str(i), f"g{i % 23}", "en_US", "", "", " x") for i in range(200)]
    train, valid = split_by_group(examples, 0.2)
    assert train and valid and not {e.group_id for e in train} & {e.group_id for e in valid}


def test_held_out_groups_beyond_the_validation_cap_are_trained_on() -> None:
    from generator.tune.train import LoraTrainConfig, TextExample, split_by_group, train_valid_split

    examples = [TextExample(str(i), f"g{i % 40}", "en_US", "", "", " x") for i in range(400)]  # 10 texts a group
    cfg = LoraTrainConfig(valid_fraction=0.3, max_valid=30)
    train, valid = train_valid_split(examples, cfg)
    held = {e.group_id for e in split_by_group(examples, 0.3)[1]}
    assert len(held) > 3 and len(valid) == 30  # three whole groups validate ...
    assert {e.group_id for e in valid} < held
    assert len(train) + len(valid) == len(examples)  # ... and the other held-out groups train
    assert not {e.group_id for e in train} & {e.group_id for e in valid}
    capped, _ = train_valid_split(examples, LoraTrainConfig(valid_fraction=0.3, max_valid=30, max_texts=100))
    assert len(capped) == 100


def test_bodies_only_pushes_train_as_one_line_answers() -> None:
    from datetime import UTC, datetime

    from generator.core.data import PastPush
    from generator.write.generate import parse_title_body
    from generator.write.prompts import answer_text

    headline = PastPush(
        push_id="1", group_id="g", body="You Won't Believe This", sends=1, clicks=0, sent_at=datetime.now(UTC)
    )
    assert answer_text(headline.title, headline.body) == " You Won't Believe This"
    assert parse_title_body(answer_text(headline.title, headline.body)) == ("You Won't Believe This", "")
    both = headline.model_copy(update={"title": "Hi"})
    assert parse_title_body(answer_text(both.title, both.body)) == ("Hi", "You Won't Believe This")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            "push_id,group_id,title,sends,clicks,sent_at\nP1,G1,Hi,10,20,2026-01-01\n",
            r"row 1, field 'clicks'",
        ),
        ("push_id,group_id,title,clicks,sent_at\nP1,G1,Hi,2,2026-01-01\n", r"row 1, field 'sends'"),
        ("push_id,group_id,title,sends,clicks,sent_at\n", "no pushes"),
        ("push_id,group_id,title,sends,clicks,sent_at\nP1,G1,,10,1,2026-01-01\n", r"field 'title'"),
    ],
)
def test_bad_push_files_give_clear_errors(tmp_path: Path, content: str, expected: str) -> None:
    from typer.testing import CliRunner

    from generator.cli.adapter import adapter_app
    from generator.core.errors import DataError

    bad = tmp_path / "bad.csv"
    bad.write_text(content, encoding="utf-8")
    result = CliRunner().invoke(adapter_app, ["train", "--pushes", str(bad), "--name", "x"])
    assert isinstance(result.exception, DataError)
    assert str(bad) in str(result.exception)
    assert re.search(expected, str(result.exception))


def test_cli_lists_shows_and_deletes(two_adapters: tuple[str, str]) -> None:
    from typer.testing import CliRunner

    from generator.cli.adapter import adapter_app

    runner = CliRunner()
    listed = runner.invoke(adapter_app, ["list"])
    assert listed.exit_code == 0 and "acme-en" in listed.output and "acme-b" in listed.output
    shown = runner.invoke(adapter_app, ["show", "acme-en"])
    assert shown.exit_code == 0 and '"data_hash"' in shown.output
    deleted = runner.invoke(adapter_app, ["delete", "acme-b", "--yes"])
    assert deleted.exit_code == 0
    assert "acme-b" not in runner.invoke(adapter_app, ["list"]).output


def test_training_resumes_from_its_checkpoint(tiny_llama: Path, tmp_path: Path) -> None:
    from generator.core.config import get_settings
    from generator.tune.train import train_adapter
    from generator.write.adapters import get_adapter

    pushes = _shop_folder(tmp_path / "shop", _shop_rows(n=40))
    cfg = _cfg(tiny_llama, eval_every=3, save_every=2)

    class Interrupt(Exception):
        pass

    def stop_at_step_3(line: str) -> None:
        if line.startswith("step 3/"):
            raise Interrupt

    with pytest.raises(Interrupt):
        train_adapter(pushes, "acme-en", cfg, progress=False, report=stop_at_step_3)
    assert (Path(get_settings().adapters_dir) / ".checkpoints" / "acme-en" / "state.pt").exists()
    lines: list[str] = []
    result = train_adapter(pushes, "acme-en", cfg, resume=True, progress=False, report=lines.append)
    assert any(line.startswith("resumed from") and "at step 2/" in line for line in lines)
    assert result.info.metrics["steps"] == get_adapter("acme-en").metrics["steps"] > 3
    assert not (Path(get_settings().adapters_dir) / ".checkpoints" / "acme-en").exists()


def test_a_campaign_writes_each_language_with_its_own_adapter(
    two_adapters: tuple[str, str], tiny_llama: Path, tiny_encoder: Path
) -> None:
    from generator.campaign.runner import CampaignRunner
    from generator.campaign.spec import Audience, Campaign
    from generator.core.data import load_shop
    from generator.rank.scorer import Scorer
    from generator.write.adapters import AdapterError
    from generator.write.generate import Generator

    shop = load_shop(SHOP)
    langs = {u.user_id: u.locale[:2] for u in shop.users if u.push_opt_in}
    users = [next(u for u, lang in langs.items() if lang == "en"), next(u for u, lang in langs.items() if lang == "zh")]
    gen = Generator(str(tiny_llama), batch_size=4, max_new_tokens=6)
    runner = CampaignRunner(generator=gen, scorer=Scorer.load(str(tiny_encoder)), ctr=False)
    campaign = Campaign(candidates=1, retries=0, audience=Audience(user_ids=users), adapter={"en": "acme-en"})
    _, msgs = runner.run(shop, campaign, user_ids=users)
    assert set(gen.model.peft_config) == {"acme-en"}  # loaded on first use, unmerged, only the one asked for
    assert {m.user.user_id: m.adapter for m in msgs} == {users[0]: "acme-en", users[1]: None}  # zh: no adapter
    for m in msgs:  # the record names the adapter that wrote the copy; a template fallback has none
        assert m.as_record()["adapter"] == (None if m.fallback else m.adapter)

    other = Generator("smollm2-135m-does-not-matter", model=gen.model, tokenizer=gen.tokenizer)
    with pytest.raises(AdapterError, match="trained on"):
        other.use_adapters(["acme-b"])


def test_a_batch_sharing_its_prefix_gives_the_loss_and_gradients_of_whole_rows(tiny_llama: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    from generator.core.model_registry import load_causal_lm
    from generator.tune.train import batch_loss, collate

    model, tok = load_causal_lm(str(tiny_llama), device="cpu", dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                             init_lora_weights=False))  # non-zero B: LoRA changes the prefix too
    shared = tok("<|im_start|>system\nYou write short push notifications for Acme.<|im_end|>\n").input_ids
    rows = [(shared + tok(own).input_ids + tok(t).input_ids, len(tok(t).input_ids))
            for own, t in (("Write one about tents", " Tents are back"), ("Lamps", " Bright lamps, 20% off today"),
                           ("Write a push about boots for winter", " Warm boots"))]
    split = collate(rows, [1.0, 2.0, 0.5], tok.pad_token_id, "cpu")
    whole = collate(rows, [1.0, 2.0, 0.5], tok.pad_token_id, "cpu", min_shared=10**6)
    assert split["prefix_ids"] is not None and split["prefix_ids"].shape[1] >= len(shared)
    assert whole["prefix_ids"] is None and split["tokens"] == whole["tokens"]
    grads = []
    for batch in (split, whole):
        model.zero_grad()
        loss, nll, n = batch_loss(model, batch)
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.requires_grad])
        assert int(n) == sum(m for _, m in rows)
        grads[-1].append(torch.stack([loss.detach(), nll.detach()]))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_ema_validates_and_saves_the_averaged_weights(tiny_llama: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from generator.core.config import get_settings
    from generator.tune.train import train_adapter

    pushes = _shop_folder(tmp_path / "shop", _shop_rows(n=40))
    runs = {}
    for name, ema in (("plain", 0.0), ("averaged", 0.6)):
        res = train_adapter(pushes, name, _cfg(tiny_llama, patience=100, ema=ema), progress=False,
                            report=lambda s: None)
        (file,) = (Path(get_settings().adapters_dir) / name).glob("*.safetensors")
        runs[name] = (res.info.metrics, load_file(file))
    (plain, w_plain), (avg, w_avg) = runs["plain"], runs["averaged"]
    assert plain["steps"] == avg["steps"] and plain["valid_loss_at_start"] == avg["valid_loss_at_start"]
    # the same updates, but what is validated and saved is their running average
    assert avg["valid_loss"] != plain["valid_loss"]
    assert w_plain.keys() == w_avg.keys()
    assert any(not torch.allclose(w_plain[k], w_avg[k]) for k in w_plain)
