#!/usr/bin/env bash
# tools/gpu-check.sh [--dry-run] [--out DIR] [--budget SECONDS]: the project's checks and GPU figures in one run.
#
# Made for a lent GPU machine (Python 3.12, torch 2.11 with CUDA, Triton; no gradio or plotly; no network; at most
# 64 MiB of working tree and wheels together). It needs torch, triton, timm, safetensors, numpy, opencv and pytest,
# and only what the repository carries. timm and safetensors are installed from tools/wheels/*.whl when they do
# not import. Fetch those wheels beforehand on a machine with pip (never commit them):
#
#   echo /tools/wheels/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d tools/wheels \
#       timm==1.0.31 safetensors==0.8.0
#
# and send tools/wheels/ with the tree (a few MiB). timm also needs torchvision, huggingface_hub and pyyaml, which
# such a machine has.
#
# Steps, in order, each under its own `timeout` (its cap, or what is left of the budget, default 240 s):
#   doctor        python -m asmlp doctor --json (every check, GPU included)
#   triton-tests  the Triton and backend tests on CUDA (interpreter off; the CPU cases are skipped there)
#   bench-fused   python -m asmlp bench fused
#   bench-shift   python -m asmlp bench shift --device cuda
#   bench-models  python -m asmlp bench models --device cuda, the T/S segmenters, fp32 and fp16
#   throughput    python -m asmlp bench throughput --device cuda --precision fp16 --channels-last, batch 64,
#                 AS-MLP-T/S/B vs Swin-T/S/B with the V100 ratios 1.39 / 1.42 / 1.64 beside
# Results go to two files in DIR (default: $OUT when set, else /tmp/asmlp-gpu-check), written as they come, so a
# run cut short still leaves what it measured:
#   gpu-check.log  every step's command, output, exit status and seconds (appended);
#   doctor.json    doctor's JSON report (its check lines are in the log as they end).
# --dry-run prints the steps and runs nothing. Exit status: 0 when every step exited 0, else 1.
set -uo pipefail
cd "$(dirname "$0")/.."

dry=0
out="${OUT:-/tmp/asmlp-gpu-check}"
budget=240
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) dry=1 ;;
        --out) out="${2:?--out needs a folder}"; shift ;;
        --budget) budget="${2:?--budget needs seconds}"; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "gpu-check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 GRADIO_ANALYTICS_ENABLED=False
export TRITON_INTERPRET=0  # the kernels run on the GPU (tests/conftest.py only sets it when unset)
log="$out/gpu-check.log"
report="$out/doctor.json"
start=$(date +%s)
failed=0

# step NAME CAP STDOUT COMMAND...: run COMMAND under `timeout` (CAP seconds or the budget left); its output is
# appended to the log, or its stdout written to the file STDOUT (not "-") and its stderr appended to the log
step() {
    local name="$1" cap="$2" dest="$3"
    shift 3
    if [ "$dry" = 1 ]; then
        echo "step $name (timeout ${cap}s): $*"
        return 0
    fi
    local left=$((budget - ($(date +%s) - start)))
    local limit=$((cap < left ? cap : left))
    if [ "$limit" -lt 10 ]; then
        echo "== $name: not run, ${left}s of the ${budget}s budget left" >>"$log"
        failed=1
        return 0
    fi
    echo "== $name (timeout ${limit}s): $*" >>"$log"
    local t0 rc
    t0=$(date +%s)
    if [ "$dest" = - ]; then
        timeout -k 5 "$limit" "$@" >>"$log" 2>&1
    else
        timeout -k 5 "$limit" "$@" >"$dest" 2>>"$log"
    fi
    rc=$?
    echo "== $name: exit $rc in $(($(date +%s) - t0))s$([ $rc = 124 ] && echo ' (cut by its timeout)')" >>"$log"
    [ "$rc" = 0 ] || failed=1
}

if [ "$dry" = 0 ]; then
    mkdir -p "$out"
    echo "== gpu-check $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(pwd), budget ${budget}s" >>"$log"
    if ! "$PY" -c 'import importlib.util as u, sys; sys.exit(not (u.find_spec("timm") and u.find_spec("safetensors")))'
    then
        site=/tmp/asmlp-gpu-check-site
        echo "== installing timm / safetensors from tools/wheels into $site" >>"$log"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$site" tools/wheels/*.whl >>"$log" 2>&1
        export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    fi
else
    echo "install timm and safetensors from tools/wheels/*.whl if they are missing"
fi

step environment 20 - nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
step doctor 100 "$report" "$PY" -m asmlp doctor --json
step triton-tests 60 - "$PY" -m pytest -q -rfs -p no:cacheprovider tests/test_shift_triton.py tests/test_backends.py \
    -k cuda
step bench-fused 45 - "$PY" -m asmlp bench fused --repeat 20
step bench-shift 25 - "$PY" -m asmlp bench shift --device cuda --repeat 100
step bench-models 45 - "$PY" -m asmlp bench models --device cuda --repeat 5 \
    --models upernet_asmlp_tiny upernet_swin_tiny upernet_asmlp_small upernet_swin_small
step throughput 45 - "$PY" -m asmlp bench throughput --device cuda --precision fp16 --channels-last --batch 64 \
    --repeat 10 --models asmlp_tiny asmlp_small asmlp_base swin_tiny swin_small swin_base

if [ "$dry" = 0 ]; then
    echo "== gpu-check done in $(($(date +%s) - start))s, $([ $failed = 0 ] && echo 'every step exited 0' || echo 'some step did not exit 0')" >>"$log"
    echo "results: $log, $report"
fi
exit "$failed"
