#!/usr/bin/env bash
# The README's walk-through, against a running `coffer dev` (needs curl 7.76+).
# It prints what each step did and stops at the first failed step.
set -euo pipefail
DIR=${DIR:-.coffer-dev}              # where `coffer dev` keeps its data
URL=${URL:-https://127.0.0.1:8443}   # what `coffer dev` printed
CA=$DIR/tls/ca.pem
ID=$(sed -n 's/.*"client_id": "\(.*\)".*/\1/p' "$DIR/dev-credentials.json")
SECRET=$(sed -n 's/.*"client_secret": "\(.*\)".*/\1/p' "$DIR/dev-credentials.json")

# call METHOD PATH [JSON]: print the answer; on an HTTP error print it and stop.
call() {
  local out
  if ! out=$(curl -sS --fail-with-body --cacert "$CA" -H "Authorization: Bearer $TOKEN" \
      -H 'Content-Type: application/json' -X "$1" ${3:+--data "$3"} "$URL$2"); then
    echo "FAILED: $1 $2: $out" >&2
    return 1
  fi
  printf '%s\n' "$out"
}

echo '== 1. An access token (OAuth 2.0 client credentials; a 15-minute EdDSA JWT)'
ANSWER=$(curl -sS --fail-with-body --cacert "$CA" -u "$ID:$SECRET" -d grant_type=client_credentials \
  "$URL/v1/oauth/token") || { echo "FAILED: token request: $ANSWER" >&2; exit 1; }
TOKEN=$(printf '%s' "$ANSWER" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
[ -n "$TOKEN" ] || { echo "FAILED: no access_token in the answer" >&2; exit 1; }
echo "token: ${TOKEN:0:24}…"

echo '== 2. A collection: typed fields, a searchable (blind-indexed) email'
if call GET /v1/collections/customers >/dev/null 2>&1; then
  echo "customers exists already"
else
  call POST /v1/collections '{"name":"customers","fields":[{"name":"name","type":"string"},
    {"name":"email","type":"email","searchable":true},
    {"name":"card_number","type":"card_number"},{"name":"ssn","type":"ssn"}]}'
fi

echo '== 3. A record: each value sealed with AES-256-GCM under the collection data key'
ID1=$(call POST /v1/collections/customers/records '{"owner":"user-1","data":{"name":"Ada Lovelace",
  "email":"ada@example.com","card_number":"4111 1111 1111 1111","ssn":"123-45-6789"}}' \
  | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
[ -n "$ID1" ] || { echo "FAILED: no record id in the answer" >&2; exit 1; }
echo "record: $ID1"

echo '== 4. Read it back, and search by email without decrypting anything to match'
call GET "/v1/collections/customers/records/$ID1"
call POST /v1/collections/customers/records/search '{"where":{"email":"ADA@example.com"}}'

echo '== 5. A format-preserving (FF1) card token: keeps the last four, fails Luhn'
call POST /v1/tokenize '{"items":[{"value":"4111111111111111","type":"card_number","mode":"format_preserving"}]}'
echo '== done'
