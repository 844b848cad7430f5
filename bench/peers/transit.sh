#!/usr/bin/env bash
# Side by side: the same Vault transit requests against Coffer (through its Vault-compatible
# surface, /v1/transit/, SQLite or PostgreSQL with COFFER_DATABASE_URL, default durable audit) and
# against HashiCorp Vault 1.14.2 (dev server, in-memory storage, TLS), with and without a file audit
# device. Rounds are interleaved (the order rotates each round) so drift on a shared machine falls
# on all alike; the same load generator (hey, pinned in go.mod), connections and bodies for all.
# Prints every run, then medians and ratios. Loopback only; bounded in time.
#   bash bench/peers/transit.sh [seconds-per-run] [rounds] [connections]
# Vault's binary comes from ../shared/peers/build-vault.sh (cached; never commit its source or
# binary): set VAULT_BIN to use another.
set -euo pipefail
cd "$(dirname "$0")/../.."
export GOTOOLCHAIN=go1.27.3
secs=${1:-10}
rounds=${2:-3}
conns=${3:-32}
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"' EXIT
vault=${VAULT_BIN:-$(bash ../shared/peers/build-vault.sh)}
go build -o "$work/coffer" ./cmd/coffer
go build -o "$work/hey" github.com/rakyll/hey

# Coffer: fresh deployment, no per-principal rate limit (this measures the server, not the limiter).
"$work/coffer" init --data-dir "$work/data" --json > "$work/init.json"
id=$(sed 's/.*"client_id":"\([^"]*\)".*/\1/' "$work/init.json")
secret=$(sed 's/.*"client_secret":"\([^"]*\)".*/\1/' "$work/init.json")
COFFER_LIMITS_RATE_LIMIT=0 COFFER_METRICS_LISTEN=127.0.0.1:19465 COFFER_LOG_LEVEL=error \
  "$work/coffer" serve --data-dir "$work/data" --listen 127.0.0.1:18444 2>"$work/coffer.log" &
pids+=($!)
curl_c() { curl -sf --cacert "$work/data/tls/ca.pem" "$@"; }
for _ in $(seq 1 100); do curl_c https://127.0.0.1:18444/healthz >/dev/null && break; sleep 0.2; done
ctok=$(curl_c -u "$id:$secret" -d grant_type=client_credentials https://127.0.0.1:18444/v1/oauth/token | sed 's/.*"access_token":"\([^"]*\)".*/\1/')

# Vault: dev server over TLS, transit mounted, upsert off (as Coffer).
mkdir -p "$work/vault"
HOME="$work/vault" "$vault" server -dev -dev-tls -dev-tls-cert-dir="$work/vault" -dev-root-token-id=root \
  -dev-listen-address=127.0.0.1:18200 >"$work/vault.log" 2>&1 &
pids+=($!)
curl_v() { curl -sf --cacert "$work/vault/vault-ca.pem" -H 'X-Vault-Token: root' "$@"; }
for _ in $(seq 1 300); do [ -f "$work/vault/vault-ca.pem" ] && curl_v https://127.0.0.1:18200/v1/sys/health >/dev/null && break; sleep 0.2; done
curl_v -X POST -d '{"type":"transit"}' https://127.0.0.1:18200/v1/sys/mounts/transit
curl_v -X POST -d '{"disable_upsert":true}' https://127.0.0.1:18200/v1/transit/config/keys >/dev/null

declare -A base tok
base[coffer]=https://127.0.0.1:18444/v1/transit
base[vault]=https://127.0.0.1:18200/v1/transit
base[vault-audit]=${base[vault]}
tok[coffer]=$ctok tok[vault]=root tok[vault-audit]=root

pt=$(head -c 100 /dev/zero | tr '\0' 'x' | base64 -w0) # 100 bytes
python3 - "$work" "$pt" <<'PY'
import json, sys
work, pt = sys.argv[1], sys.argv[2]
json.dump({"plaintext": pt}, open(work + "/enc1.json", "w"))
json.dump({"batch_input": [{"plaintext": pt} for _ in range(1000)]}, open(work + "/enc1000.json", "w"))
PY
call() { # target, then curl arguments
  local t=$1; shift
  if [ "$t" = coffer ]; then curl_c -H "X-Vault-Token: $ctok" "$@"; else curl_v "$@"; fi
}
for t in coffer vault; do
  call "$t" -X POST "${base[$t]}/keys/bench" >/dev/null
  ct=$(call "$t" -d @"$work/enc1.json" "${base[$t]}/encrypt/bench" | sed 's/.*"ciphertext":"\([^"]*\)".*/\1/')
  printf '{"ciphertext":"%s"}' "$ct" > "$work/dec1-$t.json"
done
cp "$work/dec1-vault.json" "$work/dec1-vault-audit.json"

audit() { # on|off: Vault's file audit device (it does not fsync each entry)
  if [ "$1" = on ]; then
    curl_v -X PUT -d "{\"type\":\"file\",\"options\":{\"file_path\":\"$work/vault/audit.log\"}}" https://127.0.0.1:18200/v1/sys/audit/file
  else
    curl_v -X DELETE https://127.0.0.1:18200/v1/sys/audit/file || true
  fi
}

echo "transit side by side: $(date -u +%FT%TZ), $(nproc) cores, ${secs}s per run, $rounds rounds, $conns connections, keep-alive, TLS, hey"
echo "coffer: ${COFFER_DATABASE_URL:+PostgreSQL}${COFFER_DATABASE_URL:-SQLite}, durable audit; vault 1.14.2 dev (in-memory), with and without a file audit device"
results=$work/results.tsv
: > "$results"
targets=(coffer vault vault-audit)
for r in $(seq 1 "$rounds"); do
  for s in enc1 dec1 enc1000; do
    for i in 0 1 2; do
      t=${targets[$(( (i + r) % 3 ))]}
      if [ "$t" = vault-audit ]; then audit on; fi
      body=$work/$s.json
      [ "$s" = dec1 ] && body=$work/dec1-$t.json
      path=encrypt; [ "$s" = dec1 ] && path=decrypt
      out=$("$work/hey" -z "${secs}s" -c "$conns" -m POST -H "X-Vault-Token: ${tok[$t]}" -T application/json -D "$body" "${base[$t]}/$path/bench")
      if [ "$t" = vault-audit ]; then audit off; fi
      rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
      p99=$(awk '$1=="99%" {printf "%.1f", $3*1000}' <<<"$out")
      bad=$( (grep -E '^\s+\[[^2][0-9][0-9]\]' <<<"$out" || true) | awk '{s+=$2} END {print s+0}')
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$s" "$t" "$rps" "$p99" "$bad" | tee -a "$results"
    done
  done
done
python3 - "$results" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
med = {}
for s in ("enc1", "dec1", "enc1000"):
    for t in ("coffer", "vault", "vault-audit"):
        v = [int(r[3]) for r in rows if r[1] == s and r[2] == t]
        p = [float(r[4]) for r in rows if r[1] == s and r[2] == t]
        med[s, t] = (statistics.median(v), statistics.median(p), sum(int(r[5]) for r in rows if r[1] == s and r[2] == t))
names = {"enc1": "encrypt, 1 item", "dec1": "decrypt, 1 item", "enc1000": "encrypt, batch_input of 1,000"}
print("\n| request | Coffer req/s (p99 ms) | Vault req/s (p99) | Vault + file audit req/s (p99) | Coffer / Vault | Coffer / Vault + audit | non-2xx |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for s in ("enc1", "dec1", "enc1000"):
    c, v, a = med[s, "coffer"], med[s, "vault"], med[s, "vault-audit"]
    items = " (×1,000 items)" if s == "enc1000" else ""
    print(f"| {names[s]}{items} | {c[0]:,.0f} ({c[1]}) | {v[0]:,.0f} ({v[1]}) | {a[0]:,.0f} ({a[1]}) | {c[0]/v[0]:.2f}× | {c[0]/a[0]:.2f}× | {c[2]+v[2]+a[2]} |")
PY
