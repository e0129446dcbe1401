#!/usr/bin/env bash
# Runs the integration suite against homestub and wrap-and-run built with a
# sanitizer: scripts/sanitizer-test.sh address|thread [PYTEST ARGS...]
# (`make asan-test`, `make tsan-test`).
#
# Debug builds in .build-asan / .build-tsan. The sanitizer writes every
# report, from homestub, each deputy and wrap-and-run alike, to a file under
# REPORTS (log_path), collected afterwards into SCRATCH/reports. The tracee
# is not instrumented: only Tether's own processes are checked. Fails when a
# test fails or any report was written.
set -uo pipefail
cd "$(dirname "$0")/.."
SWIFT=${SWIFT:-swift}
PYTHON=${PYTHON:-python3}

kind=$1
shift
case $kind in
address) short=asan ;;
thread) short=tsan ;;
*) echo "usage: $0 address|thread [pytest args]" >&2; exit 2 ;;
esac
scratch=.build-$short
for product in homestub wrap-and-run; do
    $SWIFT build -c debug --sanitize="$kind" --scratch-path "$scratch" --product "$product" || exit 1
done

# Under /tmp and world-writable: deputies run as nobody in the EACCES tests.
reports=/tmp/tether-$short-reports
rm -rf "$reports"
mkdir -m 1777 "$reports"
common="log_path=$reports/$short:log_exe_name=1:symbolize=1"
case $kind in
address)
    export ASAN_OPTIONS="$common:detect_leaks=1:halt_on_error=1:abort_on_error=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
    ;;
thread)
    export TSAN_OPTIONS="$common:halt_on_error=0:second_deadlock_stack=1:suppressions=$PWD/scripts/tsan.supp${TSAN_OPTIONS:+:$TSAN_OPTIONS}"
    ;;
esac
export ASAN_SYMBOLIZER_PATH=${ASAN_SYMBOLIZER_PATH:-$(command -v llvm-symbolizer || echo /opt/swift/usr/bin/llvm-symbolizer)}
export TSAN_SYMBOLIZER_PATH=$ASAN_SYMBOLIZER_PATH

TETHER_SANITIZER=$kind TETHER_BIN="$PWD/$scratch/debug" $PYTHON -m pytest -q Tests/integration "$@"
tests=$?

rm -rf "$scratch/reports"
cp -r "$reports" "$scratch/reports"
files=$(ls "$scratch/reports" | wc -l)
# A finding is a report with an ERROR line. LeakSanitizer cannot stop the
# threads of a homestub inside the harness's pid namespace (its /proc is the
# host's, so /proc/PID/task names another process): it then says so and
# gives up on that process. Those notes are listed, not counted.
findings=$(grep -l '^==.*ERROR: \|^WARNING: ThreadSanitizer' "$scratch/reports"/* 2>/dev/null | wc -l)
echo "$kind sanitizer: $findings report(s) with findings, $files file(s) in all, in $scratch/reports"
if [ "$files" -gt 0 ]; then
    # One line per distinct finding or note.
    cat "$scratch/reports"/* | grep -h -E '^SUMMARY:|LeakSanitizer has encountered|was not suspended' |
        sed 's/^==[^=]*==[0-9]*==//' | sort | uniq -c | sort -rn
fi
[ $tests -eq 0 ] && [ "$findings" -eq 0 ]
