#!/bin/bash
# Thread wake-ups per forwarded call, by engine: `perf stat` of 20,000
# forwarded 4 KiB preads (python3 reading a file of a private home,
# `--home spawn`), as context switches and CPU milliseconds per engine.
# Counts, not times, so it reads the same on a loaded machine.
#   bench/context-switches.sh [BIN_DIR] [ROUNDS]   (default .build/release, 2)
set -euo pipefail
bin=$(realpath "${1:-.build/release}")
rounds=${2:-2}
calls=20000
command -v perf >/dev/null || { echo "context-switches.sh: needs perf (linux-perf)" >&2; exit 1; }
root=$(mktemp -d /tmp/tether-cs.XXXXXX)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/data"
head -c 1048576 /dev/urandom > "$root/data/f"
program="import os
fd = os.open('/data/f', os.O_RDONLY)
for i in range($calls): os.pread(fd, 4096, (i * 4096) % 1040000)"
printf '%-8s %5s %22s %14s\n' engine round "context switches/call" "CPU ms"
for round in $(seq 1 "$rounds"); do
    for engine in seccomp ptrace; do
        out=$(cd "$root" && perf stat -x, -e task-clock,context-switches \
            "$bin/wrap-and-run" --engine "$engine" --home spawn --root "$root" --cwd / \
            -- /usr/bin/python3 -S -c "$program" 2>&1 >/dev/null)
        switches=$(awk -F, '$3 ~ /context-switches/ {print $1}' <<<"$out")
        cpu=$(awk -F, '$3 ~ /task-clock/ {printf "%.0f", $1}' <<<"$out")
        printf '%-8s %5s %22.2f %14s\n' "$engine" "$round" "$(bc -l <<<"$switches / $calls")" "$cpu"
    done
done
