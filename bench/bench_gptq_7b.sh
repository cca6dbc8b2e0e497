#!/usr/bin/env bash
# bench_gptq_7b.sh: `shardq run` of GPTQ W4 g128 on a Llama-2-7B-shaped model
# (random bf16 weights made on the spot: no download) with 128 x 2048
# calibration tokens, on one GPU. Prints the phase times the job logs, the
# work each phase does, and the achieved rates against the device's measured
# peaks (bench/RESULTS.md has the kernel benchmark that measured them).
#   bench/bench_gptq_7b.sh SHARDQ_BIN TOOLS_DIR WORK_DIR [LAYERS]
set -euo pipefail
BIN=$(realpath "$1"); TOOLS=$(realpath "$2"); WORK=$3; LAYERS=${4:-32}
mkdir -p "$WORK"; WORK=$(realpath "$WORK")
# Shape and calibration size; override only for a quick smoke run of this script.
H=${H:-4096} I=${I:-11008} V=${V:-32000} HEADS=${HEADS:-32} NS=${NS:-128} SEQ=${SEQ:-2048}
export H I V HEADS NS SEQ
. "$(dirname "$0")/bench_lib.sh"
MODEL=$(bench_model "$TOOLS" "$WORK" "$LAYERS")
random_ids "$WORK/calib.ids" $((NS * SEQ + 1)) 0
rm -rf "$WORK/state" "$WORK/output"
cat >"$WORK/job.json" <<JSON
{"name": "bench-gptq-7b", "model": "$MODEL",
 "data": {"calibration": "$WORK/calib.ids", "format": "token_ids", "nsamples": $NS, "seqlen": $SEQ},
 "steps": [{"gptq": {"bits": 4, "group_size": 128, "sym": true, "desc_act": false, "true_sequential": true}}],
 "state_uri": "$WORK/state", "output_uri": "$WORK/output", "parallel": {"micro_batch": 4}, "seed": 0}
JSON
start=$(now)
"$BIN" run "$WORK/job.json" 2>&1 | stamp "$start" | tee "$WORK/run.log" | grep -E "layer (1|8|16|24|32)/|phases|written|error"
total=$(since "$start")
python3 - "$WORK/run.log" "$total" "$LAYERS" "$(dirname "$0")" <<'PY'
import os, re, sys
sys.path.insert(0, sys.argv[4])
from log_timeline import loop_split
log, total, L = open(sys.argv[1]).read(), float(sys.argv[2]), int(sys.argv[3])
m = re.search(r"load ([\d.]+)s, forward ([\d.]+)s, hessian ([\d.]+)s, solve ([\d.]+)s, write ([\d.]+)s", log)
load, fwd, hes, solve, write = map(float, m.groups())
H, I = int(os.environ["H"]), int(os.environ["I"])
T, SEQ = int(os.environ["NS"]) * int(os.environ["SEQ"]), int(os.environ["SEQ"])
# Forward work per layer, as the runner does it with true_sequential: one pass of the
# layer in stages, each group's input kept (worker/group_inputs.h), so every linear
# runs once per token; attention QK^T and PV over full 2048-token windows.
linear_elems = 4 * H * H + 3 * H * I
attention = 4 * T * SEQ * H
fwd_flop = L * (2 * T * linear_elems + attention)
hes_flop = L * 2 * T * (3 * H * H + I * I)    # one full GEMM per distinct input: attn, o, mlp (h x h), down (i x i)
solve_flop = L * (3 * (2 / 3) * H ** 3 + (2 / 3) * I ** 3)  # potrf + trsm per distinct Hessian (stacked solves)
weights_bytes = L * 2 * (4 * H * H + 3 * H * I)  # bf16 read once
out_bytes = L * (4 * H * H + 3 * H * I) // 2      # 4-bit codes
print(f"\nGPTQ W4 g128, hidden {H}, intermediate {I}, {L} layers, {T} tokens: total {total:.1f} s")
print(f"{'phase':10} {'seconds':>8} {'work':>14} {'rate':>16}")
print(f"{'load':10} {load:8.2f} {weights_bytes / 1e9:11.1f} GB {weights_bytes / 1e9 / max(load, 1e-9):12.1f} GB/s")
print(f"{'forward':10} {fwd:8.2f} {fwd_flop / 1e12:9.0f} TFLOP {fwd_flop / 1e12 / max(fwd, 1e-9):10.1f} TFLOP/s")
print(f"{'hessian':10} {hes:8.2f} {hes_flop / 1e12:9.0f} TFLOP {hes_flop / 1e12 / max(hes, 1e-9):10.1f} TFLOP/s")
print(f"{'solve':10} {solve:8.2f} {solve_flop / 1e12:9.1f} TFLOP {solve_flop / 1e12 / max(solve, 1e-9):10.1f} TFLOP/s")
print(f"{'write':10} {write:8.2f} {out_bytes / 1e9:11.1f} GB {out_bytes / 1e9 / max(write, 1e-9):12.1f} GB/s")
print(f"arithmetic: {(fwd_flop + hes_flop + solve_flop) / 1e15:.2f} PFLOP in all")
split = loop_split(log, total)
if split:
    print("wall: {:.2f} s before the layer loop (start, model, data), {:.2f} s in it, {:.2f} s after it "
          "(the checkpoint's end, exit)".format(*split))
PY
