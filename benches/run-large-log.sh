#!/usr/bin/env bash
# Grows one log to N million entries through a real release log-server and
# measures what the size costs: the figures behind the README's "after 10M
# entries" rows (memory, restart, disk).
#
#   cargo build --release -p log-server -p tlog-benches --bin log-server --bin loadgen
#   benches/run-large-log.sh redb 10
#   benches/run-large-log.sh sled 10 /mnt/big/scratch
#
# Arguments: the storage backend, how many million entries, and optionally
# where to put the data directory (default $TMPDIR). The log grows in runs
# of one million events (AppendBatch of 1000, 4 in flight). After each run
# it prints one line: tree size, the server's current and peak RSS, and
# disk bytes per entry beyond the raw entry. Then it stops the server with
# SIGINT, starts it again on the same data directory, and prints the time
# from spawn to "listening on" (the server has checked the stored root
# against the signed checkpoint by then) and the RSS after restart, and
# measures proof serving on the restarted server (`loadgen proofs`: 200,000
# inclusion proofs of random indexes, 64 in flight over 4 connections, each
# verified) with the RSS after it. The data directory is removed at the end.
set -euo pipefail
backend=$1
millions=$2
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d "${3:-${TMPDIR:-/tmp}}/large-log-$backend-XXXX")
server=""
trap '[ -n "$server" ] && kill -INT "$server" 2>/dev/null; rm -rf "$dir"' EXIT

# Starts the server on $dir/data; sets $server, $addr and $startup (the
# seconds from spawn to its "listening on" line).
start() {
  rm -f "$dir/out"
  mkfifo "$dir/out"
  local t0 t1 line
  t0=$(date +%s.%N)
  "$root/target/release/log-server" serve --data-dir "$dir/data" --listen 127.0.0.1:0 \
    --origin "large.example/$backend" --storage "$backend" >"$dir/out" 2>>"$dir/err" &
  server=$!
  exec 3<"$dir/out"
  addr=""
  while read -r line <&3; do
    case "$line" in "listening on "*) addr=${line#listening on }; break ;; esac
  done
  t1=$(date +%s.%N)
  [ -n "$addr" ] || { cat "$dir/err" >&2; exit 2; }
  startup=$(echo "$t0 $t1" | awk '{ printf "%.3f", $2 - $1 }')
}

stop() {
  kill -INT "$server"
  wait "$server" || true
  server=""
}

rss_mib() {
  awk -v key="$2:" '$1 == key { printf "%.1f", $2 / 1024 }' "/proc/$1/status"
}

start
for run in $(seq 1 "$millions"); do
  "$root/target/release/loadgen" --log "http://$addr" --key "$dir/data/submitter.key" \
    --events 1000000 --concurrency 4 --batch 1000 \
    --server-pid "$server" --data-dir "$dir/data" --json >"$dir/run.json"
  jq -r '"size \(.storage.tree_size)  rss \(.server_memory.rss_bytes / 1048576 | floor) MiB  peak \(.server_memory.peak_rss_bytes / 1048576 | floor) MiB  disk +\(.storage.overhead_bytes_per_entry | floor) B/entry (allocated \(.storage.disk_allocated_bytes_per_entry - .storage.raw_entry_bytes_per_entry | floor))  \(.throughput_events_per_second | floor) events/s  failed \(.failed)"' "$dir/run.json"
done
stop
start
echo "restart: listening after $startup s, RSS $(rss_mib "$server" VmRSS) MiB"
"$root/target/release/loadgen" proofs --log "http://$addr" --vkey "$dir/data/log.vkey" \
  --requests 200000 --concurrency 64 --connections 4
echo "after proofs: RSS $(rss_mib "$server" VmRSS) MiB, peak $(rss_mib "$server" VmHWM) MiB"
stop
