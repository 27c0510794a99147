#!/usr/bin/env bash
# One GPU lease's checks and benchmarks, prepared so that one call does them all (≈ 5–8 min on
# an H100; CI has no GPU). Correctness first, then the fused-sweep and conv benchmarks of
# issues 3 and 10. Each step has its own time limit, so one slow step cannot eat the others';
# every step's output goes to the console and to $OUT/<step>.txt.
#
#     bash benchmarks/gpu_session.sh            # on the device machine, from the repository root
set -u
out=${OUT:-/tmp/gpu_session}
mkdir -p "$out"
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/device.txt"
python -c "import torch; print('torch', torch.__version__, 'grouped_mm', hasattr(torch, '_grouped_mm'))" \
    | tee -a "$out/device.txt"

step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s): $*"
    timeout "$limit" "$@" 2>&1 | grep -v '^USDT' | tee "$out/$name.txt"
    echo "== $name exit ${PIPESTATUS[0]}"
}

step gpu_check 120 python benchmarks/gpu_check.py --device cuda
step sweep_speed 240 python benchmarks/sweep_speed.py --device cuda --configs sweep64,seeds256 \
    --kernels auto,buckets,tiles
step heavy_gpt 150 python benchmarks/sweep_speed.py --device cuda --configs heavy8,gpt8 --steps 50
step cnn_speed 150 python benchmarks/cnn_speed.py --device cuda
