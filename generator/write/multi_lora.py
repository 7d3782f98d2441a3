"""Inference-time LoRA for pushgen's decoding loop: many adapters, unmerged, with few extra operations.

peft's forward for per-row adapters (``adapter_names``) registers a hook on every LoRA layer for each call, then,
per adapter, gathers its rows, runs dropout, two small Linear layers and a scaling, and scatters the result back:
about a dozen operations per adapter per layer, which on a CPU costs a third of a decode step of SmolLM2-135M
with rank 16. Here the rows of a batch come in runs of one adapter (the generator sorts them so), and each LoRA
layer adds ``scale * (x_run @ A^T) @ B^T`` to the base layer's output of that run in place: two matrix products
per run (the second one accumulating into the output, ``addmm_``), on views, with no gather, scatter or hook.

Only plain LoRA on ``nn.Linear`` layers is handled (no DoRA, no bias-carrying adapters, no merged weights); for
any other adapter the generator keeps peft's own forward (:meth:`FusedLora.supports`). The adapters stay
unmerged: merging can wipe a small fine-tune (peft #2368), and unmerged adapters can be mixed row by row.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch

Run = tuple[int, int, str | None]  # rows [start, end) use adapter name (None: the base model)


def runs(adapters: Sequence[str | None]) -> list[Run]:
    """The batch's rows as maximal runs of one adapter, in order."""
    out: list[Run] = []
    start = 0
    for i in range(1, len(adapters) + 1):
        if i == len(adapters) or adapters[i] != adapters[start]:
            out.append((start, i, adapters[start]))
            start = i
    return out


class RunPlan:
    """The runs of a per-row adapter list (:func:`runs`), made once and reused by every forward call over the same
    rows (a decoding loop's steps): finding the runs walks every row, which at thousands of rows per step costs
    more than the adapters' matrix products."""

    def __init__(self, adapters: Sequence[str | None]):
        self.adapters = list(adapters)
        self.runs = runs(self.adapters)

    def __len__(self) -> int:
        return len(self.adapters)

    def select(self, rows: Sequence[int]) -> RunPlan:
        """The plan of the rows ``rows`` (in that order)."""
        return RunPlan([self.adapters[i] for i in rows])


def _lora_layers(model: Any) -> list[Any]:
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer)]


class FusedLora:
    """The LoRA layers of a peft model and, per adapter, their factors ready for the fused forward:
    ``A^T`` (in x r) and ``B^T`` (r x out), contiguous, in the base layer's dtype, with the adapter's scaling.

    Use :meth:`rows` around a forward call: inside it every LoRA layer computes the base output plus the
    adapter of each run of rows; outside it the model is untouched (peft's forward, training, saving)."""

    def __init__(self, model: Any):
        self.model = model
        self.layers = _lora_layers(model)
        self._factors: dict[int, dict[str, tuple[torch.Tensor, torch.Tensor, float]]] = {}
        self._runs: list[Run] = []
        self.refresh()
        self._forwards = [(m, self._forward_of(m)) for m in self.layers]

    @classmethod
    def of(cls, model: Any) -> FusedLora | None:
        """The fused forward of ``model``'s adapters, or None where :meth:`supports` says it cannot be fused."""
        return cls(model) if cls.supports(model) else None

    @staticmethod
    def supports(model: Any) -> bool:
        """Whether every LoRA layer of ``model`` is a plain, unmerged LoRA on a Linear layer."""
        layers = _lora_layers(model)
        if not layers:
            return False
        for m in layers:
            base = getattr(m, "base_layer", None)
            if not isinstance(base, torch.nn.Linear) or getattr(m, "merged_adapters", None):
                return False
            if any(getattr(m, "use_dora", {}).get(n) for n in m.lora_A) or getattr(m, "lora_bias", {}) and any(
                    m.lora_bias.values()):
                return False
            if any(not isinstance(m.lora_A[n], torch.nn.Linear) for n in m.lora_A):
                return False
            if getattr(m, "lora_embedding_A", None) and len(m.lora_embedding_A):
                return False
        return True

    def refresh(self) -> None:
        """(Re)read every adapter's factors: after adapters were added or their weights changed."""
        self._factors = {}
        for m in self.layers:
            dtype = m.base_layer.weight.dtype
            self._factors[id(m)] = {
                name: (m.lora_A[name].weight.detach().t().to(dtype).contiguous(),
                       m.lora_B[name].weight.detach().t().to(dtype).contiguous(), float(m.scaling[name]))
                for name in m.lora_A}
        self.adapters = {name for m in self.layers for name in m.lora_A}

    def _forward_of(self, module: Any) -> Any:
        base, key = module.base_layer, id(module)

        def forward(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            y = base(x, *args, **kwargs)
            todo = [r for r in self._runs if r[2] is not None]
            if not todo:
                return y
            factors = self._factors[key]
            y = y if y.is_contiguous() else y.contiguous()
            per_row = x.numel() // (x.shape[0] * x.shape[-1])  # tokens per row
            x2, y2 = x.reshape(-1, x.shape[-1]), y.view(-1, y.shape[-1])
            for start, end, name in todo:
                if name not in factors:  # an adapter that does not adapt this layer
                    continue
                a_t, b_t, scale = factors[name]
                y2[start * per_row:end * per_row].addmm_(x2[start * per_row:end * per_row] @ a_t, b_t, alpha=scale)
            return y

        return forward

    @contextlib.contextmanager
    def rows(self, adapters: Sequence[str | None] | str | None | RunPlan) -> Iterator[None]:
        """Inside: row i of the forward calls uses ``adapters[i]`` (None: no adapter); a single name (or None)
        applies to every row; a :class:`RunPlan` is the runs of such a list, computed once for many calls.
        Unknown names raise ``KeyError``."""
        if isinstance(adapters, RunPlan):
            plan = adapters.runs
        elif isinstance(adapters, Sequence) and not isinstance(adapters, str):
            plan = runs(adapters)
        else:
            plan = [(0, 1 << 62, adapters)]
        missing = {name for _, _, name in plan if name is not None} - self.adapters
        if missing:
            raise KeyError(f"adapters not loaded: {sorted(missing)}")
        # installed as instance attributes (nn.Module.__call__ finds them before the class's forward) only for the
        # duration: outside, a copy of the model (deepcopy, int8) never carries a forward bound to these layers
        self._runs = plan
        for m, forward in self._forwards:
            m.__dict__["forward"] = forward
        try:
            yield
        finally:
            for m, _ in self._forwards:
                m.__dict__.pop("forward", None)
            self._runs = []
