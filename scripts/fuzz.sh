#!/usr/bin/env bash
# Runs libFuzzer targets built in .build-fuzz (`make fuzz-build`), each for
# SECONDS, one after another: scripts/fuzz.sh SECONDS TARGET...
#
# Each target reads its committed seeds (fuzz/corpus/TARGET, read-only here)
# and grows a working corpus in .build-fuzz/corpus/TARGET, kept between runs.
# A crash, a broken invariant, a leak or a timeout stops that target and
# fails the whole run after the others have run; the input that did it is
# .build-fuzz/artifacts/TARGET-crash-… (copy it into fuzz/corpus/TARGET as
# regress-NAME once fixed). Prints executions per target.
set -uo pipefail
cd "$(dirname "$0")/.."

seconds=$1
shift
bin=.build-fuzz/release
mkdir -p .build-fuzz/artifacts .build-fuzz/logs
status=0
start=$(date +%s)
printf '%-18s %8s %12s %10s %8s\n' target seconds executions "exec/s" corpus
for target in "$@"; do
    work=.build-fuzz/corpus/$target
    log=.build-fuzz/logs/$target.log
    mkdir -p "$work"
    t0=$(date +%s)
    # -max_len: frames of a few KiB reach every decoder path; larger inputs only slow it.
    # The Swift runtime's own backtracer would catch the trap of a broken invariant
    # before libFuzzer does (and trip ASan reading the stack): leave it to libFuzzer.
    SWIFT_BACKTRACE=enable=no ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=1:symbolize=1" \
        "$bin/$target" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix=".build-fuzz/artifacts/$target-" \
        "$work" "fuzz/corpus/$target" >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    units=$(ls "$work" | wc -l)
    printf '%-18s %8s %12s %10s %8s\n' "$target" "$(($(date +%s) - t0))" "${runs:-?}" "${rate:-?}" "$units"
    if [ $rc -ne 0 ]; then
        status=1
        echo "--- $target FAILED (exit $rc); log: $log" >&2
        grep -E 'invariant broken|Fatal error|ERROR: (AddressSanitizer|libFuzzer|LeakSanitizer)|SUMMARY|Test unit written' "$log" >&2 || tail -30 "$log" >&2
    fi
done
echo "fuzzing took $(($(date +%s) - start)) s"
exit $status
