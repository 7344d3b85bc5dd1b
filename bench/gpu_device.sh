#!/usr/bin/env bash
# Issue 16's GPU checks as one prepared run, for a GPU machine lent through the library's `device` tool (its
# image has torch, torchvision, pyarrow, Pillow, PyYAML and pytest; no Ray, MLflow or Optuna, so `bench/gpu.py
# trial` is not in it: it needs those, carried as wheels, and Ray's is over the tool's 64 MiB).
#
#   device run, timeout_s 540:  bash bench/gpu_device.sh        (results: $OUT, else runs/bench/device)
#
# About 5-6 minutes on an H100/H200 (the 256-px JPEG set is generated once, reused by every fold run):
#   1. the GPU tests: augmentation on the device and nvJPEG decoding against the CPU paths;
#   2. the model alone (fp32 / bf16, AMF and late fusion), as docs/benchmarks.md's first GPU table;
#   3. one paper-preset AMF fold end to end, five layouts: workers decode + augment (today's default), augment on
#      the GPU, decode on the GPU too (nvJPEG), and both with bf16 + channels-last + cudnn.benchmark.
# At most 8 files come back: gpu.txt, tests.txt, throughput.json and five fold_*.json.
# SMOKE=1 (no GPU needed): every fold layout for a few batches on the CPU, to check the script before a lease.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/bench/device}
mkdir -p "$OUT"
WORK=${WORK:-/tmp/farm_gpu_bench}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
nproc | sed 's/^/cores: /' | tee -a "$OUT/gpu.txt"
$PY -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" | tee -a "$OUT/gpu.txt"

$PY -m pytest -q -s -p no:cacheprovider tests/data/test_device_decode.py tests/data/test_device_augment.py 2>&1 |
    tail -25 | tee "$OUT/tests.txt"
SIZE=(--batches 150)
if [ "${SMOKE:-0}" = 1 ]; then
    SIZE=(--batches 2 --warmup 1 --subjects 3 --frames 4 --size 240 --allow-cpu)
else
    $PY bench/gpu.py throughput --out "$OUT/throughput.json" --workers 8 --codecs jpeg --loader-batches 40
fi

fold() {  # name, then bench/gpu.py fold flags
    local name=$1
    shift
    timeout 120 $PY bench/gpu.py fold --work "$WORK" "${SIZE[@]}" --out "$OUT/fold_$name.json" "$@" ||
        echo "fold $name failed or timed out (rc $?)"
}
fold worker --num-workers 12
fold augment_gpu --num-workers 12 --augment-on device
fold decode_gpu --num-workers 6 --augment-on device --decode device
fold augment_gpu_bf16_cl --num-workers 12 --augment-on device --precision bf16 --channels-last --cudnn-benchmark
fold decode_gpu_bf16_cl --num-workers 6 --augment-on device --decode device --precision bf16 --channels-last --cudnn-benchmark
