# The test command of the README's quick start; .ci/run runs exactly `make test`.
GO ?= go
CORE = ./internal/store/... ./internal/session/... ./internal/mailstore/... ./internal/imapsrv/... ./internal/authguard/... ./internal/scheduler/... ./internal/delivery/... ./internal/dns/... ./internal/policy/... ./internal/auth/... ./internal/classify/... ./internal/bounce/...

.PHONY: build test vet fmt-check race fuzz bench

build:
	$(GO) build -o repute ./cmd/repute

test: vet fmt-check
	$(GO) test -count=1 ./...
	$(GO) test -count=1 -race $(CORE)

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

race:
	$(GO) test -count=1 -race $(CORE)

# Short fuzzing runs of every parser of outside input (seed corpora live in testdata/fuzz).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run XXX -fuzz FuzzParsePath -fuzztime $(FUZZTIME) ./internal/smtp
	$(GO) test -run XXX -fuzz FuzzSession -fuzztime $(FUZZTIME) ./internal/session
	$(GO) test -run XXX -fuzz FuzzParse -fuzztime $(FUZZTIME) ./internal/config
	$(GO) test -run XXX -fuzz FuzzCompose -fuzztime $(FUZZTIME) ./internal/dsn
	$(GO) test -run XXX -fuzz FuzzRanges -fuzztime $(FUZZTIME) ./internal/imapsrv
	$(GO) test -run XXX -fuzz FuzzSearch -fuzztime $(FUZZTIME) ./internal/imapsrv
	$(GO) test -run XXX -fuzz FuzzNormalizeName -fuzztime $(FUZZTIME) ./internal/mailstore
	$(GO) test -run XXX -fuzz '^FuzzSPFRecord$$' -fuzztime $(FUZZTIME) ./internal/auth
	$(GO) test -run XXX -fuzz '^FuzzDKIMSignatureHeader$$' -fuzztime $(FUZZTIME) ./internal/auth
	$(GO) test -run XXX -fuzz '^FuzzDMARCRecord$$' -fuzztime $(FUZZTIME) ./internal/auth
	$(GO) test -run XXX -fuzz '^FuzzStripAuthResults$$' -fuzztime $(FUZZTIME) ./internal/auth
	$(GO) test -run XXX -fuzz '^FuzzARC$$' -fuzztime $(FUZZTIME) ./internal/auth
	$(GO) test -run XXX -fuzz '^FuzzClassify$$' -fuzztime $(FUZZTIME) ./internal/classify
	$(GO) test -run XXX -fuzz '^FuzzParseDSN$$' -fuzztime $(FUZZTIME) ./internal/classify
	$(GO) test -run XXX -fuzz '^FuzzParseARF$$' -fuzztime $(FUZZTIME) ./internal/classify

bench:
	bash bench/inbound.sh
