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

# Migrate, seed the demo history (once), print login links for a demo user,
# a maintainer and an admin, then serve the views with the River workers
# in the same process (Ctrl-C stops it gracefully). The secret that signs
# the links is made once into .auditlog-secret (git-ignored) unless
# AUDITLOG_SECRET is set; AUDITLOG_ADDR changes the address.
run: build
	@url=$$(scripts/postgres.sh --database auditlog); export DATABASE_URL=$$url; \
	 echo "== database: $$url"; \
	 [ -s .auditlog-secret ] || head -c 32 /dev/urandom | base64 > .auditlog-secret; \
	 export AUDITLOG_SECRET=$${AUDITLOG_SECRET:-$$(cat .auditlog-secret)}; \
	 addr=$${AUDITLOG_ADDR:-127.0.0.1:8080}; \
	 ./$(BIN) migrate up; \
	 ./$(BIN) demo; \
	 echo "== open http://$$addr with one of these login links (valid 24 h):"; \
	 echo "   alice, a user:               $$(./$(BIN) token --user alice --ttl 24h --login-url http://$$addr)"; \
	 echo "   erin, maintainer of tinyweb: $$(./$(BIN) token --user erin --maintains tinyweb --ttl 24h --login-url http://$$addr)&next=/projects/tinyweb"; \
	 echo "   root, an administrator:      $$(./$(BIN) token --user root --admin --ttl 24h --login-url http://$$addr)"; \
	 echo "   the public:                  http://$$addr/projects/tinyweb"; \
	 exec ./$(BIN) serve --addr $$addr

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
# BenchmarkUserView10M loads 10M rows (twice) and runs once; its 2,000
# requests are the sample its percentiles come from.
bench:
	@url=$$(scripts/postgres.sh); export DATABASE_URL=$$url; \
	 scripts/partman.sh; \
	 $(GO) test -run '^$$' -bench 'Record' -benchtime 2s -count $(BENCH_COUNT) -timeout 60m ./bench/ | tee bench.out; \
	 $(GO) test -run '^$$' -bench 'Retention|Erasure' -benchtime 1x -count $(RETENTION_COUNT) -timeout 90m ./bench/ | tee -a bench.out; \
	 $(GO) test -run '^$$' -bench 'IngestHTTP' -benchtime 1x -count $(BENCH_COUNT) -timeout 30m ./bench/ | tee -a bench.out; \
	 $(GO) test -run '^$$' -bench 'UserView10M' -benchtime 1x -count 1 -timeout 60m ./bench/ | tee -a bench.out; \
	 echo "== medians"; awk -f scripts/bench-median.awk bench.out
