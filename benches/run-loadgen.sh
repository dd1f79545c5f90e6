#!/usr/bin/env bash
# Runs one loadgen scenario against a fresh release log-server, the way the
# README's performance figures were measured:
#
#   cargo build --release -p log-server -p tlog-benches --bin log-server --bin loadgen
#   benches/run-loadgen.sh redb --events 30000 --concurrency 64
#   benches/run-loadgen.sh sled --events 200000 --concurrency 4 --batch 1000
#
# The first argument is the storage backend; the rest go to loadgen. The
# server gets a new data directory on 127.0.0.1, is stopped with SIGINT at
# the end, and its data directory is removed.
set -euo pipefail
backend=$1
shift
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d "${TMPDIR:-/tmp}/loadgen-$backend-XXXX")
trap 'rm -rf "$dir"' EXIT
mkfifo "$dir/out"
"$root/target/release/log-server" serve --data-dir "$dir/data" --listen 127.0.0.1:0 \
  --origin "loadgen.example/$backend" --storage "$backend" >"$dir/out" 2>"$dir/err" &
pid=$!
# Block until the server announces the address it bound; keep the pipe open.
exec 3<"$dir/out"
addr=""
while read -r line <&3; do
  case "$line" in "listening on "*) addr=${line#listening on }; break ;; esac
done
[ -n "$addr" ] || { cat "$dir/err" >&2; exit 2; }
status=0
"$root/target/release/loadgen" --log "http://$addr" --key "$dir/data/submitter.key" \
  --server-pid "$pid" --data-dir "$dir/data" "$@" || status=$?
kill -INT "$pid"
wait "$pid" || true
exit "$status"
