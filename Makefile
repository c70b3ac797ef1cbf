# The two commands: `make run` and `make test`. Both find, start or install
# PostgreSQL themselves (scripts/postgres.sh); DATABASE_URL overrides.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
GO ?= go
BIN := bin/auditlog
BENCH_COUNT ?= 5
RETENTION_COUNT ?= 3

.PHONY: run test bench build check generate db-check vet fmt-check

build:
	$(GO) build -o $(BIN) ./cmd/auditlog

# Migrate, seed the demo history (once), print the newest events.
run: build
	@url=$$(scripts/postgres.sh --database auditlog); export DATABASE_URL=$$url; \
	 echo "== database: $$url"; \
	 ./$(BIN) migrate up; \
	 ./$(BIN) demo; \
	 echo "== newest events (./$(BIN) events --help for filters)"; \
	 ./$(BIN) events --limit 25

# Format, vet, generated-code freshness, then every test against a real
# PostgreSQL, the browser test in headless Chromium included.
test: fmt-check vet db-check
	@scripts/chromium.sh
	@url=$$(scripts/postgres.sh); export DATABASE_URL=$$url; \
	 $(GO) test -count=1 ./...

fmt-check:
	@out=$$(gofmt -l $$(find . -name '*.go' -not -path './.pgdata/*')); \
	 if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# Regenerate db/ from scratch; fail when it differs from what is committed
# (changed, stale or missing files alike).
db-check: generate
	@git diff --exit-code -- db/ || { echo "db/ is stale: run 'make generate' and commit db/"; exit 1; }
	@untracked=$$(git ls-files --others --exclude-standard -- db/); \
	 if [ -n "$$untracked" ]; then echo "sqlc generates files not committed: $$untracked"; exit 1; fi

generate:
	rm -f db/*.go
	$(GO) tool sqlc generate

# Benchmarks: each reports its ratio against a baseline run in the same
# process; the summary prints the median of BENCH_COUNT runs.
# The retention and erasure benchmarks load 1M to 4M rows per run, so they run once
# per count (RETENTION_COUNT, 3) rather than for a benchtime; they also
# time pg_partman when scripts/partman.sh can make it available.
bench:
	@url=$$(scripts/postgres.sh); export DATABASE_URL=$$url; \
	 scripts/partman.sh; \
	 $(GO) test -run '^$$' -bench 'Record' -benchtime 2s -count $(BENCH_COUNT) -timeout 60m ./bench/ | tee bench.out; \
	 $(GO) test -run '^$$' -bench 'Retention|Erasure' -benchtime 1x -count $(RETENTION_COUNT) -timeout 90m ./bench/ | tee -a bench.out; \
	 echo "== medians"; awk -f scripts/bench-median.awk bench.out
