#!/usr/bin/env bash
# One command for a GPU machine (finishes well inside 8 minutes on one H200-class GPU):
# resnet18 and efficientnet_b0 at 384x288 (height x width, the full-resolution cache size), fp32 vs AMP images/s,
# and whether the loader keeps the GPU fed (loader images/s vs model images/s).
#   bash bench/gpu.sh [OUT_DIR]     (needs torch with CUDA, timm, fastai, albumentations importable)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-/tmp}}
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 FASTMASK_CACHE=${FASTMASK_CACHE:-/tmp/fastmask-cache}
python -m fastmask.synth /tmp/gpu-twin --people 300 --eval-people 10 --quiet >/dev/null
python bench/gpu.py --data /tmp/gpu-twin --size 384,288 2>&1 | tee "$out/gpu-bench.txt"
