# shellcheck shell=bash
# Sourced by the gate scripts in .ci/: one environment and one header style for all.
# Each gate can also be run alone from anywhere in the clone: `bash .ci/lint.sh`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3} GOFLAGS=${GOFLAGS:--mod=readonly}
export CI=${CI:-true}
# Installed tools and built databases live outside the clone, so a fresh clone reuses them.
export COFFER_CI_CACHE=${COFFER_CI_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/coffer-ci}

# header TEXT prints a banner that stands out in a long CI log.
header() { printf '\n### %s\n' "$*"; }

# fail TEXT prints why a gate failed, to stderr, and exits 1.
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

# tool NAME prints the path of a pinned tool, installing it on first use (tools/install.sh).
tool() { bash tools/install.sh "$1"; }
