"""Shared by the benchmarks: SmolLM2-135M's architecture with random weights, for GPU machines where the packaged
GGUF does not travel (throughput depends on the architecture and the shapes, not on the weights)."""

from __future__ import annotations

import tempfile
from typing import Any

import torch

SMOLLM2_135M = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                    rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True)


def random_smollm2(tokenizer_dir: str | None, device: torch.device, dtype: torch.dtype | None = None) -> Any:
    """(model, tokenizer): SmolLM2-135M's architecture, random weights (seed 0), the tokenizer from
    ``tokenizer_dir`` (default: the converted SmolLM2's)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    from generator.core.model_registry import default_dtype, resolve_model

    tok = AutoTokenizer.from_pretrained(tokenizer_dir or resolve_model("smollm2-135m"), local_files_only=True)
    tok.padding_side = "left"
    cfg = LlamaConfig(**SMOLLM2_135M, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=dtype or default_dtype(device)).to(device).eval()
    return model, tok


def random_smollm2_folder(tokenizer_dir: str | None) -> str:
    """A temporary model folder (config, random weights, tokenizer) that any loader of pushgen accepts."""
    model, tok = random_smollm2(tokenizer_dir, torch.device("cpu"), dtype=torch.float32)
    out = tempfile.mkdtemp(prefix="bench-smollm2-")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
