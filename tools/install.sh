#!/usr/bin/env bash
# tools/install.sh TOOL... — installs each pinned CI tool (versions in tools/versions.env)
# and prints the absolute path of its binary, one line per TOOL, in order.
#
# TOOLs: staticcheck gosec govulncheck cyclonedx-gomod indexdb
#
# Each tool is built with `go install MODULE/CMD@VERSION` from the Go module proxy: the
# tool's own go.mod pins its dependencies and the checksum database verifies them. The
# binary is cached outside the clone, keyed by tool, version and Go toolchain, in
#   ${COFFER_CI_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/coffer-ci}/bin/TOOL@VERSION+GOVERSION/
# so a second run reuses it. A build goes to a temporary directory first and is moved into
# place only when it succeeded, so an interrupted run never leaves a broken cache entry.
# Build progress goes to stderr; stdout carries only the paths.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tools/versions.env
. "$here/versions.env"

export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3}
cache=${COFFER_CI_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/coffer-ci}
goversion=$(go env GOVERSION)

# pkg_of TOOL prints "PACKAGE VERSION" for a known tool.
pkg_of() {
  case "$1" in
    staticcheck) echo "honnef.co/go/tools/cmd/staticcheck $STATICCHECK_VERSION" ;;
    gosec) echo "github.com/securego/gosec/v2/cmd/gosec $GOSEC_VERSION" ;;
    govulncheck) echo "golang.org/x/vuln/cmd/govulncheck $GOVULNCHECK_VERSION" ;;
    cyclonedx-gomod) echo "github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod $CYCLONEDX_GOMOD_VERSION" ;;
    indexdb) echo "golang.org/x/vulndb/cmd/indexdb $VULNDB_VERSION" ;;
    *) echo "tools/install.sh: unknown tool $1" >&2; return 1 ;;
  esac
}

install_one() {
  local tool=$1 pkg version dir tmp
  read -r pkg version <<<"$(pkg_of "$tool")"
  dir="$cache/bin/$tool@$version+$goversion"
  if [ ! -x "$dir/$tool" ]; then
    echo "installing $pkg@$version ($goversion) into $dir" >&2
    mkdir -p "$cache/bin"
    tmp=$(mktemp -d "$cache/bin/.tmp-$tool.XXXXXX")
    # Build outside the project: its GOFLAGS (-mod=readonly) and go.mod do not apply to a
    # tool's own module, and -trimpath keeps local paths out of the binary.
    if ! (cd "$tmp" && GOFLAGS=-trimpath GOBIN="$tmp/bin" go install "$pkg@$version" >&2); then
      rm -rf "$tmp"
      echo "tools/install.sh: could not build $pkg@$version" >&2
      return 1
    fi
    rm -rf "$dir"
    mv "$tmp/bin" "$dir"
    rm -rf "$tmp"
  fi
  echo "$dir/$tool"
}

if [ $# -eq 0 ]; then
  echo "usage: tools/install.sh TOOL... (staticcheck gosec govulncheck cyclonedx-gomod indexdb)" >&2
  exit 2
fi
for t in "$@"; do install_one "$t"; done
