"""Batched generation of push copy: one model load, length-bucketed left-padded batches, stop rules.

The model answers in two lines, ``Title: ...`` and ``Body: ...`` (the prompt pre-fills ``Title:``). A row
stops as soon as its body line ends (second newline), at end-of-turn, or at ``max_new_tokens``.
Candidate 0 of each request is greedy; further candidates are sampled, reproducibly under ``seed``
(for the same requests and batch size).
Rows of one batch may use different LoRA adapters (peft's per-row ``adapter_names``).
"""

from __future__ import annotations

import inspect
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache

from generator.config import get_settings
from generator.models import load_causal_lm
from generator.prompts import GENERATION_PREFIX

log = logging.getLogger(__name__)
BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in adapter_names


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to complete. ``key`` is the caller's id (e.g. the user id)."""

    key: str
    prompt: str
    adapter: str | None = None
    prefix: str = ""  # text shared by many requests (system + few-shot turns); the model input is prefix+prompt


@dataclass
class Candidate:
    title: str
    body: str
    raw: str
    sampled: bool
    new_tokens: int = 0
    finished: bool = True  # False when max_new_tokens cut the copy off
    checks: list[dict[str, Any]] = field(default_factory=list)
    ctr: float | None = None

    @property
    def passed(self) -> bool:
        return all(c["passed"] for c in self.checks)


_LINE = {k: re.compile(rf"^\s*\**{k}\**\s*[:：]\s*(.*)$", re.I | re.M) for k in ("title", "body")}


def _clean(s: str) -> str:
    s = s.strip().strip("*").strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'“”":
        s = s[1:-1].strip()
    return s


def parse_title_body(completion: str, prefix: str = GENERATION_PREFIX) -> tuple[str, str]:
    """Split a ``Title: ..`` / ``Body: ..`` completion into its two lines (missing parts are empty)."""
    text = prefix + completion
    title_m, body_m = _LINE["title"].search(text), _LINE["body"].search(text)
    title = _clean(title_m.group(1)) if title_m else ""
    body = _clean(body_m.group(1)) if body_m else ""
    if not body_m and title_m:  # the model put a newline-less answer on the title line only
        rest = text[title_m.end():].strip().splitlines()
        body = _clean(rest[0]) if rest else ""
    return title, body


@dataclass
class _Row:
    """One request prepared for decoding: token ids of its shared prefix and of its own suffix."""

    index: int
    prefix: tuple[int, ...]
    suffix: list[int]
    adapter: str | None


class Generator:
    """A causal LM loaded once, generating Title/Body copy for many prompts in batches.

    The decoding loop is pushgen's own: the KV cache of a prompt prefix shared by many users (system message
    and few-shot turns) is computed once per (prefix, adapter) and reused; each user's suffix is prefilled
    once for all of its candidates; greedy and sampled candidates decode in the same batch; rows that
    finished are dropped from the batch, so no work is spent on them.
    """

    def __init__(self, model_name: str | None = None, *, device: str | None = None, batch_size: int | None = None,
                 max_new_tokens: int | None = None, model: Any = None, tokenizer: Any = None,
                 temperature: float = 0.8, top_p: float = 0.92, top_k: int = 50, stop_rules: bool = True):
        settings = get_settings()
        self.model_name = model_name or settings.generator_model
        if model is None:
            model, tokenizer = load_causal_lm(self.model_name, device=device)
        self.model, self.tokenizer = model, tokenizer
        self.batch_size = batch_size or settings.batch_size
        self.max_new_tokens = max_new_tokens or settings.max_new_tokens
        self.temperature, self.top_p, self.top_k = temperature, top_p, top_k
        self.stop_rules = stop_rules  # False: always max_new_tokens (benchmarks with a fixed generated length)
        vocab = self.tokenizer.get_vocab()
        is_nl = torch.zeros(max(len(self.tokenizer), max(vocab.values()) + 1), dtype=torch.bool)
        for tok_id in vocab.values():
            if "\n" in self.tokenizer.decode([tok_id]):
                is_nl[tok_id] = True
        self._is_newline = is_nl.to(self.device)
        eos = {self.tokenizer.eos_token_id, vocab.get("<|im_end|>"), vocab.get("<end_of_turn>")}
        self._eos = torch.tensor(sorted(i for i in eos if i is not None), device=self.device)
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        # transformers renamed `past_key_values` to `cache` (5.2x); use whichever this version takes
        self._cache_kw = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
        self._prefix_cache: dict[tuple[tuple[int, ...], str | None], list[tuple[torch.Tensor, torch.Tensor]]] = {}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- preparation ---------------------------------------------------------------------------------------
    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def _prepare(self, requests: Sequence[GenerationRequest]) -> list[_Row]:
        """Tokenise each request as (shared prefix, own suffix). The whole prompt is tokenised as one, so the
        model sees exactly the tokens it would without sharing; the shared part is the tokens it has in common
        with its prefix text."""
        prefix_ids: dict[str, tuple[int, ...]] = {}
        rows = []
        for i, r in enumerate(requests):
            whole = self._encode(r.prefix + r.prompt)
            if r.prefix:
                if r.prefix not in prefix_ids:
                    prefix_ids[r.prefix] = tuple(self._encode(r.prefix))
                pre = prefix_ids[r.prefix]
                n = 0  # tokens the prefix and the whole prompt share (a boundary token may merge differently)
                while n < min(len(pre), len(whole) - 1) and pre[n] == whole[n]:
                    n += 1
                if n:
                    rows.append(_Row(i, tuple(whole[:n]), whole[n:], r.adapter))
                    continue
            rows.append(_Row(i, (), whole, r.adapter))
        return rows

    def _batches(self, rows: list[_Row]) -> list[list[_Row]]:
        """Rows grouped into batches of the same prefix and similar suffix length (little padding)."""
        order = sorted(rows, key=lambda r: (r.prefix, r.adapter or "", len(r.suffix), r.index))
        return [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def _forward(self, **kwargs: Any) -> Any:
        adapters = kwargs.pop("adapters")
        if hasattr(self.model, "peft_config"):
            kwargs["adapter_names"] = [a or BASE_ADAPTER for a in adapters]
        kwargs[self._cache_kw] = kwargs.pop("past_key_values")
        # only the last position's logits are used: skip the vocabulary projection everywhere else
        return self.model(**kwargs, use_cache=True, logits_to_keep=1)

    def _prefix_kv(self, prefix: tuple[int, ...], adapter: str | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The per-layer (keys, values) of a prefix, computed once per (prefix, adapter)."""
        key = (prefix, adapter)
        if key not in self._prefix_cache:
            if len(self._prefix_cache) >= 64:  # bounded: a long-lived worker sees a few templates x adapters
                self._prefix_cache.pop(next(iter(self._prefix_cache)))
            ids = torch.tensor([prefix], device=self.device)
            out = self._forward(input_ids=ids, attention_mask=torch.ones_like(ids), adapters=[adapter],
                                past_key_values=DynamicCache(config=self.model.config))
            self._prefix_cache[key] = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        return self._prefix_cache[key]

    # -- decoding ------------------------------------------------------------------------------------------
    def _pick(self, logits: torch.Tensor, sampled: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Next tokens: argmax for greedy rows; temperature/top-k/top-p sampling for the others."""
        nxt = logits.argmax(dim=-1)
        if bool(sampled.any()):
            lg = logits[sampled].float() / self.temperature
            if self.top_k:
                kth = torch.topk(lg, min(self.top_k, lg.shape[-1]), dim=-1).values[:, -1:]
                lg = lg.masked_fill(lg < kth, float("-inf"))
            probs = torch.softmax(lg, dim=-1)
            sorted_p, idx = probs.sort(dim=-1, descending=True)
            drop = sorted_p.cumsum(dim=-1) - sorted_p > self.top_p
            sorted_p = sorted_p.masked_fill(drop, 0.0)
            choice = torch.multinomial(sorted_p / sorted_p.sum(-1, keepdim=True), 1, generator=gen).squeeze(-1)
            nxt[sampled] = idx.gather(-1, choice[:, None]).squeeze(-1)
        return nxt

    @torch.inference_mode()
    def _decode(self, batch: list[_Row], n: int, seed: int) -> list[list[tuple[list[int], bool]]]:
        """Decode ``n`` candidates per row (candidate 0 greedy). Returns token ids and whether each stopped."""
        dev, pad = self.device, self.tokenizer.pad_token_id
        b = len(batch)
        p_max = max(len(r.prefix) for r in batch)
        s_max = max(len(r.suffix) for r in batch)
        adapters = [r.adapter for r in batch]
        # cache: each row's prefix K/V, left-padded to the longest prefix
        cache = None
        if p_max:
            per_row = [self._prefix_kv(r.prefix, r.adapter) for r in batch]
            layers = []
            for li in range(len(per_row[0])):
                ks, vs = [], []
                for kv in per_row:
                    k, v = kv[li]
                    gap = p_max - k.shape[2]
                    ks.append(torch.nn.functional.pad(k, (0, 0, gap, 0)))
                    vs.append(torch.nn.functional.pad(v, (0, 0, gap, 0)))
                layers.append((torch.cat(ks), torch.cat(vs)))
            cache = DynamicCache(ddp_cache_data=layers, config=self.model.config)
        else:
            cache = DynamicCache(config=self.model.config)
        mask = torch.zeros(b, p_max + s_max, dtype=torch.long, device=dev)
        ids = torch.full((b, s_max), pad, dtype=torch.long, device=dev)
        pos = torch.zeros(b, s_max, dtype=torch.long, device=dev)
        for i, r in enumerate(batch):
            p, s = len(r.prefix), len(r.suffix)
            mask[i, p_max - p:p_max] = 1
            mask[i, p_max + s_max - s:] = 1
            ids[i, s_max - s:] = torch.tensor(r.suffix, device=dev)
            pos[i, s_max - s:] = torch.arange(p, p + s, device=dev)
        out = self._forward(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache,
                            adapters=adapters)
        logits = out.logits[:, -1, :]
        next_pos = pos[:, -1] + 1
        if n > 1:  # the suffix was prefilled once per row; its candidates share that cache
            cache.batch_repeat_interleave(n)
            logits, mask, next_pos = (t.repeat_interleave(n, dim=0) for t in (logits, mask, next_pos))
            adapters = [a for a in adapters for _ in range(n)]
        rows = b * n
        sampled = (torch.arange(rows, device=dev) % n) != 0
        gen = torch.Generator(device=dev).manual_seed(seed)
        active = torch.arange(rows, device=dev)  # original row of each live batch position
        tokens: list[list[int]] = [[] for _ in range(rows)]
        stopped = [False] * rows
        newlines = torch.zeros(rows, dtype=torch.long, device=dev)
        for step in range(self.max_new_tokens):
            nxt = self._pick(logits, sampled[active], gen)
            is_eos = torch.isin(nxt, self._eos) if self.stop_rules else torch.zeros_like(nxt, dtype=torch.bool)
            newlines[active] += self._is_newline[nxt].long()
            done = is_eos | (newlines[active] >= 2) if self.stop_rules else is_eos
            for j, (row, tok) in enumerate(zip(active.tolist(), nxt.tolist(), strict=True)):
                if not bool(is_eos[j]):
                    tokens[row].append(tok)
            for row in active[done].tolist():
                stopped[row] = True
            keep = ~done
            if not bool(keep.any()) or step == self.max_new_tokens - 1:
                break
            if not bool(keep.all()):  # drop finished rows: no more work on them
                sel = keep.nonzero().squeeze(-1)
                cache.batch_select_indices(sel)
                active, nxt, mask, next_pos = active[sel], nxt[sel], mask[sel], next_pos[sel]
                adapters = [adapters[k] for k in sel.tolist()]
            mask = torch.cat([mask, torch.ones(len(active), 1, dtype=mask.dtype, device=dev)], dim=1)
            out = self._forward(input_ids=nxt[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                                past_key_values=cache, adapters=adapters)
            logits = out.logits[:, -1, :]
            next_pos = next_pos + 1
        return [[(tokens[i * n + j], stopped[i * n + j]) for j in range(n)] for i in range(b)]

    def generate(self, requests: Sequence[GenerationRequest], *, n_candidates: int = 1, seed: int | None = None,
                 progress: Any = None) -> list[list[Candidate]]:
        """Candidates for every request, in request order (candidate 0 greedy, the rest sampled).
        ``progress(n_done)`` is called after each batch."""
        seed = get_settings().seed if seed is None else seed
        out: list[list[Candidate]] = [[] for _ in requests]
        t0, n_tokens = time.perf_counter(), 0
        for b, batch in enumerate(self._batches(self._prepare(requests))):
            for row, cands in zip(batch, self._decode(batch, n_candidates, seed + b), strict=True):
                for k, (ids, stopped) in enumerate(cands):
                    text = self.tokenizer.decode(ids, skip_special_tokens=True)
                    title, body = parse_title_body(text)
                    out[row.index].append(Candidate(title=title, body=body, raw=text, sampled=k > 0,
                                                    new_tokens=len(ids), finished=stopped))
                    n_tokens += len(ids)
            if progress is not None:
                progress(len(batch))
        dt = time.perf_counter() - t0
        log.info("generated %d candidates for %d prompts in %.1f s (%.0f new tokens/s)",
                 sum(len(c) for c in out), len(requests), dt, n_tokens / max(dt, 1e-9))
        return out
