#!/usr/bin/env bash
# bench_qlora_7b.sh: QLoRA fine-tuning on a Llama-2-7B-shaped model (random bf16 weights
# made on the spot: no download), shardq against peft + bitsandbytes in one run on one GPU.
# Both train r=16 adapters (alpha 32, dropout 0) on all seven linears of every layer, on
# random token ids, seqlen 2048, batch 1 and 4 (one micro-batch per optimizer step),
# with activation recomputation (gradient checkpointing) and AdamW:
#   - shardq qlora, NF4 base (quantized at load as bitsandbytes does);
#   - shardq qlora, GPTQ 4-bit g128 base (made here by a shardq rtn job in GPTQ format:
#     the base's values, not its quality, set the speed);
#   - the peer, bench/peers/peft_bnb_qlora.py (NF4, double quantization, bf16 compute).
# Each run: WARMUP steps, then STEPS timed steps; tokens/s over the timed steps (shardq's
# from the cumulative tokens/s its qlora step logs after each step). Peak GPU memory: the
# largest `nvidia-smi memory.used` sampled every 0.2 s while the run's steps ran, the same
# for both (the peer also reports torch.cuda.max_memory_allocated). Prints each phase's
# wall time, a table and the ratios shardq / peer. The whole run is held to BUDGET_S
# seconds (a shardq run that would overrun is cut and reported with the steps it made).
#   bench/bench_qlora_7b.sh SHARDQ_BIN TOOLS_DIR WORK_DIR [LAYERS]
# Environment (defaults): H 4096, I 11008, V 32000, HEADS 32, SEQ 2048 (shape; smaller only
# for a smoke run), BATCHES "1 4", WARMUP 2, STEPS 6, BASES "nf4 gptq", PEER 1 (0: no peer,
# e.g. on a machine without a GPU; the peer needs bitsandbytes on PYTHONPATH), PEER_ARGS (more
# arguments for the peer: "--device cpu" for a smoke run), BUDGET_S 510, PEER_TIMEOUT_S 240.
set -euo pipefail
BIN=$(realpath "$1"); TOOLS=$(realpath "$2"); WORK=$3; LAYERS=${4:-32}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$WORK"; WORK=$(realpath "$WORK")
H=${H:-4096} I=${I:-11008} V=${V:-32000} HEADS=${HEADS:-32} SEQ=${SEQ:-2048}
BATCHES=${BATCHES:-1 4} WARMUP=${WARMUP:-2} STEPS=${STEPS:-6} BASES=${BASES:-nf4 gptq} PEER=${PEER:-1}
BUDGET_S=${BUDGET_S:-510} PEER_TIMEOUT_S=${PEER_TIMEOUT_S:-240}
export H I V HEADS
. "$HERE/bench_lib.sh"
T0=$(now)
TOTAL_STEPS=$((WARMUP + STEPS))
MAX_BATCH=$(printf '%s\n' $BATCHES | sort -n | tail -1)
PHASES=$WORK/phases.txt RUNS=$WORK/runs.txt
: >"$PHASES"; : >"$RUNS"; rm -f "$WORK/peer.json"
phase() { echo "$1 $2" >>"$PHASES"; echo "== $1: $2 s"; }

# GPU memory sampler: "epoch_seconds MiB" lines, every 0.2 s, for the whole script.
SAMPLES=$WORK/gpu_mem.txt
: >"$SAMPLES"
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader -i 0
    (while :; do
        echo "$(now) $(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0)"
        sleep 0.2
    done) >>"$SAMPLES" 2>/dev/null &
    SAMPLER=$!
    trap 'kill "$SAMPLER" 2>/dev/null || true' EXIT
else
    echo "nvidia-smi sees no GPU: peak memory is reported as n/a"
fi

start=$(now)
MODEL=$(bench_model "$TOOLS" "$WORK" "$LAYERS")
random_ids "$WORK/train.ids" $((2 * MAX_BATCH * TOTAL_STEPS * SEQ)) 0
phase "model and ids" "$(since "$start")"

if [ "$PEER" = 1 ]; then
    start=$(now)
    if PYTHONUNBUFFERED=1 timeout -k 20 "$PEER_TIMEOUT_S" python3 "$HERE/peers/peft_bnb_qlora.py" "$MODEL" \
        "$WORK/train.ids" "$WORK/peer.json" --batches "$(echo $BATCHES | tr ' ' ,)" --seqlen "$SEQ" \
        --warmup "$WARMUP" --steps "$STEPS" --r 16 --alpha 32 ${PEER_ARGS:-} >"$WORK/peer.log" 2>&1; then
        grep -E "^peft\+bnb: " "$WORK/peer.log" || true
    else
        echo "peer failed or ran past ${PEER_TIMEOUT_S} s (exit $?): the end of $WORK/peer.log:"; tail -15 "$WORK/peer.log"
    fi
    phase "peer (peft + bitsandbytes, all batches)" "$(since "$start")"
fi

# run_shardq NAME JOB_JSON TIMEOUT: one shardq job, its log and wall-clock window recorded.
run_shardq() {
    local name=$1 job=$2 limit=$3 start rc=0
    start=$(now)
    timeout -k 20 "$limit" "$BIN" run "$job" >"$WORK/$name.log" 2>&1 || rc=$?
    echo "$name $start $(now) $rc" >>"$RUNS"
    phase "$name (exit $rc)" "$(since "$start")"
    [ "$rc" = 0 ] || { echo "$name: exit $rc (124: cut at ${limit} s); the end of its log:"; tail -5 "$WORK/$name.log"; }
}

# Seconds a run may take: an equal share of what is left of the budget.
share() { python3 -c "print(max(10, int(($BUDGET_S - ($(now) - $T0)) / $1)))"; }

BASE_GPTQ=$WORK/gptq-base
if [[ " $BASES " == *" gptq "* ]] && [ ! -f "$BASE_GPTQ/config.json" ]; then
    rm -rf "$WORK/rtn-state" "$BASE_GPTQ"
    cat >"$WORK/rtn.json" <<JSON
{"name": "bench-qlora-gptq-base", "model": "$MODEL",
 "steps": [{"rtn": {"bits": 4, "group_size": 128, "sym": true}}],
 "state_uri": "$WORK/rtn-state", "output_uri": "$BASE_GPTQ", "output": {"format": "gptq"}, "seed": 0}
JSON
    run_shardq gptq-base "$WORK/rtn.json" "$(share 4)"
fi

runs_left=$(( $(echo $BASES | wc -w) * $(echo $BATCHES | wc -w) ))
for base in $BASES; do
    model=$MODEL
    [ "$base" = gptq ] && model=$BASE_GPTQ
    for b in $BATCHES; do
        name=shardq-$base-b$b
        rm -rf "$WORK/$name"
        cat >"$WORK/$name.json" <<JSON
{"name": "bench-qlora-7b-$base-b$b", "model": "$model",
 "steps": [{"qlora": {"r": 16, "alpha": 32, "dropout": 0,
   "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
   "base_quant": "$base", "steps": $TOTAL_STEPS, "batch_size": $b, "grad_accum": 1, "seqlen": $SEQ,
   "recompute": true, "learning_rate": 2e-4, "train_data": "$WORK/train.ids", "format": "token_ids",
   "save_every": $TOTAL_STEPS}}],
 "state_uri": "$WORK/$name/state", "output_uri": "$WORK/$name/out", "seed": 0}
JSON
        run_shardq "$name" "$WORK/$name.json" "$(share $runs_left)"
        runs_left=$((runs_left - 1))
    done
done
[ -n "${SAMPLER:-}" ] && kill "$SAMPLER" 2>/dev/null || true

python3 "$HERE/qlora_report.py" "$WORK" "$WARMUP" "$STEPS" "$SEQ" "$BATCHES" "$(since "$T0")"
