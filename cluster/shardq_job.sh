#!/usr/bin/env bash
# shardq_job.sh: the body of every shardq batch job (cluster/sbatch/*.sbatch exec into it, so it
# is the batch shell Slurm signals). It checks the spec before any rank starts (a bad spec fails
# the job at once, with the validator's message in the job log), launches one rank per task with
# `srun --mpi=pmix` or `mpirun`, forwards SIGUSR1/SIGTERM to the ranks (shardq then stops at the
# next layer boundary with a consistent journal and exits 75), and on exit 75 requeues the job:
# Slurm runs this script again, and the same `shardq run` resumes from the journal.
#
# Set by the template: SHARDQ_BIN, SHARDQ_SPEC, SHARDQ_LAUNCHER (srun|mpirun), SHARDQ_LOG_DIR.
set -u
: "${SHARDQ_BIN:?}" "${SHARDQ_SPEC:?}" "${SHARDQ_LAUNCHER:?}" "${SHARDQ_LOG_DIR:?}"
: "${SLURM_JOB_ID:?not in a Slurm job}"
readonly EXIT_RESUMABLE=75
run=${SLURM_RESTART_COUNT:-0}
say() { echo "[shardq-slurm $(date -u +%FT%TZ)] job $SLURM_JOB_ID run $run: $*"; }

say "spec $SHARDQ_SPEC, ${SLURM_NTASKS:-?} rank(s) on ${SLURM_JOB_NODELIST:-?}, launcher $SHARDQ_LAUNCHER"
# `shardq status` validates the spec and prints the journal's progress: on a requeued run it shows
# where the job resumes from.
if ! "$SHARDQ_BIN" status "$SHARDQ_SPEC"; then
    say "the spec is invalid or its state unreadable (above); no rank started"
    exit 1
fi
[ "$run" -gt 0 ] && say "restarted after a requeue: resuming from the journal"

rank_logs="$SHARDQ_LOG_DIR/ranks/run-$run"
mkdir -p "$rank_logs"
case $SHARDQ_LAUNCHER in
srun)
    # One log per rank: %t is the task (rank) number.
    srun --mpi=pmix --kill-on-bad-exit=1 --output="$rank_logs/rank-%t.log" \
        "$SHARDQ_BIN" run "$SHARDQ_SPEC" &
    ;;
mpirun)
    # mpirun takes the ranks and hosts from the allocation; one folder per rank under
    # $rank_logs/1/rank.N/{stdout,stderr}. It forwards SIGUSR1/SIGUSR2 to every rank.
    mpirun --bind-to none --output-filename "$rank_logs" "$SHARDQ_BIN" run "$SHARDQ_SPEC" &
    ;;
*)
    say "unknown launcher '$SHARDQ_LAUNCHER' (srun or mpirun)"
    exit 1
    ;;
esac
launcher_pid=$!
say "ranks launched (logs in $rank_logs)"

# shellcheck disable=SC2317  # called by the traps below
forward() { # signal name
    say "got SIG$1: asking the ranks to stop at the next layer boundary"
    kill -s "$1" "$launcher_pid" 2>/dev/null
}
trap 'forward USR1' USR1
trap 'forward TERM' TERM

# `wait` returns early when a trapped signal arrives; wait again until the launcher has exited.
while :; do
    wait "$launcher_pid"
    rc=$?
    kill -0 "$launcher_pid" 2>/dev/null || break
done

# Preemption (PreemptMode=REQUEUE) and `scontrol requeue` from outside requeue the job themselves
# (and SIGTERM every process of it): then the restart count is already past this run's.
requeued_by_slurm() {
    local restarts
    restarts=$(scontrol -o show job "$SLURM_JOB_ID" 2>/dev/null | grep -o ' Restarts=[0-9]*' | cut -d= -f2)
    [ "${restarts:-0}" -gt "$run" ]
}

if [ "$rc" -eq 0 ]; then
    say "done"
    "$SHARDQ_BIN" status "$SHARDQ_SPEC"
    exit 0
fi
if requeued_by_slurm; then
    say "ranks ended with exit $rc while Slurm requeues the job; the next run resumes from the journal"
    exit "$rc"
fi
if [ "$rc" -eq "$EXIT_RESUMABLE" ]; then
    say "ranks stopped with exit $EXIT_RESUMABLE (resumable): requeueing"
    if scontrol requeue "$SLURM_JOB_ID"; then
        say "requeued; the next run resumes from the journal"
        exit 0
    fi
    say "scontrol requeue refused; submit the same job again to resume"
    exit "$EXIT_RESUMABLE"
fi
say "ranks failed with exit $rc (see $rank_logs)"
exit "$rc"
