#!/usr/bin/env bash
# slurm_common.sh: what the two local Slurm setups share (sourced by slurm_local.sh, one node on
# loopback, and slurm_netns.sh, several nodes in network namespaces): the slurm.conf lines that do
# not depend on the nodes, and checking, waiting for and stopping the daemons. Both run as root
# with no munge daemon (auth/none, cred/none) and no cgroups (proctrack/linuxproc, task/none).

pid_alive() { # pidfile
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

require_slurm_binaries() {
    if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null; then
        echo "$(basename "$0"): slurmctld/slurmd/sbatch not found (apt-get install slurmctld slurmd slurm-client)" >&2
        exit 1
    fi
}

# The cluster-wide part of slurm.conf on stdout; the caller appends its node and partition lines.
# Per-node paths carry %n (the node name), so several slurmd can share DIR.
common_config() { # dir cluster-name controller-host controller-addr port
    local dir=$1 cluster=$2 host=$3 addr=$4 port=$5
    cat <<EOF
# Written by cluster/$(basename "$0"): everything under $dir.
ClusterName=$cluster
SlurmctldHost=$host($addr)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
# Job step credentials live this long, and a requeued job waits this long before it starts again.
AuthInfo=cred_expire=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
SlurmdParameters=config_overrides
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=600
MailProg=/bin/true
EOF
}

wait_nodes_idle() { # count: waits until sinfo shows that many idle nodes; fails if they never do
    local idle=""
    for _ in $(seq 1 150); do
        idle=$(sinfo -h -N -t idle -o %N 2>/dev/null | sort -u | wc -l)
        [ "$idle" -eq "$1" ] && return 0
        sleep 0.2
    done
    return 1
}

cancel_all_jobs() { # and wait for them to end: job steps run under slurmstepd, which outlives slurmd
    local jobs
    mapfile -t jobs < <(squeue -h -o %A 2>/dev/null || true)
    [ ${#jobs[@]} -gt 0 ] || return 0
    scancel --full "${jobs[@]}" 2>/dev/null || true
    for _ in $(seq 1 50); do
        [ -z "$(squeue -h -o %A -t running,completing 2>/dev/null)" ] && break
        sleep 0.2
    done
}

stop_daemon() { # pidfile
    pid_alive "$1" || return 0
    local pid
    pid=$(cat "$1")
    kill -TERM "$pid"
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
}

daemon_status() { # name pidfile
    if pid_alive "$2"; then
        echo "$1: running (pid $(cat "$2"))"
    else
        echo "$1: stopped"
        return 1
    fi
}
