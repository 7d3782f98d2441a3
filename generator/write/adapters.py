"""The adapter registry: LoRA adapters saved unmerged, each with its metadata, many loaded into one model.

Layout: ``Settings.adapters_dir/<name>/`` holds peft's ``adapter_config.json`` and
``adapter_model.safetensors`` plus ``pushgen_adapter.json`` (base model, data hash, hyperparameters,
metrics, the five real pushes used as the few-shot baseline, created_at). Adapters are never merged into
the base: merging a small fine-tune into a (dequantised) base can wipe it (peft #2368), and unmerged
adapters are what lets one batch mix brands (peft's per-row ``adapter_names``).

Load several into one model and generate with them::

    gen = Generator("smollm2-135m")                    # one base model...
    gen.use_adapters(["acme-en", "acme-zh"])            # ...two adapters (Generator.use_adapters)
    gen.generate([GenerationRequest("u1", p1, adapter="acme-en"),
                  GenerationRequest("u2", p2, adapter="acme-zh"),
                  GenerationRequest("u3", p3)])          # no adapter: the base model
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from generator.core.config import get_settings
from generator.core.errors import PushgenError

log = logging.getLogger(__name__)
META_FILE = "pushgen_adapter.json"
NAME_PATTERN = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
)  # peft adapter names become module keys: no dots


class AdapterError(PushgenError):
    """An adapter is missing, badly named, or does not fit the model it is loaded into."""


@dataclass
class AdapterInfo:
    """What the registry knows about one trained adapter."""

    name: str
    """Registry name (letters, digits, ``_`` and ``-``), e.g. ``acme-en``: one per brand × locale."""
    base: str
    """The base model it was trained on (registry name, hub id or folder); loaded when the adapter is used."""
    brand: str = ""
    """The brand name rendered into the prompts it was trained with."""
    data_file: str = ""
    """The push file it was trained on."""
    data_hash: str = ""
    """SHA-256 of that file's bytes."""
    scheme: str = "ctr"
    """Engagement scheme used to select/weight the texts (see ``generator.tune.train.LoraTrainConfig.scheme``)."""
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    """The training configuration (rank, alpha, dropout, target modules, learning rate, ...)."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """Training figures (texts, steps, losses, seconds, tokens/s); ``adapter eval`` adds its figures."""
    fewshot: list[dict[str, str]] = field(default_factory=list)
    """Five real training pushes as ``{"user", "answer"}`` turns: the few-shot baseline of the eval."""
    created_at: str = ""
    """ISO time the adapter was saved."""

    @property
    def path(self) -> Path:
        return adapter_path(self.name)


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise AdapterError(
            f"bad adapter name {name!r}: use letters, digits, '_' and '-' (max 64), e.g. 'acme-en'"
        )
    return name


def adapter_path(name: str) -> Path:
    return Path(get_settings().adapters_dir) / check_name(name)


def save_adapter(model: Any, info: AdapterInfo, *, peft_name: str = "default") -> Path:
    """Save the (unmerged) LoRA weights of ``model``'s adapter ``peft_name`` and ``info`` as ``info.name``.

    Written to a temporary folder first and then renamed, so a crash never leaves a half-saved adapter.
    """
    target = adapter_path(info.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{info.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), selected_adapters=[peft_name])
    if peft_name != "default":  # peft puts non-default adapters in a subfolder
        sub = tmp / peft_name
        for f in sub.iterdir():
            f.rename(tmp / f.name)
        sub.rmdir()
    (tmp / META_FILE).write_text(
        json.dumps(asdict(info), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    log.info("saved adapter %s in %s", info.name, target)
    return target


def get_adapter(name: str) -> AdapterInfo:
    """The metadata of a registered adapter; :class:`AdapterError` when there is none."""
    meta = adapter_path(name) / META_FILE
    if not meta.exists():
        have = ", ".join(a.name for a in list_adapters()) or "none"
        raise AdapterError(f"no adapter {name!r} in {get_settings().adapters_dir} (have: {have})")
    return AdapterInfo(**json.loads(meta.read_text(encoding="utf-8")))


def list_adapters(base: str | None = None) -> list[AdapterInfo]:
    """Every registered adapter (optionally only those of one base model), by name."""
    folder = Path(get_settings().adapters_dir)
    if not folder.is_dir():
        return []
    out = []
    for meta in sorted(folder.glob(f"*/{META_FILE}")):
        info = AdapterInfo(**json.loads(meta.read_text(encoding="utf-8")))
        if base is None or info.base == base:
            out.append(info)
    return out


def delete_adapter(name: str) -> None:
    """Remove an adapter (and any training checkpoint of that name)."""
    get_adapter(name)
    shutil.rmtree(adapter_path(name))
    shutil.rmtree(Path(get_settings().adapters_dir) / ".checkpoints" / name, ignore_errors=True)


def update_metrics(name: str, metrics: dict[str, Any]) -> AdapterInfo:
    """Merge ``metrics`` into an adapter's recorded metrics (used by ``adapter eval``)."""
    info = get_adapter(name)
    info.metrics.update(metrics)
    (adapter_path(name) / META_FILE).write_text(
        json.dumps(asdict(info), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return info


def load_adapters(model: Any, names: list[str]) -> Any:
    """Load registered adapters, unmerged, into one model; returns the ``PeftModel`` (in eval mode).

    ``model`` may be a plain transformers model or a ``PeftModel`` that already holds other adapters. Each
    adapter is loaded under its registry name, which is what ``GenerationRequest.adapter`` refers to.
    """
    from peft import PeftModel

    for name in names:
        info = get_adapter(name)
        if isinstance(model, PeftModel):
            if name not in model.peft_config:
                model.load_adapter(str(info.path), adapter_name=name, is_trainable=False)
        else:
            model = PeftModel.from_pretrained(model, str(info.path), adapter_name=name, is_trainable=False)
    model.eval()
    return model
