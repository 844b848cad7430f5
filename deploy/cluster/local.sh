#!/usr/bin/env bash
# A three-node Coffer cluster on this one machine, to try what docs/cluster.md
# describes: one PostgreSQL database, three nodes made from one `coffer init`
# (the data directory copied, nothing else configured), and HAProxy in front
# (deploy/cluster/haproxy.cfg) when it is installed.
#
#   deploy/cluster/local.sh up    [DIR]   init, then start the nodes (and HAProxy)
#   deploy/cluster/local.sh check [DIR]   what a cluster must survive, step by step
#   deploy/cluster/local.sh down  [DIR]   stop everything (the database is kept)
#
# DIR defaults to ./coffer-cluster. Settings (environment):
#   COFFER_BIN           the coffer binary (default: coffer on PATH)
#   CLUSTER_DB_ADMIN_URL a PostgreSQL URL allowed to create databases
#                        (default postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable)
#   CLUSTER_DB           the database made for the cluster (default coffer_cluster; dropped by `up`)
#   CLUSTER_PORT         first port: nodes on PORT+1..PORT+3, HAProxy on PORT, the nodes'
#                        metrics on PORT+11..PORT+13 (default 18440)
set -euo pipefail

cmd=${1:-}
dir=${2:-./coffer-cluster}
bin=${COFFER_BIN:-coffer}
admin_url=${CLUSTER_DB_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}
db=${CLUSTER_DB:-coffer_cluster}
port=${CLUSTER_PORT:-18440}
# Two roles, as SECURITY.md §5 asks: the owner migrates, the app role serves
# (it cannot rewrite the audit log). Passwords are left to the database's
# authentication here (a trial on loopback); set them in a real deployment.
base=${admin_url%%\?*}
base=${base%/*}
base=${base/\/\/*@/\/\/}
owner_url="${base/\/\//\/\/${db}_owner@}/$db?sslmode=disable"
db_url="${base/\/\//\/\/${db}_app@}/$db?sslmode=disable"

say() { printf '%s %s\n' "[$(date +%T)]" "$*"; }
die() { say "FAILED: $*" >&2; exit 1; }

node_url() { echo "https://127.0.0.1:$((port + $1))"; }
lb_url() { echo "https://127.0.0.1:$port"; }

wait_ready() { # URL [seconds [PIDFILE]]
  local url=$1 n=${2:-40} pidfile=${3:-}
  for _ in $(seq 1 "$((n * 4))"); do
    if curl -fsS --cacert "$dir/node1/tls/ca.pem" -o /dev/null "$url/readyz" 2>/dev/null; then return 0; fi
    if [ -n "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then return 1; fi
    sleep 0.25
  done
  return 1
}

start_node() { # N
  local i=$1
  COFFER_DATABASE_URL=$db_url COFFER_PUBLIC_URL=$(lb_url) COFFER_METRICS_LISTEN=127.0.0.1:$((port + 10 + i)) \
    "$bin" serve --data-dir "$dir/node$i" --listen "127.0.0.1:$((port + i))" \
    >>"$dir/node$i.log" 2>&1 &
  echo $! >"$dir/node$i.pid"
}

up() {
  command -v "$bin" >/dev/null || die "no coffer binary ($bin): build it (go build -o coffer ./cmd/coffer) or set COFFER_BIN"
  [ ! -e "$dir/node1" ] || die "$dir already holds a cluster: run down, then remove it"
  mkdir -p "$dir"
  say "database $db, roles ${db}_owner and ${db}_app (dropped and made anew)"
  psql -q "$admin_url" -v ON_ERROR_STOP=1 >/dev/null <<EOSQL
DROP DATABASE IF EXISTS $db;
DROP ROLE IF EXISTS ${db}_owner;
DROP ROLE IF EXISTS ${db}_app;
CREATE ROLE ${db}_owner LOGIN;
CREATE ROLE ${db}_app LOGIN;
CREATE DATABASE $db OWNER ${db}_owner;
REVOKE ALL ON DATABASE $db FROM PUBLIC;
GRANT CONNECT ON DATABASE $db TO ${db}_app;
EOSQL
  say "coffer init (once), as the owner: $dir/node1"
  "$bin" init --data-dir "$dir/node1" --database-url "$owner_url" --listen "127.0.0.1:$((port + 1))" \
    --host 127.0.0.1 --json >"$dir/init.json"
  chmod 600 "$dir/init.json"
  say "coffer migrate, as the owner, granting the app role what serving needs"
  COFFER_DATABASE_APP_ROLE=${db}_app "$bin" migrate --data-dir "$dir/node1" --database-url "$owner_url" >/dev/null
  for i in 2 3; do
    say "node$i: a copy of node1's data directory"
    cp -a "$dir/node1" "$dir/node$i"
  done
  for i in 1 2 3; do
    say "node$i: serve on $(node_url "$i")"
    start_node "$i"
  done
  for i in 1 2 3; do wait_ready "$(node_url "$i")" 40 "$dir/node$i.pid" || die "node$i not ready (see $dir/node$i.log)"; done
  if command -v haproxy >/dev/null; then
    say "HAProxy on $(lb_url) (deploy/cluster/haproxy.cfg)"
    COFFER_LB_LISTEN=127.0.0.1:$port COFFER_CA_FILE=$dir/node1/tls/ca.pem \
      COFFER_NODE1=127.0.0.1:$((port + 1)) COFFER_NODE2=127.0.0.1:$((port + 2)) COFFER_NODE3=127.0.0.1:$((port + 3)) \
      haproxy -f "$(dirname "$0")/haproxy.cfg" -db >>"$dir/haproxy.log" 2>&1 &
    echo $! >"$dir/haproxy.pid"
    wait_ready "$(lb_url)" || die "HAProxy not forwarding (see $dir/haproxy.log)"
  else
    say "no haproxy installed: the nodes are served without a load balancer (apt-get install haproxy)"
  fi
  local id
  id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["client_id"])' "$dir/init.json")
  cat <<EOT

Three nodes are up: $(node_url 1), $(node_url 2), $(node_url 3)$(command -v haproxy >/dev/null && echo ", behind $(lb_url)")
CA certificate: $dir/node1/tls/ca.pem; admin client $id, secret in $dir/init.json.
Log in with every node (the CLI spreads calls and fails over):
  COFFER_CLIENT_SECRET=... $bin login --url $(node_url 1),$(node_url 2),$(node_url 3) --ca-file $dir/node1/tls/ca.pem --client-id $id
EOT
}

down() {
  for f in "$dir"/node*.pid "$dir"/haproxy.pid; do
    [ -e "$f" ] || continue
    kill "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
  say "stopped"
}

check() {
  [ -e "$dir/init.json" ] || die "no cluster in $dir: run up first"
  local id secret ca cli ct pt
  id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["client_id"])' "$dir/init.json")
  secret=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["client_secret"])' "$dir/init.json")
  ca=$dir/node1/tls/ca.pem
  export COFFER_CONFIG_DIR=$dir/cli
  export COFFER_PROFILE=cluster
  cli() { "$bin" "$@"; }

  say "1. every node ready, and lists the three"
  for i in 1 2 3; do wait_ready "$(node_url "$i")" 5 || die "node$i not ready"; done
  COFFER_CLIENT_SECRET=$secret cli login --url "$(node_url 1),$(node_url 2),$(node_url 3)" --ca-file "$ca" --client-id "$id" >/dev/null
  tok=$(curl -fsS --cacert "$ca" -u "$id:$secret" -d grant_type=client_credentials "$(node_url 1)/v1/oauth/token" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  for i in 1 2 3; do
    n=$(curl -fsS --cacert "$ca" -H "Authorization: Bearer $tok" "$(node_url "$i")/v1/sys/nodes" |
      python3 -c 'import json,sys; print(len(json.load(sys.stdin)["nodes"]))')
    [ "$n" = 3 ] || die "node$i lists $n nodes, want 3 (a token from node1 must work on node$i)"
  done

  say "2. a key made through the CLI, used on every node"
  cli transit create cluster-check >/dev/null
  ct=$(cli transit encrypt -o json cluster-check "three nodes, one deployment" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ciphertext"])')
  for i in 1 2 3; do
    pt=$(curl -fsS --cacert "$ca" -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' \
      -d "{\"ciphertext\":\"$ct\"}" "$(node_url "$i")/v1/keys/cluster-check/decrypt" |
      python3 -c 'import base64,json,sys; print(base64.b64decode(json.load(sys.stdin)["plaintext"]).decode())')
    [ "$pt" = "three nodes, one deployment" ] || die "node$i decrypted to '$pt'"
  done

  say "3. node1 killed (SIGKILL) under write and read load"
  api() { # METHOD URL [BODY [IDEMPOTENCY-KEY]]: prints the body, then the status on a line of its own
    curl -sS --max-time 10 --cacert "$ca" -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' \
      ${4:+-H "Idempotency-Key: $4"} -X "$1" ${3:+-d "$3"} -w '\n%{http_code}' "$2" 2>/dev/null || printf '\n000'
  }
  api POST "$(node_url 2)/v1/collections" '{"name":"cluster_check","fields":[{"name":"email","type":"email","searchable":true}]}' |
    tail -n1 | grep -qx 201 || die "create the collection"
  rm -f "$dir"/acked.* "$dir"/errors "$dir"/reads "$dir/stop-load"
  writer() { # W: creates, each under its own Idempotency-Key, retried at the next node until acknowledged
    local w=$1 k=0 tries out code
    while [ ! -e "$dir/stop-load" ]; do
      k=$((k + 1)); tries=0
      while :; do
        out=$(api POST "$(node_url $(((w + k + tries) % 3 + 1)))/v1/collections/cluster_check/records" \
          "{\"data\":{\"email\":\"w$w-$k@example.com\"}}" "w$w-$k")
        code=${out##*$'\n'}
        case $code in
        201) echo "w$w-$k $(sed -n 's/.*"id":"\([^"]*\)".*/\1/p' <<<"$out" | head -n1)" >>"$dir/acked.$w"; break ;;
        5??) [ "$code" = 503 ] || echo "w$w-$k answered $code" >>"$dir/errors" ;;
        esac
        tries=$((tries + 1))
        [ "$tries" -lt 60 ] || { echo "w$w-$k never acknowledged" >>"$dir/errors"; break; }
        sleep 0.5
      done
    done
  }
  reader() { # reads the first acknowledged record from every node in turn
    local k=0 id code
    while [ ! -e "$dir/stop-load" ]; do
      k=$((k + 1))
      id=$(head -n1 "$dir/acked.1" 2>/dev/null | cut -d' ' -f2) || id=""
      if [ -n "$id" ]; then
        code=$(api GET "$(node_url $((k % 3 + 1)))/v1/collections/cluster_check/records/$id" | tail -n1)
        case $code in 5??) [ "$code" = 503 ] || echo "read answered $code" >>"$dir/errors" ;; esac
        echo "$code" >>"$dir/reads"
      fi
      sleep 0.05
    done
  }
  pids=()
  for w in 1 2 3 4; do writer "$w" & pids+=($!); done
  reader & pids+=($!)
  sleep 3
  kill -9 "$(cat "$dir/node1.pid")"
  say "   node1 killed mid-run; the load goes on"
  for k in 1 2 3 4 5 6; do
    ct=$(cli transit encrypt -o json cluster-check "after the kill $k" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["ciphertext"])') || die "CLI call $k after node1 died"
    [ "$(cli transit decrypt --raw cluster-check "$ct")" = "after the kill $k" ] || die "CLI round trip $k"
  done
  if [ -e "$dir/haproxy.pid" ]; then
    sleep 2.5 # two failed checks a second apart
    for k in $(seq 1 9); do
      curl -fsS --cacert "$ca" -o /dev/null "$(lb_url)/readyz" || die "through HAProxy, request $k after node1 died"
    done
  fi
  sleep 3
  touch "$dir/stop-load"
  wait "${pids[@]}" || die "a load process failed"
  [ ! -s "$dir/errors" ] || die "$(sort "$dir/errors" | uniq -c | head -n 5)"
  [ "$(grep -c '^200$' "$dir/reads" 2>/dev/null)" -gt 0 ] || die "the reader read nothing"
  cat "$dir"/acked.* >"$dir/acked"
  acked=$(wc -l <"$dir/acked")
  [ "$acked" -gt 0 ] || die "no create acknowledged"
  say "   $acked creates acknowledged, $(grep -c '^200$' "$dir/reads") reads answered ($(grep -c '^503$' "$dir/reads" || true) 503s, no other 5xx); each create readable, each key one record"
  # One process and two kept-alive connections for every check (a curl and a python per record took minutes).
  python3 - "$ca" "$tok" "$(node_url 2)" "$(node_url 3)" "$dir/acked" <<'PY' || die "an acknowledged create is missing or doubled"
import http.client, json, ssl, sys, urllib.parse
ca, tok, read_url, search_url, acked = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=ca)
def conn(url):
    u = urllib.parse.urlsplit(url)
    return http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=10)
reader, searcher = conn(read_url), conn(search_url)
hdr = {"Authorization": "Bearer " + tok, "Content-Type": "application/json"}
def call(c, method, path, body=None):
    c.request(method, path, body=body, headers=hdr)
    r = c.getresponse()
    return r.status, r.read()
for line in open(acked):
    key, rid = line.split()
    status, _ = call(reader, "GET", "/v1/collections/cluster_check/records/" + rid)
    if status != 200:
        sys.exit("acknowledged record %s (%s) not readable: %d" % (rid, key, status))
    status, body = call(searcher, "POST", "/v1/collections/cluster_check/records/search",
                        json.dumps({"where": {"email": key + "@example.com"}, "limit": 10}))
    hits = len(json.loads(body)["records"]) if status == 200 else -1
    if hits != 1:
        sys.exit("key %s made %d records (search answered %d)" % (key, hits, status))
PY

  say "4. node1 restarted: it takes its id back once its lease runs out"
  start_node 1
  wait_ready "$(node_url 1)" 40 "$dir/node1.pid" || die "node1 not ready after its restart (see $dir/node1.log)"

  say "5. every node's audit chain verifies"
  COFFER_DATABASE_URL=$db_url "$bin" audit verify --data-dir "$dir/node1" >/dev/null || die "audit verify"
  say "cluster check passed"
}

case "$cmd" in
up) up ;;
down) down ;;
check) check ;;
*) sed -n '2,17p' "$0" >&2; exit 2 ;;
esac
