#!/usr/bin/env bash
# HTTPS load run on loopback: /healthz as the baseline, then record create,
# record read, search and 1,000-item tokenize batches (random, then
# deterministic), 32 keep-alive clients each, against a fresh SQLite
# deployment (or PostgreSQL with COFFER_DATABASE_URL). Bounded in time;
# targets 127.0.0.1 only.
#   bash bench/load.sh [seconds-per-run]
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=go1.27.3
secs=${1:-10}
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT
go build -o "$work/coffer" ./cmd/coffer
go build -o "$work/hey" github.com/rakyll/hey # pinned in go.mod as a tool
"$work/coffer" init --data-dir "$work/data" --json > "$work/init.json"
id=$(sed 's/.*"client_id":"\([^"]*\)".*/\1/' "$work/init.json")
secret=$(sed 's/.*"client_secret":"\([^"]*\)".*/\1/' "$work/init.json")
# No per-principal rate limit: this measures the server, not the limiter.
COFFER_LIMITS_RATE_LIMIT=0 COFFER_METRICS_LISTEN=127.0.0.1:19464 COFFER_LOG_LEVEL=error \
  "$work/coffer" serve --data-dir "$work/data" --listen 127.0.0.1:18443 2>"$work/server.log" &
pid=$!
url=https://127.0.0.1:18443
ca="$work/data/tls/ca.pem"
for _ in $(seq 1 50); do curl -sf --cacert "$ca" $url/healthz >/dev/null && break; sleep 0.2; done
tok=$(curl -sf --cacert "$ca" -u "$id:$secret" -d grant_type=client_credentials $url/v1/oauth/token | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
auth="Authorization: Bearer $tok"
curl -sf --cacert "$ca" -H "$auth" -H 'Content-Type: application/json' -d '{"name":"customers","fields":[
  {"name":"name","type":"string"},{"name":"email","type":"email","searchable":true},
  {"name":"card_number","type":"card_number"},{"name":"ssn","type":"ssn"}]}' $url/v1/collections >/dev/null
rec='{"owner":"u1","data":{"name":"Ada Lovelace","email":"ada@example.com","card_number":"4111111111111111","ssn":"123-45-6789"}}'
rid=$(curl -sf --cacert "$ca" -H "$auth" -H 'Content-Type: application/json' -d "$rec" $url/v1/collections/customers/records | sed 's/.*"id":"\([^"]*\)".*/\1/')
# The search target is unique: the create run adds thousands of ada@example.com.
curl -sf --cacert "$ca" -H "$auth" -H 'Content-Type: application/json' \
  -d '{"owner":"u2","data":{"name":"Grace Hopper","email":"grace@example.com"}}' $url/v1/collections/customers/records >/dev/null
python3 - "$work/batch.json" "$work/batch-det.json" <<'PY'
import json, sys
json.dump({"items": [{"value": "ada%d@example.com" % i, "type": "email"} for i in range(1000)]}, open(sys.argv[1], "w"))
json.dump({"items": [{"value": "ada%d@example.com" % i, "type": "email", "mode": "deterministic"} for i in range(1000)]}, open(sys.argv[2], "w"))
PY
run() { # name, then hey arguments
  local name=$1; shift
  local out
  out=$("$work/hey" -z "${secs}s" -c 32 "$@")
  printf '%-28s %10s req/s   p50 %8s   p99 %8s   non-2xx %s\n' "$name" \
    "$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")" \
    "$(awk '$1=="50%" {printf "%.1fms", $3*1000}' <<<"$out")" "$(awk '$1=="99%" {printf "%.1fms", $3*1000}' <<<"$out")" \
    "$(grep -E '^\s+\[[^2][0-9][0-9]\]' <<<"$out" | awk '{s+=$2} END {print s+0}')"
}
echo "coffer load run: $(date -u +%FT%TZ), $(nproc) cores, ${secs}s per run, 32 clients, keep-alive, HTTPS (TLS 1.3)"
run "GET /healthz (baseline)" "$url/healthz"
run "POST record (create)" -m POST -H "$auth" -T application/json -d "$rec" "$url/v1/collections/customers/records"
run "GET record (read)" -H "$auth" "$url/v1/collections/customers/records/$rid"
run "POST search (1 hit)" -m POST -H "$auth" -T application/json -d '{"where":{"email":"grace@example.com"},"limit":10}' "$url/v1/collections/customers/records/search"
run "POST tokenize (1,000 items)" -m POST -H "$auth" -T application/json -D "$work/batch.json" "$url/v1/tokenize"
run "POST tokenize (1,000 det.)" -m POST -H "$auth" -T application/json -D "$work/batch-det.json" "$url/v1/tokenize"
