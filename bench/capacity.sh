#!/usr/bin/env bash
# What one request costs a node and the database, per kind of request: the
# figures the capacity model in docs/cluster.md is built from.
#
#   bash bench/capacity.sh [requests-per-kind]      (default 4000)
#
# Starts the three-node trial cluster (deploy/cluster/local.sh, on a fresh
# PostgreSQL database) and, for record read, record create, tokenize one
# value and transit encrypt one item, sends the same number of requests
# first to one node alone, then spread over the three (through HAProxy when
# it is installed, else round robin from the load generator), 32 keep-alive
# connections. Around each run it reads the nodes' CPU time (/proc) and the
# database's counters (pg_stat_database, pg_stat_user_tables, the WAL
# position), and prints per request: node CPU (µs, all nodes together),
# database commits, rows written, index and sequential scans, WAL bytes; and
# the run's req/s and p99 for reference (throughput on a shared machine is
# noise; the per-request costs are not).
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3}
n=${1:-4000}
n=$(( n / 32 * 32 )) # hey sends n/c requests per connection
work=$(mktemp -d)
export CLUSTER_PORT=${CLUSTER_PORT:-18540} CLUSTER_DB=${CLUSTER_DB:-coffer_capacity}
admin_url=${CLUSTER_DB_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}
db_url="${admin_url%%\?*}"; db_url="${db_url%/*}/$CLUSTER_DB?sslmode=disable"
trap 'bash deploy/cluster/local.sh down "$work/cluster" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
go build -o "$work/coffer" ./cmd/coffer
go build -o "$work/hey" github.com/rakyll/hey
export COFFER_BIN=$work/coffer COFFER_LIMITS_RATE_LIMIT=0 COFFER_LOG_LEVEL=error
bash deploy/cluster/local.sh up "$work/cluster" >/dev/null
dir=$work/cluster
ca=$dir/node1/tls/ca.pem
port=$CLUSTER_PORT
id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["client_id"])' "$dir/init.json")
secret=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["client_secret"])' "$dir/init.json")
u1=https://127.0.0.1:$((port + 1))
tok=$(curl -sf --cacert "$ca" -u "$id:$secret" -d grant_type=client_credentials "$u1/v1/oauth/token" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
auth="Authorization: Bearer $tok"
post() { curl -sf --cacert "$ca" -H "$auth" -H 'Content-Type: application/json' -d "$2" "$u1$1"; }
post /v1/collections '{"name":"customers","fields":[{"name":"name","type":"string"},{"name":"email","type":"email","searchable":true}]}' >/dev/null
rec='{"owner":"u1","data":{"name":"Ada Lovelace","email":"ada@example.com"}}'
rid=$(post /v1/collections/customers/records "$rec" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
post /v1/keys '{"name":"capacity"}' >/dev/null

cpu_ticks() { # total utime+stime of the node processes, in clock ticks
  local t=0 pid
  for pid in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done
  echo "$t"
}
db_counters() { # commits rows_written scans wal_lsn_bytes
  psql -qtAX "$db_url" -F' ' -c "select
    (select xact_commit from pg_stat_database where datname = current_database()),
    (select coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) from pg_stat_user_tables),
    (select coalesce(sum(coalesce(idx_scan, 0) + seq_scan), 0) from pg_stat_user_tables),
    pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint"
}
hz=$(getconf CLK_TCK)
pids=$(cat "$dir"/node{1,2,3}.pid)
measure() { # label target-url hey-args...
  local label=$1 url=$2; shift 2
  sleep 1 # let counters settle (pg_stat is flushed by backends at most every second)
  local c0 d0 out c1 d1
  c0=$(cpu_ticks $pids); read -r -a d0 <<<"$(db_counters)"
  out=$("$work/hey" -n "$n" -c 32 "$@" "$url")
  sleep 1.2
  c1=$(cpu_ticks $pids); read -r -a d1 <<<"$(db_counters)"
  local ok
  ok=$(awk '/\[200\]|\[201\]/ {s+=$2} END {print s+0}' <<<"$out")
  python3 - "$label" "$n" "$ok" "$hz" "$c0" "$c1" "${d0[*]}" "${d1[*]}" \
    "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" "$(awk '$1=="99%" {print $3}' <<<"$out")" <<'PY'
import sys
label, n, ok, hz, c0, c1, d0, d1, rps, p99 = sys.argv[1:]
n, ok, hz = int(n), int(ok), int(hz)
d0, d1 = [int(x) for x in d0.split()], [int(x) for x in d1.split()]
per = lambda a, b: (b - a) / max(ok, 1)
cpu_us = (int(c1) - int(c0)) / hz * 1e6 / max(ok, 1)
print(f"{label:34s} {ok:6d}/{n:<6d} cpu {cpu_us:7.0f} µs  commits {per(d0[0], d1[0]):5.2f}  rows {per(d0[1], d1[1]):5.2f}"
      f"  scans {per(d0[2], d1[2]):5.2f}  WAL {per(d0[3], d1[3]):7.0f} B   {float(rps or 0):7.0f} req/s  p99 {float(p99 or 0)*1000:6.1f} ms")
PY
}
idle() { # the nodes' own background work (heartbeats, reloads) with no requests: µs of CPU per second, all nodes
  local c0 c1
  c0=$(cpu_ticks $pids); sleep 10; c1=$(cpu_ticks $pids)
  echo $(( (c1 - c0) * 1000000 / hz / 10 ))
}
lb=https://127.0.0.1:$port
[ -e "$dir/haproxy.pid" ] || lb=$u1
echo "coffer capacity run: $(date -u +%FT%TZ), $(nproc) cores, $n requests per kind, 32 connections, PostgreSQL $(psql -qtAX "$admin_url" -c 'show server_version')"
echo "per request: node CPU (all nodes), database commits, rows written, table scans, WAL bytes"
echo "idle (three nodes, no requests): $(idle) µs of CPU per second, all nodes together"
for where in "one node:$u1" "three nodes:$lb"; do
  label=${where%%:*}; url=${where#*:}
  measure "read      ($label)" "$url/v1/collections/customers/records/$rid" -H "$auth"
  measure "create    ($label)" "$url/v1/collections/customers/records" -m POST -H "$auth" -T application/json -d "$rec"
  measure "tokenize1 ($label)" "$url/v1/tokenize" -m POST -H "$auth" -T application/json -d '{"items":[{"value":"ada@example.com","type":"email"}]}'
  measure "encrypt1  ($label)" "$url/v1/keys/capacity/encrypt" -m POST -H "$auth" -T application/json -d '{"plaintext":"aGVsbG8gd29ybGQ="}'
done
