#!/usr/bin/env bash
# testlib.sh: what the shell integration tests share (sourced, not run): where the binaries are,
# TAP output, calibration text, output digests, and waiting for Slurm jobs. A test that talks to
# its Slurm through a wrapper (a namespace) redefines slurm_cmd.
# shellcheck disable=SC2034  # the paths are for the tests that source this file
ROOT="${SHARDQ_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
SHARDQ="$ROOT/shardq"
MAKE_MODEL="$ROOT/build/tools/make_tiny_model"
SUBMIT="$ROOT/cluster/submit.sh"
n=0
failures=0

check() { # description, then a command whose success is the test
    local what=$1
    shift
    n=$((n + 1))
    if "$@"; then
        echo "ok $n - $what"
    else
        echo "not ok $n - $what"
        failures=$((failures + 1))
    fi
}

say_job_log() { # job log: what each run of the job said (shardq_job.sh's lines, srun's errors)
    grep -h '^\[shardq-slurm\|^srun: error' "$1" 2>/dev/null | sed 's/^/# /'
}

check_or_end() { # description log command...: runs the command (output to log) as a check; when
    local what=$1 log=$2 rc # it fails, shows the log and ends the test, as nothing after can pass
    shift 2
    "$@" >"$log" 2>&1
    rc=$?
    check "$what" test $rc -eq 0
    [ $rc -eq 0 ] && return 0
    sed 's/^/# /' "$log"
    exit 1
}

calibration_text() { # folder: prints the calibration text's path (WikiText-2 or a generated stand-in)
    local text="$ROOT/../shared/data/wikitext-2/valid.txt"
    if [ ! -f "$text" ]; then # as tests/python/shardq_testlib.py does
        text="$1/calibration.txt"
        awk 'BEGIN { srand(7); split("the of model layer quantized weights and a in is token data", w, " ")
                     for (l = 0; l < 4000; l++) {
                         s = ""
                         for (i = 0; i < 12; i++) s = s w[int(rand() * 12) + 1] " "
                         print s
                     } }' >"$text"
    fi
    echo "$text"
}

digests() { # output folder: one "sha256  name" line per file
    (cd "$1" && sha256sum -- *)
}

slurm_cmd() { # a Slurm client command
    "$@"
}

job_state() { # job id
    slurm_cmd scontrol -o show job "$1" | grep -o 'JobState=[A-Z_]*' | cut -d= -f2
}

restarts_are() { # job id, count, job log: Slurm has restarted the job that many times
    slurm_cmd scontrol -o show job "$1" | grep -q " Restarts=$2 " && return 0
    # For the one reading the failure: what Slurm says, and what each run of the job said.
    slurm_cmd scontrol -o show job "$1" | grep -o ' Restarts=[0-9]*\| ExitCode=[0-9:]*' | sed 's/^/#/'
    say_job_log "$3"
    return 1
}

wait_job() { # job id: waits until the job has ended for good, prints its final state
    local state=""
    [ -n "$1" ] || { echo not-submitted; return; }
    for _ in $(seq 1 600); do
        state=$(job_state "$1")
        case $state in
        COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE) break ;;
        esac
        sleep 0.2
    done
    echo "$state"
}
