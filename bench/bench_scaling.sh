#!/usr/bin/env bash
# bench_scaling.sh: the 7B-shaped jobs on 1, 2, 4... GPUs of one node, one MPI rank per GPU
# (NCCL between them), to measure how shardq scales:
#   - GPTQ W4 g128, 128 x 2048 calibration tokens, true-sequential (bench_gptq_7b.sh's job),
#     in sequential mode and in pipeline mode with a fixed block count (BLOCKS), so that each
#     mode's output must be the same bytes on every GPU count (README, Guarantees);
#   - QLoRA data parallel (bench_qlora_7b.sh's job: NF4 base, r=16 on all seven linears,
#     seqlen 2048, recomputation): QBATCH sequences per micro-batch and QACCUM micro-batches
#     per optimizer step (default: the largest GPU count), dealt out over the ranks, so every
#     GPU count trains the same steps and must write the same adapter bytes.
# For each run: wall time of `mpirun ... shardq run` (start, NCCL set-up and assembly
# included), every rank's phases and the seconds each spent communicating (waiting for the
# others included), and a digest of the output. Then the tables and the speed-ups against
# one GPU.
#   bench/bench_scaling.sh SHARDQ_BIN TOOLS_DIR WORK_DIR [LAYERS]
# Environment (defaults): GPUS "1 2 4", MODES "sequential pipeline" ("": no GPTQ), PIPELINE_GPUS (GPUS: the
# GPU counts pipeline mode runs on), BLOCKS 4, QLORA 1,
# QBATCH 4, QACCUM (largest of GPUS), QWARMUP 1, QSTEPS 3; H I V HEADS NS SEQ as
# bench_gptq_7b.sh (smaller only for a smoke run). NVLink multicast stays off (NCCL_NVLS_ENABLE=0).
set -euo pipefail
BIN=$(realpath "$1"); TOOLS=$(realpath "$2"); WORK=$3; LAYERS=${4:-32}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$WORK"; WORK=$(realpath "$WORK")
H=${H:-4096} I=${I:-11008} V=${V:-32000} HEADS=${HEADS:-32} NS=${NS:-128} SEQ=${SEQ:-2048}
GPUS=${GPUS:-1 2 4} PIPELINE_GPUS=${PIPELINE_GPUS:-$GPUS} MODES=${MODES-sequential pipeline} BLOCKS=${BLOCKS:-4} QLORA=${QLORA:-1}
QBATCH=${QBATCH:-4} QACCUM=${QACCUM:-$(printf '%s\n' $GPUS | sort -n | tail -1)} QWARMUP=${QWARMUP:-1} QSTEPS=${QSTEPS:-3}
export H I V HEADS NS SEQ
export NCCL_NVLS_ENABLE=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
. "$HERE/bench_lib.sh"
CORES=$(nproc)
RUNS=$WORK/runs.txt
: >"$RUNS"

MODEL=$(bench_model "$TOOLS" "$WORK" "$LAYERS")
random_ids "$WORK/calib.ids" $((NS * SEQ + 1)) 0
QTOKENS=$((QBATCH * QACCUM * SEQ))
random_ids "$WORK/train.ids" $((2 * QTOKENS * (QWARMUP + QSTEPS) / SEQ * SEQ)) 0

# digest DIR: one hash over every output file but the manifest (which records times).
digest() { (cd "$1" && find . -type f ! -name manifest.json | sort | xargs sha256sum | sha256sum | cut -c1-12); }

# launch NAME NGPU JOB: the job on NGPU ranks, its wall time and digest recorded in runs.txt.
launch() {
    local name=$1 n=$2 job=$3 start rc=0
    start=$(now)
    local threads=$((CORES / n > 0 ? CORES / n : 1))
    { OMP_NUM_THREADS=$threads mpirun -np "$n" --bind-to none -x NCCL_NVLS_ENABLE -x OMP_NUM_THREADS \
        "$BIN" run "$job" 2>&1 && echo 0 >"$WORK/$name.rc" || echo $? >"$WORK/$name.rc"; } |
        stamp "$start" >"$WORK/$name.log"
    local wall; wall=$(since "$start")
    rc=$(cat "$WORK/$name.rc")
    local out=$WORK/$name/output d=-
    [ "$rc" = 0 ] && d=$(digest "$out")
    echo "$name $n $wall $rc $d" >>"$RUNS"
    echo "== $name on $n GPU(s): $wall s, exit $rc, output $d"
    [ "$rc" = 0 ] || tail -5 "$WORK/$name.log"
}

for mode in $MODES; do
    counts=$GPUS
    [ "$mode" = pipeline ] && counts=$PIPELINE_GPUS
    for n in $counts; do
        name=gptq-$mode-$n
        rm -rf "$WORK/$name"
        parallel="\"mode\": \"$mode\", \"micro_batch\": 4"
        [ "$mode" = pipeline ] && parallel="$parallel, \"blocks\": $BLOCKS"
        cat >"$WORK/$name.json" <<JSON
{"name": "scaling-$name", "model": "$MODEL",
 "data": {"calibration": "$WORK/calib.ids", "format": "token_ids", "nsamples": $NS, "seqlen": $SEQ},
 "steps": [{"gptq": {"bits": 4, "group_size": 128, "sym": true, "desc_act": false, "true_sequential": true}}],
 "state_uri": "$WORK/$name/state", "output_uri": "$WORK/$name/output", "parallel": {$parallel}, "seed": 0}
JSON
        launch "$name" "$n" "$WORK/$name.json"
    done
done

if [ "$QLORA" = 1 ]; then
    for n in $GPUS; do
        name=qlora-$n
        rm -rf "$WORK/$name"
        cat >"$WORK/$name.json" <<JSON
{"name": "scaling-$name", "model": "$MODEL",
 "steps": [{"qlora": {"r": 16, "alpha": 32, "dropout": 0,
   "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
   "base_quant": "nf4", "steps": $((QWARMUP + QSTEPS)), "batch_size": $QBATCH, "grad_accum": $QACCUM,
   "seqlen": $SEQ, "recompute": true, "learning_rate": 2e-4, "train_data": "$WORK/train.ids",
   "format": "token_ids", "save_every": $((QWARMUP + QSTEPS))}}],
 "state_uri": "$WORK/$name/state", "output_uri": "$WORK/$name/output", "seed": 0}
JSON
        launch "$name" "$n" "$WORK/$name.json"
    done
fi

python3 - "$WORK" "$QWARMUP" "$QTOKENS" "$HERE" <<'PY'
import re, sys
sys.path.insert(0, sys.argv[4])
from log_timeline import loop_split
from qlora_report import training_rate
work, warmup, step_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
runs = [line.split() for line in open(f"{work}/runs.txt")]

def phases(name):
    """Each rank's phases line of a GPTQ run: {rank: (load, forward, hessian, solve, write, comm)}."""
    log = open(f"{work}/{name}.log").read()
    return {int(r): tuple(map(float, v)) for r, *v in re.findall(
        r"phases \(rank (\d+)\): load ([\d.]+)s, forward ([\d.]+)s, hessian ([\d.]+)s, solve ([\d.]+)s, "
        r"write ([\d.]+)s; communication ([\d.]+)s", log)}

def job_split(name):
    """Seconds before the layer loop (start, NCCL, model and data), in it, and after it (assembly)."""
    split = loop_split(open(f"{work}/{name}.log").read(), float(next(r[2] for r in runs if r[0] == name)))
    return "-" if split is None else " / ".join(f"{s:.1f}" for s in split)

def qlora_rate(name):
    """tokens/s over the steps after the warm-up (qlora_report.training_rate), and the log."""
    log = open(f"{work}/{name}.log").read()
    return training_rate(log, step_tokens, warmup)[0], log

gptq = [r for r in runs if r[0].startswith("gptq-")]
if gptq:
    best1 = min((float(r[2]) for r in gptq if r[1] == "1" and r[3] == "0"), default=None)
    print("\nGPTQ W4 g128 (wall s of the whole job; s before the layer loop / in it / after it; per rank:"
          " forward / hessian / solve / communication s)")
    print(f"{'mode':11} {'GPUs':>4} {'wall s':>7} {'speed-up':>8}  {'output':12}  {'before / loop / after':21}  ranks")
    for name, n, wall, rc, d in gptq:
        mode = name.split("-")[1]
        up = f"{best1 / float(wall):.2f}x" if best1 and rc == "0" else "-"
        per = "; ".join(f"{k}: {v[1]:.1f}/{v[2]:.1f}/{v[3]:.1f}/{v[5]:.1f}" for k, v in sorted(phases(name).items()))
        print(f"{mode:11} {n:>4} {float(wall):7.1f} {up:>8}  {d:12}  {job_split(name):21}  {per}")
    for mode in ("sequential", "pipeline"):
        ds = {r[4] for r in gptq if r[0].split("-")[1] == mode and r[3] == "0"}
        if ds:
            print(f"{mode}: {'the same output on every GPU count' if len(ds) == 1 else 'OUTPUTS DIFFER: ' + ' '.join(sorted(ds))}")
    print("(speed-up: against the faster one-GPU run)")
qlora = [r for r in runs if r[0].startswith("qlora-")]
if qlora:
    print(f"\nQLoRA data parallel, NF4 base, {step_tokens} tokens per optimizer step")
    print(f"{'GPUs':>4} {'tokens/s':>9} {'speed-up':>8}  {'adapter':12}  communication (rank 0's phases line)")
    base = None
    for name, n, wall, rc, d in qlora:
        rate, log = qlora_rate(name)
        base = rate if n == "1" else base
        up = f"{rate / base:.2f}x" if rate and base else "-"
        comm = re.search(r"communication ([\d.]+)s", log)
        print(f"{n:>4} {rate or 0:9.0f} {up:>8}  {d:12}  {comm.group(1) + ' s' if comm else '-'}")
    ds = {r[4] for r in qlora if r[3] == "0"}
    print("adapters: " + ("the same bytes on every GPU count" if len(ds) == 1 else "DIFFER: " + " ".join(sorted(ds))))
PY
