#!/usr/bin/env bash
# Every GPU benchmark of pushgen on one CUDA GPU, in under 8 minutes, offline, installing nothing.
# Results: JSON files in ${OUT:-out/gpu}. Prepare once where there is network: `bash scripts/gpu_prepare.sh`, then
# run this with `.gpu` carried (device tool: carry [".gpu"], command "bash scripts/gpu_check.sh").
# The model is SmolLM2-135M's architecture with random weights (the GGUF does not travel) and a fixed generated
# length, so throughput is what matters, not the text.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
SITE=/tmp/pushgen-site
if ! python3 -c "import pydantic_settings" 2>/dev/null; then  # unpack the carried pure-Python wheels
  mkdir -p "$SITE"
  for w in .gpu/whl/*.whl; do python3 -m zipfile -e "$w" "$SITE"; done
  export PYTHONPATH="$SITE:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
status=0
run() {  # name, limit in seconds, command...
  local name=$1 limit=$2; shift 2
  echo "== $name"
  timeout "$limit" "$@" 2>&1 | tee -a "$OUT/log.txt" || { echo "!! $name failed"; status=1; }
}
# the baselines are slow: the naive per-user loop is timed on 8 users, plain batched generate (same batch size as
# pushgen) on 2048; messages/s are per message, so the ratios hold
run bench_generate 300 python3 scripts/bench_generate.py --model random --tokenizer .gpu/tokenizer --device cuda \
  --users 8192 --naive-users 8 --hf-users 2048 --batch-size 1024 --new-tokens 40 \
  --methods naive,hf-batched,pushgen --json "$OUT/bench_generate.json"
# pushgen alone with larger batches (what one worker does with a big audience)
run bench_generate_b4096 140 python3 scripts/bench_generate.py --model random --tokenizer .gpu/tokenizer \
  --device cuda --users 16384 --batch-size 4096 --new-tokens 40 --methods pushgen --adapters 1,4 \
  --json "$OUT/bench_generate_b4096.json" --profile "$OUT/profile_b4096.txt"
run bench_scorer 60 python3 scripts/bench_scorer.py --device cuda --encoder random:.gpu/minilm --texts 8192 \
  --json "$OUT/bench_scorer.json"
run bench_train 90 python3 scripts/bench_train.py --base random:.gpu/tokenizer --steps 40 --batch-size 32 \
  --json "$OUT/bench_train.json"
exit $status
