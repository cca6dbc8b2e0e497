#!/usr/bin/env bash
# test_slurm.sh: shardq jobs through a real single-node Slurm (cluster/slurm_local.sh) submitted
# with cluster/submit.sh: a job launched by mpirun and one launched by `srun --mpi=pmix` write the
# same bytes as a direct mpirun run of the same spec; a job interrupted mid-way (SIGUSR1 to the
# batch shell, as --signal=B:USR1@N does before the time limit, or SIGTERM to it, or
# `scontrol requeue`, as preemption does) stops with exit 75, is requeued and resumes from its journal to the same bytes;
# a bad spec fails the job at once with the validator's message in the job log; a sweep runs as a
# job array, one point per element (submit.sh --sweep); the multi-node
# template is filled as asked (test_slurm_nodes.sh runs it on two nodes). Prints TAP; skips only
# when the Slurm binaries are missing.
set -u
# shellcheck source=tests/integration/testlib.sh
. "$(dirname "$0")/testlib.sh"
SLURM_LOCAL="$ROOT/cluster/slurm_local.sh"

for tool in slurmctld slurmd sbatch srun scontrol scancel sinfo; do
    if ! command -v "$tool" >/dev/null; then
        echo "ok 1 # SKIP $tool not installed (apt-get install slurmctld slurmd slurm-client)"
        exit 0
    fi
done

WORK=$(mktemp -d)
export SHARDQ_SLURM_DIR="$WORK/slurm"
trap '"$SLURM_LOCAL" stop >/dev/null 2>&1; rm -rf "$WORK"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
# Two free consecutive ports (slurmctld, slurmd), so the test never meets another Slurm.
SHARDQ_SLURM_PORT=$(python3 -c '
import random, socket
for _ in range(100):
    port = random.randrange(20000, 40000, 2)
    try:
        for p in (port, port + 1):
            socket.create_server(("127.0.0.1", p)).close()
        print(port)
        break
    except OSError:
        pass')
export SHARDQ_SLURM_PORT SHARDQ_SLURM_CPUS=2 SHARDQ_SLURM_GPUS=0
check_or_end "a single-node Slurm starts (slurmctld + slurmd, node idle)" "$WORK/slurm_start.log" \
    "$SLURM_LOCAL" start
export SLURM_CONF="$SHARDQ_SLURM_DIR/slurm.conf"

"$MAKE_MODEL" "$WORK/model" --layers 4 --hidden 64 --intermediate 128 --heads 4 --kv-heads 2 --vocab 512 --seed 3
CALIB=$(calibration_text "$WORK")

write_spec() { # name bits: a 2-rank GPTQ spec with its state and output under $WORK/name
    cat >"$WORK/$1.json" <<EOF
{"name": "$1", "model": "$WORK/model",
 "data": {"calibration": "$CALIB", "nsamples": 8, "seqlen": 32},
 "steps": [{"gptq": {"bits": $2, "group_size": 32}}],
 "state_uri": "$WORK/$1/state", "output_uri": "$WORK/$1/output",
 "parallel": {"mode": "sequential", "micro_batch": 2}, "seed": 5}
EOF
    echo "$WORK/$1.json"
}

same_output() { # job name: its output is byte-identical to the direct run's
    [ -f "$WORK/$1/output/manifest.json" ] && diff <(digests "$WORK/direct/output") <(digests "$WORK/$1/output")
}

# The reference: the same spec run directly under mpirun, outside Slurm.
mpirun -np 2 --bind-to none "$SHARDQ" run "$(write_spec direct 4)" >"$WORK/direct.log" 2>&1
check "direct mpirun run completes" test -f "$WORK/direct/output/manifest.json"

# (1) sbatch with the mpirun launcher.
id=$("$SUBMIT" "$(write_spec via-mpirun 4)" --tasks-per-node 2 --launcher mpirun 2>/dev/null)
state=$(wait_job "$id")
check "sbatch job (mpirun launcher) completes: $state" test "$state" = COMPLETED
check "its output is byte-identical to the direct mpirun run" same_output via-mpirun
ranks="$WORK/via-mpirun.slurm/ranks/run-0/1"
check "mpirun wrote one log per rank" \
    bash -c "grep -q 'job via-mpirun: 2 rank(s)' '$ranks/rank.0/stderr' && test -f '$ranks/rank.1/stderr'"

# (1b) sbatch with srun --mpi=pmix, which Debian's slurm-wlm and Open MPI both support.
check "srun --mpi=list offers pmix" bash -c 'srun --mpi=list 2>&1 | grep -qw pmix'
id=$("$SUBMIT" "$(write_spec via-srun 4)" --tasks-per-node 2 --launcher srun 2>/dev/null)
state=$(wait_job "$id")
check "sbatch job (srun --mpi=pmix launcher) completes: $state" test "$state" = COMPLETED
check "its output is byte-identical to the direct mpirun run" same_output via-srun
ranks="$WORK/via-srun.slurm/ranks/run-0"
check "srun wrote one log per rank (%t)" \
    bash -c "grep -q 'job via-srun: 2 rank(s)' '$ranks/rank-0.log' && test -f '$ranks/rank-1.log'"

# (2) Interrupted mid-way, once the journal holds a layer and before the last (each layer is
# slowed down): SIGUSR1 to the batch shell (what --signal=B:USR1@N does before the time limit),
# which the job forwards to the ranks and answers with its own requeue (SIGTERM to the batch
# shell alike: srun forwards it, mpirun gets it as SIGUSR1); or `scontrol requeue` (what preemption with
# PreemptMode=REQUEUE does), where Slurm requeues and SIGTERMs the job.
interrupt() { # launcher usr1|term|requeue
    local name="$2-$1" spec id log state failed_before=$failures
    spec=$(write_spec "$name" 4)
    id=$(SHARDQ_LAYER_DELAY_MS=400 "$SUBMIT" "$spec" --tasks-per-node 2 --launcher "$1" 2>/dev/null)
    for _ in $(seq 1 300); do
        "$SHARDQ" status "$spec" 2>/dev/null | grep -qE 'running +[1-9] layers done' && break
        sleep 0.1
    done
    case $2 in
    usr1) scancel --signal=USR1 --batch "$id" ;;
    term) scancel --signal=TERM --batch "$id" ;;
    *) scontrol requeue "$id" ;;
    esac
    state=$(wait_job "$id")
    log="$WORK/$name.slurm/slurm-$id.log"
    check "$name: the job completes after a requeue: $state" test "$state" = COMPLETED
    check "$name: Slurm counts one restart" restarts_are "$id" 1 "$log"
    if [ "$2" != requeue ]; then
        check "$name: the ranks stopped with exit 75 and the job requeued itself" \
            bash -c "grep -q 'job $id run 0: ranks stopped with exit 75: requeueing' '$log' \
                     && grep -q 'job $id run 0: requeued; the next run resumes' '$log'"
    else
        check "$name: the ranks stopped with exit 75 while Slurm requeued the job" \
            grep -q "job $id run 0: ranks stopped with exit 75 while Slurm requeues the job" "$log"
    fi
    check "$name: the first run stopped before the last layer" \
        bash -c "grep -rqsE 'stopped by SIG(USR1|TERM) after layer [1-3]/4;' '$WORK/$name.slurm/ranks/run-0'"
    check "$name: the second run resumed from the journal" \
        bash -c "grep -q 'job $id run 1: restarted after a requeue: resuming from the journal' '$log' \
                 && grep -rqs 'layer 1/4 replayed from the journal' '$WORK/$name.slurm/ranks/run-1'"
    check "$name: the resumed output is byte-identical to the uninterrupted run" same_output "$name"
    [ "$failures" -eq "$failed_before" ] || say_job_log "$log"
}
interrupt mpirun usr1
interrupt mpirun term
interrupt srun usr1
interrupt srun term
interrupt srun requeue

# The multi-node template cannot run on one node: check what submit.sh fills in.
"$SUBMIT" "$WORK/direct.json" --nodes 2 --gpus-per-node 8 --launcher mpirun --dry-run >"$WORK/multi.sbatch"
has_lines() { # file, then lines it must contain
    local file=$1 line
    shift
    for line in "$@"; do grep -qxF -- "$line" "$file" || return 1; done
}
check "multi-node script: 2 whole nodes, 8 ranks and 8 GPUs per node, requeue, USR1 300 s ahead" \
    has_lines "$WORK/multi.sbatch" '#SBATCH --nodes=2' '#SBATCH --ntasks-per-node=8' '#SBATCH --gpus-per-node=8' \
    '#SBATCH --exclusive' '#SBATCH --requeue' '#SBATCH --signal=B:USR1@300' 'export SHARDQ_LAUNCHER=mpirun'
check "multi-node script is valid bash" bash -n "$WORK/multi.sbatch"
check "submit.sh refuses more ranks than GPUs per node" \
    bash -c "! '$SUBMIT' '$WORK/direct.json' --gpus-per-node 2 --tasks-per-node 3 --dry-run 2>/dev/null"

# (4) A sweep as a job array (submit.sh --sweep): one element per point, element N running
# `shardq sweep --point N`; each appends its record to results.jsonl.
cat >"$WORK/sweep.json" <<EOF
{"name": "arr", "root": "$WORK/sweep",
 "base": {"model": "$WORK/model", "data": {"calibration": "$CALIB", "nsamples": 8, "seqlen": 32},
          "steps": [{"gptq": {"bits": 4, "group_size": 32}}, {"eval": {"data": "$CALIB", "seqlen": 32, "max_windows": 4}}],
          "parallel": {"mode": "sequential", "micro_batch": 2}, "seed": 5},
 "axes": [{"name": "bits", "path": "steps[0].gptq.bits", "values": [3, 4]}]}
EOF
id=$("$SUBMIT" --sweep "$WORK/sweep.json" --tasks-per-node 2 2>/dev/null)
states="$(wait_job "${id}_0") $(wait_job "${id}_1")"
check "sweep job array: both points complete: $states" test "$states" = "COMPLETED COMPLETED"
check "sweep: element 1 ran point 1 only" \
    bash -c "grep -rqs 'point 1 (0..1) arr-bits4' '$WORK/sweep.slurm/ranks/point-1' \
             && ! grep -rqs 'arr-bits3' '$WORK/sweep.slurm/ranks/point-1'"
check "sweep: results.jsonl holds one whole record per point" python3 -c '
import json, sys
text = open(sys.argv[1]).read()
assert text.endswith("\n")
assert sorted(json.loads(line)["name"] for line in text.splitlines()) == ["arr-bits3", "arr-bits4"]' \
    "$WORK/sweep/results.jsonl"
check "sweep: the bits=4 point has the weights of the direct run of the same job" \
    cmp "$WORK/direct/output/model.safetensors" "$WORK/sweep/points/arr-bits4/output/model.safetensors"

# (3) A bad spec: the job fails before any rank starts, with the validator's message in its log.
id=$("$SUBMIT" "$(write_spec bad-spec 17)" --tasks-per-node 2 2>/dev/null)
state=$(wait_job "$id")
check "bad spec: job state FAILED: $state" test "$state" = FAILED
check "bad spec: the job log names the JSON path at fault" \
    grep -q 'steps\[0\]\.gptq\.bits: must be one of' "$WORK/bad-spec.slurm/slurm-$id.log"
check "bad spec: no rank was launched" test ! -e "$WORK/bad-spec.slurm/ranks"
