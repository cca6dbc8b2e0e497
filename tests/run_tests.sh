#!/usr/bin/env bash
# run_tests.sh: runs every test of the project and prints one summary line,
# "N passed, N failed".
#
#  - C unit tests (build/tests/test_*, cmocka) report in TAP: each "ok"/"not ok" counts.
#  - Python reference tests (tests/python, pytest) are counted from pytest's summary.
#  - Integration tests (tests/integration/test_*.sh) print TAP lines themselves.
# A test program that crashes without reporting counts as one failure.
# Set TESTS=pattern to run only matching test files.
set -u
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
export SHARDQ_ROOT="$PWD"
LOG_DIR=build/test-logs
mkdir -p "$LOG_DIR"
passed=0
failed=0
pattern="${TESTS:-}"

count_tap() { # name logfile rc
    local ok notok
    ok=$(grep -cE '^ok ' "$2")
    notok=$(grep -cE '^not ok ' "$2")
    if [ "$3" -ne 0 ] && [ "$notok" -eq 0 ]; then notok=1; echo "not ok - $1 exited with status $3" >>"$2"; fi
    passed=$((passed + ok)); failed=$((failed + notok))
    printf '%-48s %3d passed, %d failed\n' "$1" "$ok" "$notok"
    [ "$notok" -eq 0 ] || grep -E '^not ok |^# |error|Error' "$2" | head -40 | sed 's/^/    /'
}

for bin in build/tests/test_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin")
    [ -z "$pattern" ] || [[ "$name" == *$pattern* ]] || continue
    CMOCKA_MESSAGE_OUTPUT=TAP timeout 600 "$bin" >"$LOG_DIR/$name.log" 2>&1
    count_tap "$name" "$LOG_DIR/$name.log" $?
done

for script in tests/integration/test_*.sh; do
    [ -f "$script" ] || continue
    name=$(basename "$script" .sh)
    [ -z "$pattern" ] || [[ "$name" == *$pattern* ]] || continue
    timeout 900 bash "$script" >"$LOG_DIR/$name.log" 2>&1
    count_tap "$name" "$LOG_DIR/$name.log" $?
done

for script in tests/python/test_*.py; do
    [ -f "$script" ] || continue
    name=$(basename "$script" .py)
    [ -z "$pattern" ] || [[ "$name" == *$pattern* ]] || continue
    timeout 900 python3 -m pytest -q -p no:cacheprovider "$script" >"$LOG_DIR/$name.log" 2>&1
    rc=$?
    summary=$(tail -n 1 "$LOG_DIR/$name.log")
    ok=$(grep -oE '[0-9]+ passed' <<<"$summary" | awk '{s += $1} END {print s + 0}')
    bad=$(grep -oE '[0-9]+ (failed|error)' <<<"$summary" | awk '{s += $1} END {print s + 0}')
    if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then bad=1; fi
    passed=$((passed + ok)); failed=$((failed + bad))
    printf '%-48s %3d passed, %d failed\n' "$name" "$ok" "$bad"
    [ "$bad" -eq 0 ] || tail -n 40 "$LOG_DIR/$name.log" | sed 's/^/    /'
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
