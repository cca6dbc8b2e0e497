# bench_lib.sh: what the 7B-shaped benchmarks share (sourced, not run): timers, log stamps, the
# Llama-2-7B-shaped model with random bf16 weights made on the spot (no download),
# and files of random token ids. The shape comes from H I V HEADS in the environment.

now() { date +%s.%N; }
since() { python3 -c "print(f'{$(now) - $1:.1f}')"; }

# stamp START: each line of stdin prefixed with the seconds since START (bench/log_timeline.py reads them).
stamp() { python3 -uc 'import sys, time
for line in sys.stdin: sys.stdout.write(f"{time.time() - float(sys.argv[1]):7.2f} {line}")' "$1"; }

# bench_model TOOLS_DIR WORK_DIR LAYERS: print the model directory, writing it first unless
# it is there already (same shape, same seed: the same weights).
bench_model() {
    local tools=$1 layers=$3
    local model=$2/llama-h$H-i$I-l$layers start
    if [ ! -f "$model/config.json" ]; then
        start=$(now)
        "$tools/make_tiny_model" "$model" --layers "$layers" --hidden "$H" --intermediate "$I" --heads "$HEADS" \
            --kv-heads "$HEADS" --vocab "$V" --dtype bf16 --seed 1 >/dev/null
        echo "model written in $(since "$start") s ($(du -sh "$model" | cut -f1))" >&2
    fi
    echo "$model"
}

# random_ids FILE COUNT SEED: COUNT ids drawn uniformly from [3, V), whitespace-separated.
random_ids() {
    python3 -c "
import numpy as np
open('$1', 'w').write(' '.join(map(str, np.random.default_rng($3).integers(3, $V, $2))))"
}
