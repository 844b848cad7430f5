# Coffer's build. The toolchain is pinned: go1.26.8 on these machines has open
# net/http, HTTP/2 and crypto/tls advisories, and a security server must not
# ship on it. The go command fetches go1.27.3 from the module proxy.
export GOTOOLCHAIN := go1.27.3
export GOFLAGS := -mod=readonly

GO ?= go
BIN := bin/coffer

.PHONY: all build dev test test-short bench fmt vet ci clean

all: build

build:
	@GO=$(GO) bash tools/build.sh $(BIN)

## dev: run Coffer on SQLite in ./.coffer-dev (initialised on first run)
dev: build
	./$(BIN) dev

## test: every test, with the race detector, against SQLite and PostgreSQL
test:
	$(GO) test -race -count=1 -timeout 20m ./...

test-short:
	$(GO) test -count=1 ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	$(GO) vet ./...

ci:
	bash .ci/run

clean:
	rm -rf bin .coffer-dev
