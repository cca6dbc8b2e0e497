#!/usr/bin/env bash
# slurm_netns.sh: a real multi-node Slurm on this machine. Each node is a network namespace (its
# own network stack, its own hostname) joined to the others by veth pairs on a bridge, and runs its
# own slurmd; one slurmctld runs in a "head" namespace on the same bridge. Ranks on different nodes
# can reach each other only over TCP on that bridge, as on separate machines, while the file system
# is shared (the jobs' state and output can live on it). Made for the integration tests and for
# trying multi-node jobs without a cluster; root, no munge, no cgroups, as cluster/slurm_local.sh.
#
#   cluster/slurm_netns.sh start|stop|status [DIR]
#   cluster/slurm_netns.sh exec DIR head|NODE COMMAND...    run COMMAND in that namespace
#   cluster/slurm_netns.sh crash DIR NODE    SIGKILL all of NODE (slurmd, steps, ranks): a power cut
#   cluster/slurm_netns.sh boot DIR NODE     start NODE's slurmd again, as after a reboot
#
# DIR defaults to $SHARDQ_SLURM_DIR, else /tmp/shardq-slurm-netns; everything the cluster writes
# (config, state, spool, per-node temporary directories, logs, pid files) lives under it, and the
# namespaces are named after it, so several instances can coexist (their addresses never meet:
# each has its own bridge). The Slurm commands (sbatch, squeue, ...) reach slurmctld from the head
# namespace:  cluster/slurm_netns.sh exec DIR head sbatch ...  with SLURM_CONF=DIR/slurm.conf.
#
# Addresses are NET.1 (slurmctld) and NET.2 (free for a service both nodes use, e.g. an S3
# server) on the head, NET.11, NET.12, ... on the nodes node1, node2, ...; nothing routes out of
# the bridge. Environment: SHARDQ_NETNS_NODES (default 2), SHARDQ_NETNS_NET (the first three
# octets of a /24, default 198.18.22: RFC 2544's benchmarking range), SHARDQ_SLURM_CPUS (CPUs each
# node offers, default nproc), SHARDQ_SLURM_PORT (slurmctld's port, default 6817),
# SHARDQ_SLURMD_TIMEOUT (seconds before slurmctld declares a silent node DOWN, default 300).
set -euo pipefail

usage() {
    echo "usage: $0 start|stop|status [DIR]" >&2
    echo "       $0 exec DIR head|NODE COMMAND..." >&2
    echo "       $0 crash|boot DIR NODE" >&2
    exit 2
}
[ $# -ge 1 ] || usage
action=$1
if [ "$action" = exec ]; then
    [ $# -ge 4 ] || usage
    dir=$2
else
    dir=${2:-${SHARDQ_SLURM_DIR:-/tmp/shardq-slurm-netns}}
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
conf="$dir/slurm.conf"
export SLURM_CONF="$conf"
# shellcheck source=cluster/slurm_common.sh
. "$(dirname "$0")/slurm_common.sh"

# Namespace names are global on the machine: derive them from DIR.
prefix="shardq-$(printf '%s' "$dir" | sha256sum | cut -c1-8)"
netns_of() { # head|NODE
    echo "$prefix-$1"
}

in_netns() { # head|NODE COMMAND...: only the network namespace changes, /sys and / stay shared
    local ns
    ns=$(netns_of "$1")
    shift
    nsenter --net="/run/netns/$ns" "$@"
}

# A daemon in a namespace, with its own hostname (a UTS namespace), as on a machine of its own:
# Slurm and Open MPI tell nodes apart by hostname.
start_daemon_as() { # head|NODE hostname COMMAND...
    local where=$1 name=$2
    shift 2
    # shellcheck disable=SC2016  # expanded by the inner sh
    in_netns "$where" unshare --uts sh -c 'hostname "$1" && shift && exec "$@"' sh "$name" "$@"
}

# The node list is fixed at start (SHARDQ_NETNS_NODES) and kept in DIR/nodes for the other actions.
node_names() {
    if [ "$action" = start ]; then
        seq -f 'node%g' 1 "${SHARDQ_NETNS_NODES:-2}"
    elif [ -f "$dir/nodes" ]; then
        cat "$dir/nodes"
    fi
}

make_network() { # net: the bridge in the head namespace, one veth pair per node
    local net=$1 ns i=11 node
    for ns in head $(node_names); do
        ip netns add "$(netns_of "$ns")"
        # IPv4 only: the nodes' only addresses are the ones below (no IPv6 link-local ones).
        # shellcheck disable=SC2016  # expanded by the inner sh
        in_netns "$ns" sh -c 'for f in /proc/sys/net/ipv6/conf/all/disable_ipv6 /proc/sys/net/ipv6/conf/default/disable_ipv6; do
                                  [ ! -e "$f" ] || echo 1 >"$f"; done'
        ip -n "$(netns_of "$ns")" link set lo up
    done
    ns=$(netns_of head)
    ip -n "$ns" link add br0 type bridge
    ip -n "$ns" addr add "$net.1/24" dev br0
    ip -n "$ns" addr add "$net.2/24" dev br0
    ip -n "$ns" link set br0 up
    for node in $(node_names); do
        ip link add name eth0 netns "$(netns_of "$node")" type veth peer name "$node" netns "$ns"
        ip -n "$ns" link set "$node" master br0 up
        ip -n "$(netns_of "$node")" addr add "$net.$i/24" dev eth0
        ip -n "$(netns_of "$node")" link set eth0 up
        i=$((i + 1))
    done
}

write_config() { # net
    local net=$1 cpus=${SHARDQ_SLURM_CPUS:-$(nproc)} i=11 node nodes
    nodes=$(node_names | paste -sd,)
    common_config "$dir" shardq-netns head "$net.1" "${SHARDQ_SLURM_PORT:-6817}" >"$conf"
    # Nodes share the file system: each needs its own temporary directory (Slurm's PMIx plugin
    # keeps a per-step directory there whose name is the same on every node).
    echo "TmpFS=$dir/tmp/%n" >>"$conf"
    echo "SlurmdTimeout=${SHARDQ_SLURMD_TIMEOUT:-300}" >>"$conf"
    for node in $(node_names); do
        mkdir -p "$dir/spool/$node" "$dir/tmp/$node"
        echo "NodeName=$node NodeAddr=$net.$i CPUs=$cpus State=UNKNOWN" >>"$conf"
        i=$((i + 1))
    done
    echo "PartitionName=nodes Nodes=$nodes Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO" >>"$conf"
}

start() {
    local net=${SHARDQ_NETNS_NET:-198.18.22} node
    [[ $net =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "slurm_netns: SHARDQ_NETNS_NET must be three octets, not '$net'" >&2; exit 2; }
    if [ -e "/run/netns/$(netns_of head)" ]; then
        echo "slurm_netns: already running in $dir (namespaces $prefix-*)" >&2
        exit 1
    fi
    require_slurm_binaries
    for tool in ip nsenter unshare; do
        command -v "$tool" >/dev/null || { echo "slurm_netns: $tool not found (apt-get install iproute2 util-linux)" >&2; exit 1; }
    done
    mkdir -p "$dir/state" "$dir/log"
    node_names >"$dir/nodes"
    write_config "$net"
    if ! make_network "$net"; then
        echo "slurm_netns: could not make the network namespaces (needs root with CAP_SYS_ADMIN and CAP_NET_ADMIN)" >&2
        stop
        exit 1
    fi
    start_daemon_as head head slurmctld -c -i # -c: a fresh controller state each start
    for node in $(node_names); do
        start_daemon_as "$node" "$node" slurmd -N "$node"
    done
    if ! in_netns head bash -c ". '$(dirname "$0")/slurm_common.sh' && wait_nodes_idle $(node_names | wc -l)"; then
        echo "slurm_netns: the nodes did not become idle; logs in $dir/log" >&2
        tail -n 20 "$dir"/log/*.log >&2 || true
        stop
        exit 1
    fi
    echo "slurm_netns: $(node_names | paste -sd' ') running in $dir; use it with:"
    echo "export SLURM_CONF=$conf; $0 exec $dir head sinfo"
}

stop() {
    local node ns pid
    if pid_alive "$dir/slurmctld.pid"; then
        in_netns head bash -c ". '$(dirname "$0")/slurm_common.sh' && cancel_all_jobs"
    fi
    for node in $(node_names); do stop_daemon "$dir/slurmd-$node.pid"; done
    stop_daemon "$dir/slurmctld.pid"
    # Whatever else still runs in the namespaces (a job step past its slurmd, a test's server)
    # was started into them for this cluster: end it, then remove the namespaces (and with them
    # the bridge and the veth pairs).
    for node in head $(node_names); do
        ns=$(netns_of "$node")
        [ -e "/run/netns/$ns" ] || continue
        for pid in $(ip netns pids "$ns"); do kill -KILL "$pid" 2>/dev/null || true; done
        ip netns del "$ns"
    done
    echo "slurm_netns: stopped ($dir kept for its logs)"
}

crash() { # node: SIGKILL every process in its namespace (slurmd, job steps, ranks): a power cut
    local pid
    for pid in $(ip netns pids "$(netns_of "$1")"); do kill -KILL "$pid" 2>/dev/null || true; done
}

boot() { # node: its slurmd again, with an empty temporary directory, as after a reboot
    pid_alive "$dir/slurmd-$1.pid" && { echo "slurm_netns: $1 is running" >&2; exit 1; }
    rm -rf "${dir:?}/tmp/$1" && mkdir -p "$dir/tmp/$1"
    start_daemon_as "$1" "$1" slurmd -N "$1"
}

status() {
    local up=0 node
    daemon_status slurmctld "$dir/slurmctld.pid" || up=1
    for node in $(node_names); do daemon_status "slurmd $node" "$dir/slurmd-$node.pid" || up=1; done
    if [ $up -eq 0 ]; then
        in_netns head sinfo
        in_netns head squeue
    fi
    return $up
}

case $action in
start) start ;;
stop) stop ;;
status) status ;;
exec) shift 2 && in_netns "$@" ;;
crash | boot)
    node_names | grep -qx "${3:-}" || usage
    "$action" "$3"
    ;;
*) usage ;;
esac
