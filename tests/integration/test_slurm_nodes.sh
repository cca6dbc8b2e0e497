#!/usr/bin/env bash
# test_slurm_nodes.sh: shardq jobs across two hosts. cluster/slurm_netns.sh makes two nodes in
# network namespaces (separate network stacks and hostnames, one slurmd each, one slurmctld) that
# share the file system; a moto S3 server on the head's bridge is reachable from both. Jobs are
# submitted with `cluster/submit.sh --nodes 2` (the multi-node template), two ranks per node, Open
# MPI limited to its tcp and self transports:
# - with `srun --mpi=pmix` and with `--launcher mpirun`, in sequential and pipeline modes, the
#   ranks run on both nodes and talk over TCP between the nodes' addresses, and the output is
#   byte-identical to the same spec run by one rank on one host (README: sequential mode on any
#   rank count, pipeline mode for fixed blocks); in sequential mode node2's own interface sent at
#   least the bytes of the Hessians its ranks contributed; state and output on s3:// work the same;
# - a training job (qlora, NF4 base) with both launchers trains the adapter of one rank on one
#   host, byte for byte;
# - faults, each mid-job: node2's ranks killed (kill -9) under srun (a GPTQ job) and under mpirun (a
#   training job); node2's slurmstepd killed under srun (a training job: nothing tells srun, the
#   peer watch ends node1's ranks); node2 lost whole (every process of it SIGKILLed, then booted
#   again) under mpirun and under srun (its spool keeps the step's PMIx socket). Every time every
#   rank ends, the job requeues itself and the rerun resumes from the journal (a training job from
#   its checkpoint) to the bytes of the uninterrupted run;
# - a node that cannot reach the S3 endpoint fails the job, naming the URI, without a requeue.
# Prints TAP; skips (saying why) when the Slurm binaries or iproute2 are missing or network
# namespaces are not permitted.
set -u
# shellcheck source=tests/integration/testlib.sh
. "$(dirname "$0")/testlib.sh"
NETNS="$ROOT/cluster/slurm_netns.sh"
skip() {
    echo "ok 1 # SKIP $*"
    exit 0
}

for tool in slurmctld slurmd sbatch srun scontrol sinfo; do
    command -v "$tool" >/dev/null || skip "$tool not installed (apt-get install slurmctld slurmd slurm-client)"
done
for tool in ip nsenter unshare; do
    command -v "$tool" >/dev/null || skip "$tool not installed (apt-get install iproute2 util-linux)"
done
# What slurm_netns.sh needs of the kernel and the container: a network namespace, a bridge and a
# veth pair in it, and a UTS namespace entered from there.
probe="shardq-probe-$$"
if ! ip netns add "$probe" 2>/dev/null; then
    skip "network namespaces are not permitted here (ip netns add needs root with CAP_SYS_ADMIN and CAP_NET_ADMIN)"
fi
probe_ok=0
ip -n "$probe" link add probe-br type bridge 2>/dev/null \
    && ip -n "$probe" link add probe-a type veth peer name probe-b 2>/dev/null \
    && nsenter --net="/run/netns/$probe" unshare --uts true 2>/dev/null && probe_ok=1
ip netns del "$probe"
[ $probe_ok -eq 1 ] || skip "bridges, veth pairs or UTS namespaces are not available in a network namespace here"

WORK=$(mktemp -d)
CLUSTER="$WORK/cluster"
cleanup() { # stopping the cluster also ends what runs in its namespaces (the S3 server)
    "$NETNS" stop "$CLUSTER" >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
NET=198.18.22
export SHARDQ_NETNS_NET=$NET SHARDQ_NETNS_NODES=2 SHARDQ_SLURM_CPUS=2 SHARDQ_SLURMD_TIMEOUT=10
check_or_end "two nodes in network namespaces start (one slurmctld, a slurmd per node, both idle)" \
    "$WORK/start.log" "$NETNS" start "$CLUSTER"
export SLURM_CONF="$CLUSTER/slurm.conf"
head_ns() { "$NETNS" exec "$CLUSTER" head "$@"; }
slurm_cmd() { head_ns "$@"; } # the Slurm commands reach slurmctld from the head
net_ns_of_node() { readlink "/proc/$(cat "$CLUSTER/slurmd-$1.pid")/ns/net"; }
check "each node's slurmd has a network stack of its own" \
    bash -c "[ '$(net_ns_of_node node1)' != '$(net_ns_of_node node2)' ] && [ '$(net_ns_of_node node1)' != '$(readlink /proc/self/ns/net)' ]"

# The S3 server listens on the head's service address, which both nodes reach over the bridge.
S3_PORT=9000
S3="http://$NET.2:$S3_PORT"
export AWS_ACCESS_KEY_ID=shardq-test AWS_SECRET_ACCESS_KEY=shardq-test-secret AWS_REGION=us-east-1
export SHARDQ_S3_BACKOFF_MS=20 SHARDQ_S3_TIMEOUT_S=5
head_ns python3 "$ROOT/tests/python/moto_s3_server.py" -H "$NET.2" -p "$S3_PORT" >"$WORK/moto.log" 2>&1 &
s3() { # python statements with `s3`, a boto3 client of the server, run in the head namespace
    head_ns python3 -c "import boto3, sys
s3 = boto3.client('s3', endpoint_url='$S3', region_name='us-east-1')
$1" "${@:2}"
}
for _ in $(seq 1 100); do
    s3 "s3.list_buckets()" 2>/dev/null && break
    sleep 0.2
done

"$MAKE_MODEL" "$WORK/model" --layers 4 --hidden 64 --intermediate 128 --heads 4 --kv-heads 2 --vocab 512 --seed 3
CALIB=$(calibration_text "$WORK")
s3 "s3.create_bucket(Bucket='jobs')
for path in sys.argv[1:]:
    s3.upload_file(path, 'jobs', 'models/tiny/' + path.split('/')[-1])" "$WORK"/model/*
objects_under() { # prefix: how many objects the bucket holds under it
    s3 "print(s3.list_objects_v2(Bucket='jobs', Prefix='$1')['KeyCount'])"
}
check "the S3 server on the head holds the model" \
    test "$(objects_under models/tiny/)" = "$(find "$WORK/model" -type f | wc -l)"

write_spec() { # name mode [where: local|s3]: a GPTQ spec; pipeline mode with 4 fixed blocks
    local state="$WORK/$1/state" output="$WORK/$1/output" model="$WORK/model" parallel storage=""
    if [ "${3:-local}" = s3 ]; then # only jobs inside the cluster talk to the S3 server
        state="s3://jobs/$1/state" output="s3://jobs/$1/output" model="s3://jobs/models/tiny"
        storage="\"storage\": {\"endpoint\": \"$S3\", \"region\": \"us-east-1\", \"path_style\": true, \"max_retries\": 1},"
    fi
    parallel="\"mode\": \"$2\", \"micro_batch\": 2"
    [ "$2" = sequential ] || parallel="$parallel, \"blocks\": 4"
    cat >"$WORK/$1.json" <<EOF
{"name": "$1", "model": "$model",
 "data": {"calibration": "$CALIB", "nsamples": 8, "seqlen": 32},
 "steps": [{"gptq": {"bits": 4, "group_size": 32}}],
 "state_uri": "$state", "output_uri": "$output",
 $storage "parallel": {$parallel}, "seed": 5}
EOF
    echo "$WORK/$1.json"
}

submit() { # spec launcher: submits on both nodes, two ranks each
    head_ns "$SUBMIT" "$1" --nodes 2 --tasks-per-node 2 --launcher "$2" 2>/dev/null
}

# References: one rank on one host, outside Slurm (pipeline mode with the same 4 blocks).
mpirun -np 1 --bind-to none "$SHARDQ" run "$(write_spec ref-sequential sequential)" >"$WORK/ref-sequential.log" 2>&1
mpirun -np 1 --bind-to none "$SHARDQ" run "$(write_spec ref-pipeline pipeline)" >"$WORK/ref-pipeline.log" 2>&1
write_qlora_spec() { # name: a training job on the same model (NF4 base), a checkpoint every 2 of 6 steps
    cat >"$WORK/$1.json" <<EOF
{"name": "$1", "model": "$WORK/model", "data": {"calibration": "$CALIB", "seqlen": 24},
 "steps": [{"qlora": {"r": 4, "alpha": 8, "dropout": 0.1, "steps": 6, "batch_size": 2, "grad_accum": 4,
                      "learning_rate": 0.01, "save_every": 2}}],
 "state_uri": "$WORK/$1/state", "output_uri": "$WORK/$1/output", "seed": 11}
EOF
    echo "$WORK/$1.json"
}
mpirun -np 1 --bind-to none "$SHARDQ" run "$(write_qlora_spec ref-qlora)" >"$WORK/ref-qlora.log" 2>&1
check "single-host references complete" test -f "$WORK/ref-sequential/output/manifest.json" \
    -a -f "$WORK/ref-pipeline/output/manifest.json" -a -f "$WORK/ref-qlora/output/adapter_model.safetensors"

# Between the nodes only TCP: no shared memory transport (vader), whatever the launcher decides
# about locality; the verbose transport log names the peer node of every connection.
export OMPI_MCA_btl=tcp,self OMPI_MCA_btl_base_verbose=30

rank_logs() { # job name launcher: the folder of run 0's rank logs
    if [ "$2" = srun ]; then echo "$WORK/$1.slurm/ranks/run-0"; else echo "$WORK/$1.slurm/ranks/run-0/1"; fi
}
rank_log() { # job name launcher rank
    if [ "$2" = srun ]; then echo "$(rank_logs "$1" srun)/rank-$3.log"; else echo "$(rank_logs "$1" mpirun)/rank.$3/stderr"; fi
}

# Ranks 0,1 on node1 and 2,3 on node2 (block distribution), and they sent to each other over TCP
# between the nodes' own addresses.
ranks_spread_over_tcp() { # job name launcher
    local r0 r2
    r0=$(rank_log "$1" "$2" 0) r2=$(rank_log "$1" "$2" 2)
    grep -q '^\[node1:' "$r0" && grep -q '^\[node1:' "$(rank_log "$1" "$2" 1)" \
        && grep -q '^\[node2:' "$r2" && grep -q '^\[node2:' "$(rank_log "$1" "$2" 3)" \
        && grep -qE 'Using tcp btl for send to .* on node node2' "$r0" \
        && grep -qE 'Using tcp btl for send to .* on node node1' "$r2" \
        && grep -rqE "btl:tcp: (now connected to|connect\(\) to) $NET\.12" "$(rank_logs "$1" "$2")" \
        && ! grep -rq 'btl: vader\|btl:vader' "$(rank_logs "$1" "$2")"
}

same_as_reference() { # output folder, mode
    [ -f "$1/manifest.json" ] && diff <(digests "$WORK/ref-$2/output") <(digests "$1")
}

download() { # s3 prefix (under bucket jobs) folder
    mkdir -p "$2"
    s3 "for o in s3.list_objects_v2(Bucket='jobs', Prefix='$1/')['Contents']:
    s3.download_file('jobs', o['Key'], sys.argv[1] + '/' + o['Key'].split('/')[-1])" "$2"
}

sent_by_node2() { # bytes node2's network interface has sent (the kernel's count, /proc/net/dev)
    "$NETNS" exec "$CLUSTER" node2 sed -n 's/^ *eth0: *//p' /proc/net/dev | awk '{print $9}'
}
# Sequential mode sums every linear input's Hessian over all ranks: each sum needs node2's share,
# so node2 must send at least one copy of every Hessian of the model (4 layers; inputs of q/k/v,
# o and gate/up are 64 wide, down's 128), at 4 bytes an entry or more (int64 sums today).
HESSIAN_BYTES=$((4 * (3 * 64 * 64 + 128 * 128) * 4))

# (1) The multi-node template, both launchers, both modes; one of the four on S3.
two_node_job() { # launcher mode where
    local name="$1-$2-$3" id state output sent
    sent=$(sent_by_node2)
    id=$(submit "$(write_spec "$name" "$2" "$3")" "$1")
    state=$(wait_job "$id")
    sent=$(($(sent_by_node2) - sent))
    check "$name: 2-node job completes: $state" test "$state" = COMPLETED
    check "$name: ranks 0-1 ran on node1, 2-3 on node2, talking over TCP between the nodes" \
        ranks_spread_over_tcp "$name" "$1"
    if [ "$2" = sequential ]; then
        check "$name: node2's own interface sent at least the Hessians' $HESSIAN_BYTES bytes ($sent)" \
            test "$sent" -ge "$HESSIAN_BYTES"
    fi
    output="$WORK/$name/output"
    [ "$3" = local ] || download "$name/output" "$output"
    check "$name: output byte-identical to the single-rank run" same_as_reference "$output" "$2"
}
two_node_job srun sequential local
two_node_job srun pipeline local
two_node_job mpirun sequential local
two_node_job mpirun pipeline s3

# (1b) A training job (qlora): micro-batch j of a step runs on rank j mod 4 and the micro-batch
# gradients are added in micro-batch order on every rank (README, *Fine-tuning*), so two nodes of
# two ranks train the adapter of one rank on one host, byte for byte.
same_adapter() { # output folder
    cmp "$WORK/ref-qlora/output/adapter_model.safetensors" "$1/adapter_model.safetensors"
}
for launcher in srun mpirun; do
    name=qlora-$launcher
    id=$(submit "$(write_qlora_spec "$name")" "$launcher")
    state=$(wait_job "$id")
    check "$name: 2-node training job completes: $state" test "$state" = COMPLETED
    check "$name: ranks 0-1 ran on node1, 2-3 on node2, talking over TCP between the nodes" \
        ranks_spread_over_tcp "$name" "$launcher"
    check "$name: adapter byte-identical to the single-rank run" same_adapter "$WORK/$name/output"
done

pids_on() { # node command: the processes of that name in the node's network namespace
    local node_net p
    node_net=$(net_ns_of_node "$1")
    for p in /proc/[0-9]*; do
        [ "$(cat "$p/comm" 2>/dev/null)" = "$2" ] && [ "$(readlink "$p/ns/net" 2>/dev/null)" = "$node_net" ] \
            && echo "${p#/proc/}"
    done
}
shardq_pids_on() { # node
    pids_on "$1" shardq
}

has_progress() { # name: its journal holds a layer (GPTQ) or a training checkpoint (qlora)
    grep -qsE '"layer": *[0-9]|"train_step": *[1-9]' "$WORK/$1/state/journal.json"
}
mid_job() { # name launcher: submits its spec with each layer (training step) slowed down to 1 s;
    local id    # prints the job id once the journal holds some progress (or after 30 s)
    id=$(SHARDQ_LAYER_DELAY_MS=1000 submit "$WORK/$1.json" "$2")
    for _ in $(seq 1 300); do
        has_progress "$1" && break
        sleep 0.1
    done
    echo "$id"
}

wait_for_line() { # file extended-regex: waits until the file has a matching line; fails after 120 s
    for _ in $(seq 1 600); do
        grep -qE "$2" "$1" 2>/dev/null && return 0
        sleep 0.2
    done
    return 1
}

# The first run of a job hit by a fault ended on every rank and was requeued: by itself, or by
# Slurm where slurmctld ended the job for a lost node first (its SIGTERM then reaches the batch
# shell too). The launcher returns only once every rank of the step has ended (or, under srun, was
# given up for lost), so a rank left waiting in a collective would keep the first run from ever
# logging its requeue.
requeued_after_fault() { # name job-id fault-time
    check "$1: the first run ended on every rank and was requeued" wait_for_line "$WORK/$1.slurm/slurm-$2.log" \
        "job $2 run 0: (the ranks ended abnormally \(launcher exit [0-9]+: .*\)|ranks stopped with exit [0-9]+)(: requeueing| while Slurm requeues the job)"
    echo "# $1: run 0 had ended on every rank $(($(date +%s) - $3)) s after the fault"
}

# A resumed job: Slurm restarted it once, the second run resumed from the journal, and its output
# is byte-identical to the uninterrupted run's.
resumed_to_same_bytes() { # name job-id resume-line-regex same-output-command...
    local state log="$WORK/$1.slurm/slurm-$2.log" failed_before=$failures
    state=$(wait_job "$2")
    check "$1: the job completes: $state" test "$state" = COMPLETED
    check "$1: Slurm counts one restart" restarts_are "$2" 1 "$log"
    check "$1: the second run resumed from the journal" grep -rqsE "$3" "$WORK/$1.slurm/ranks/run-1"
    check "$1: the resumed output is byte-identical to the uninterrupted run" "${@:4}" "$WORK/$1/output"
    [ "$failures" -eq "$failed_before" ] || say_job_log "$log"
}
same_output_as() { # uninterrupted job name, output folder
    diff <(digests "$WORK/$1/output") <(digests "$2")
}
gptq_resumed='layer 1/4 replayed from the journal'
qlora_resumed='resuming after train step [1-9]'

# (2) node2's ranks killed with SIGKILL mid-job: under srun, srun --kill-on-bad-exit ends node1's
# (a GPTQ job); under mpirun, mpirun does (a training job, which resumes from its checkpoint).
kill_node2_ranks() { # name launcher
    local id pids killed_at
    id=$(mid_job "$1" "$2")
    pids=$(shardq_pids_on node2)
    check "$1: node2 runs two ranks mid-job" test "$(echo "$pids" | wc -w)" -eq 2
    killed_at=$(date +%s)
    # shellcheck disable=SC2086  # one word per pid
    kill -KILL $pids
    requeued_after_fault "$1" "$id" "$killed_at"
    echo "$id" >"$WORK/$1.id"
}
write_spec killed-srun sequential >/dev/null
kill_node2_ranks killed-srun srun
resumed_to_same_bytes killed-srun "$(cat "$WORK/killed-srun.id")" "$gptq_resumed" same_output_as srun-sequential-local
write_qlora_spec qlora-killed-mpirun >/dev/null
kill_node2_ranks qlora-killed-mpirun mpirun
resumed_to_same_bytes qlora-killed-mpirun "$(cat "$WORK/qlora-killed-mpirun.id")" "$qlora_resumed" same_adapter

# (2b) node2's slurmstepd killed mid-training under srun (its slurmd lives): node2's ranks end
# (they lose their PMIx server) but nothing tells srun. The peer watch (worker/peer_watch.h) ends
# node1's ranks, naming the lost rank; srun --wait gives up on node2's; the job requeues itself.
name=qlora-stepd-srun
write_qlora_spec $name >/dev/null
id=$(mid_job $name srun)
stepd=$(pids_on node2 slurmstepd)
check "$name: node2 runs one slurmstepd mid-job" test "$(echo "$stepd" | wc -w)" -eq 1
killed_at=$(date +%s)
kill -KILL "$stepd"
requeued_after_fault $name "$id" "$killed_at"
check "$name: a node1 rank says which rank ended without a goodbye" \
    grep -qE '\[shardq [01]/4\] error: rank [0-3] \(on node[12]\) has ended without saying goodbye' \
    "$WORK/$name.slurm/ranks/run-0/rank-0.log" "$WORK/$name.slurm/ranks/run-0/rank-1.log"
resumed_to_same_bytes $name "$id" "$qlora_resumed" same_adapter

# (2c) node2 lost whole (a power cut: slurmd, job step, mpirun's daemon or srun's step, and the
# ranks SIGKILLed): the job ends on node1 and requeues itself, slurmctld declares node2 DOWN once
# it has not answered for SlurmdTimeout (10 s here), and when node2 boots again the job resumes on
# both nodes. Under srun the crashed node keeps the step's PMIx socket in its spool, as a real
# node's disk does across a reboot: the rerun must launch its ranks under another step id.
node_state() { # node
    slurm_cmd sinfo -h -N -n "$1" -o %t
}
node_is_down() { # node
    [[ $(node_state "$1") == down* ]]
}
crash_node2() { # name launcher
    local id crashed_at
    write_spec "$1" sequential >/dev/null
    id=$(mid_job "$1" "$2")
    crashed_at=$(date +%s)
    "$NETNS" crash "$CLUSTER" node2
    requeued_after_fault "$1" "$id" "$crashed_at"
    for _ in $(seq 1 600); do
        node_is_down node2 && break
        sleep 0.2
    done
    check "$1: slurmctld declared node2 down: $(node_state node2)" node_is_down node2
    if [ "$2" = srun ]; then
        check "$1: node2's spool keeps the crashed step's PMIx socket" \
            test -S "$CLUSTER/spool/node2/stepd.slurm.pmix.$id.0"
    fi
    "$NETNS" boot "$CLUSTER" node2
    resumed_to_same_bytes "$1" "$id" "$gptq_resumed" same_output_as "$2-sequential-local"
}
crash_node2 crashed-mpirun mpirun
crash_node2 crashed-srun srun

check "no shardq process outlives its job on either node" \
    test -z "$(shardq_pids_on node1)$(shardq_pids_on node2)"

# (3) node2 cannot reach the S3 endpoint (the head's service address is unreachable from it, the
# controller's is not): the job fails, naming the URI, and is not requeued.
"$NETNS" exec "$CLUSTER" node2 ip route add unreachable "$NET.2/32"
spec=$(write_spec s3-unreachable sequential s3)
id=$(submit "$spec" srun)
state=$(wait_job "$id")
"$NETNS" exec "$CLUSTER" node2 ip route del unreachable "$NET.2/32"
check "s3-unreachable: the job fails: $state" test "$state" = FAILED
ranks_run0="$WORK/s3-unreachable.slurm/ranks/run-0"
# The first node2 rank to fail aborts the job, so its partner may be ended before it says anything.
check "s3-unreachable: a node2 rank names the s3:// URI it could not reach" \
    grep -qE "error: .*s3://jobs/(models/tiny|s3-unreachable)" "$ranks_run0/rank-2.log" "$ranks_run0/rank-3.log"
check "s3-unreachable: a node2 rank exited with an error, and Slurm ended node1's ranks" \
    bash -c "grep -qE 'node2: tasks? [0-9-]+: Exited with exit code 1' '$WORK/s3-unreachable.slurm/slurm-$id.log' \
             && grep -qE 'node1: tasks? 0-1: (Killed|Terminated|Exited)' '$WORK/s3-unreachable.slurm/slurm-$id.log'"
grep -hE '^srun: error|\] error:' "$WORK/s3-unreachable.slurm/slurm-$id.log" "$ranks_run0"/rank-*.log | head -n 6 | sed 's/^/# /'
check "s3-unreachable: not requeued" restarts_are "$id" 0 "$WORK/s3-unreachable.slurm/slurm-$id.log"
