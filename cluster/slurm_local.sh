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

# shellcheck source=cluster/slurm_common.sh
. "$(dirname "$0")/slurm_common.sh"
host=$(hostname -s)
slurmd_pid="$dir/slurmd-$host.pid"

write_config() {
    local port=${SHARDQ_SLURM_PORT:-6817}
    local cpus=${SHARDQ_SLURM_CPUS:-$(nproc)}
    local gpus=${SHARDQ_SLURM_GPUS:-$(find /dev -maxdepth 1 -regex '/dev/nvidia[0-9]+' 2>/dev/null | wc -l)}
    local gres_node=""
    mkdir -p "$dir/state" "$dir/spool/$host" "$dir/log"
    common_config "$dir" shardq-local "$host" 127.0.0.1 "$port" >"$conf"
    if [ "$gpus" -gt 0 ]; then
        gres_node="Gres=gpu:$gpus"
        echo GresTypes=gpu >>"$conf"
        printf 'AutoDetect=off\nName=gpu File=/dev/nvidia[0-%d]\n' $((gpus - 1)) >"$dir/gres.conf"
    fi
    cat >>"$conf" <<EOF
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus $gres_node State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}

start() {
    if pid_alive "$dir/slurmctld.pid" || pid_alive "$slurmd_pid"; then
        echo "slurm_local: already running in $dir" >&2
        exit 1
    fi
    require_slurm_binaries
    write_config
    slurmctld -c -i   # -c: a fresh controller state each start (no jobs left from an earlier run)
    slurmd
    if ! wait_nodes_idle 1; then
        echo "slurm_local: the node did not become idle; logs in $dir/log" >&2
        tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd-$host.log" >&2 || true
        stop
        exit 1
    fi
    echo "slurm_local: running in $dir; use it with:"
    echo "export SLURM_CONF=$conf"
}

stop() {
    if pid_alive "$dir/slurmctld.pid"; then
        cancel_all_jobs
    fi
    stop_daemon "$slurmd_pid"
    stop_daemon "$dir/slurmctld.pid"
    echo "slurm_local: stopped ($dir kept for its logs)"
}

status() {
    local up=0
    daemon_status slurmctld "$dir/slurmctld.pid" || up=1
    daemon_status slurmd "$slurmd_pid" || up=1
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
