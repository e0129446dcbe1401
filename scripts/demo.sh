#!/usr/bin/env bash
# make demo: run real programs on files that exist only at a (private) home node.
set -euo pipefail
bin=${1:?usage: demo.sh BIN_DIR}
home=$(mktemp -d /tmp/tether-demo-home.XXXXXX)
trap 'rm -rf "$home"' EXIT
mkdir -p "$home/data"
printf 'line one\nline two\nline three\n' > "$home/data/notes.txt"

echo "== The home node's export root is $home: /data/notes.txt there, not on this machine:"
ls -l /data/notes.txt 2>&1 || true
echo
echo "== wrap-and-run --home spawn --root $home -- sh -c '...'  (the program sees home's /data)"
cd /
"$bin/wrap-and-run" --home spawn --root "$home" --stats -- /bin/sh -c '
  set -e
  echo "cat /data/notes.txt:"; cat /data/notes.txt
  echo "sha256sum:"; sha256sum /data/notes.txt
  echo "appended at home" >> /data/notes.txt
  cd /data && mkdir -p out && cp notes.txt out/copy.txt && ls -l out
  echo "pwd: $(pwd)"
'
echo
echo "== Back on this machine, the home export root now holds:"
ls -lR "$home/data"
echo "== and notes.txt ends with: $(tail -n 1 "$home/data/notes.txt")"
