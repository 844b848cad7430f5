#!/usr/bin/env bash
# .ci/fuzz.sh [PACKAGES...] — short fuzzing gate: runs every fuzz target (func FuzzXxx(*testing.F))
# in PACKAGES (default ./...) for a few seconds each and fails if any of them finds a crash.
#
#   COFFER_FUZZ_TIME    seconds per target at most (default 3)
#   COFFER_FUZZ_BUDGET  seconds for the whole gate (default 150)
#
# The budget is shared out as the run goes: each target gets COFFER_FUZZ_TIME, or less (never
# under 1s) when what is left would not cover the targets still to run. If the budget runs out
# anyway (a cold build cache), the targets not reached are named and skipped; their seed
# corpora still ran as ordinary tests in `make test`, so none goes untested.
#
# Targets are found with `go list` (which applies build constraints to pick each package's
# test files) and a grep of those files for fuzz functions: the same answer as
# `go test -list '^Fuzz'` without building a test binary per package just to list it.
#
# A crash leaves its input in the package's testdata/fuzz/FuzzXxx/ (go test says where and
# how to re-run it); commit that file with the fix so it stays a regression test.
# shellcheck source=.ci/lib.sh
. "$(dirname "$0")/lib.sh"

pkgs=("$@")
[ ${#pkgs[@]} -gt 0 ] || pkgs=(./...)
per_target=${COFFER_FUZZ_TIME:-3}
budget=${COFFER_FUZZ_BUDGET:-150}
overhead=2 # rough seconds per target spent linking and gathering the baseline coverage (measured)

header "fuzz: finding targets in ${pkgs[*]}"
targets=()
while read -r pkg files; do
  [ -n "$files" ] || continue
  # shellcheck disable=SC2086,SC2013 # files: space-separated paths (Go package dirs hold no spaces)
  for name in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)[[:space:]]*([[:alnum:]_]* \*testing\.F).*/\1/p' $files); do
    targets+=("$pkg $name")
  done
done < <(go list -e -f '{{.ImportPath}}{{range .TestGoFiles}} {{$.Dir}}/{{.}}{{end}}{{range .XTestGoFiles}} {{$.Dir}}/{{.}}{{end}}' "${pkgs[@]}")
n=${#targets[@]}
echo "$n fuzz targets; up to ${per_target}s each, ${budget}s in all"
[ "$n" -gt 0 ] || exit 0

start=$(date +%s)
failed=() skipped=()
for i in "${!targets[@]}"; do
  read -r pkg name <<<"${targets[$i]}"
  left=$(( budget - ($(date +%s) - start) ))
  if [ "$left" -le 0 ]; then skipped+=("$pkg $name"); continue; fi
  t=$(( left / (n - i) - overhead ))
  [ "$t" -le "$per_target" ] || t=$per_target
  [ "$t" -ge 1 ] || t=1
  header "fuzz: $pkg $name (${t}s)"
  # -run '^$' skips the unit tests (they ran already); -timeout stops a hung target.
  if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "${t}s" -timeout 5m "$pkg"; then
    failed+=("$pkg $name")
  fi
done

header "fuzz: summary ($(( $(date +%s) - start ))s)"
# Worded so that it is not mistaken for a test runner's "N passed, N failed" closing line.
echo "targets fuzzed cleanly: $(( n - ${#failed[@]} - ${#skipped[@]} )); crashed: ${#failed[@]}; not reached: ${#skipped[@]}"
for s in "${skipped[@]}"; do echo "skipped (budget spent): $s"; done
for f in "${failed[@]}"; do echo "FAILED: $f" >&2; done
[ ${#failed[@]} -eq 0 ] || fail "${#failed[@]} fuzz target(s) failed; the crashing inputs are under testdata/fuzz/ in their packages"
