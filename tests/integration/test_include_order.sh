#!/usr/bin/env bash
# test_include_order.sh: dependencies flow one way. Each source folder has a
# level (LEVELS below, the one place the order is written); a file may include
# headers of its own folder and of folders on lower levels only. Folders on one
# line are peers and may not include each other. Prints TAP: one line per
# folder, one "not ok" per include that points up or sideways, and a self-check
# that a planted violation is caught.
set -u
cd "$(dirname "$0")/../.."

# Lowest first. A file's folder is its first path component (kernels/cpu/x.c is
# kernels); an include without a folder ("x.h") is a file of the repository root.
LEVELS=(
    "core"
    "kernels store"
    "tokenizer"
    "model"
    "quant"
    "jobs"
    "worker"
    "lora"
    "coordinator"
    "cli"
)
# Not part of the layering: tests and benchmarks may include anything.
SKIP_DIRS="tests bench build cluster"

level_of() { # folder -> level index, or nothing
    local i
    for i in "${!LEVELS[@]}"; do
        for d in ${LEVELS[$i]}; do [ "$d" = "$1" ] && { echo "$i"; return; }; done
    done
}

# check ROOT: prints "VIOLATION file:line: message" lines for the tree at ROOT.
check() {
    local root=$1 file dir line inc target lf lt
    while IFS= read -r file; do
        dir=${file%%/*}
        [ "$dir" = "$file" ] && dir=.
        case " $SKIP_DIRS " in *" $dir "*) continue ;; esac
        lf=$(level_of "$dir")
        if [ -z "$lf" ]; then
            echo "VIOLATION $file: folder '$dir' has no level in tests/integration/test_include_order.sh"
            continue
        fi
        while IFS=: read -r line inc; do
            inc=${inc#*\"}; inc=${inc%%\"*}
            target=${inc%%/*}
            [ "$target" = "$inc" ] && target=.
            [ "$target" = "$dir" ] && continue
            lt=$(level_of "$target")
            if [ -z "$lt" ]; then
                echo "VIOLATION $file:$line: includes \"$inc\" from '$target', which has no level"
            elif [ "$lt" -ge "$lf" ]; then
                echo "VIOLATION $file:$line: $dir (level $lf) includes \"$inc\" ($target, level $lt)"
            fi
        done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$root/$file")
    done < <(cd "$root" && find . -path ./build -prune -o -path './.*' -prune -o -type f \
                 \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) -print | sed 's|^\./||' | sort)
}

n=0
violations=$(check .)
for folders in "${LEVELS[@]}"; do
    for d in $folders; do
        [ -d "$d" ] || continue
        n=$((n + 1))
        bad=$(grep -E "^VIOLATION $d/" <<<"$violations")
        if [ -z "$bad" ]; then
            echo "ok $n - $d includes only lower folders"
        else
            echo "not ok $n - $d includes a folder at or above its level"
            sed 's/^VIOLATION /# /' <<<"$bad"
        fi
    done
done
other=$(grep -vE "^VIOLATION ($(tr ' ' '|' <<<"${LEVELS[*]}"))/" <<<"$violations" | grep . || true)
n=$((n + 1))
if [ -z "$other" ]; then
    echo "ok $n - every source folder has a level"
else
    echo "not ok $n - source files outside the levels"
    sed 's/^VIOLATION /# /' <<<"$other"
fi

# Self-check: in a planted tree, core including model (up) and kernels including
# store (a peer) are reported, and model including core and itself is not.
planted=$(mktemp -d)
trap 'rm -rf "$planted"' EXIT
mkdir -p "$planted/core" "$planted/model" "$planted/kernels" "$planted/store"
printf '#include "model/layer.h"\n' >"$planted/core/bad.c"
printf '#include "core/status.h"\n#include "model/layer.h"\n' >"$planted/model/good.c"
printf '#include "store/store.h"\n' >"$planted/kernels/peer.c"
found=$(check "$planted" | grep -c '^VIOLATION ')
n=$((n + 1))
if [ "$found" -eq 2 ]; then
    echo "ok $n - the check reports an include up (core -> model) and sideways (kernels -> store)"
else
    echo "not ok $n - the check found $found violations in the planted tree, expected 2"
fi
