#!/usr/bin/env bash
# bench_vs_peers.sh: shardq's GPTQ and llm-compressor's GPTQ on the same Llama-2-7B-shaped
# model and the same calibration ids, one after the other on one GPU, in one run, then
# `shardq eval` against transformers (bf16, sdpa) on the same model. Prints both phase
# tables and the ratios (bench/RESULTS.md keeps them). The peers need llm-compressor's
# wheels on PYTHONPATH (bench/RESULTS.md says which).
#   bench/bench_vs_peers.sh SHARDQ_BIN TOOLS_DIR WORK_DIR [LAYERS] [EVAL_WINDOWS]
set -euo pipefail
BIN=$(realpath "$1"); TOOLS=$(realpath "$2"); WORK=$3; LAYERS=${4:-32}; EVAL_WINDOWS=${5:-32}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$WORK"; WORK=$(realpath "$WORK")
"$HERE/bench_gptq_7b.sh" "$BIN" "$TOOLS" "$WORK" "$LAYERS" | tee "$WORK/shardq.txt"
MODEL=$(ls -d "$WORK"/llama-*-l"$LAYERS")
PYTHONUNBUFFERED=1 python3 "$HERE/peers/llmcompressor_gptq.py" "$MODEL" "$WORK/calib.ids" "${NS:-128}" "${SEQ:-2048}" \
    "$WORK/peer.json" 2>"$WORK/peer.log" || { tail -30 "$WORK/peer.log"; exit 1; }
start=$(date +%s.%N)
"$BIN" eval --model "$MODEL" --data-ids "$WORK/calib.ids" --seqlen "${SEQ:-2048}" --max-windows "$EVAL_WINDOWS" \
    --out "$WORK/eval.json" >"$WORK/eval.log" 2>&1 || { tail -5 "$WORK/eval.log"; exit 1; }
eval_s=$(python3 -c "print($(date +%s.%N) - $start)")
PYTHONUNBUFFERED=1 python3 "$HERE/peers/transformers_eval.py" "$MODEL" "$WORK/calib.ids" "${SEQ:-2048}" "$EVAL_WINDOWS" \
    "$WORK/hf_eval.json" 2>"$WORK/hf_eval.log" || { tail -30 "$WORK/hf_eval.log"; exit 1; }
python3 - "$WORK" "$eval_s" <<'PY'
import json, re, sys
work, eval_s = sys.argv[1], float(sys.argv[2])
text = open(f"{work}/shardq.txt").read()
log = open(f"{work}/run.log").read()
total = float(re.search(r"total ([\d.]+) s", text).group(1))
m = re.search(r"load ([\d.]+)s, forward ([\d.]+)s, hessian ([\d.]+)s, solve ([\d.]+)s, write ([\d.]+)s", log)
ours = dict(zip(["load", "forward", "hessian", "solve", "write"], map(float, m.groups())))
ours["other (start, assembly)"] = total - sum(ours.values())
ours["total"] = total
peer = json.load(open(f"{work}/peer.json"))
rows = ["imports", "load", "forward", "hessian", "solve", "write", "other (start, assembly)", "total"]
print(f"\n{'phase':26} {'shardq s':>9} {'llm-compressor s':>17}")
for r in rows:
    a, b = ours.get(r), peer.get(r)
    print(f"{r:26} {a if a is not None else float('nan'):9.2f} {b if b is not None else float('nan'):17.2f}")
calib_ours = ours["forward"] + ours["hessian"] + ours["solve"]
calib_peer = peer["forward"] + peer["hessian"] + peer["solve"]
print(f"ratio end to end (llm-compressor total / shardq total): {peer['total'] / total:.2f}x")
print(f"ratio of quantization alone (forward + hessian + solve): {calib_peer / calib_ours:.2f}x")
ev, hf = json.load(open(f"{work}/eval.json")), json.load(open(f"{work}/hf_eval.json"))
print(f"eval: shardq {ev['tokens']} tokens in {eval_s:.2f} s ({ev['tokens'] / eval_s:.0f} tok/s end to end), ppl {ev['ppl']:.4f}")
print(f"eval: transformers {hf['tokens']} tokens, load {hf['load_s']:.2f} s + forward {hf['forward_s']:.2f} s "
      f"({hf['tokens_per_s_total']:.0f} tok/s end to end, {hf['tokens_per_s_forward']:.0f} forward alone), ppl {hf['ppl']:.4f}")
print(f"eval ratio end to end (shardq tok/s / transformers tok/s): {ev['tokens'] / eval_s / hf['tokens_per_s_total']:.2f}x")
PY
