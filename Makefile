# Hearth's build and test entry points. `make test` is what CI runs.
GO ?= go

.PHONY: test test-go test-js fuzz bench build client lint demo staticcheck deps

## test: everything: Go (race detector, leak checks), the JS client in Node and Chromium.
test: deps lint test-go test-js

## deps: the system packages the tests need (scripts/deps, shared with CI):
## installed when running as root with apt-get, else the command to run.
deps:
	@scripts/deps

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# scripts/deps has made sure pgbouncer is there, so its tests must run.
test-go: deps node_modules
	HEARTH_TEST_REQUIRE_PGBOUNCER=1 $(GO) test -race -count=1 -timeout 15m ./...
	# The server again with the goroutine-per-connection reader (the
	# fallback for TLS and non-Linux systems) instead of epoll.
	HEARTH_SERVER_READER=goroutine $(GO) test -race -count=1 ./server/

node_modules: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch node_modules

# The JS suite's server tests need PostgreSQL: withpg finds it, or starts a
# private one, exactly as the Go tests do.
test-js: deps node_modules
	$(GO) run ./internal/pgtest/withpg npm test

## staticcheck: static analysis beyond go vet (CI runs it too).
staticcheck:
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

## fuzz: a short fuzz run of the wire decoder, the permessage-deflate inflater and a whole socket.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime 30s ./channels/wire/
	$(GO) test -run '^$$' -fuzz '^FuzzInflate$$' -fuzztime 30s ./channels/wire/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeV1$$' -fuzztime 30s ./channels/wire/
	$(GO) test -run '^$$' -fuzz '^FuzzSocket$$' -fuzztime 30s ./channels/

## bench: the Go benchmarks behind docs/benchmarks.md.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./channels/... ./server/ ./pubsub/...

## client: rebuild the JS client bundles (Go esbuild API + tsc for .d.ts).
client: node_modules
	npm run build

build:
	$(GO) build -o hearth ./cmd/hearth

demo:
	$(GO) run ./cmd/hearth serve
