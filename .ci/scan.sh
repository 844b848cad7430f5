#!/usr/bin/env bash
# Scans a running Coffer from outside, as an attacker would on the wire:
#  - sslscan (Debian): only TLS 1.2+ and AEAD suites may be accepted (no SSL, no TLS 1.0/1.1,
#    no CBC: LUCKY13 and friends), and a plain-HTTP request gets no data;
#  - sqlmap (Debian): the search and record endpoints must report nothing injectable.
# Targets 127.0.0.1 only; bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/lib.sh
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3}
for tool in sslscan sqlmap; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install $tool)"; exit 1; }
done
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
go build -o "$work/coffer" ./cmd/coffer
"$work/coffer" init --data-dir "$work/data" --json >"$work/init.json"
id=$(sed 's/.*"client_id":"\([^"]*\)".*/\1/' "$work/init.json")
secret=$(sed 's/.*"client_secret":"\([^"]*\)".*/\1/' "$work/init.json")
port=18643
COFFER_LIMITS_RATE_LIMIT=0 COFFER_METRICS_LISTEN=127.0.0.1:19643 COFFER_LOG_LEVEL=error \
  "$work/coffer" serve --data-dir "$work/data" --listen 127.0.0.1:$port 2>"$work/server.log" &
pid=$!
url=https://127.0.0.1:$port
ca="$work/data/tls/ca.pem"
for _ in $(seq 1 100); do curl -sf --cacert "$ca" "$url/healthz" >/dev/null && break; sleep 0.2; done

header "scan: TLS (sslscan)"
sslscan --no-colour --no-fallback "127.0.0.1:$port" >"$work/sslscan.txt" || true
grep -E "^(SSLv|TLSv)|Accepted|Preferred" "$work/sslscan.txt" || true
bad=0
grep -Eq "^(SSLv2|SSLv3|TLSv1\.0|TLSv1\.1) +enabled" "$work/sslscan.txt" && { echo "FAIL: a protocol below TLS 1.2 is enabled"; bad=1; }
if grep -E "^(Preferred|Accepted)" "$work/sslscan.txt" | grep -Ev "GCM|CHACHA20|TLS_AES_|TLS_CHACHA20" | grep -q .; then
  echo "FAIL: a non-AEAD (CBC) cipher suite is accepted"; bad=1
fi
grep -Eq "^(Preferred|Accepted)" "$work/sslscan.txt" || { echo "FAIL: sslscan saw no accepted suite (scan did not run?)"; bad=1; }
# Plain HTTP to the HTTPS port: Go answers 400 with no data.
plain=$(curl -s "http://127.0.0.1:$port/v1/collections" || true)
if grep -q '"' <<<"$plain"; then echo "FAIL: plain HTTP got JSON: $plain"; bad=1; fi
[ $bad -eq 0 ] || exit 1
echo "sslscan: TLS 1.2+ with AEAD suites only"

header "scan: SQL injection (sqlmap)"
tok=$(curl -sf --cacert "$ca" -u "$id:$secret" -d grant_type=client_credentials "$url/v1/oauth/token" | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
auth="Authorization: Bearer $tok"
curl -sf --cacert "$ca" -H "$auth" -H 'Content-Type: application/json' -d '{"name":"customers","fields":[
  {"name":"name","type":"string","searchable":true},{"name":"email","type":"email","searchable":true}]}' "$url/v1/collections" >/dev/null
rid=$(curl -sf --cacert "$ca" -H "$auth" -H 'Content-Type: application/json' \
  -d '{"owner":"o1","data":{"name":"Ada","email":"ada@example.com"}}' "$url/v1/collections/customers/records" | sed 's/.*"id":"\([^"]*\)".*/\1/')
run_sqlmap() { # name, then sqlmap arguments
  local name=$1; shift
  timeout 300 sqlmap --batch --flush-session --disable-coloring --level 2 --risk 1 --technique BEUST --time-sec 2 \
    --threads 4 --output-dir "$work/sqlmap" -H "$auth" "$@" >"$work/sqlmap-$name.txt" 2>&1 || true
  if grep -Eqi "is vulnerable|appears to be injectable|sqlmap identified the following injection" "$work/sqlmap-$name.txt"; then
    echo "FAIL: sqlmap found an injection in $name"; grep -Ei "injectable|Parameter:" "$work/sqlmap-$name.txt" | head; return 1
  fi
  if ! grep -Eqi "do not appear to be injectable|not injectable" "$work/sqlmap-$name.txt"; then
    echo "FAIL: sqlmap did not finish testing $name"; tail -20 "$work/sqlmap-$name.txt"; return 1
  fi
  grep -Ei "testing '|do not appear" "$work/sqlmap-$name.txt" | sed 's/^/  /' | tail -n 12
  echo "sqlmap: $name: nothing injectable"
}
run_sqlmap search -u "$url/v1/collections/customers/records/search" \
  --data '{"where":{"name":"Ada*"},"limit":5}' -H 'Content-Type: application/json'
run_sqlmap record -u "$url/v1/collections/customers*/records/$rid*"
