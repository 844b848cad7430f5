#!/usr/bin/env bash
# .ci/vuln.sh [PACKAGES...] — known-vulnerability gate: govulncheck against an offline
# copy of the Go vulnerability database. PACKAGES default to ./... .
#
# CI cannot reach vuln.go.dev, but the database's source, the golang.org/x/vulndb module,
# is on the module proxy. We download it at the version pinned in tools/versions.env,
# index its OSV reports with its own cmd/indexdb into the layout govulncheck reads, and
# point govulncheck at it with -db file://. The built database is cached per vulndb
# version, so only a version bump rebuilds it. govulncheck also checks the standard
# library of the toolchain in use (GOTOOLCHAIN), so a vulnerable Go release fails too.
#
# Fails (govulncheck exit 3) when code reachable from these packages calls a vulnerable
# symbol. Modules that are required but whose vulnerable code is not reached are listed
# by govulncheck as informational and do not fail the gate.
# shellcheck source=.ci/lib.sh
. "$(dirname "$0")/lib.sh"

pkgs=("$@")
[ ${#pkgs[@]} -gt 0 ] || pkgs=(./...)

# shellcheck source=tools/versions.env
. tools/versions.env
govulncheck=$(tool govulncheck)
db="$COFFER_CI_CACHE/vulndb/$VULNDB_VERSION"

header "vuln: database golang.org/x/vulndb@$VULNDB_VERSION"
if [ ! -s "$db/index/db.json" ]; then
  indexdb=$(tool indexdb)
  # Outside the project, so that its go.mod and -mod=readonly do not apply.
  src=$(cd / && GOFLAGS='' go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  [ -d "$src/data/osv" ] || fail "golang.org/x/vulndb@$VULNDB_VERSION has no data/osv (download failed?)"
  mkdir -p "$COFFER_CI_CACHE/vulndb"
  tmp=$(mktemp -d "$COFFER_CI_CACHE/vulndb/.tmp.XXXXXX")
  "$indexdb" -vulns "$src/data/osv" -out "$tmp/db" || { rm -rf "$tmp"; fail "indexdb failed"; }
  rm -rf "$db" && mv "$tmp/db" "$db" && rm -rf "$tmp"
fi
# The OSV files in the vulndb repository carry no dates (they are stamped on publication),
# so the pseudo-version's timestamp is the age of this copy.
echo "$(find "$db/ID" -name '*.json' | wc -l) advisories as of ${VULNDB_VERSION#v0.0.0-}"

header "vuln: govulncheck $GOVULNCHECK_VERSION ($(go env GOVERSION))"
"$govulncheck" -db "file://$db" "${pkgs[@]}" || fail "govulncheck found reachable known vulnerabilities (upgrade the module or the toolchain)"
