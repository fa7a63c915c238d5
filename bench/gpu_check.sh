#!/usr/bin/env bash
# The GPU checks of issue #17 in one run (about 3-5 minutes on an H100/H200):
#   1. the CUDA tests (tests/models/test_gpu.py: resident path fp32 equality, bf16
#      agreement, a 100 MP photo under 16 GB, bf16 inference, AMP training, losses);
#   2. bench.inference on the GPU: stage times, (b)/(a), and maps/s through HTTP with
#      4 concurrent clients (bench/results/inference_cuda.json).
# Run from the repository root with the machine's python3 (its torch has CUDA):
#   bash bench/gpu_check.sh            # or PYTHON=.venv/bin/python bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-bench/results}"
mkdir -p "$OUT"
started=$(date +%s)

"$PYTHON" - <<'PY' || { echo "no CUDA device: nothing to check here"; exit 2; }
import torch, torchvision
assert torch.cuda.is_available()
print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, {torch.cuda.get_device_name(0)}")
PY

echo "== GPU tests"
timeout 240 "$PYTHON" -m pytest -q -p no:cacheprovider -m gpu tests/models/test_gpu.py 2>&1 | tee "$OUT/gpu_tests.txt"
tests=${PIPESTATUS[0]}

echo "== bench.inference on the GPU"
timeout 300 "$PYTHON" -m bench.inference --device cuda --skip-rss --repeats 5 --naive-sample 256 \
  --service --service-backbone resnet50 --service-clients 4 --service-maps 40 2>&1 | tee "$OUT/gpu_bench.txt"
bench=${PIPESTATUS[0]}
[ -f bench/results/inference_cuda.json ] && [ "$OUT" != bench/results ] && cp bench/results/inference_cuda.json "$OUT/"

echo "== done in $(( $(date +%s) - started )) s: tests exit $tests, bench exit $bench"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
