#!/usr/bin/env bash
# run_e2e.sh: the end-to-end GPU checks (see check_e2e.py), on a GPU machine.
#   tests/gpu/run_e2e.sh GPU_BIN CPU_BIN TOOLS_DIR WORK_DIR
# GPU_BIN and CPU_BIN are shardq built with the CUDA and the CPU backend;
# TOOLS_DIR holds make_tiny_model. The same small GPTQ job runs on the GPU (1 and
# 2 ranks, sequential and pipeline) and on the CPU, then check_e2e.py compares.
set -euo pipefail
GPU_BIN=$(realpath "$1"); CPU_BIN=$(realpath "$2"); TOOLS=$(realpath "$3"); WORK=$4
HERE=$(cd "$(dirname "$0")" && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
LAYERS=4 SEQLEN=128 BITS=4
rm -rf "$WORK"; mkdir -p "$WORK"; WORK=$(realpath "$WORK")
"$TOOLS/make_tiny_model" "$WORK/model" --layers $LAYERS --hidden 256 --intermediate 512 --heads 8 --kv-heads 4 \
    --vocab 1024 --seed 7 >/dev/null
# Calibration and evaluation ids: random ids from a fixed seed (the check is about
# agreement between backends and with transformers, not about quality).
python3 -c "
import numpy as np
r = np.random.default_rng(1)
open('$WORK/calib.ids', 'w').write(' '.join(map(str, r.integers(3, 1024, 40 * $SEQLEN))))
open('$WORK/eval.ids', 'w').write(' '.join(map(str, r.integers(3, 1024, 8 * $SEQLEN))))"

GPTQ_STEPS="[{\"gptq\": {\"bits\": $BITS, \"group_size\": 128, \"desc_act\": true}}]"
SPARSE_STEPS="[{\"sparsegpt\": {\"pattern\": \"2:4\", \"block_size\": 64}}, {\"gptq\": {\"bits\": $BITS, \"group_size\": 64}}]"
job() { # name bin ranks mode blocks [steps]
    local blocks_field="" steps=${6:-$GPTQ_STEPS}
    [ -n "${5:-}" ] && blocks_field=", \"blocks\": $5"
    cat >"$WORK/$1.json" <<JSON
{"name": "$1", "model": "${MODEL_DIR:-$WORK/model}",
 "data": {"calibration": "$WORK/calib.ids", "format": "token_ids", "nsamples": 32, "seqlen": $SEQLEN},
 "steps": $steps,
 "state_uri": "$WORK/$1/state", "output_uri": "$WORK/$1/output",
 "parallel": {"mode": "$4", "micro_batch": 4$blocks_field}, "seed": 3}
JSON
    mpirun -np "$3" --bind-to none "$2" run "$WORK/$1.json" >"$WORK/$1.log" 2>&1 || { tail -30 "$WORK/$1.log"; exit 1; }
    grep -h "phases" "$WORK/$1.log" || true
}
ppl() { # name bin model
    "$2" eval --model "$3" --data-ids "$WORK/eval.ids" --seqlen $SEQLEN --out "$WORK/ppl-$1.json" >/dev/null 2>&1
}
# Two ranks need two GPUs (NCCL puts one rank on a device); on one GPU those runs are skipped.
TWO_GPUS=false
[ "$(nvidia-smi -L | wc -l)" -ge 2 ] && TWO_GPUS=true
job gpu-seq1 "$GPU_BIN" 1 sequential
job cpu-seq1 "$CPU_BIN" 1 sequential
job gpu-pipe1 "$GPU_BIN" 1 pipeline 2
job gpu-sparse1 "$GPU_BIN" 1 sequential "" "$SPARSE_STEPS"
job cpu-sparse1 "$CPU_BIN" 1 sequential "" "$SPARSE_STEPS"
if $TWO_GPUS; then
    job gpu-seq2 "$GPU_BIN" 2 sequential
    job gpu-pipe2 "$GPU_BIN" 2 pipeline 2
    job gpu-sparse2 "$GPU_BIN" 2 sequential "" "$SPARSE_STEPS"
    # A wider model, whose layer results (1 MiB and more per linear) the ranks exchange over
    # NCCL rather than MPI (worker/comm.c): 1 and 2 ranks must still write the same bytes.
    "$TOOLS/make_tiny_model" "$WORK/wide" --layers 2 --hidden 1024 --intermediate 2816 --heads 8 --kv-heads 4 \
        --vocab 1024 --seed 8 >/dev/null
    for run in "seq1 1 sequential" "seq2 2 sequential" "pipe1 1 pipeline 2" "pipe2 2 pipeline 2"; do
        set -- $run
        MODEL_DIR=$WORK/wide job "gpu-wide-$1" "$GPU_BIN" "$2" "$3" "${4:-}"
    done
fi
ppl gpu-seq1 "$GPU_BIN" "$WORK/gpu-seq1/output"
ppl cpu-seq1 "$CPU_BIN" "$WORK/cpu-seq1/output"
ppl fp-gpu "$GPU_BIN" "$WORK/model"
ppl fp-cpu "$CPU_BIN" "$WORK/model"
echo "{\"work\": \"$WORK\", \"bits\": $BITS, \"layers\": $LAYERS, \"seqlen\": $SEQLEN, \"two_gpus\": $TWO_GPUS,
      \"ppl\": [\"gpu-seq1\", \"cpu-seq1\", \"fp-gpu\", \"fp-cpu\"]}" >"$WORK/check.json"
python3 "$HERE/check_e2e.py" "$WORK/check.json"
