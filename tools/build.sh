#!/usr/bin/env bash
# tools/build.sh OUT: build cmd/coffer into OUT, saying what it does. The
# first build fetches the pinned toolchain and the modules and compiles a few
# hundred packages, which takes minutes on a small machine: without a word it
# looks hung (#20). It prints a progress line (rewritten in place on a
# terminal, one line every 25 packages otherwise) on standard error.
set -euo pipefail
out=${1:-bin/coffer}
go=${GO:-go}
say() { printf 'coffer build: %s\n' "$*" >&2; }

say "resolving the toolchain (${GOTOOLCHAIN:-local}) and modules; the first run downloads them…"
# go list fetches what is missing and prints "go: downloading …" as it goes.
total=$("$go" list -deps ./cmd/coffer | wc -l | tr -d ' ')
say "compiling $out (up to $total packages; the build cache makes later builds take seconds)…"

tty=0
[ -t 2 ] && tty=1
# go build -v names each package as it compiles it.
"$go" build -v -trimpath -o "$out" ./cmd/coffer 2>&1 | awk -v total="$total" -v tty="$tty" '
	/^(#|go: |[^ ]+\.go:)/ || / error/ { if (tty && n) printf "\n" > "/dev/stderr"; print > "/dev/stderr"; fflush("/dev/stderr"); next }
	{
		n++
		if (tty) { printf "\r\033[K  [%d/%d] %s", n, total, $0 > "/dev/stderr" }
		else if (n % 25 == 0) { printf "  [%d/%d] compiled, now %s\n", n, total, $0 > "/dev/stderr" }
		fflush("/dev/stderr")
	}
	END { if (tty && n) printf "\r\033[K" > "/dev/stderr"; printf "coffer build: done (%d packages compiled)\n", n > "/dev/stderr" }'
