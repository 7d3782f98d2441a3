"""Decoding internals of :class:`generator.write.generate.Generator`: rows and their prefix K/V, grouped-query
attention for the prefill, token picking, the static K/V cache and the runner that steps (or replays a CUDA graph
of) one decode step. Nothing here is public API."""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers import AttentionInterface, DynamicCache

from generator.write.multi_lora import RunPlan

if TYPE_CHECKING:
    from generator.write.generate import Generator

log = logging.getLogger(__name__)


def _common_prefix(pre: list[int], whole: list[int]) -> int:
    """How many leading tokens of ``whole`` a prefix of ``pre`` tokens shares, leaving at least one token of
    ``whole`` for the suffix (a boundary token may merge differently when the prompt follows the prefix)."""
    if len(pre) < len(whole) and whole[:len(pre)] == pre:
        return len(pre)
    n = 0
    while n < min(len(pre), len(whole) - 1) and pre[n] == whole[n]:
        n += 1
    return n


@dataclass
class Decoded:
    """A batch's decoded rows: token ids (end-of-turn dropped) and whether the row stopped by itself (else
    ``max_new_tokens`` cut it). Row ``i * n + j`` is candidate ``j`` of request ``i``."""

    ids: list[list[int]]
    stopped: list[bool]


@dataclass
class _Row:
    """One request prepared for decoding: token ids of its shared prefix and of its own suffix."""

    index: int
    prefix: tuple[int, ...]
    suffix: list[int]
    adapter: str | None
    group: int = 0  # one number per distinct prefix (0: none)


def _grouped_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                       attention_mask: torch.Tensor, scaling: float | None = None, dropout: float = 0.0,
                       **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Attention of pushgen's decoding loop, with an additive mask ``[rows, 1, queries, length]``. Decoding one
    token per row: grouped K/V heads are read once per group instead of being repeated for every query head (what
    transformers' SDPA path does whenever a mask is given), and the mask costs one add: decoding is memory-bound on
    the cache, so reading it once is what matters. Prefilling (several queries): SDPA with ``enable_gqa``, whose
    fused kernels never materialise the scores. Query head h uses K/V head h // group, as in ``repeat_kv``."""
    b, hq, s, d = query.shape
    if s > 1:  # a prefill: many queries per row, where SDPA's fused kernels beat materialising the scores (3x on CPU)
        out = _prefill_attention(query, key, value, attention_mask, scaling, native_gqa=query.device.type != "cuda")
        return out.transpose(1, 2).contiguous(), None
    hkv = key.shape[1]
    g = hq // hkv
    q = query.reshape(b, hkv, g * s, d)
    scores = torch.matmul(q, key.transpose(-1, -2)).float() * (scaling if scaling is not None else d ** -0.5)
    scores = scores.view(b, hkv, g, s, -1) + attention_mask[:, :, None]
    probs = torch.softmax(scores, dim=-1).to(value.dtype).view(b, hkv, g * s, -1)
    out = torch.matmul(probs, value).view(b, hq, s, d)
    return out.transpose(1, 2).contiguous(), None


def _prefill_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor,
                       scaling: float | None, *, native_gqa: bool) -> torch.Tensor:
    """SDPA over grouped K/V heads with an additive mask. ``native_gqa``: SDPA's ``enable_gqa`` (the CPU's fused
    kernel takes it with a mask). Else the K/V heads are repeated for their query heads first: on CUDA, SDPA runs
    GQA only in the flash kernel (no mask) and the math kernel (fp32 scores of rows x heads x queries x keys
    materialised), while the memory-efficient kernel takes a mask but not GQA; the repeat costs far less."""
    if not native_gqa:
        g = query.shape[1] // key.shape[1]
        key, value = key.repeat_interleave(g, dim=1), value.repeat_interleave(g, dim=1)
    return torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask.to(query.dtype),
                                                            scale=scaling, enable_gqa=native_gqa)


def _tokenizer_shortcuts(tokenizer: Any) -> tuple[re.Pattern[str] | None, bool]:
    """``(added, fast)``: a pattern of the added tokens that split a text before anything else (matched on the
    raw text, no left strip), and whether the fast tokenizer's own ``encode_batch`` gives the ids that calling the
    tokenizer gives (checked on a text with added tokens, accents, Chinese and a price)."""
    added = [t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values()
             if not t.lstrip and not t.normalized and t.content]
    pattern = re.compile("|".join(re.escape(t) for t in sorted(added, key=len, reverse=True))) if added else None
    backend = getattr(tokenizer, "_tokenizer", None)
    probe = [f"{''.join(added[:2])}user\n Héllo  帐篷 $1.00\n", "Title: x"]
    fast = backend is not None and hasattr(backend, "encode_batch") and [
        e.ids for e in backend.encode_batch(probe, add_special_tokens=False)] == tokenizer(
        probe, add_special_tokens=False).input_ids
    return pattern, fast


GROUPED_ATTENTION = "pushgen_grouped"


@contextlib.contextmanager
def _attention(model: Any, name: str) -> Iterator[None]:
    """Use the attention implementation ``name`` inside the block (the model's config is shared by its layers)."""
    cfg = model.config
    before = cfg._attn_implementation
    cfg._attn_implementation = name
    try:
        yield
    finally:
        cfg._attn_implementation = before


def pick_tokens(logits: torch.Tensor, sampled: torch.Tensor, gen: torch.Generator, *, temperature: float,
                top_k: int, top_p: float, skip_confident: bool = False) -> torch.Tensor:
    """Next token of each row: argmax for greedy rows; for the ``sampled`` rows (a boolean mask over the rows, or
    their indexes) a draw from the ``top_k`` most likely tokens (all, when 0) at ``temperature``, cut to the
    smallest set whose probability reaches ``top_p``.
    Only the top-k are sorted (``topk`` returns them in order), not the vocabulary: at thousands of rows per step
    a full sort of rows x vocabulary costs more than the model's step. Given indexes, nothing waits for the device.
    ``skip_confident``: rows whose most likely token alone holds more than ``top_p`` of the probability take it
    without a draw, which is what the draw would give: top-p keeps only that token, since its share of the top-k is
    at least its share of the vocabulary (one exp-and-sum over the rows instead of top-k and a draw; it needs the
    number of such rows, a wait for the device, so it is for CPUs)."""
    nxt = logits.argmax(dim=-1)
    rows = sampled.nonzero().squeeze(-1) if sampled.dtype == torch.bool else sampled
    if not len(rows):
        return nxt
    lg = logits.index_select(0, rows).float() / temperature
    if skip_confident:
        mass = (lg - lg.amax(dim=-1, keepdim=True)).exp_().sum(dim=-1)  # 1 / the top token's probability
        unsure = (mass * top_p >= 1 - 1e-5).nonzero().squeeze(-1)  # near the boundary: the exact path
        if len(unsure) < len(rows):
            rows, lg = rows[unsure], lg[unsure]
            if not len(rows):
                return nxt
    vals, idx = torch.topk(lg, min(top_k, lg.shape[-1]) if top_k else lg.shape[-1], dim=-1)
    probs = torch.softmax(vals, dim=-1)
    probs = probs.masked_fill(probs.cumsum(dim=-1) - probs > top_p, 0.0)
    choice = torch.multinomial(probs, 1, generator=gen)  # multinomial normalises the weights itself
    return nxt.index_copy_(0, rows, idx.gather(-1, choice).squeeze(-1))


@dataclass
class _PrefixKV:
    """Prefix K/V of a batch: per layer, the distinct prefixes' (keys, values) left-padded to one length, and the
    distinct prefix of each row."""

    layers: list[tuple[torch.Tensor, torch.Tensor]]
    index: torch.Tensor

    def layer(self, li: int) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.layers[li]
        return k.index_select(0, self.index), v.index_select(0, self.index)


class _StaticKV:
    """A KV cache of preallocated per-layer tensors ``[capacity, kv_heads, length, head_dim]``, of which the first
    ``rows`` rows are in use (views, so a step's tensors are always the same memory).

    Writes go to a position held in a device tensor and advanced in place, so a decode step has fixed shapes and
    fixed addresses: it can be captured once as a CUDA graph and replayed; nothing is concatenated per step. Only
    ``update`` is used by the model (positions and a 4-D attention mask are always passed explicitly)."""

    is_compileable = True

    def __init__(self, n_layers: int, rows: int, heads: int, length: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device):
        self._keys = [torch.zeros(rows, heads, length, head_dim, dtype=dtype, device=device) for _ in range(n_layers)]
        self._values = [torch.zeros_like(k) for k in self._keys]
        self.keys, self.values = list(self._keys), list(self._values)
        self.pos = torch.zeros((), dtype=torch.long, device=device)  # next position written
        self._steps = torch.arange(length, device=device)
        self.n_layers = n_layers
        self.visible: int | None = None  # slots ``update`` returns (None: all); a prefill sees none past its own

    def use(self, rows: int | slice) -> None:
        """Work on the first ``rows`` rows (or on a slice of the rows)."""
        sl = rows if isinstance(rows, slice) else slice(0, rows)
        self.keys = [k[sl] for k in self._keys]
        self.values = [v[sl] for v in self._values]

    def gather(self, src: torch.Tensor) -> None:
        """Row i becomes the current row ``src[i]`` (drop finished rows, repeat a row for its candidates)."""
        for full, cur in itertools.chain(zip(self._keys, self.keys, strict=True),
                                                zip(self._values, self.values, strict=True)):
            full[:len(src)] = cur.index_select(0, src)
        self.use(len(src))

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self._steps[:key_states.shape[2]] + self.pos
        self.keys[layer_idx].index_copy_(2, idx, key_states)
        self.values[layer_idx].index_copy_(2, idx, value_states)
        if layer_idx == self.n_layers - 1:
            self.pos.add_(key_states.shape[2])
        if self.visible is not None:
            return self.keys[layer_idx][:, :, :self.visible], self.values[layer_idx][:, :, :self.visible]
        return self.keys[layer_idx], self.values[layer_idx]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return int(self.pos)


class _Scratch:
    """Reusable device buffers by name, grown when a larger one is asked for: a batch's tensors of thousands of rows
    (its decoding state, the prefill's mask) are allocated once, not per batch, since fresh memory of that size
    costs more in page faults than in writing it."""

    def __init__(self, device: torch.device):
        self.device = device
        self._buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, *, zero: bool = False) -> torch.Tensor:
        size = math.prod(shape)
        buf = self._buffers.get(name)
        if buf is None or buf.numel() < size or buf.dtype != dtype:
            buf = self._buffers[name] = torch.empty(size, dtype=dtype, device=self.device)
        view = buf[:size].view(shape)
        return view.zero_() if zero else view


class _StaticRunner:
    """Fixed-shape decoding state for up to ``capacity`` rows of ``length`` positions: the cache, the step's inputs
    and outputs (the first ``n`` rows in use), and on CUDA a graph of one decode step over all ``capacity`` rows
    (captured on first use, replayed for every later step and batch of its adapter)."""

    def __init__(self, gen: Generator, capacity: int, length: int, graph: bool):
        cfg = gen.model.config
        cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        dev, dtype = gen.device, next(gen.model.parameters()).dtype
        heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.gen, self.capacity, self.length, self.n = gen, capacity, length, capacity
        self.adapters: RunPlan | str | None = None  # the rows' adapters (one name: every row's)
        self.cache = _StaticKV(cfg.num_hidden_layers, capacity, heads, length, head_dim, dtype, dev)
        # the key positions each row attends to, as the additive mask a decode step takes (0 or the dtype's
        # minimum): updated in place, one column per step, instead of being rebuilt over rows x length every step
        self.bias = torch.zeros(capacity, length, dtype=dtype, device=dev)
        self.ids = torch.zeros(capacity, 1, dtype=torch.long, device=dev)
        self.pos_ids = torch.zeros(capacity, 1, dtype=torch.long, device=dev)
        self.logits = torch.zeros(capacity, cfg.vocab_size, dtype=torch.float32, device=dev)
        self.use_graph = graph
        self._graph: Any = None

    def use(self, rows: int, adapters: RunPlan | str | None) -> None:
        """Work on the first ``rows`` rows with these adapters (a graph always runs all ``capacity`` rows, of one
        adapter: the one it was captured with)."""
        self.n, self.adapters = rows, adapters
        self.cache.use(rows)

    def gather(self, src: torch.Tensor, rows: list[int] | None = None) -> None:
        """Row i becomes the current row ``src[i]``: the cache, the mask, the positions and the logits.
        ``rows``: ``src`` as a list, when the caller has it (the rows' adapters are picked on the host)."""
        self.cache.gather(src)
        for buf in (self.bias, self.pos_ids, self.logits):
            buf[:len(src)] = buf[:self.n].index_select(0, src)
        if isinstance(self.adapters, RunPlan):
            self.adapters = self.adapters.select(src.tolist() if rows is None else rows)
        self.n = len(src)

    def _step(self) -> None:
        n = self.n
        self.bias[:n].index_fill_(1, self.cache.pos.view(1), 0.0)  # the token written this step sees itself
        with self.gen._adapter_scope(self.adapters), _attention(self.gen.model, GROUPED_ATTENTION):
            out = self.gen._forward(input_ids=self.ids[:n], attention_mask=self.bias[:n, None, None, :],
                                    position_ids=self.pos_ids[:n], past_key_values=self.cache, adapters=None)
        self.logits[:n].copy_(out.logits[:, -1, :])

    def prefill(self, rows: slice, adapters: RunPlan | str | None, prefix_kv: _PrefixKV | None,
                p_max: int, end: int, ids: torch.Tensor, keep: torch.Tensor, pos: torch.Tensor) -> None:
        """Prefill some rows: load their prefix K/V (slots ``[0, p_max)``), then run their suffixes, left-padded to
        end at slot ``end`` (the same for every row of the batch, so decoding writes one slot for all rows).
        ``keep`` marks the real tokens of ``[prefix | suffix]``; slots between are never attended to."""
        s = ids.shape[1]
        start = end - s
        bias = self.bias[rows]
        bias.fill_(torch.finfo(bias.dtype).min)
        bias[:, :p_max].masked_fill_(keep[:, :p_max], 0.0)
        bias[:, start:end].masked_fill_(keep[:, p_max:], 0.0)
        self.cache.use(rows)
        if prefix_kv is not None:
            for layer in range(len(prefix_kv.layers)):  # gathered one layer at a time: bounded memory
                k, v = prefix_kv.layer(layer)
                self.cache.keys[layer][:, :, :p_max].copy_(k)
                self.cache.values[layer][:, :, :p_max].copy_(v)
        self.cache.pos.fill_(start)
        self.cache.visible = end  # the slots after the suffix are empty: attended to by no prefill query
        mask = prefill_mask(self.gen, bias[:, :end], start, s, out=self.gen._scratch)
        try:
            with self.gen._adapter_scope(adapters), _attention(self.gen.model, GROUPED_ATTENTION):
                out = self.gen._forward(input_ids=ids, attention_mask=mask, position_ids=pos,
                                        past_key_values=self.cache, adapters=None)
        finally:
            self.cache.visible = None
        self.logits[rows].copy_(out.logits[:, -1, :])
        self.pos_ids[rows].copy_(pos[:, -1:])
        self.cache.use(self.n)

    def step(self, next_ids: torch.Tensor) -> torch.Tensor:
        """Feed one token per row; returns the next logits (a buffer overwritten by the following step)."""
        self.ids[:self.n].copy_(next_ids[:, None])
        self.pos_ids[:self.n].add_(1)
        if not self.use_graph:
            self._step()
        elif self._graph is None:
            self._capture()
        else:
            self._graph.replay()
        self.gen.decode_steps["graph" if self.use_graph else "eager"] += 1
        return self.logits[:self.n]

    def _capture(self) -> None:
        saved = (self.cache.pos.clone(), self.bias.clone())
        try:
            self._capture_graph(saved)
        except Exception as exc:  # noqa: BLE001 - a model whose forward cannot be captured still decodes, eagerly
            log.warning("CUDA graph capture failed (%s: %s); decoding eagerly", type(exc).__name__, exc)
            torch.cuda.synchronize()
            self.use_graph, self._graph = False, None
            self.cache.pos.copy_(saved[0])
            self.bias.copy_(saved[1])
            self._step()

    def _capture_graph(self, saved: tuple[torch.Tensor, torch.Tensor]) -> None:
        """Warm up on a side stream, then capture one decode step. Capturing records the kernels without running
        them, so the state is put back after the warm-up and the step is run once, by replaying the graph."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            self._step()  # warm-up: allocations and kernel choices happen outside the graph
            self.cache.pos.copy_(saved[0])
            self.bias.copy_(saved[1])
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.gen._graph_pool):
            self._step()
        graph.replay()
        self._graph = graph


def batch_prefix_kv(gen: Generator, batch: list[_Row], p_max: int) -> _PrefixKV | None:
    """Every row's prefix K/V left-padded to ``p_max``: each distinct (prefix, adapter) is padded once and
    gathered into rows (layer by layer, when asked), instead of padding and concatenating row by row."""
    if not p_max or not any(r.prefix for r in batch):
        return None
    keys = [(r.group, r.adapter) for r in batch]
    where: dict[tuple[int, str | None], int] = {}
    distinct = []
    for r, k in zip(batch, keys, strict=True):
        if k not in where:
            where[k] = len(distinct)
            distinct.append((r.prefix, r.adapter))
    index = torch.tensor([where[k] for k in keys], device=gen.device)
    per: list[Any] = [gen._prefix_kv(*k) if k[0] else None for k in distinct]
    like = next(kv for kv in per if kv is not None)
    per = [kv if kv is not None else [(k[:, :, :0], v[:, :, :0]) for k, v in like] for kv in per]  # no prefix
    layers = []
    for li in range(len(per[0])):
        ks = torch.cat([torch.nn.functional.pad(kv[li][0], (0, 0, p_max - kv[li][0].shape[2], 0)) for kv in per])
        vs = torch.cat([torch.nn.functional.pad(kv[li][1], (0, 0, p_max - kv[li][1].shape[2], 0)) for kv in per])
        layers.append((ks, vs))
    return _PrefixKV(layers, index)


def inputs(gen: Generator, batch: list[_Row], p_max: int, s_max: int) -> tuple[torch.Tensor, ...]:
    """Left-padded suffix ids, the attention mask over [prefix | suffix] and the suffix positions, built with
    array operations over all the rows' tokens at once."""
    plen = np.fromiter((len(r.prefix) for r in batch), dtype=np.int64, count=len(batch))
    slen = np.fromiter((len(r.suffix) for r in batch), dtype=np.int64, count=len(batch))
    mask = np.concatenate([np.arange(p_max) >= (p_max - plen)[:, None],
                           np.arange(s_max) >= (s_max - slen)[:, None]], axis=1).astype(np.int64)
    flat = np.fromiter(itertools.chain.from_iterable(r.suffix for r in batch), dtype=np.int64,
                       count=int(slen.sum()))
    row = np.repeat(np.arange(len(batch)), slen)
    nth = np.arange(len(flat)) - np.repeat(np.cumsum(slen) - slen, slen)  # index of a token within its suffix
    col = np.repeat(s_max - slen, slen) + nth
    ids = np.full((len(batch), s_max), gen.tokenizer.pad_token_id, dtype=np.int64)
    pos = np.zeros((len(batch), s_max), dtype=np.int64)
    ids[row, col] = flat
    pos[row, col] = np.repeat(plen, slen) + nth
    return tuple(torch.from_numpy(t).to(gen.device) for t in (ids, mask, pos))


def collect(tokens: torch.Tensor, kept: torch.Tensor, stopped: torch.Tensor) -> Decoded:
    """Device buffers of the decoded tokens to per-row lists. A row's kept tokens are a prefix of its row
    (nothing is kept after its stop, nor the end-of-turn token), so each row is its first ``kept.sum()``
    tokens: one transfer of the needed columns and one list slice per row, no per-token Python."""
    lengths = kept.sum(dim=1)
    width = int(lengths.max()) if len(lengths) else 0
    ids, lengths = tokens[:, :width].cpu().tolist(), lengths.cpu().tolist()
    return Decoded([row[:k] for row, k in zip(ids, lengths, strict=True)], stopped.cpu().tolist())


def additive(gen: Generator, keep: torch.Tensor) -> torch.Tensor:
    """The 4-D additive mask ``[rows, 1, queries, keys]`` the grouped attention takes, from a boolean one."""
    dtype = next(gen.model.parameters()).dtype
    zero = torch.zeros((), dtype=dtype, device=keep.device)
    return torch.where(keep, zero, torch.full_like(zero, torch.finfo(dtype).min))[:, None]


def prefill_mask(gen: Generator, bias: torch.Tensor, first: int, s: int,
                 out: torch.Tensor | None = None) -> torch.Tensor:
    """The additive mask of a prefill of ``s`` tokens written from slot ``first`` on: query i sees the
    positions the additive ``bias`` (``[rows, keys]``) keeps, up to and including its own (``first + i``).
    One elementwise minimum over rows x queries x keys (both masks hold 0 or the dtype's minimum), written into
    a reused buffer of ``out`` when given."""
    dev = bias.device
    causal = torch.arange(bias.shape[1], device=dev)[None, :] <= (first + torch.arange(s, device=dev))[:, None]
    dest = out.get("prefill_mask", (bias.shape[0], s, bias.shape[1]), bias.dtype) if out is not None else None
    return torch.minimum(bias[:, None, :], additive(gen, causal)[:, 0][None], out=dest)[:, None]


def decode_dynamic(g: Generator, batch: list[_Row], n: int, seed: int, limit: int) -> Decoded:
    """A growing KV cache; finished rows leave the batch, so no work is spent on them. Attention is the
    grouped one (K/V heads read once per group), with explicit 4-D masks."""
    dev = g.device
    b = len(batch)
    p_max = max(len(r.prefix) for r in batch)
    s_max = max(len(r.suffix) for r in batch)
    adapters = [r.adapter for r in batch]
    prefix = batch_prefix_kv(g, batch, p_max)
    cache = (DynamicCache(ddp_cache_data=[prefix.layer(li) for li in range(len(prefix.layers))],
                          config=g.model.config) if prefix is not None
             else DynamicCache(config=g.model.config))
    ids, mask, pos = inputs(g, batch, p_max, s_max)
    grouped = g._window is None or p_max + s_max + limit <= g._window
    def attention() -> contextlib.AbstractContextManager[None]:
        return _attention(g.model, GROUPED_ATTENTION) if grouped else contextlib.nullcontext()

    with attention():
        out = g._forward(input_ids=ids, position_ids=pos, past_key_values=cache, adapters=adapters,
                            attention_mask=prefill_mask(g, additive(g, mask.bool())[:, 0], p_max, s_max)
                            if grouped
                            else mask)
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
    tokens = torch.zeros(rows, limit, dtype=torch.long, device=dev)
    kept = torch.zeros(rows, limit, dtype=torch.bool, device=dev)
    stopped = torch.zeros(rows, dtype=torch.bool, device=dev)
    newlines = torch.zeros(rows, dtype=torch.long, device=dev)
    for step in range(limit):
        nxt = g._pick(logits, sampled[active], gen)
        is_eos = torch.isin(nxt, g._eos) if g.stop_rules else torch.zeros_like(nxt, dtype=torch.bool)
        newlines[active] += g._is_newline[nxt].long()
        done = is_eos | (newlines[active] >= 2) if g.stop_rules else is_eos
        tokens[active, step] = nxt
        kept[active, step] = ~is_eos
        stopped[active] |= done
        keep = ~done
        if step == limit - 1 or not bool(keep.any()):
            break
        if not bool(keep.all()):  # drop finished rows: no more work on them
            sel = keep.nonzero().squeeze(-1)
            cache.batch_select_indices(sel)
            active, nxt, mask, next_pos = active[sel], nxt[sel], mask[sel], next_pos[sel]
            adapters = [adapters[k] for k in sel.tolist()]
        mask = torch.cat([mask, torch.ones(len(active), 1, dtype=mask.dtype, device=dev)], dim=1)
        with attention():
            out = g._forward(input_ids=nxt[:, None], position_ids=next_pos[:, None], past_key_values=cache,
                                adapters=adapters,
                                attention_mask=additive(g, mask.bool()[:, None, :]) if grouped else mask)
        logits = out.logits[:, -1, :]
        next_pos = next_pos + 1
    return collect(tokens, kept, stopped)


def static_runner(gen: Generator, adapter: str | None, capacity: int, length: int) -> _StaticRunner:
    """A runner of this shape; with CUDA graphs one per adapter too (a graph replays its adapter's kernels).
    Without graphs, a runner of as many rows or more and up to one length step longer serves too (new buffers
    of thousands of rows cost page faults; the longer one's extra positions are masked)."""
    graph = gen.decode_mode == "graph"
    key = (adapter if graph else None, capacity, length)
    if not graph and key not in gen._runners:
        key = next((k for k in gen._runners if k[1] >= capacity and length <= k[2] <= length + 64), key)
    if key not in gen._runners:
        if len(gen._runners) >= 8:  # bounded: each holds a KV cache of rows x length
            gen._runners.pop(next(iter(gen._runners)))
        gen._runners[key] = _StaticRunner(gen, capacity, length, graph=graph)
    return gen._runners[key]


def decode_static(g: Generator, batch: list[_Row], n: int, seed: int, limit: int) -> Decoded:
    """A preallocated cache: each request's suffix is prefilled once, its rows are repeated for the candidates,
    then one token per row and step. With CUDA graphs every step replays one graph over a bucketed number of
    rows of one adapter, until all rows have stopped; without, the rows of a batch may carry different
    adapters and finished rows are dropped (copied out of the cache) once that saves more than it costs."""
    dev = g.device
    graph = g.decode_mode == "graph"
    b = len(batch)
    p_max = max(len(r.prefix) for r in batch)
    s_max = max(len(r.suffix) for r in batch)
    real = b * n
    capacity = max(8, 1 << (real - 1).bit_length())  # few distinct shapes: few graphs, few cache allocations
    rows = capacity if graph else real
    length = -(-(p_max + s_max + limit) // 64) * 64
    runner = static_runner(g, batch[0].adapter, capacity, length)
    per_row = not graph and g._fused is not None  # rows of several adapters (runs of one, as sorted)
    names = [r.adapter for r in batch]
    runner.use(b, RunPlan(names) if per_row else batch[0].adapter)
    # prefilled in chunks of similar length (the batch is sorted by length): less padding, activations that
    # stay in the CPU's caches, and a prefill mask (rows x suffix x length) of bounded size
    chunk = max(1, min(g._prefill_tokens // s_max, g._mask_elements // (s_max * length)))
    for c in range(0, b, chunk):
        part = batch[c:c + chunk]
        ids, mask, pos = inputs(g, part, p_max, max(len(r.suffix) for r in part))
        runner.prefill(slice(c, c + len(part)), RunPlan(names[c:c + chunk]) if per_row else batch[0].adapter,
                       batch_prefix_kv(g, part, p_max), p_max, p_max + s_max, ids, mask.bool(), pos)
    runner.cache.pos.fill_(p_max + s_max)
    logits = runner.logits[:b]
    # row i*n+j is candidate j of request i; rows past the real ones repeat row 0 and are ignored
    if rows != b:
        src = torch.arange(rows, device=dev) // n
        src[real:] = 0
        runner.gather(src, [i // n for i in range(real)] + [0] * (rows - real))
        logits = runner.logits[:rows]
    sampled = torch.arange(rows, device=dev) % n != 0
    sampled_rows = torch.arange(rows, device=dev).view(-1, n)[:, 1:].reshape(-1) if rows % n == 0 else \
        sampled.nonzero().squeeze(-1)  # made once per batch, on the device: the steps never wait for it
    gen = torch.Generator(device=dev).manual_seed(seed)
    # the batch's state per row: its tokens, which are kept, its newlines, whether it stopped
    tokens, kept, newlines, stopped = (g._scratch.get(name, shape, dtype, zero=True) for name, shape, dtype in (
        ("tokens", (rows, limit), torch.long), ("kept", (rows, limit), torch.bool),
        ("newlines", (rows,), torch.long), ("stopped", (rows,), torch.bool)))
    live: Any = slice(None)  # the row of each position of the runner (all, until rows are dropped)
    for step in range(limit):
        nxt = g._pick(logits, sampled_rows, gen)
        is_eos = torch.isin(nxt, g._eos) if g.stop_rules else torch.zeros_like(nxt, dtype=torch.bool)
        newlines[live] += g._is_newline[nxt]
        tokens[live, step] = nxt
        kept[live, step] = ~is_eos & ~stopped[live]
        stopped[live] |= is_eos | (newlines[live] >= 2) if g.stop_rules else is_eos
        if step == limit - 1:
            break
        # whether every row has stopped is a wait for the device: asked every few steps on a GPU (rows that
        # stopped keep decoding in between, their tokens not kept), every step where it costs nothing
        if (step + 1) % g._stop_check_every == 0 and bool(stopped[:real].all()):
            break
        if not graph:  # drop finished rows when the row-steps saved outweigh one copy of the cache
            going = ~stopped[live]
            dead = runner.n - int(going.sum())
            if dead and dead * (limit - step - 1) >= runner.n:
                keep = going.nonzero().squeeze(-1)
                runner.gather(keep)
                live = (torch.arange(rows, device=dev) if isinstance(live, slice) else live)[keep]
                nxt = nxt[keep]
                sampled_rows = sampled[live].nonzero().squeeze(-1)
        logits = runner.step(nxt)
    return collect(tokens[:real], kept[:real], stopped[:real])



AttentionInterface.register(GROUPED_ATTENTION, _grouped_attention)
