#!/usr/bin/env bash
# The GPU check of issue 17 (deliverable 4), prepared to fit one call of the device tool (at most ~8 of its 10 minutes):
#   here:  bash benchmarks/gpu/wheels.sh            (once: the RL stack as wheels in .whl/, ~22 MB)
#   there: run(command="bash benchmarks/gpu/check.sh", carry=[".whl"], timeout_s=600)
# It installs the wheels, runs the tests that need a CUDA GPU, measures the cooperative solver's training throughput
# on VMAS with the worlds and networks on cuda and on the CPU side by side (one process, interleaved repeats), and
# times one NePPO run end to end on each device. Everything it prints is also written under $OUT (what comes back).
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1 OUT="${OUT:-/tmp/gpu-check}"
mkdir -p "$OUT"
exec > >(tee "$OUT/check.log") 2>&1
if ! python3 -c "import stable_baselines3" 2>/dev/null; then  # the GPU image; a set-up .venv here needs none
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH="/tmp/site:$PWD"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, sb3_neppo, vmas; print('torch', torch.__version__, 'sees a CUDA GPU:', torch.cuda.is_available())"
step() { echo; echo "== $1 ($(date -u +%T))"; }

step "tests that need a CUDA GPU (and the device tests that run anywhere)"
timeout 120 python3 -m pytest -q -n 0 -p no:cacheprovider tests/test_devices.py

step "cooperative solver throughput: VMAS worlds and PPO on cuda vs cpu, Simple World Comm"
timeout 240 python3 -m sb3_neppo.benchmarks.vmas_throughput --scenarios simple_world_comm --repeats 2 --mpe2-updates 1 \
    --env-steps 25600 --settings 64:400 1024:25600 4096:51200 --devices cuda cpu --vmas-threads 4 | tee "$OUT/throughput.md"

for device in cuda cpu; do
    step "NePPO end to end on $device: vmas:simple_world_comm, the defaults, a budget of 50 k env steps"
    start=$(date +%s.%N)
    timeout 120 python3 -m sb3_neppo.train --env vmas:simple_world_comm -n 50000 --seed 0 --device "$device" \
        -f "/tmp/gpu-logs-$device" --num-threads 4 | tail -4
    rc=$?
    wall=$(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')")
    [ $rc -eq 0 ] && echo "NePPO on $device: $wall s wall (start-up included)" || echo "NePPO on $device: exit status $rc after $wall s"
    cp /tmp/gpu-logs-$device/neppo/*/summary.json "$OUT/summary-$device.json" 2>/dev/null
done
step "done"
