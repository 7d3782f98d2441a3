"""Batched generation of push copy: one model load, length-bucketed left-padded batches, stop rules.

The model answers in two lines, ``Title: ...`` and ``Body: ...`` (the prompt pre-fills ``Title:``). A row
stops as soon as its body line ends (second newline), at end-of-turn, or at ``max_new_tokens``.
Candidate 0 of each request is greedy; further candidates are sampled, reproducibly under ``seed``
(for the same requests and batch size).
Rows of one batch may use different LoRA adapters (:mod:`generator.write.multi_lora`; peft's per-row ``adapter_names``
for adapters it does not handle).
"""

from __future__ import annotations

import collections
import contextlib
import gc
import inspect
import itertools
import logging
import re
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache

from generator.core.config import get_settings
from generator.core.model_registry import load_causal_lm, quantize_int8
from generator.write.adapters import AdapterError, get_adapter, load_adapters
from generator.write.decode import (
    Decoded,
    _common_prefix,
    _Row,
    _Scratch,
    _StaticRunner,
    _tokenizer_shortcuts,
    decode_dynamic,
    decode_static,
    pick_tokens,
)
from generator.write.multi_lora import FusedLora
from generator.write.prompts import GENERATION_PREFIX

log = logging.getLogger(__name__)
BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in adapter_names


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to complete. ``key`` is the caller's id (e.g. the user id)."""

    key: str
    prompt: str
    adapter: str | None = None
    prefix: str = ""  # text shared by many requests (system + few-shot turns); the model input is prefix+prompt


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector paused for a block (reference counting frees everything as usual): the host
    objects of thousands of rows or messages (token lists, texts, candidates, check results) would set it off again
    and again, each time walking every object alive (a shop of millions of events included); they make no cycles."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


@dataclass
class Draft:
    """One written copy, as the model gave it (the campaign runner checks and scores it as a ``Draft``)."""

    title: str
    body: str
    raw: str
    sampled: bool
    new_tokens: int = 0
    finished: bool = True  # False when max_new_tokens cut the copy off


_LINE = {k: re.compile(rf"^\s*\**{k}\**\s*[:：]\s*(.*)$", re.I | re.M) for k in ("title", "body")}


_HAN_END = re.compile(r"[\u4e00-\u9fff]$")


def _clean(s: str) -> str:
    s = s.strip().strip("*").strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'“”":
        s = s[1:-1].strip()
    return s


def parse_title_body(completion: str, prefix: str = GENERATION_PREFIX) -> tuple[str, str]:
    """Split a ``Title: ..`` / ``Body: ..`` completion into its two lines (missing parts are empty); a body
    that ends on a Chinese character gets its full stop."""
    text = prefix + completion
    title_m, body_m = _LINE["title"].search(text), _LINE["body"].search(text)
    title = _clean(title_m.group(1)) if title_m else ""
    body = _clean(body_m.group(1)) if body_m else ""
    if not body_m and title_m:  # the model put a newline-less answer on the title line only
        rest = text[title_m.end():].strip().splitlines()
        body = _clean(rest[0]) if rest else ""
    if _HAN_END.search(body):  # a Chinese sentence ends on its full stop: "…去看看吧" -> "…去看看吧。"
        body += "。"
    return title, body


class Generator:
    """A causal LM loaded once, generating Title/Body copy for many prompts in batches.

    The decoding loop is pushgen's own: the KV cache of a prompt prefix shared by many users (system message
    and few-shot turns) is computed once per (prefix, adapter) and reused; each user's suffix is prefilled
    once for all of its candidates; greedy and sampled candidates decode in the same batch; the cache is
    preallocated (nothing is concatenated per step) and, on CPU, rows that finished are dropped from the batch;
    plain LoRA adapters are applied by :class:`~generator.write.multi_lora.FusedLora`, several per batch.
    Adapter weights are read when adapters are loaded (:meth:`use_adapters`), not at every call.
    """

    def __init__(self, model_name: str | None = None, *, device: str | None = None, batch_size: int | None = None,
                 max_new_tokens: int | None = None, model: Any = None, tokenizer: Any = None,
                 temperature: float = 0.8, top_p: float = 0.92, top_k: int = 50, stop_rules: bool = True,
                 decode: str | None = None, int8: bool | None = None):
        settings = get_settings()
        self.model_name = model_name or settings.generator_model
        if model is None:
            model, tokenizer = load_causal_lm(self.model_name, device=device)
        self.int8 = (settings.cpu_int8 if int8 is None else int8) and next(model.parameters()).device.type == "cpu"
        if self.int8:
            model = quantize_int8(model)
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
        self._added_start, self._fast_encode = _tokenizer_shortcuts(self.tokenizer)
        eos = {self.tokenizer.eos_token_id, vocab.get("<|im_end|>"), vocab.get("<end_of_turn>")}
        self._eos = torch.tensor(sorted(i for i in eos if i is not None), device=self.device)
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        # transformers renamed `past_key_values` to `cache` (5.2x); use whichever this version takes
        self._cache_kw = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
        # a model whose output layer covers a subset of the vocabulary (the null model) names each column's token id
        self._column_ids: torch.Tensor | None = getattr(base, "output_token_ids", None)
        self._prefix_cache: dict[tuple[tuple[int, ...], str | None], list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self.decode_mode = self._pick_mode(decode or settings.decode)
        self._runners: dict[tuple[str | None, int, int], _StaticRunner] = {}
        # decode steps of the preallocated-cache loop, by how they ran: "graph" (a CUDA graph replayed) or "eager";
        # a benchmark reports them, so a graph capture that failed (and fell back to eager) is seen
        self.decode_steps: collections.Counter[str] = collections.Counter()
        self._fused = FusedLora.of(self.model)
        # suffix tokens per prefill chunk (static decoding): a CPU's caches hold ~2k tokens' activations
        # (2048 for SmolLM2's 576 wide activations, more for narrower ones)
        cfg = self.model.config.get_text_config() if hasattr(self.model.config, "get_text_config") else \
            self.model.config
        self._prefill_tokens = 2048 * 576 // cfg.hidden_size if self.device.type == "cpu" else 65536
        self._mask_elements = 1 << 24  # the prefill mask's size, rows x suffix x length, bounds a chunk too
        self._scratch = _Scratch(self.device)
        # decode steps between checks of whether every row stopped (each check waits for a GPU)
        self._stop_check_every = 4 if self.device.type == "cuda" else 1
        self._graph_pool = torch.cuda.graph_pool_handle() if self.decode_mode == "graph" else None

    def use_adapters(self, names: Sequence[str]) -> None:
        """Load registered LoRA adapters (unmerged) into this generator's model, once each; requests then name
        them per row. Each must have been trained on this generator's base model."""
        have = set(getattr(self.model, "peft_config", {}) or {})
        todo = [n for n in dict.fromkeys(names) if n not in have]
        if not todo:
            return
        for name in todo:
            base = get_adapter(name).base
            if base != self.model_name:
                raise AdapterError(f"adapter {name!r} was trained on {base!r}, but this copy is generated by "
                                   f"{self.model_name!r}")
        if self.int8:
            raise AdapterError("adapters cannot be added to an int8 generator; load them before quantising "
                               "(PUSHGEN_CPU_INT8=0 to generate in float)")
        self.model = load_adapters(self.model, todo)
        self._fused = FusedLora.of(self.model)
        self._runners.clear()  # captured against the model without these adapters

    def _pick_mode(self, mode: str) -> str:
        if mode not in ("auto", "dynamic", "static", "graph"):
            raise ValueError(f"decode must be auto, dynamic, static or graph, not {mode!r}")
        cfg = self.model.config
        cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        sliding = bool(getattr(cfg, "sliding_window", None)) and any(
            t != "full_attention" for t in (getattr(cfg, "layer_types", None) or ["sliding"]))
        # the grouped attention's masks have no window: with sliding layers, only sequences within the window
        self._window = int(cfg.sliding_window) if sliding else None
        if mode == "auto":
            return "dynamic" if sliding else "graph" if self.device.type == "cuda" else "static"
        if mode != "dynamic" and sliding:
            raise ValueError(f"decode={mode!r} needs a model without sliding-window attention layers")
        if mode == "graph" and self.device.type != "cuda":
            raise ValueError("decode='graph' needs a CUDA device")
        return mode

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- preparation ---------------------------------------------------------------------------------------
    def _prepare(self, requests: Sequence[GenerationRequest], indexes: Sequence[int] | None = None) -> list[_Row]:
        """Tokenise each request as (shared prefix, own suffix), exactly as its whole prompt tokenises, so the model
        sees the tokens it would without sharing. A prompt that starts with an added token such as ``<|im_start|>``
        (split out before any other step of tokenising) tokenises the same after its prefix as alone: only the
        prompt is tokenised, and each distinct prompt once (users of one featured item share it). That is checked
        against the whole prompt once per prefix and starting token. Other prompts are tokenised whole, and the
        shared part is the tokens they have in common with their prefix text. Each distinct shared prefix is one
        object, so sorting and grouping never compare it. ``indexes``: each request's index in the caller's list
        (default: its position)."""
        prefixes = list(dict.fromkeys(r.prefix for r in requests if r.prefix))
        prefix_ids = dict(zip(prefixes, self._encode(prefixes), strict=True))
        split = self._splits(requests, prefix_ids)
        texts = [r.prompt if alone else r.prefix + r.prompt for r, alone in zip(requests, split, strict=True)]
        distinct = list(dict.fromkeys(texts))
        ids_of = dict(zip(distinct, self._encode(distinct), strict=True))
        shared: dict[tuple[str, int], tuple[int, tuple[int, ...]]] = {("", 0): (0, ())}
        rows = []
        for i, (r, alone, text) in enumerate(zip(requests, split, texts, strict=True)):
            ids = ids_of[text]
            if alone:
                n, pre, own = len(prefix_ids[r.prefix]), prefix_ids[r.prefix], ids
            else:
                n = _common_prefix(prefix_ids[r.prefix], ids) if r.prefix else 0
                pre, own = ids[:n], ids[n:]
            key = (r.prefix if n else "", n)
            if key not in shared:
                shared[key] = (len(shared), tuple(pre))
            group, prefix = shared[key]
            rows.append(_Row(i if indexes is None else indexes[i], prefix, own, r.adapter, group))
        return rows

    def _splits(self, requests: Sequence[GenerationRequest], prefix_ids: dict[str, list[int]]) -> list[bool]:
        """Per request, whether its prompt may be tokenised without its prefix (see :meth:`_prepare`)."""
        starts = [self._added_start.match(r.prompt) if r.prefix and self._added_start else None for r in requests]
        clean: dict[tuple[str, str], bool] = {}
        for r, m in zip(requests, starts, strict=True):
            if m is not None and (r.prefix, m[0]) not in clean:
                whole, alone = self._encode([r.prefix + r.prompt, r.prompt])
                clean[(r.prefix, m[0])] = whole == prefix_ids[r.prefix] + alone
        return [m is not None and clean[(r.prefix, m[0])] for r, m in zip(requests, starts, strict=True)]

    def _encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of ``texts`` (no special tokens added), in one call: the fast tokenizer's own ``encode_batch``
        (parallel, and without building transformers' per-text encodings) where it gives the same ids."""
        if not texts:
            return []
        if self._fast_encode:
            return [e.ids for e in self.tokenizer._tokenizer.encode_batch(texts, add_special_tokens=False)]
        return self.tokenizer(texts, add_special_tokens=False).input_ids

    def _texts(self, ids: list[list[int]]) -> list[str]:
        """Token ids to text. A fast tokenizer's own ``decode_batch`` (Rust, GIL released, ~3.5x faster than
        ``batch_decode``'s per-sequence Python) when it gives the same text: no space clean-up to apply."""
        backend = getattr(self.tokenizer, "_tokenizer", None)
        if backend is not None and not getattr(self.tokenizer, "clean_up_tokenization_spaces", False):
            return backend.decode_batch(ids, skip_special_tokens=True)
        return self.tokenizer.batch_decode(ids, skip_special_tokens=True)

    def _candidates(self, decoded: Decoded, n: int) -> list[list[Draft]]:
        """The ``n`` candidates of each request of a decoded batch: text, title and body, length, whether cut off."""
        rows = [Draft(*parse_title_body(text), text, k % n > 0, len(ids), stopped)
                for k, (text, ids, stopped) in enumerate(zip(self._texts(decoded.ids), decoded.ids, decoded.stopped,
                                                             strict=True))]
        return [rows[i:i + n] for i in range(0, len(rows), n)]

    def _batches(self, requests: Sequence[GenerationRequest]) -> list[list[int]]:
        """Requests (their indexes) grouped into batches of the same prefix and similar prompt length (little
        padding), before tokenising: the prompt's length in characters stands for its length in tokens, so each
        batch can be tokenised while the one before decodes."""
        order = sorted(range(len(requests)), key=lambda i: (requests[i].adapter or "", requests[i].prefix,
                                                           len(requests[i].prompt), i))
        if self.decode_mode == "dynamic" or (self.decode_mode == "static" and self._fused is not None):
            # rows of one batch may use different adapters (runs of one adapter, as sorted)
            return [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        batches: list[list[int]] = []  # CUDA graphs (and peft's own LoRA forward): one adapter per batch
        for _, group in itertools.groupby(order, key=lambda i: requests[i].adapter):
            group = list(group)
            batches += [group[i:i + self.batch_size] for i in range(0, len(group), self.batch_size)]
        return batches

    def _tokenised(self, requests: Sequence[GenerationRequest], indexes: list[int]) -> list[_Row]:
        """A batch's rows, tokenised, in decoding order: runs of one adapter, then by prefix and suffix length."""
        rows = self._prepare([requests[i] for i in indexes], indexes)
        return sorted(rows, key=lambda r: (r.adapter or "", r.group, len(r.suffix), r.index))

    def _forward(self, **kwargs: Any) -> Any:
        """One forward pass; ``adapters`` names each row's adapter (None: the active scope's, see
        :meth:`_adapter_scope`). With plain LoRA adapters the fused forward applies them (no peft hooks)."""
        adapters = kwargs.pop("adapters")
        kwargs[self._cache_kw] = kwargs.pop("past_key_values")
        kwargs.update(use_cache=True, logits_to_keep=1)  # only the last position's logits are used
        if self._fused is not None:
            with self._fused.rows(adapters) if adapters is not None else contextlib.nullcontext():
                return self.model.get_base_model()(**kwargs)
        if adapters is not None and hasattr(self.model, "peft_config"):
            kwargs["adapter_names"] = [a or BASE_ADAPTER for a in adapters]
        return self.model(**kwargs)

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

    @contextlib.contextmanager
    def _adapter_scope(self, adapter: Sequence[str | None] | str | None) -> Iterator[None]:
        """Make ``adapter`` (None: the base model) the active one for calls without per-row adapter names; with the
        fused LoRA forward, a list names each row's adapter."""
        if self._fused is not None:
            with self._fused.rows(adapter):
                yield
            return
        assert adapter is None or isinstance(adapter, str), "a list of adapters needs the fused LoRA forward"
        if not hasattr(self.model, "peft_config"):
            yield
        elif adapter is None:
            with self.model.disable_adapter():
                yield
        else:
            before = self.model.active_adapter
            self.model.set_adapter(adapter)
            try:
                yield
            finally:
                self.model.set_adapter(before)

    # -- decoding ------------------------------------------------------------------------------------------
    def _pick(self, logits: torch.Tensor, sampled: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Next tokens: argmax for greedy rows; temperature/top-k/top-p sampling for the others."""
        nxt = pick_tokens(logits, sampled, gen, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p,
                          skip_confident=self.device.type != "cuda")
        return nxt if self._column_ids is None else self._column_ids[nxt]

    @torch.inference_mode()
    def _decode(self, batch: list[_Row], n: int, seed: int, limit: int) -> Decoded:
        """Decode ``n`` candidates per row (candidate 0 greedy): row ``i * n + j`` of the result is candidate ``j`` of
        request ``i``."""
        if self.decode_mode == "dynamic":
            return decode_dynamic(self, batch, n, seed, limit)
        return decode_static(self, batch, n, seed, limit)

    def generate(self, requests: Sequence[GenerationRequest], *, n_candidates: int = 1, seed: int | None = None,
                 progress: Any = None, max_new_tokens: int | None = None) -> list[list[Draft]]:
        """Candidates for every request, in request order (candidate 0 greedy, the rest sampled).
        ``progress(n_done)`` is called after each batch; ``max_new_tokens`` overrides the generator's cap."""
        seed = get_settings().seed if seed is None else seed
        limit = max_new_tokens or self.max_new_tokens
        with gc_paused():
            return self._generate(requests, n_candidates, seed, progress, limit)

    def _generate(self, requests: Sequence[GenerationRequest], n_candidates: int, seed: int, progress: Any,
                  limit: int) -> list[list[Draft]]:
        out: list[list[Draft]] = [[] for _ in requests]
        t0, n_tokens = time.perf_counter(), 0

        def finish(batch: list[_Row], decoded: Decoded, candidates: Future[list[list[Draft]]]) -> int:
            for row, cands in zip(batch, candidates.result(), strict=True):
                out[row.index] = cands
            if progress is not None:
                progress(len(batch))
            return sum(map(len, decoded.ids))

        # host work in two worker threads while a batch decodes: the next batch is tokenised, the last one's token
        # ids become text and candidates (the fast tokenizer releases the GIL, and so do the tensor operations of
        # the batch decoding); the candidates are handed over once the next batch has been launched
        plan = self._batches(requests)
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="pushgen-host") as host:
            previous = None
            ahead = host.submit(self._tokenised, requests, plan[0]) if plan else None
            for b in range(len(plan)):
                batch = ahead.result()
                if b + 1 < len(plan):
                    ahead = host.submit(self._tokenised, requests, plan[b + 1])
                decoded = self._decode(batch, n_candidates, seed + b, limit)
                texts = host.submit(self._candidates, decoded, n_candidates)
                if previous is not None:
                    n_tokens += finish(*previous)
                previous = (batch, decoded, texts)
            if previous is not None:
                n_tokens += finish(*previous)
        dt = time.perf_counter() - t0
        log.info("generated %d candidates for %d prompts in %.1f s (%.0f new tokens/s)",
                 sum(len(c) for c in out), len(requests), dt, n_tokens / max(dt, 1e-9))
        return out
