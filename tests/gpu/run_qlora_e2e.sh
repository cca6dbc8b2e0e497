#!/usr/bin/env bash
# run_qlora_e2e.sh: the end-to-end QLoRA checks on a GPU machine (see check_qlora_e2e.py).
#   tests/gpu/run_qlora_e2e.sh GPU_BIN CPU_BIN TOOLS_DIR WORK_DIR
# GPU_BIN and CPU_BIN are shardq built with the CUDA and the CPU backend; TOOLS_DIR
# holds make_tiny_model. The same 20-step qlora job (NF4 base, dropout on, two
# micro-batches per step) runs on the GPU, on the CPU, on the GPU killed after a
# checkpoint and resumed, and on two GPUs where the machine has them; then
# check_qlora_e2e.py compares the runs and loads the GPU adapter in peft.
set -euo pipefail
GPU_BIN=$(realpath "$1"); CPU_BIN=$(realpath "$2"); TOOLS=$(realpath "$3"); WORK=$4
HERE=$(cd "$(dirname "$0")" && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
STEPS=20 SEQLEN=64
rm -rf "$WORK"; mkdir -p "$WORK"; WORK=$(realpath "$WORK")
"$TOOLS/make_tiny_model" "$WORK/model" --layers 3 --hidden 256 --intermediate 512 --heads 8 --kv-heads 4 \
    --vocab 1024 --dtype f32 --seed 7 >/dev/null
python3 -c "
import numpy as np
r = np.random.default_rng(5)
words = 'the cat sat on a mat and dog ran far away from home to see big red ball in our small green garden'.split()
open('$WORK/train.txt', 'w').write(' '.join(r.choice(words, 12000)))
open('$WORK/eval.txt', 'w').write(' '.join(r.choice(words, 1500)))"

job() { # name bin ranks [env...]
    local name=$1 bin=$2 ranks=$3; shift 3
    cat >"$WORK/$name.json" <<JSON
{"name": "$name", "model": "$WORK/model", "data": {"calibration": "$WORK/train.txt", "seqlen": $SEQLEN},
 "steps": [{"qlora": {"r": 8, "alpha": 16, "dropout": 0.1, "steps": $STEPS, "batch_size": 4, "grad_accum": 2,
                      "learning_rate": 0.003, "save_every": 5, "lr_schedule": "cosine", "warmup_steps": 2}}],
 "state_uri": "$WORK/$name/state", "output_uri": "$WORK/$name/out", "seed": 11}
JSON
    env "$@" mpirun -np "$ranks" --bind-to none "$bin" run "$WORK/$name.json" >"$WORK/$name.log" 2>&1
}
job gpu "$GPU_BIN" 1 || { tail -30 "$WORK/gpu.log"; exit 1; }
job cpu "$CPU_BIN" 1 || { tail -30 "$WORK/cpu.log"; exit 1; }
# killed right after the checkpoint of train step 10, then the same command resumes
if job gpu-killed "$GPU_BIN" 1 SHARDQ_FAULT=after-checkpoint:10; then
    echo "not ok - the fault point did not stop the job"; exit 1
fi
cp "$WORK/gpu-killed.log" "$WORK/gpu-killed-first.log"
job gpu-killed "$GPU_BIN" 1 || { tail -30 "$WORK/gpu-killed.log"; exit 1; }
TWO_GPUS=false
if [ "$(nvidia-smi -L 2>/dev/null | wc -l)" -ge 2 ]; then
    TWO_GPUS=true
    job gpu2 "$GPU_BIN" 2 || { tail -30 "$WORK/gpu2.log"; exit 1; }
fi
# the held-out NLL per token through the adapter, as shardq eval computes it on the GPU
"$GPU_BIN" eval --model "$WORK/model" --data "$WORK/eval.txt" --seqlen $SEQLEN --max-windows 4 \
    --adapter "$WORK/gpu/out" --token-nll "$WORK/gpu-nll.txt" >"$WORK/eval.log" 2>&1
"$CPU_BIN" tokenize --tokenizer "$WORK/model" --input "$WORK/eval.txt" >"$WORK/eval.ids"
echo "{\"work\": \"$WORK\", \"steps\": $STEPS, \"seqlen\": $SEQLEN, \"two_gpus\": $TWO_GPUS}" >"$WORK/check.json"
python3 "$HERE/check_qlora_e2e.py" "$WORK/check.json"
