#!/usr/bin/env bash
# shardq_job.sh: the body of every shardq batch job (cluster/sbatch/*.sbatch exec into it, so it
# is the batch shell Slurm signals). It checks the spec before any rank starts (a bad spec fails
# the job at once, with the validator's message in the job log), launches one rank per task with
# `srun --mpi=pmix` or `mpirun`, forwards SIGUSR1/SIGTERM to the ranks (shardq then stops at the
# next layer boundary with a consistent journal and exits 75; the launcher gets SIGUSR1 for either,
# as srun and mpirun both answer SIGTERM by killing the ranks), and on exit 75 requeues the job:
# Slurm runs this script again, and the same `shardq run` resumes from the journal.
#
# A rank killed by a signal (the OOM killer, kill -9) or a node lost also requeues the job, at most
# SHARDQ_MAX_RESTARTS times (default 3). Under srun, SHARDQ_SRUN_WAIT (seconds, default 30; 0 for
# no limit) bounds how long srun waits for the other ranks once one has ended: the ranks of a node
# whose slurmstepd died never report their end.
#
# With SHARDQ_SWEEP=1 the job is one element of a job array over a sweep's points (submit.sh
# --sweep): SHARDQ_SPEC is the sweep file, and the ranks run `shardq sweep SWEEP --point
# $SLURM_ARRAY_TASK_ID`, which resumes from that point's journal and appends its record to the
# sweep's results.jsonl.
#
# Set by the template: SHARDQ_BIN, SHARDQ_SPEC, SHARDQ_LAUNCHER (srun|mpirun), SHARDQ_LOG_DIR,
# SHARDQ_SWEEP (0|1).
set -u
: "${SHARDQ_BIN:?}" "${SHARDQ_SPEC:?}" "${SHARDQ_LAUNCHER:?}" "${SHARDQ_LOG_DIR:?}"
: "${SLURM_JOB_ID:?not in a Slurm job}"
if [ "${SHARDQ_SWEEP:-0}" = 1 ]; then
    : "${SLURM_ARRAY_TASK_ID:?a sweep runs as a job array (submit.sh --sweep)}"
    # the check: the point's spec is valid (shardq sweep --dry-run validates it) and its status
    check_cmd=(sweep "$SHARDQ_SPEC" --point "$SLURM_ARRAY_TASK_ID" --dry-run)
    shardq_cmd=(sweep "$SHARDQ_SPEC" --point "$SLURM_ARRAY_TASK_ID")
    rank_logs_dir="$SHARDQ_LOG_DIR/ranks/point-$SLURM_ARRAY_TASK_ID"
else
    check_cmd=(status "$SHARDQ_SPEC")
    shardq_cmd=(run "$SHARDQ_SPEC")
    rank_logs_dir="$SHARDQ_LOG_DIR/ranks"
fi
readonly EXIT_RESUMABLE=75
max_restarts=${SHARDQ_MAX_RESTARTS:-3}
srun_wait=${SHARDQ_SRUN_WAIT:-30}
run=${SLURM_RESTART_COUNT:-0}
say() { echo "[shardq-slurm $(date -u +%FT%TZ)] job $SLURM_JOB_ID run $run: $*"; }
for setting in "SHARDQ_MAX_RESTARTS=$max_restarts" "SHARDQ_SRUN_WAIT=$srun_wait"; do
    if ! [[ ${setting#*=} =~ ^[0-9]+$ ]]; then
        say "${setting%%=*} must be a number, not '${setting#*=}'"
        exit 1
    fi
done

# Signals may come at any moment, before the ranks exist too: remember them, forward them once
# there is a launcher.
launcher_pid=""
stop_signal=""
# shellcheck disable=SC2317  # called by the traps below
on_signal() { # signal name
    # srun and mpirun forward SIGUSR1 to the ranks but kill them on SIGTERM (README, "Stopping a job").
    stop_signal=USR1
    say "got SIG$1: asking the ranks to stop at the next layer boundary"
    [ -z "$launcher_pid" ] || kill -s "$stop_signal" "$launcher_pid" 2>/dev/null
}
trap 'on_signal USR1' USR1
trap 'on_signal TERM' TERM

# Preemption (PreemptMode=REQUEUE) and `scontrol requeue` from outside requeue the job themselves
# (and SIGTERM every process of it): then the restart count is already past this run's.
requeued_by_slurm() {
    local restarts
    restarts=$(scontrol -o show job "$SLURM_JOB_ID" 2>/dev/null | grep -o ' Restarts=[0-9]*' | cut -d= -f2)
    [ "${restarts:-0}" -gt "$run" ]
}

requeue() { # why
    if requeued_by_slurm; then
        say "$1 while Slurm requeues the job; the next run resumes from the journal"
        exit "$EXIT_RESUMABLE"
    fi
    say "$1: requeueing"
    if scontrol requeue "$SLURM_JOB_ID"; then
        say "requeued; the next run resumes from the journal"
        exit 0
    fi
    say "scontrol requeue refused; submit the same job again to resume"
    exit "$EXIT_RESUMABLE"
}

say "spec $SHARDQ_SPEC, ${SLURM_NTASKS:-?} rank(s) on ${SLURM_JOB_NODELIST:-?}, launcher $SHARDQ_LAUNCHER"
# `shardq status` validates the spec and prints the journal's progress: on a requeued run it shows
# where the job resumes from.
if ! "$SHARDQ_BIN" "${check_cmd[@]}"; then
    say "the spec is invalid or its state unreadable (above); no rank started"
    exit 1
fi
[ "$run" -eq 0 ] || say "restarted after a requeue: resuming from the journal"
[ -z "$stop_signal" ] || requeue "stopped before the ranks started"

rank_logs="$rank_logs_dir/run-$run"
mkdir -p "$rank_logs"
case $SHARDQ_LAUNCHER in
srun)
    # Slurm's PMIx plugin gives each step a socket named after the job and step id
    # (SlurmdSpoolDir/stepd.slurm.pmix.JOB.STEP), which stays behind when the node's slurmstepd
    # dies (killed, or the node crashed); a requeued job numbers its steps from 0 again, and a step
    # whose id an earlier run used fails to launch on that node ("Cannot bind() UNIX socket ...
    # Address already in use"). So run R starts its ranks as step R, after R empty steps.
    for ((step = 0; step < run; step++)); do
        srun --mpi=none --nodes=1 --ntasks=1 true || say "empty step $step failed (a later step id is all it is for)"
    done
    # One log per rank: %t is the task (rank) number. --wait: the ranks of a healthy job end
    # together (MPI_Finalize), so once one has ended srun waits at most that long for the others.
    # When a node's slurmstepd was killed its ranks die unreported; the peer watch
    # (worker/peer_watch.h) ends the other ranks, and without --wait srun would wait for the lost
    # ones until Slurm notices the missing step (a node registration, up to 20 x SlurmdTimeout/3
    # later, if at all).
    srun --mpi=pmix --kill-on-bad-exit=1 --wait="$srun_wait" --output="$rank_logs/rank-%t.log" \
        "$SHARDQ_BIN" "${shardq_cmd[@]}" &
    ;;
mpirun)
    # mpirun takes the ranks and hosts from the allocation; one folder per rank under
    # $rank_logs/1/rank.N/{stdout,stderr}. It forwards SIGUSR1/SIGUSR2 to every rank.
    mpirun --bind-to none --output-filename "$rank_logs" "$SHARDQ_BIN" "${shardq_cmd[@]}" &
    ;;
*)
    say "unknown launcher '$SHARDQ_LAUNCHER' (srun or mpirun)"
    exit 1
    ;;
esac
launcher_pid=$!
# A signal that came while the launcher was being started has not been forwarded yet.
[ -z "$stop_signal" ] || kill -s "$stop_signal" "$launcher_pid" 2>/dev/null
say "ranks launched (logs in $rank_logs)"

# `wait` returns early when a trapped signal arrives; wait again until the launcher has exited.
while :; do
    wait "$launcher_pid"
    rc=$?
    kill -0 "$launcher_pid" 2>/dev/null || break
done

if [ "$rc" -eq 0 ]; then
    say "done"
    "$SHARDQ_BIN" "${check_cmd[@]}"
    exit 0
fi
# Exit 75 is shardq's "stopped, resumable". Any other exit after a stop request (a rank signalled
# before it set up its handler, a launcher killed by Slurm) leaves a consistent journal as well.
if [ "$rc" -eq "$EXIT_RESUMABLE" ] || [ -n "$stop_signal" ]; then
    requeue "ranks stopped with exit $rc"
fi
# srun and mpirun exit above 128 when a rank was killed (128+N for signal N) or a node lost (mpirun
# then exits 205). That is the machine's fault, not the job's (a rank's own errors exit 1), and
# the journal is consistent after a kill at any point: run again. The launcher has already ended
# the other ranks (srun --kill-on-bad-exit, mpirun on any abnormal exit). The cap keeps a rank that
# crashes the same way every time from looping.
if [ "$rc" -gt 128 ] && [ "$run" -lt "$max_restarts" ]; then
    requeue "the ranks ended abnormally (launcher exit $rc: a rank killed by a signal, or its node lost)"
fi
say "ranks failed with exit $rc (see $rank_logs)"
exit "$rc"
