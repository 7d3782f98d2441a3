"""Honest adapter evaluation: held-out perplexity under three models in one run, plus style figures.

The three models see the same held-out texts behind the same zero-shot prompt (the one the adapter was
trained with); only the few-shot baseline adds five real past pushes of the brand as example turns (the
approach commercial tools take). Perplexity is over target tokens only: the real copy after the prefilled
``Title:`` and the end-of-turn token (knowing when to stop is part of the house format).
The shared prompt prefix (system message, and the few-shot turns) is run once and its KV cache reused.

Style figures compare sampled generations (temperature 0.8, top-p 0.92) for the same prompts with the real
texts: character length (mean, p10/p50/p90), emoji rate (share of texts with at least one emoji) and
distinct-2 (distinct word bigrams / all bigrams; CJK characters count as words).

Engagement figure ("winner pref."): over same-group pairs of held-out texts whose CTRs differ by at least
10% (relative), the share where a model gives the better-performing text the lower per-token NLL; 0.5 means
the model does not prefer winners. It measures whether the engagement scheme moved the adapter toward
what performed, not just toward the brand's wording.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from generator.core.data import unit_interval
from generator.core.model_registry import load_causal_lm
from generator.tune.train import (
    build_examples,
    cap_by_group,
    end_of_turn_id,
    load_items_near,
    load_pushes,
    render_prompt,
)
from generator.write.adapters import get_adapter, load_adapters, update_metrics
from generator.write.generate import BASE_ADAPTER, GenerationRequest, Generator
from generator.write.prompts import prompt_parts

log = logging.getLogger(__name__)
EMOJI = re.compile("[\U0001f300-\U0001faff\U00002600-\U000027bf\U0001f000-\U0001f2ff\U00002b00-\U00002bff]")
WORDS = re.compile(r"[\u3400-\u9fff]|[^\W\u3400-\u9fff]+", re.U)
MODELS = ("zero-shot base", "few-shot base", "adapter")
TARGET_VS_FEWSHOT, TARGET_VS_ZEROSHOT = 0.6, 0.3  # issue #4: adapter ppl at most these multiples


def target_nll(
    model: Any,
    tokenizer: Any,
    rows: Sequence[tuple[str, str, str]],
    *,
    adapter: str | None = None,
    batch_size: int = 16,
    per_row: list[tuple[float, int]] | None = None,
) -> tuple[float, int]:
    """Summed NLL and count of the target tokens (target + end-of-turn) of ``(shared, own, target)`` rows;
    ``per_row``, when given, is filled with each row's ``(nll, count)`` in row order.

    Rows with the same ``shared`` text reuse one KV cache of it; each batch left-pads its own+target part.
    """
    import torch

    dev = next(model.parameters()).device
    peft = hasattr(model, "peft_config")
    eot, pad = end_of_turn_id(tokenizer), tokenizer.pad_token_id

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False).input_ids if text else []

    def fwd(**kw: Any) -> Any:
        if peft:
            kw["adapter_names"] = [adapter or BASE_ADAPTER] * kw["input_ids"].shape[0]
        return model(**kw)

    total, count = 0.0, 0
    by_prefix: dict[str, list[tuple[list[int], int, int]]] = {}
    for r, (shared, own, target) in enumerate(rows):
        t = ids(target) + [eot]
        by_prefix.setdefault(shared, []).append((ids(own) + t, len(t), r))
    found: dict[int, tuple[float, int]] = {}
    with torch.inference_mode():
        for shared, seqs in by_prefix.items():
            pre = ids(shared)
            kv = _prefix_kv(model, fwd, pre, dev) if pre else None
            seqs = sorted(seqs, key=lambda s: len(s[0]))
            for i in range(0, len(seqs), batch_size):
                chunk = seqs[i : i + batch_size]
                row_nll, row_n = _batch_nll(model, fwd, chunk, len(pre), kv, pad, dev)
                for (_, _, index), a, n in zip(chunk, row_nll, row_n, strict=True):
                    found[index] = (a, int(n))
                total += sum(row_nll)
                count += int(sum(row_n))
    if per_row is not None:
        per_row[:] = [found[i] for i in range(len(rows))]
    return total, count


def _prefix_kv(model: Any, fwd: Callable[..., Any], pre: list[int], dev: Any) -> list[tuple[Any, Any]]:
    """The KV cache of a shared prefix, per layer."""
    import torch
    from transformers import DynamicCache

    p = torch.tensor([pre], device=dev)
    out = fwd(input_ids=p, attention_mask=torch.ones_like(p), use_cache=True,
              past_key_values=DynamicCache(config=model.config))
    return [(layer.keys, layer.values) for layer in out.past_key_values.layers]


def _batch_nll(model: Any, fwd: Callable[..., Any], chunk: Sequence[tuple[list[int], int, int]], n_pre: int,
               kv: list[tuple[Any, Any]] | None, pad: int, dev: Any) -> tuple[list[float], list[int]]:
    """Per row of a left-padded batch (after the shared prefix's ``kv``): summed target NLL and target count."""
    import torch
    import torch.nn.functional as F
    from transformers import DynamicCache

    b, width = len(chunk), max(len(s) for s, _, _ in chunk)
    k = max(n for _, n, _ in chunk) + 1
    x = torch.full((b, width), pad, dtype=torch.long, device=dev)
    own_mask = torch.zeros((b, width), dtype=torch.long, device=dev)
    tmask = torch.zeros((b, k - 1), dtype=torch.bool, device=dev)
    for r, (s, n, _) in enumerate(chunk):
        x[r, width - len(s) :] = torch.tensor(s, device=dev)
        own_mask[r, width - len(s) :] = 1
        tmask[r, k - 1 - n :] = True
    pos = n_pre + (own_mask.cumsum(-1) - 1).clamp(min=0)
    mask = torch.cat([torch.ones((b, n_pre), dtype=torch.long, device=dev), own_mask], dim=1)
    cache = DynamicCache(config=model.config)
    if kv is not None:
        cache = DynamicCache(ddp_cache_data=[(kk.expand(b, -1, -1, -1).contiguous(),
                                              vv.expand(b, -1, -1, -1).contiguous()) for kk, vv in kv],
                             config=model.config)
    out = fwd(input_ids=x, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True,
              logits_to_keep=k)
    logits = out.logits[:, -k:-1].float()
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, -k + 1 :].reshape(-1),
                          reduction="none").view(b, k - 1)
    return (nll * tmask).sum(-1).tolist(), tmask.sum(-1).tolist()


def winner_preference(
    examples: Sequence[Any],
    per_row: Sequence[tuple[float, int]],
    min_lift: float = 0.1,
) -> dict[str, float]:
    """Share of same-group text pairs whose CTRs differ by at least ``min_lift`` (relative) where the model
    gives the better-performing text the lower per-token NLL (0.5 = no preference)."""
    groups: dict[str, list[int]] = {}
    for i, e in enumerate(examples):
        groups.setdefault(e.group_id, []).append(i)
    wins = pairs = 0
    for idx in groups.values():
        for a in idx:
            for b in idx:
                ea, eb = examples[a], examples[b]
                if ea.ctr > eb.ctr * (1 + min_lift):
                    pairs += 1
                    wins += per_row[a][0] / per_row[a][1] < per_row[b][0] / per_row[b][1]
    return {"pairs": pairs, "winner_preferred": round(wins / pairs, 3) if pairs else float("nan")}


def style_figures(texts: Sequence[str]) -> dict[str, float]:
    """Length distribution (characters), emoji rate and distinct-2 of a set of texts."""
    lengths = sorted(len(t) for t in texts)
    n = len(lengths)

    def q(f: float) -> float:
        return float(lengths[min(n - 1, int(f * n))]) if n else 0.0

    bigrams = [
        tuple(w[i : i + 2]) for w in (WORDS.findall(t.lower()) for t in texts) for i in range(len(w) - 1)
    ]
    return {
        "n": n,
        "chars_mean": round(sum(lengths) / n, 1) if n else 0.0,
        "chars_p10": q(0.1),
        "chars_p50": q(0.5),
        "chars_p90": q(0.9),
        "emoji_rate": round(sum(bool(EMOJI.search(t)) for t in texts) / n, 3) if n else 0.0,
        "distinct_2": round(len(set(bigrams)) / len(bigrams), 3) if bigrams else 0.0,
    }


def _joined(title: str, body: str) -> str:
    return " ".join(p for p in (title.strip(), body.strip()) if p)


def _style_of_generated(out: dict[str, Any], examples: Sequence[Any], by_id: dict[str, Any],
                        zero_rows: Sequence[tuple[str, str, str]], few_rows: Sequence[tuple[str, str, str]],
                        gen: Generator, name: str, n_generate: int, report: Callable[[str], None]) -> None:
    """Style figures of copy the three models write for ``n_generate`` held-out prompts, and of the real copy."""
    sample = sorted(range(len(examples)), key=lambda i: unit_interval(7, examples[i].push_id))[:n_generate]
    reqs = []
    for i in sample:
        reqs.append(GenerationRequest(f"zero-{i}", zero_rows[i][1], None, zero_rows[i][0]))
        reqs.append(GenerationRequest(f"few-{i}", few_rows[i][1], None, few_rows[i][0]))
        reqs.append(GenerationRequest(f"adapter-{i}", zero_rows[i][1], name, zero_rows[i][0]))
    t0 = time.perf_counter()
    # a sampled candidate (the generator's default temperature/top-p), not the greedy one: prompts without
    # an item are all the same, and greedy decoding would give one text for all of them
    cands = gen.generate(reqs, n_candidates=2, seed=0)
    texts: dict[str, list[str]] = {m: [] for m in MODELS}
    for r, c in zip(reqs, cands, strict=True):
        texts[MODELS[("zero", "few", "adapter").index(r.key.split("-")[0])]].append(
            _joined(c[1].title, c[1].body)
        )
    real = [
        _joined(by_id[examples[i].push_id].title or "", by_id[examples[i].push_id].body or "")
        for i in sample
    ]
    for label in MODELS:
        out["models"][label]["style"] = style_figures(texts[label])
    out["real"] = {"style": style_figures(real)}
    out["samples"] = [
        {"real": real[j], **{m: texts[m][j] for m in MODELS}} for j in range(min(5, len(sample)))
    ]
    report(f"generated {len(reqs)} texts in {time.perf_counter() - t0:.0f} s")


def evaluate_adapter(
    heldout_path: str | Path,
    name: str,
    *,
    limit: int = 300,
    n_generate: int = 64,
    batch_size: int = 16,
    device: str | None = None,
    report: Callable[[str], None] = print,
    model: Any = None,
    tokenizer: Any = None,
) -> dict[str, Any]:
    """Perplexities (zero-shot base, few-shot base, adapter) and style figures on held-out pushes.

    Held-out pushes must come from groups the adapter never saw (``pushgen data split``). The figures are
    also recorded in the adapter's metadata. ``model``/``tokenizer`` may be passed to reuse a loaded base.
    """
    info = get_adapter(name)
    if len(info.fewshot) < 5:
        log.warning("adapter %s recorded only %d few-shot pushes", name, len(info.fewshot))
    pushes = load_pushes(heldout_path)
    by_id = {p.push_id: p for p in pushes}
    items = load_items_near(heldout_path)
    if model is None:
        model, tokenizer = load_causal_lm(info.base, device=device)
    model = load_adapters(model, [name])
    examples = cap_by_group(build_examples(pushes, tokenizer, info.brand, scheme="all", items=items), limit)
    fewshot = tuple((t["user"], t["answer"]) for t in info.fewshot)
    zero_rows, few_rows = [], []
    for e in examples:
        rendered = render_prompt(by_id[e.push_id], items, info.brand)
        zero_rows.append((e.shared, e.own, e.target))
        few_rows.append((*prompt_parts(tokenizer, dataclasses.replace(rendered, examples=fewshot)), e.target))
    report(
        f"{len(pushes)} held-out pushes -> {len(examples)} distinct texts in "
        f"{len({e.group_id for e in examples})} groups; 3 models"
    )

    out: dict[str, Any] = {
        "adapter": name,
        "base": info.base,
        "heldout": str(heldout_path),
        "texts": len(examples),
        "models": {},
    }
    for label, rows, adapter in (
        (MODELS[0], zero_rows, None),
        (MODELS[1], few_rows, None),
        (MODELS[2], zero_rows, name),
    ):
        t0 = time.perf_counter()
        rows_nll: list[tuple[float, int]] = []
        nll, count = target_nll(
            model, tokenizer, rows, adapter=adapter, batch_size=batch_size, per_row=rows_nll
        )
        ppl = math.exp(nll / max(count, 1))
        out["models"][label] = {
            "ppl": round(ppl, 2),
            "target_tokens": count,
            "engagement": winner_preference(examples, rows_nll),
        }
        report(f"{label}: perplexity {ppl:.2f} over {count} target tokens ({time.perf_counter() - t0:.0f} s)")
    ppl = {k: v["ppl"] for k, v in out["models"].items()}
    out["adapter_vs_fewshot"] = round(ppl[MODELS[2]] / ppl[MODELS[1]], 3)
    out["adapter_vs_zeroshot"] = round(ppl[MODELS[2]] / ppl[MODELS[0]], 3)
    out["meets_targets"] = (
        out["adapter_vs_fewshot"] <= TARGET_VS_FEWSHOT and out["adapter_vs_zeroshot"] <= TARGET_VS_ZEROSHOT
    )

    if n_generate:
        _style_of_generated(out, examples, by_id, zero_rows, few_rows, Generator(
            info.base, model=model, tokenizer=tokenizer, batch_size=batch_size), name, n_generate, report)
    update_metrics(name, {"eval": {k: v for k, v in out.items() if k != "samples"}})
    return out


def report_table(report: dict[str, Any]) -> Any:
    """The eval figures as a rich table."""
    from rich.table import Table

    table = Table(
        title=f"adapter {report['adapter']} on {report['texts']} held-out texts",
        caption=f"adapter / few-shot = {report['adapter_vs_fewshot']} (target <= {TARGET_VS_FEWSHOT}); "
        f"adapter / zero-shot = {report['adapter_vs_zeroshot']} (target <= {TARGET_VS_ZEROSHOT})",
    )
    for col in (
        "model",
        "perplexity",
        "winner pref.",
        "chars mean",
        "p10/p50/p90",
        "emoji rate",
        "distinct-2",
    ):
        table.add_column(col, justify="left" if col == "model" else "right")
    rows = [(m, report["models"][m]) for m in MODELS]
    if "real" in report:
        rows.append(("real texts", {"ppl": None, **report["real"]}))
    for label, r in rows:
        s = r.get("style")
        pref = r.get("engagement", {}).get("winner_preferred")
        table.add_row(
            label,
            "" if r["ppl"] is None else f"{r['ppl']:.2f}",
            "" if pref is None else f"{pref:.2f}",
            *(
                [
                    f"{s['chars_mean']:.0f}",
                    f"{s['chars_p10']:.0f}/{s['chars_p50']:.0f}/{s['chars_p90']:.0f}",
                    f"{s['emoji_rate']:.2f}",
                    f"{s['distinct_2']:.2f}",
                ]
                if s
                else ["", "", "", ""]
            ),
        )
    return table
