#!/usr/bin/env bash
# Coffer against HashiCorp Vault 1.14.2, side by side, with Coffer's own load generator
# (`coffer bench`) driving every target with the same connections, bodies and durations:
#   coffer-sqlite / coffer-pg   Coffer's Vault-compatible surface (/v1/transit/…, X-Vault-Token),
#   native-sqlite / native-pg   Coffer's own API (/v1/keys/…/encrypt), same bodies,
#   vault / vault-audit         Vault's dev server (in-memory storage, TLS), without and with a file
#                               audit device (which does not fsync).
# Coffer runs a fresh deployment per backend with its default durable audit, rate limit off;
# PostgreSQL is a fresh database on COFFER_PEERS_PG_ADMIN (default the local superuser; set it to
# "" to skip PostgreSQL). Scenarios: encrypt one item, decrypt one item, encrypt a batch_input of
# 1,000 (items/s = req/s × 1,000). Rounds are interleaved: each round runs every target once,
# in an order rotated per round, and `coffer bench` rotates the scenario order within a target.
# Prints every run, then medians and ratios. Loopback only; bounded in time.
#   bash bench/peers/vs-vault.sh [seconds-per-step] [rounds] [connections] [results-dir]
# Vault comes from ../shared/peers/build-vault.sh (cached in ~/.cache/coffer-peers; never commit its
# source or binary); VAULT_BIN overrides it. If another build is under way in the cache, this waits
# for it (VAULT_WAIT seconds, default 1800), saying so. VAULT_BIN=skip measures Coffer's targets only.
set -euo pipefail
cd "$(dirname "$0")/../.."
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3}
secs=${1:-5}
rounds=${2:-3}
conns=${3:-32}
keep=${4:-}
pg_admin=${COFFER_PEERS_PG_ADMIN-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"' EXIT

vault_bin() {
  if [ -n "${VAULT_BIN:-}" ]; then echo "$VAULT_BIN"; return; fi
  local cache=${VAULT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/coffer-peers/vault-1.14.2}
  local waited=0 limit=${VAULT_WAIT:-1800}
  # A source tree without a binary: a build is under way (or was cut short); wait for it rather
  # than start a second one in the same folder.
  while [ ! -x "$cache/vault" ] && [ -d "$cache/src" ]; do
    if [ "$waited" -ge "$limit" ]; then
      echo "vs-vault: no Vault binary at $cache/vault after ${limit}s, though $cache/src exists: a build is" >&2
      echo "  still running or was interrupted; let it finish, or remove $cache/src and run again" >&2
      exit 1
    fi
    [ $((waited % 60)) -eq 0 ] && echo "vs-vault: waiting for the Vault build under way in $cache (${waited}s so far)" >&2
    sleep 10; waited=$((waited + 10))
  done
  bash ../shared/peers/build-vault.sh
}
if [ "${VAULT_BIN:-}" = skip ]; then vault=skip; else vault=$(vault_bin); fi
go build -o "$work/coffer" ./cmd/coffer

# Coffer, one deployment per backend.
targets=()
declare -A url ca id secret surface
start_coffer() { # name port [database-url]
  local name=$1 port=$2 db=${3:-} dir=$work/$1
  "$work/coffer" init --data-dir "$dir" ${db:+--database-url "$db"} --listen "127.0.0.1:$port" --json >"$work/$name-init.json"
  COFFER_LIMITS_RATE_LIMIT=0 COFFER_METRICS_LISTEN=127.0.0.1:$((port + 1000)) COFFER_LOG_LEVEL=error \
    COFFER_DATABASE_ALLOW_SUPERUSER=true \
    "$work/coffer" serve --data-dir "$dir" --listen "127.0.0.1:$port" 2>"$work/$name.log" &
  pids+=($!)
  for _ in $(seq 1 150); do curl -sf --cacert "$dir/tls/ca.pem" "https://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.2; done
  local i s
  i=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["client_id"])' "$work/$name-init.json")
  s=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["client_secret"])' "$work/$name-init.json")
  for t in "coffer-$name" "native-$name"; do
    url[$t]=https://127.0.0.1:$port ca[$t]=$dir/tls/ca.pem id[$t]=$i secret[$t]=$s
    targets+=("$t")
  done
  surface[coffer-$name]=vault surface[native-$name]=coffer
}
start_coffer sqlite 18451
backends=SQLite
if [ -n "$pg_admin" ]; then
  db=coffer_peers_$$
  PGOPTIONS='-c client_min_messages=warning' psql -qX "$pg_admin" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
  trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; psql -qX "$pg_admin" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
  pg_url="${pg_admin%%\?*}"; pg_url="${pg_url%/*}/$db?sslmode=disable"
  start_coffer pg 18452 "$pg_url"
  backends="SQLite and PostgreSQL $(psql -qtAX "$pg_admin" -c 'show server_version')"
fi

# Vault: dev server over TLS, transit mounted, upsert off (as Coffer).
if [ "$vault" != skip ]; then
mkdir -p "$work/vault"
HOME="$work/vault" "$vault" server -dev -dev-tls -dev-tls-cert-dir="$work/vault" -dev-root-token-id=root \
  -dev-listen-address=127.0.0.1:18201 >"$work/vault.log" 2>&1 &
pids+=($!)
curl_v() { curl -sf --cacert "$work/vault/vault-ca.pem" -H 'X-Vault-Token: root' "$@"; }
for _ in $(seq 1 300); do [ -f "$work/vault/vault-ca.pem" ] && curl_v https://127.0.0.1:18201/v1/sys/health >/dev/null && break; sleep 0.2; done
curl_v -X POST -d '{"type":"transit"}' https://127.0.0.1:18201/v1/sys/mounts/transit
curl_v -X POST -d '{"disable_upsert":true}' https://127.0.0.1:18201/v1/transit/config/keys >/dev/null
for t in vault vault-audit; do
  url[$t]=https://127.0.0.1:18201 ca[$t]=$work/vault/vault-ca.pem surface[$t]=vault
  targets+=("$t")
done
audit() { # on|off: Vault's file audit device
  if [ "$1" = on ]; then
    curl_v -X PUT -d "{\"type\":\"file\",\"options\":{\"file_path\":\"$work/vault/audit.log\"}}" https://127.0.0.1:18201/v1/sys/audit/file
  else
    curl_v -X DELETE https://127.0.0.1:18201/v1/sys/audit/file || true
  fi
}
fi

echo "coffer vs vault: $(date -u +%FT%TZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), ${secs}s per step, $rounds rounds, $conns connections, keep-alive, TLS, coffer bench"
echo "coffer: $backends, durable audit, rate limit off; vault 1.14.2 dev (in-memory), with and without a file audit device"
mkdir -p "$work/out"
n=${#targets[@]}
for r in $(seq 1 "$rounds"); do
  for i in $(seq 0 $((n - 1))); do
    t=${targets[$(( (i + r) % n ))]}
    [ "$t" = vault-audit ] && audit on
    if [ "${surface[$t]}" = vault ] && [[ $t == vault* ]]; then
      VAULT_TOKEN=root "$work/coffer" bench --surface vault --url "${url[$t]}" --ca-file "${ca[$t]}" \
        --scenarios encrypt,decrypt,batch --concurrency "$conns" --duration "${secs}s" --rounds 1 \
        --label target="$t" --json "$work/out/$r-$t.json" -o json >/dev/null 2>"$work/bench.err" ||
        { cat "$work/bench.err" >&2; exit 1; }
    else
      COFFER_CLIENT_SECRET=${secret[$t]} "$work/coffer" bench --surface "${surface[$t]}" --url "${url[$t]}" \
        --ca-file "${ca[$t]}" --client-id "${id[$t]}" \
        --scenarios encrypt,decrypt,batch --concurrency "$conns" --duration "${secs}s" --rounds 1 \
        --label target="$t" --json "$work/out/$r-$t.json" -o json >/dev/null 2>"$work/bench.err" ||
        { cat "$work/bench.err" >&2; exit 1; }
    fi
    [ "$t" = vault-audit ] && audit off
    python3 - "$work/out/$r-$t.json" "$r" "$t" <<'PY'
import json, sys
rep = json.load(open(sys.argv[1]))
for s in rep["summary"]:
    errs = sum(s.get("errors", {}).values())
    print(f"round {sys.argv[2]}  {sys.argv[3]:14s} {s['scenario']:8s} {s['req_per_sec']:9.0f} req/s  p99 {s['p99_ms']:8.1f} ms  non-2xx {errs}  load {rep['load_average'][1]:.1f}")
PY
  done
done
[ -n "$keep" ] && mkdir -p "$keep" && cp "$work"/out/*.json "$keep/"
python3 - "$work/out" <<'PY'
import glob, json, os, statistics, sys
runs = {}
loads = []
for p in glob.glob(os.path.join(sys.argv[1], "*.json")):
    rep = json.load(open(p))
    t = rep["labels"]["target"]
    loads += [x for x in rep["load_average"] if x]
    for s in rep["summary"]:
        runs.setdefault((t, s["scenario"]), []).append(s)
def med(t, sc, k):
    v = [s[k] for s in runs.get((t, sc), [])]
    return statistics.median(v) if v else 0
def errs(t, sc):
    return sum(sum(s.get("errors", {}).values()) for s in runs.get((t, sc), []))
targets = [t for t in ("coffer-sqlite", "native-sqlite", "coffer-pg", "native-pg", "vault", "vault-audit") if any(k[0] == t for k in runs)]
names = {"encrypt": "encrypt, 1 item", "decrypt": "decrypt, 1 item", "batch": "encrypt, batch_input of 1,000"}
print(f"\nload average during the run: {min(loads):.1f}–{max(loads):.1f}" if loads else "")
print("\nmedians, req/s (p99 ms); the batch's items/s is req/s × 1,000\n")
print("| request | " + " | ".join(targets) + " |")
print("| --- |" + " ---: |" * len(targets))
for sc in ("encrypt", "decrypt", "batch"):
    print(f"| {names[sc]} | " + " | ".join(f"{med(t, sc, 'req_per_sec'):,.0f} ({med(t, sc, 'p99_ms'):.1f})" for t in targets) + " |")
cof = [t for t in targets if not t.startswith("vault")]
if "vault" not in targets:
    cof = []
if cof:
    print("\nratios of medians (Coffer target / Vault, / Vault + file audit)\n")
    print("| request | " + " | ".join(f"{t} / vault | {t} / vault-audit" for t in cof) + " |")
    print("| --- |" + " ---: | ---: |" * len(cof))
for sc in ("encrypt", "decrypt", "batch") if cof else ():
    v, va = med("vault", sc, "req_per_sec"), med("vault-audit", sc, "req_per_sec")
    cells = []
    for t in cof:
        c = med(t, sc, "req_per_sec")
        cells += [f"{c / v:.2f}×" if v else "–", f"{c / va:.2f}×" if va else "–"]
    print(f"| {names[sc]} | " + " | ".join(cells) + " |")
bad = {t: sum(errs(t, sc) for sc in ("encrypt", "decrypt", "batch")) for t in targets}
print("\nnon-2xx answers per target:", ", ".join(f"{t} {n}" for t, n in bad.items()))
PY
