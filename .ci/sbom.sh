#!/usr/bin/env bash
# .ci/sbom.sh — software bill of materials: CycloneDX JSON for the coffer binary, written to
# dist/sbom.cdx.json (dist/ is gitignored; CI keeps it as an artifact).
#
# `app` mode lists what is linked into ./cmd/coffer for this GOOS/GOARCH (not test-only or
# tool modules), with the Go standard library as a component (-std) so that the toolchain
# version a scanner checks is the one we build with, and detected licenses (-licenses,
# reported as evidence). Fails if the SBOM cannot be made or does not name our module.
# shellcheck source=.ci/lib.sh
. "$(dirname "$0")/lib.sh"

# shellcheck source=tools/versions.env
. tools/versions.env
cyclonedx=$(tool cyclonedx-gomod)
out=dist/sbom.cdx.json

header "sbom: cyclonedx-gomod $CYCLONEDX_GOMOD_VERSION app ./cmd/coffer -> $out"
mkdir -p dist
# The build constraints the SBOM describes come from the environment, as for `go build`
# (GOOS, GOARCH, CGO_ENABLED, GOFLAGS): run it with the release build's settings.
"$cyclonedx" app -json -licenses -std -main cmd/coffer -output "$out" . \
  || fail "cyclonedx-gomod could not make the SBOM"
grep -q '"bomFormat": "CycloneDX"' "$out" || fail "$out is not a CycloneDX document"
grep -q '"purl": "pkg:golang/github.com/cofferhq/coffer@' "$out" || fail "$out does not describe github.com/cofferhq/coffer"
echo "$out: $(grep -c '"purl": "pkg:golang/' "$out") Go components ($(wc -c <"$out") bytes)"
