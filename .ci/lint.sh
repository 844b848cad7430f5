#!/usr/bin/env bash
# .ci/lint.sh [PACKAGES...] — static analysis gate: staticcheck, then gosec.
# Fails on any finding. PACKAGES default to ./... (pass a subset to try it locally).
#
# Exceptions belong in the code, next to what they excuse, never in this script:
#   staticcheck: //lint:ignore CHECK reason
#   gosec:       // #nosec G304 -- reason     (a rule id and a "-- reason" are required)
# shellcheck source=.ci/lib.sh
. "$(dirname "$0")/lib.sh"

pkgs=("$@")
[ ${#pkgs[@]} -gt 0 ] || pkgs=(./...)

staticcheck=$(tool staticcheck)
gosec=$(tool gosec)

header "lint: staticcheck ($("$staticcheck" -version))"
# Default checks (all but a few style checks); test files are analysed too.
# Both tools run even when the first fails, so one CI run shows every finding.
failed=()
if "$staticcheck" "${pkgs[@]}"; then
  echo "staticcheck: clean"
else
  failed+=("staticcheck found problems (fix them, or //lint:ignore CHECK reason)")
fi

header "lint: gosec $(. tools/versions.env && echo "$GOSEC_VERSION")"
# -tests is off (gosec's default): test files and the black-box suites under test/ hold
# fixtures (fixed keys, temp files, local listeners) that are not shipped code.
# -exclude-generated skips files marked "Code generated ... DO NOT EDIT.".
# -nosec-require-rules and -nosec-require-justification refuse a bare #nosec: every
# suppression must name its rule and say why.
if "$gosec" -quiet -color=false -exclude-generated \
  -nosec-require-rules -nosec-require-justification "${pkgs[@]}"; then
  echo "gosec: clean"
else
  failed+=("gosec found problems (fix them, or // #nosec Gxxx -- reason)")
fi

for f in "${failed[@]}"; do echo "FAIL: $f" >&2; done
[ ${#failed[@]} -eq 0 ] || exit 1
