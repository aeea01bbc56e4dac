// Package e2e tests the real repute binary end to end: it builds cmd/repute once per test
// run, starts `repute serve` as a subprocess on its own loopback address per test
// (127.0.0.2, 127.0.0.3, …, standard mail ports when running as root, high ports
// otherwise) and talks to it with real clients — swaks, curl, Python's imaplib, the
// go-smtp and go-imap clients and raw sockets — the way a user's mail client or a
// remote MTA would.
//
// Every daemon a test starts lives in that test's temporary directory and is stopped by
// PID in a cleanup, also when the test fails; its log is printed on failure. All traffic
// stays on 127.0.0.0/8: the servers resolve names through an in-process DNS server on
// 127.0.0.1 that answers for the test domains only.
//
// External tools (swaks, curl, /usr/bin/python3) are Debian packages that .ci/run
// installs; a test that needs a missing tool skips and says which one.
//
// Environment:
//
//	REPUTE_E2E_BIN   use this prebuilt binary instead of building ./cmd/repute
//	REPUTE_E2E_KEEP  keep temporary directories (data, configs, logs) for inspection
//
// `go test -short` skips the package.
package e2e
