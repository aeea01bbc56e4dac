# The test command of the README's quick start; .ci/run runs exactly `make test`.
GO ?= go
CORE = ./internal/store/... ./internal/session/... ./internal/mailstore/... ./internal/imapsrv/... ./internal/authguard/... ./internal/scheduler/... ./internal/delivery/... ./internal/dns/... ./internal/policy/... ./internal/auth/... ./internal/classify/... ./internal/bounce/... ./internal/submit/... ./internal/route/... ./internal/shaper/... ./internal/outcome/... ./internal/provider/... ./internal/control/... ./internal/doctor/... ./internal/web/...

.PHONY: build test vet fmt-check race fuzz bench

build:
	$(GO) build -o repute ./cmd/repute

# The race run comes first so that the full run ends the output: internal/tools/testsum
# prints its package lines and failing tests as plain go test would, then the skipped
# tests with their reasons (a missing tool shows there) and the counts.
test: vet fmt-check
	@[ "$$($(GO) env CGO_ENABLED)" = 1 ] || { echo "make test: go test -race needs cgo and a C compiler (apt-get install gcc)"; exit 1; }
	$(GO) test -count=1 -race $(CORE)
	$(GO) run ./internal/tools/testsum $(GO) test -json -count=1 ./...

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
	$(GO) test -run XXX -fuzz '^FuzzReadDotData$$' -fuzztime $(FUZZTIME) ./internal/session
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
	$(GO) test -run XXX -fuzz '^FuzzReadEvents$$' -fuzztime $(FUZZTIME) ./internal/obs
	$(GO) test -run XXX -fuzz '^FuzzSplitHeader$$' -fuzztime $(FUZZTIME) ./internal/submit
	$(GO) test -run XXX -fuzz '^FuzzAuthors$$' -fuzztime $(FUZZTIME) ./internal/submit
	$(GO) test -run XXX -fuzz '^FuzzCommand$$' -fuzztime $(FUZZTIME) ./internal/control
	$(GO) test -run XXX -fuzz '^FuzzCompose$$' -fuzztime $(FUZZTIME) ./internal/alert
	$(GO) test -run XXX -fuzz '^FuzzValidWebhook$$' -fuzztime $(FUZZTIME) ./internal/alert
	$(GO) test -run XXX -fuzz '^FuzzImport$$' -fuzztime $(FUZZTIME) ./internal/shaper
	$(GO) test -run XXX -fuzz '^FuzzParseTSIGKey$$' -fuzztime $(FUZZTIME) ./internal/doctor
	$(GO) test -run XXX -fuzz '^FuzzDomainRecords$$' -fuzztime $(FUZZTIME) ./internal/doctor
	$(GO) test -run XXX -fuzz '^FuzzAutodiscover$$' -fuzztime $(FUZZTIME) ./internal/web

bench:
	bash bench/inbound.sh
