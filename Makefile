# The two commands: `make run` and `make test`. Both find, start or install
# PostgreSQL themselves (scripts/postgres.sh); DATABASE_URL overrides.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
GO ?= go
BIN := bin/auditlog
MODULE := github.com/auditlog/auditlog
BENCH_COUNT ?= 5
RETENTION_COUNT ?= 3

.PHONY: run run-roles test bench fuzz faults build check generate db-check vet fmt-check import-1m

build:
	$(GO) build -o $(BIN) ./cmd/auditlog

# Migrate, seed the demo history (once), serve the views with the River
# workers in the same process and, once serve listens, print login links
# for a demo user, a maintainer and an admin (scripts/run.sh; Ctrl-C stops
# it gracefully). The secret that signs the links is made once into
# .auditlog-secret (git-ignored) unless AUDITLOG_SECRET is set, and the
# integrity key (auditlog keygen; serve's workers sign a checkpoint with it
# every minute) into .auditlog-signing-key (git-ignored) unless
# AUDITLOG_SIGNING_KEY is set; AUDITLOG_ADDR changes the address.
run: build
	@AUDITLOG_BIN=$(CURDIR)/$(BIN) scripts/run.sh

# make run with the production split of roles: serve's views and ingest
# connect as auditlog_web (a member of auditlog_writer: insert and read
# only), its workers as the owner.
run-roles: build
	@AUDITLOG_ROLES=split AUDITLOG_BIN=$(CURDIR)/$(BIN) scripts/run.sh

# Format, vet, generated-code freshness, then every test against a real
# PostgreSQL, the browser test in headless Chromium included. Ends with one
# summary line: `make test: PASS — N packages ok in 1m02s` or
# `make test: FAIL — <what failed> (see above)`.
test:
	@start=$$SECONDS; \
	 took() { local s=$$((SECONDS - start)); if [ $$s -ge 60 ]; then echo "$$((s / 60))m$$((s % 60))s"; else echo "$${s}s"; fi; }; \
	 fail() { echo "make test: FAIL — $$1 (see above)"; exit 1; }; \
	 $(MAKE) --no-print-directory fmt-check || fail "gofmt"; \
	 $(MAKE) --no-print-directory vet || fail "go vet"; \
	 $(MAKE) --no-print-directory db-check || fail "sqlc generate / db/ freshness"; \
	 scripts/chromium.sh || fail "no Chromium for the browser test"; \
	 url=$$(scripts/postgres.sh) || fail "no PostgreSQL"; export DATABASE_URL=$$url; \
	 log=$$(mktemp); trap 'rm -f "$$log"' EXIT; \
	 rc=0; $(GO) test -count=1 ./... 2>&1 | tee "$$log" || rc=$$?; \
	 failed=$$(awk '$$1 == "FAIL" && NF >= 2 { sub("^$(MODULE)/?", "", $$2); print ($$2 == "" ? "." : $$2) }' "$$log" | sort -u | paste -sd, - | sed 's/,/, /g'); \
	 if [ "$$rc" -ne 0 ]; then fail "$${failed:-go test exited $$rc}$${failed:+ failed}"; fi; \
	 echo "make test: PASS — $$(grep -c '^ok ' "$$log") packages ok in $$(took)"

# The fault suite (faults/, its harness internal/faulttest): every
# scenario, the heavy ones included (AUDITLOG_FAULTS=heavy; `make test`
# runs only the fast ones), with go test's output in faults.out (and a
# failed scenario's whole subprocess and database logs in faults-logs/),
# then the figures of each scenario as a table (faults.tsv holds them as
# written).
# Fails when a scenario fails, or when a figure that must be zero (lost,
# duplicated, wrongly deleted, human steps) is not, or a recovery took 10
# minutes or more. AUDITLOG_FAULTS_DEADLINE (10m) bounds each wait for a
# recovery.
faults:
	@start=$$SECONDS; \
	 url=$$(scripts/postgres.sh) || { echo "make faults: FAIL — no PostgreSQL"; exit 1; }; export DATABASE_URL=$$url; \
	 : > faults.tsv; \
	 rm -rf faults-logs; rc=0; AUDITLOG_FAULTS=heavy AUDITLOG_FAULTS_SUMMARY=$(CURDIR)/faults.tsv AUDITLOG_FAULTS_LOGS=$(CURDIR)/faults-logs \
	   $(GO) test -count=1 -v -timeout 120m ./faults/ 2>&1 | tee faults.out || rc=$$?; \
	 echo; echo "== fault figures"; \
	 sum=0; awk -f scripts/faults-summary.awk faults.tsv || sum=$$?; \
	 took=$$((SECONDS - start)); \
	 if [ "$$rc" -ne 0 ]; then \
	   failed=$$(awk '$$1 == "---" && $$2 == "FAIL:" { print $$3 }' faults.out | paste -sd, - | sed 's/,/, /g'); \
	   echo "make faults: FAIL — $${failed:-go test exited $$rc} (see faults.out) in $$((took / 60))m$$((took % 60))s"; exit 1; fi; \
	 if [ "$$sum" -ne 0 ]; then echo "make faults: FAIL — a figure is off (above)"; exit 1; fi; \
	 echo "make faults: PASS — $$(grep -c '^--- PASS' faults.out) scenarios in $$((took / 60))m$$((took % 60))s"

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
	@echo "sqlc: the first build of sqlc compiles libpg_query through cgo and takes about two minutes (later runs are cached)"
	rm -f db/*.go
	$(GO) tool sqlc generate

# Fuzzing: every Go fuzz target in turn, FUZZTIME each (30s unless set),
# against the parsers that take untrusted input. Their seed corpora in
# testdata/fuzz/ are replayed by every `go test`, so `make test` runs them
# too; an input that fails is written there by `go test -fuzz`: fix the
# code and commit the file. PostgreSQL is only needed for the package's
# other tests, not for fuzzing.
FUZZTIME ?= 30s
FUZZ_TARGETS := internal/strictjson:FuzzCheck service:FuzzTag service:FuzzAdditional service:FuzzCursor service:FuzzCheckpoint \
	web:FuzzViewerToken web:FuzzDecodeEvents web:FuzzAdminFilter importer:FuzzJSONLines
fuzz:
	@for t in $(FUZZ_TARGETS); do \
	   pkg=$${t%%:*}; fn=$${t#*:}; echo "== $$fn ($$pkg, $(FUZZTIME))"; \
	   $(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) ./$$pkg/ || { echo "make fuzz: FAIL — $$fn (see above)"; exit 1; }; \
	 done; echo "make fuzz: PASS — $(words $(FUZZ_TARGETS)) targets, $(FUZZTIME) each"

# Benchmarks: each reports its ratio against a baseline run in the same
# process; the summary prints the median of BENCH_COUNT runs.
# The retention and erasure benchmarks load 1M to 4M rows per run, so they run once
# per count (RETENTION_COUNT, 3) rather than for a benchtime; they also
# time pg_partman when scripts/partman.sh can make it available.
# BenchmarkUserView10M loads 10M rows (twice) and runs once; its 2,000
# requests are the sample its percentiles come from.
# BenchmarkCheckpoint (1M events) and BenchmarkVerify (2M) record their
# events through the service with an integrity key and run once.
# BenchmarkImport imports 1M JSON Lines events per run (twice, against two
# raw COPYs).
bench:
	@url=$$(scripts/postgres.sh); export DATABASE_URL=$$url; \
	 scripts/partman.sh; \
	 $(GO) test -run '^$$' -bench 'Record' -benchtime 2s -count $(BENCH_COUNT) -timeout 60m ./bench/ | tee bench.out; \
	 $(GO) test -run '^$$' -bench 'Retention|Erasure' -benchtime 1x -count $(RETENTION_COUNT) -timeout 90m ./bench/ | tee -a bench.out; \
	 $(GO) test -run '^$$' -bench 'IngestHTTP' -benchtime 1x -count $(BENCH_COUNT) -timeout 30m ./bench/ | tee -a bench.out; \
	 $(GO) test -run '^$$' -bench 'UserView10M' -benchtime 1x -count 1 -timeout 60m ./bench/ | tee -a bench.out; \
	 $(GO) test -run '^$$' -bench 'Checkpoint$$|Verify$$' -benchtime 1x -count 1 -timeout 60m ./bench/ | tee -a bench.out; \
	 $(GO) test -run '^$$' -bench 'Import$$' -benchtime 1x -count $(RETENTION_COUNT) -timeout 60m ./bench/ | tee -a bench.out; \
	 echo "== medians"; awk -f scripts/bench-median.awk bench.out

# The Warehouse import at full size: TestWarehouseImport over a Warehouse
# database of 1,000,000 events (a third of the user events older than the
# window), imported, imported again, and killed at a random batch and
# resumed. `make test` runs it with 30,000.
import-1m:
	@url=$$(scripts/postgres.sh); export DATABASE_URL=$$url; \
	 AUDITLOG_IMPORT_EVENTS=1000000 $(GO) test -count=1 -v -timeout 60m -run '^TestWarehouseImport$$' ./importer/
