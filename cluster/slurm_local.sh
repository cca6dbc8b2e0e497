#!/usr/bin/env bash
# slurm_local.sh: a real single-node Slurm (Debian 12's slurm-wlm: slurmctld + slurmd) on this
# machine, for the integration tests and for trying cluster/ locally. Everything it writes — config,
# state, spool, logs, pid files — lives under one directory, so several instances (on different
# ports) can coexist and `stop` leaves the machine as it was. Made for containers and CI runners:
# it runs as root, uses no cgroups (proctrack/linuxproc, task/none) and no munge daemon
# (auth/none, cred/none — acceptable on a one-machine cluster that listens on loopback only).
#
#   cluster/slurm_local.sh start|stop|status [DIR]
#
# DIR defaults to $SHARDQ_SLURM_DIR, else /tmp/shardq-slurm. After `start`, point the Slurm
# commands at it with:  export SLURM_CONF=DIR/slurm.conf
# Environment: SHARDQ_SLURM_PORT (slurmctld's port, default 6817; slurmd uses the next one),
# SHARDQ_SLURM_CPUS (CPUs the node offers, default nproc; more than the machine has is allowed so
# a test can run more ranks than cores), SHARDQ_SLURM_GPUS (GPUs offered as gres gpu, default the
# number of /dev/nvidiaN devices).
set -euo pipefail

usage() { echo "usage: $0 start|stop|status [DIR]" >&2; exit 2; }
[ $# -ge 1 ] || usage
action=$1
dir=${2:-${SHARDQ_SLURM_DIR:-/tmp/shardq-slurm}}
conf="$dir/slurm.conf"
export SLURM_CONF="$conf"

pid_alive() { # pidfile
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

write_config() {
    local port=${SHARDQ_SLURM_PORT:-6817}
    local cpus=${SHARDQ_SLURM_CPUS:-$(nproc)}
    local gpus=${SHARDQ_SLURM_GPUS:-$(find /dev -maxdepth 1 -regex '/dev/nvidia[0-9]+' 2>/dev/null | wc -l)}
    local host gres_types="" gres_node=""
    host=$(hostname -s)
    mkdir -p "$dir/state" "$dir/spool/$host" "$dir/log"
    if [ "$gpus" -gt 0 ]; then
        gres_types="GresTypes=gpu"
        gres_node="Gres=gpu:$gpus"
        printf 'AutoDetect=off\nName=gpu File=/dev/nvidia[0-%d]\n' $((gpus - 1)) >"$dir/gres.conf"
    fi
    cat >"$conf" <<EOF
# Written by cluster/slurm_local.sh: a single-node Slurm on loopback, everything under $dir.
ClusterName=shardq-local
SlurmctldHost=$host(127.0.0.1)
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
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
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
$gres_types
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus $gres_node State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}

start() {
    if pid_alive "$dir/slurmctld.pid" || pid_alive "$dir/slurmd.pid"; then
        echo "slurm_local: already running in $dir" >&2
        exit 1
    fi
    if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null; then
        echo "slurm_local: slurmctld/slurmd/sbatch not found (apt-get install slurmctld slurmd slurm-client)" >&2
        exit 1
    fi
    write_config
    slurmctld -c -i   # -c: a fresh controller state each start (no jobs left from an earlier run)
    slurmd
    local state=""
    for _ in $(seq 1 150); do
        state=$(sinfo -h -o %t 2>/dev/null || true)
        [ "$state" = idle ] && break
        sleep 0.2
    done
    if [ "$state" != idle ]; then
        echo "slurm_local: the node did not become idle (state '${state}'); logs in $dir/log" >&2
        tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
        stop
        exit 1
    fi
    echo "slurm_local: running in $dir; use it with:"
    echo "export SLURM_CONF=$conf"
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

stop() {
    if pid_alive "$dir/slurmctld.pid"; then
        # Cancel every job first: job steps run under slurmstepd, which outlives slurmd.
        local jobs
        mapfile -t jobs < <(squeue -h -o %A 2>/dev/null || true)
        if [ ${#jobs[@]} -gt 0 ]; then
            scancel --full "${jobs[@]}" 2>/dev/null || true
            for _ in $(seq 1 50); do
                [ -z "$(squeue -h -o %A -t running,completing 2>/dev/null)" ] && break
                sleep 0.2
            done
        fi
    fi
    stop_daemon "$dir/slurmd.pid"
    stop_daemon "$dir/slurmctld.pid"
    echo "slurm_local: stopped ($dir kept for its logs)"
}

daemon_status() { # name
    if pid_alive "$dir/$1.pid"; then
        echo "$1: running (pid $(cat "$dir/$1.pid"))"
    else
        echo "$1: stopped"
        return 1
    fi
}

status() {
    local up=0
    daemon_status slurmctld || up=1
    daemon_status slurmd || up=1
    if [ $up -eq 0 ]; then
        sinfo
        squeue
    fi
    return $up
}

case $action in
start) start ;;
stop) stop ;;
status) status ;;
*) usage ;;
esac
