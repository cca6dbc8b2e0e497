#!/usr/bin/env bash
# submit.sh: fills a cluster/sbatch template for one shardq job spec and submits it with sbatch.
# --nodes 1 takes single_node.sbatch, more take multi_node.sbatch; one rank per GPU (or
# --tasks-per-node ranks on the CPU backend). Prints the job id on stdout.
#
#   cluster/submit.sh SPEC.json | --sweep SWEEP.json [--nodes N] [--gpus-per-node G] [--tasks-per-node T]
#       [--launcher srun|mpirun] [--time D-HH:MM:SS] [--signal-lead SECONDS] [--job-name NAME]
#       [--log-dir DIR] [--dry-run] [-- EXTRA SBATCH OPTIONS...]
#
# --sweep submits a job array with one element per point of the sweep (`shardq sweep --dry-run`
# validates every point first); element N runs `shardq sweep SWEEP.json --point N` with the
# options above, and each finished point appends its record to the sweep's results.jsonl.
#
# The filled script is kept as LOG_DIR/job.sbatch; --dry-run prints it and submits nothing.
# Options after `--` go to sbatch and override the template's #SBATCH lines (--partition,
# --account, --qos, ...). Defaults: 1 node, no GPUs, 1 task per node, srun, 24 hours, SIGUSR1
# 300 s before the limit (it must exceed the slowest layer, so the ranks reach a layer boundary),
# logs in SPEC's folder under NAME.slurm/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

usage() {
    sed -n '6,9p' "$0" | sed 's/^# *//' >&2
    exit 2
}
die() { echo "submit.sh: $*" >&2; exit 2; }

[ $# -ge 1 ] || usage
case $1 in -h | --help) usage ;; esac
sweep=0
if [ "$1" = --sweep ]; then
    [ $# -ge 2 ] || usage
    sweep=1
    shift
fi
spec=$1
shift
nodes=1 gpus=0 tasks="" launcher=srun time_limit=24:00:00 lead=300 name="" log_dir="" dry_run=0
while [ $# -gt 0 ]; do
    case $1 in
    --nodes) nodes=${2:?}; shift 2 ;;
    --gpus-per-node) gpus=${2:?}; shift 2 ;;
    --tasks-per-node) tasks=${2:?}; shift 2 ;;
    --launcher) launcher=${2:?}; shift 2 ;;
    --time) time_limit=${2:?}; shift 2 ;;
    --signal-lead) lead=${2:?}; shift 2 ;;
    --job-name) name=${2:?}; shift 2 ;;
    --log-dir) log_dir=${2:?}; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    --) shift; break ;;
    *) die "unknown option '$1'" ;;
    esac
done

[ -f "$spec" ] || die "no spec file '$spec'"
spec=$(cd "$(dirname "$spec")" && pwd)/$(basename "$spec")
number() { [[ $2 =~ ^[0-9]+$ ]] || die "$1 must be a number, not '$2'"; }
number --nodes "$nodes"
number --gpus-per-node "$gpus"
number --signal-lead "$lead"
[ "$nodes" -ge 1 ] || die "--nodes must be at least 1"
if [ "$gpus" -gt 0 ]; then
    [ -z "$tasks" ] || [ "$tasks" = "$gpus" ] || die "one rank per GPU: --tasks-per-node must equal --gpus-per-node"
    tasks=$gpus
fi
tasks=${tasks:-1}
[[ $tasks =~ ^[1-9][0-9]*$ ]] || die "--tasks-per-node must be a positive number, not '$tasks'"
case $launcher in srun | mpirun) ;; *) die "--launcher must be srun or mpirun, not '$launcher'" ;; esac
name=${name:-shardq-$(basename "$spec" .json)}
log_dir=${log_dir:-$(dirname "$spec")/$(basename "$spec" .json).slurm}
mkdir -p "$log_dir"
log_dir=$(cd "$log_dir" && pwd)
# Values land in #SBATCH lines and shell words unquoted: keep them to plain path characters.
for v in "$spec" "$log_dir" "$root" "$name" "$time_limit"; do
    [[ $v =~ ^[A-Za-z0-9._/+:@=,~-]+$ ]] || die "'$v' has a space or a shell/Slurm special character"
done

template=$root/cluster/sbatch/single_node.sbatch
[ "$nodes" -eq 1 ] || template=$root/cluster/sbatch/multi_node.sbatch
array_directive="# one job, not a sweep"
if [ "$sweep" -eq 1 ]; then
    listing=$("$root/shardq" sweep "$spec" --dry-run) || die "the sweep $spec is invalid (above)"
    points=$(grep -vc '^#' <<<"$listing")
    array_directive="#SBATCH --array=0-$((points - 1))"
fi
gpu_directive="# no GPUs requested: the CPU backend, --tasks-per-node ranks per node"
[ "$gpus" -eq 0 ] || gpu_directive="#SBATCH --gpus-per-node=$gpus"
script=$log_dir/job.sbatch
sed -e "s|__JOB_NAME__|$name|g" -e "s|__NODES__|$nodes|g" -e "s|__TASKS_PER_NODE__|$tasks|g" \
    -e "s|__GPU_DIRECTIVE__|$gpu_directive|g" -e "s|__ARRAY_DIRECTIVE__|$array_directive|g" \
    -e "s|__SWEEP__|$sweep|g" -e "s|__TIME__|$time_limit|g" \
    -e "s|__SIGNAL_LEAD__|$lead|g" -e "s|__LOG_DIR__|$log_dir|g" -e "s|__SHARDQ_BIN__|$root/shardq|g" \
    -e "s|__SPEC__|$spec|g" -e "s|__LAUNCHER__|$launcher|g" -e "s|__SHARDQ_ROOT__|$root|g" \
    "$template" >"$script"
if grep -q '__[A-Z_]*__' "$script"; then
    die "$template has a field submit.sh does not fill: $(grep -o '__[A-Z_]*__' "$script" | head -1)"
fi

if [ "$dry_run" -eq 1 ]; then
    cat "$script"
    exit 0
fi
job_id=$(sbatch --parsable "$@" "$script")
job_id=${job_id%%;*}
echo "submit.sh: job $job_id; log $log_dir/slurm-$job_id.log, ranks under $log_dir/ranks/" >&2
echo "$job_id"
