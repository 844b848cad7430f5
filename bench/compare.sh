#!/usr/bin/env bash
# Before and after: builds Coffer at two git revisions and drives each, in turn, through the
# hot paths — record read (4 fields opened), tokenize one value (random), transit encrypt one
# item — over TLS 1.3 on loopback, with a fresh SQLite deployment per revision, the default
# durable audit (every request audited before the answer) and no per-principal rate limit.
# Rounds are interleaved (A B, then B A, …) and each round restarts the server, so drift on a
# shared machine falls on both alike. One load generator for both: hey, pinned in this tree's
# go.mod as a tool. Prints every run, then medians and the B/A ratio of each path.
# Loopback only; bounded in time (default: 5 s a run, 3 rounds, about 3 minutes with the builds).
#   bash bench/compare.sh REV_A REV_B [seconds-per-run] [rounds] [connections]
# e.g. bash bench/compare.sh 1f40988 main
# COFFER_COMPARE_PORT (default 18446) picks the port; the metrics listener takes port+1000.
# COFFER_COMPARE_ENV_A / COFFER_COMPARE_ENV_B: extra environment (space-separated NAME=VALUE) for
# one side's server only, e.g. COFFER_COMPARE_ENV_B=COFFER_AUDIT_DURABILITY=interval with the same
# revision on both sides. TMPDIR picks where the data directories live (/dev/shm: flushes free).
# /healthz (bare TLS + HTTP, unaudited) is measured in every round too, as the ceiling. The
# server's CPU per answered request (utime+stime from /proc) is printed beside req/s: on a
# shared host it moves far less with other work than throughput does.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: bash bench/compare.sh REV_A REV_B [seconds-per-run] [rounds] [connections]" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3}
rev_a=$(git rev-parse --verify "$1^{commit}")
rev_b=$(git rev-parse --verify "$2^{commit}")
secs=${3:-5}
rounds=${4:-3}
conns=${5:-32}
port=${COFFER_COMPARE_PORT:-18446}
url=https://127.0.0.1:$port
work=$(mktemp -d "${TMPDIR:-/tmp}/coffer-compare.XXXXXX")
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

# Build each revision from a clean export of its tree (no worktree left behind). -trimpath keeps
# the temporary directory out of the build, so Go's build cache serves what the two share.
for side in a b; do
  rev=rev_$side
  mkdir -p "$work/src-$side"
  git archive "${!rev}" | tar -x -C "$work/src-$side"
  echo "building $side = $(git log -1 --format='%h %s' "${!rev}" | cut -c1-90)" >&2
  (cd "$work/src-$side" && go build -trimpath -o "$work/coffer-$side" ./cmd/coffer)
  rm -rf "$work/src-$side"
done
go build -o "$work/hey" github.com/rakyll/hey

start() { # side: serves that side's data directory on $port until stop
  local side=$1 extra=COFFER_COMPARE_ENV_${1^^}
  # shellcheck disable=SC2086 # NAME=VALUE words
  env ${!extra:-} COFFER_LIMITS_RATE_LIMIT=0 COFFER_METRICS_LISTEN=127.0.0.1:$((port + 1000)) COFFER_LOG_LEVEL=error \
    "$work/coffer-$side" serve --data-dir "$work/data-$side" --listen "127.0.0.1:$port" 2>>"$work/server-$side.log" &
  pid=$!
  for _ in $(seq 1 150); do
    curl -sf --cacert "$work/data-$side/tls/ca.pem" "$url/healthz" >/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  echo "bench/compare.sh: the $side server did not start; its log:" >&2
  cat "$work/server-$side.log" >&2
  exit 1
}
stop() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=
}
token() { # side: prints a fresh bearer token for that side's bootstrap client
  local side=$1 id secret
  id=$(sed 's/.*"client_id":"\([^"]*\)".*/\1/' "$work/init-$side.json")
  secret=$(sed 's/.*"client_secret":"\([^"]*\)".*/\1/' "$work/init-$side.json")
  curl -sf --cacert "$work/data-$side/tls/ca.pem" -u "$id:$secret" -d grant_type=client_credentials "$url/v1/oauth/token" |
    sed 's/.*"access_token":"\([^"]*\)".*/\1/'
}

# One deployment per side, set up alike: a collection with one record, a transit key.
rec='{"owner":"u1","data":{"name":"Ada Lovelace","email":"ada@example.com","card_number":"4111111111111111","ssn":"123-45-6789"}}'
printf '{"items":[{"value":"ada@example.com","type":"email"}]}' > "$work/tok1.json"
printf '{"plaintext":"%s"}' "$(head -c 100 /dev/zero | tr '\0' 'x' | base64 -w0)" > "$work/enc1.json" # 100 bytes
declare -A rid
for side in a b; do
  "$work/coffer-$side" init --data-dir "$work/data-$side" --json > "$work/init-$side.json"
  start "$side"
  auth="Authorization: Bearer $(token "$side")"
  c() { curl -sf --cacert "$work/data-$side/tls/ca.pem" -H "$auth" -H 'Content-Type: application/json' "$@"; }
  c -d '{"name":"customers","fields":[{"name":"name","type":"string"},{"name":"email","type":"email","searchable":true},
    {"name":"card_number","type":"card_number"},{"name":"ssn","type":"ssn"}]}' "$url/v1/collections" >/dev/null
  rid[$side]=$(c -d "$rec" "$url/v1/collections/customers/records" | sed 's/.*"id":"\([^"]*\)".*/\1/')
  c -d '{"name":"bench"}' "$url/v1/keys" >/dev/null
  c -d @"$work/enc1.json" "$url/v1/keys/bench/encrypt" | grep -q '"ciphertext"'
  stop
done

hit() { # side path-name: one measured run, as a TSV row on stdout
  local side=$1 name=$2 out
  local -a args=(-z "${secs}s" -c "$conns" -H "$auth")
  case $name in
    healthz) args=(-z "${secs}s" -c "$conns" "$url/healthz") ;;
    read) args+=("$url/v1/collections/customers/records/${rid[$side]}") ;;
    tokenize) args+=(-m POST -T application/json -D "$work/tok1.json" "$url/v1/tokenize") ;;
    encrypt) args+=(-m POST -T application/json -D "$work/enc1.json" "$url/v1/keys/bench/encrypt") ;;
  esac
  local t0 t1
  t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  out=$("$work/hey" "${args[@]}")
  t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$side" "$name" \
    "$(awk '/Requests\/sec/ {v=$2} END {printf "%.0f", v+0}' <<<"$out")" \
    "$(awk '$1=="50%" {v=$3*1000} END {printf "%.2f", v+0}' <<<"$out")" \
    "$(awk '$1=="99%" {v=$3*1000} END {printf "%.2f", v+0}' <<<"$out")" \
    "$(awk -v d=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" '/^ *\[[0-9]+\]/ {n+=$2} END {printf "%.0f", n ? d*1e6/hz/n : 0}' <<<"$out")" # 0: no answer in the run
  (grep -E '^\s+\[[^2][0-9][0-9]\]' <<<"$out" || true) | awk -v s="$side" -v n="$name" '{b+=$2} END {if (b) printf "bench/compare.sh: %s %s: %d non-2xx answers\n", s, n, b > "/dev/stderr"}'
}

echo "coffer compare: $(date -u +%FT%TZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "A = $(git log -1 --format='%h %s' "$rev_a" | cut -c1-80)"
echo "B = $(git log -1 --format='%h %s' "$rev_b" | cut -c1-80)"
echo "SQLite, durable audit, TLS 1.3 on loopback, hey: ${secs}s a run, $conns keep-alive connections, $rounds rounds (A B, B A, …)"
results=$work/results.tsv
: > "$results"
printf 'round\tside\tpath\treq/s\tp50 ms\tp99 ms\tserver cpu-µs/req\n'
for r in $(seq 1 "$rounds"); do
  order="a b"; [ $((r % 2)) -eq 0 ] && order="b a"
  for side in $order; do
    start "$side"
    auth="Authorization: Bearer $(token "$side")"
    "$work/hey" -z 1s -c "$conns" -H "$auth" "$url/v1/collections/customers/records/${rid[$side]}" >/dev/null # warm-up
    for name in healthz read tokenize encrypt; do
      hit "$side" "$name" | tee -a "$results"
    done
    stop
  done
done
python3 - "$results" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
def med(side, path, col):
    return statistics.median(float(r[col]) for r in rows if r[1] == side and r[2] == path)
names = {"healthz": "GET /healthz (unaudited ceiling)", "read": "GET record (4 fields opened)", "tokenize": "POST /v1/tokenize, 1 value", "encrypt": "POST /v1/keys/{k}/encrypt, 1 item"}
print("\nmedians of the rounds:\n")
print("| path | A req/s | B req/s | B/A | A p50 / p99 ms | B p50 / p99 ms | server CPU µs/req A → B |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for p in ("healthz", "read", "tokenize", "encrypt"):
    a, b = med("a", p, 3), med("b", p, 3)
    ratio = f"{b/a:.3f}" if a else "n/a"
    print(f"| {names[p]} | {a:,.0f} | {b:,.0f} | {ratio} | {med('a', p, 4):.1f} / {med('a', p, 5):.1f} | {med('b', p, 4):.1f} / {med('b', p, 5):.1f} | {med('a', p, 6):.0f} → {med('b', p, 6):.0f} |")
print("\nshare of /healthz in the same rounds (medians):\n")
print("| path | A / healthz | B / healthz |")
print("| --- | ---: | ---: |")
for p in ("read", "tokenize", "encrypt"):
    print(f"| {names[p]} | {med('a', p, 3)/med('a', 'healthz', 3):.2f} | {med('b', p, 3)/med('b', 'healthz', 3):.2f} |")
PY
