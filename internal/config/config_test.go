package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

func TestParseValid(t *testing.T) {
	withHostname := Default()
	withHostname.Hostname = "mail.example.com"

	full := Config{
		Hostname: "mx1.example.org",
		DataDir:  "/srv/repute",
		Listen: Listen{
			SMTP:        "127.0.0.2:25",
			Submission:  "127.0.0.2:587",
			Submissions: "[::]:465",
			IMAP:        "",
			IMAPS:       "127.0.0.1:993",
			HTTP:        ":8080",
			HTTPS:       "localhost:8443",
			Metrics:     "127.0.0.1:9325",
		},
		TLS: TLS{CertFile: "testdata/files/cert.pem", KeyFile: "testdata/files/key.pem"},
		DNS: DNS{Resolver: "127.0.0.1:5353"},
		Outbound: Outbound{SourceIPs: []string{"127.0.0.10", "::ffff:127.0.0.11"}, RemotePort: 2525, Relay: "smarthost.example.net:587",
			RelayTLS: "starttls", RelayUsername: "repute", RelayPasswordFile: "testdata/files/relay-password",
			Routes: []Route{{Domains: []string{"outlook.com", "hotmail.com"}, Relay: "relay.example.net:465", TLS: "implicit",
				Username: "ms", PasswordFile: "testdata/files/ms-password"}},
			PublicIPs: []string{"198.51.100.7"}, DirectWhen: "always"},
		Queue: Queue{RetryMin: Duration{time.Minute}, RetryMax: Duration{time.Hour}, MaxAge: Duration{72 * time.Hour},
			DelayWarning: Duration{0}, Concurrency: 50, ScanInterval: Duration{10 * time.Second}},
		Shaping: Shaping{TimeScale: 60, CoolDown: Duration{time.Hour}, MaxCoolDown: Duration{24 * time.Hour},
			Round: Duration{10 * time.Second}},
		Warmup: Default().Warmup,
		Alerts: Default().Alerts,
		Check: Check{Port25Probe: "probe.example.net:25", PortsInProbe: "https://probe.example.net/ports",
			Blocklists: []string{"zen.spamhaus.org", "bl.example.net"}, DomainBlocklists: []string{"dbl.spamhaus.org"},
			Interval: Duration{12 * time.Hour}},
		MTASTS:  MTASTS{Mode: "enforce", MaxAge: Duration{720 * time.Hour}},
		Reports: Reports{LocalPart: "dmarc"},
		Store:   Store{Driver: "sqlite"},
		SMTP: SMTP{
			MaxMessageSize:      10 << 20,
			MaxRecipients:       100,
			MaxConnections:      500,
			MaxConnectionsPerIP: 5,
			CommandTimeout:      Duration{2 * time.Minute},
			DataTimeout:         Duration{15 * time.Minute},
			DNSBL:               []string{"zen.spamhaus.org", "bl.spamcop.net"},
			MinFreeDisk:         0,
			SenderChecks:        false,
			ConnectionRatePerIP: 30,
			MessageRatePerIP:    0,
			RateLimitExempt:     []string{"192.0.2.0/24"},
		},
		Bounce: Bounce{RulesFile: "testdata/files/bounce-rules.toml", TagEnvelope: false, FeedbackAddresses: []string{"fbl@example.org"},
			BulkSenders: []string{"news@example.org", "@shop.example.org"}, UnsubscribeURL: "https://lists.example.org/mail"},
		IMAP: IMAP{MaxConnectionsPerIP: 20, IdleTimeout: Duration{45 * time.Minute}},
		Log:  Log{Level: "debug", Format: "json"},
	}

	partial := Default()
	partial.SMTP.MaxRecipients = 7
	partial.Listen.IMAP = ""

	tests := []struct {
		name string
		file string // under testdata/, or "" to use text
		text string
		want Config
	}{
		{name: "empty file", text: "", want: Default()},
		{name: "comments only", text: "# nothing\n\n", want: Default()},
		{name: "minimal", file: "minimal.toml", want: withHostname},
		{name: "byte order mark", text: "\ufeffhostname = \"mail.example.com\"\n", want: withHostname},
		{name: "every key", file: "full.toml", want: full},
		{name: "partial table keeps other defaults", text: "[smtp]\nmax_recipients = 7\n[listen]\nimap = \"\"\n", want: partial},
		{name: "dotted keys", text: "smtp.max_recipients = 7\nlisten.imap = \"\"\n", want: partial},
		{name: "inline table", text: "smtp = { max_recipients = 7 }\nlisten = { imap = \"\" }\n", want: partial},
		{name: "quoted keys", text: "\"smtp\".'max_recipients' = 7\n[\"listen\"]\n\"imap\" = \"\"\n", want: partial},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Config
			var err error
			if tt.file != "" {
				got, err = Load(filepath.Join("testdata", tt.file))
			} else {
				got, err = Parse([]byte(tt.text))
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestExampleFile keeps etc/repute.toml honest: it must parse to exactly the defaults and
// set every key the schema has.
func TestExampleFile(t *testing.T) {
	path := filepath.Join("..", "..", "etc", "repute.toml")
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, Default()) {
		t.Errorf("%s does not match Default():\ngot  %+v\nwant %+v", path, cfg, Default())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range schemaKeys(reflect.TypeOf(Config{}), nil) {
		if !md.IsDefined(key...) {
			t.Errorf("%s does not list key %s", path, key)
		}
	}
}

// TestReferenceDocs checks that docs/CONFIG.md has a table row for every key.
func TestReferenceDocs(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "CONFIG.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range schemaKeys(reflect.TypeOf(Config{}), nil) {
		// Rows name the key relative to its section: "| `max_recipients` |".
		if !strings.Contains(string(data), "| `"+key[len(key)-1]+"` |") {
			t.Errorf("docs/CONFIG.md has no row for %s", key)
		}
	}
}

// schemaKeys lists the full key of every leaf of the schema.
func schemaKeys(t reflect.Type, prefix toml.Key) []toml.Key {
	var keys []toml.Key
	for i := range t.NumField() {
		f := t.Field(i)
		k := append(append(toml.Key{}, prefix...), tomlName(f))
		if f.Type.Kind() == reflect.Struct && f.Type != durationType {
			keys = append(keys, schemaKeys(f.Type, k)...)
			continue
		}
		keys = append(keys, k)
	}
	return keys
}

// errorCase is a file that must fail with an *Error at a known place.
type errorCase struct {
	name    string
	text    string
	key     string
	line    int
	col     int
	message string // substring of Error()
}

func runErrorCases(t *testing.T, tests []errorCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.text))
			if err == nil {
				t.Fatal("no error")
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T) is not an *Error", err, err)
			}
			if e.Key != tt.key || e.Line != tt.line || (tt.col != 0 && e.Column != tt.col) {
				t.Errorf("got key %q at %d:%d, want %q at %d:%d (%v)", e.Key, e.Line, e.Column, tt.key, tt.line, tt.col, err)
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Errorf("error %q does not contain %q", err, tt.message)
			}
		})
	}
}

func TestUnknownKeys(t *testing.T) {
	runErrorCases(t, []errorCase{
		{"top level", "hostname = \"a.example\"\nhostnmae = \"b.example\"\n", "hostnmae", 2, 1, "line 2, column 1: unknown key hostnmae (did you mean hostname?)"},
		{"in a table", "[smtp]\nmax_recipients = 5\n  max_mesage_size = 1\n", "smtp.max_mesage_size", 3, 3, "unknown key smtp.max_mesage_size (did you mean max_message_size?)"},
		{"dotted at top level", "# comment\nsmtp.max_mesage_size = 1\n", "smtp.max_mesage_size", 2, 6, "unknown key smtp.max_mesage_size"},
		{"dotted with spaces", "smtp . max_mesage_size = 1\n", "smtp.max_mesage_size", 1, 8, "unknown key"},
		{"unknown table", "[smtpp]\nmax_recipients = 1\n", "smtpp", 1, 2, "unknown key smtpp (did you mean smtp?)"},
		{"unknown nested table", "[smtp.limits]\nx = 1\n", "smtp.limits", 1, 7, "unknown key smtp.limits"},
		{"unknown array of tables", "\n[[relay]]\nhost = \"x\"\n", "relay", 2, 3, "unknown key relay"},
		{"inline table", "listen = { smtp = \"127.0.0.1:25\", smpt = \"x\" }\n", "listen.smpt", 1, 35, "unknown key listen.smpt (did you mean smtp?)"},
		{"nested inline table", "[outbound]\nx = { y = 1 }\n", "outbound.x", 2, 1, "unknown key outbound.x"},
		{"quoted key", "[log]\n\"lev el\" = \"info\"\n", `log."lev el"`, 2, 1, `unknown key log."lev el"`},
		{"quoted key with escape", "[log]\n\"le\\u0076el\" = \"info\"\n\"x\\ty\" = 1\n", `log."x\ty"`, 3, 1, "unknown key"},
		{"after multi-line string", "[tls]\ncert_file = \"\"\"\nnot_a_key = 1\n\"\"\"\nbogus = 1\n", "tls.bogus", 5, 1, "unknown key tls.bogus"},
		{"after multi-line array", "[outbound]\nsource_ips = [\n  \"192.0.2.1\", # x = 1\n  \"192.0.2.2\",\n]\nsource_ip = []\n", "outbound.source_ip", 6, 1, "did you mean source_ips?"},
		{"after literal strings", "data_dir = '/x'\n[tls]\nkey_file = '''\n[bogus]\n'''\nacme = \"\"\n", "tls.acme", 6, 1, "unknown key tls.acme"},
		{"table header after table", "[log]\n[log.sub]\n", "log.sub", 2, 6, "unknown key log.sub"},
		{"no suggestion for distant names", "zzzzzzzz = 1\n", "zzzzzzzz", 1, 1, "unknown key zzzzzzzz"},
	})
}

func TestTypeErrors(t *testing.T) {
	runErrorCases(t, []errorCase{
		{"string for integer", "[outbound]\nremote_port = \"x\"\n", "outbound.remote_port", 2, 1, "outbound.remote_port: expected an integer, found a string"},
		{"integer for string", "hostname = 5\n", "hostname", 1, 1, "expected a string, found an integer"},
		{"float for integer", "[smtp]\nmax_recipients = 1.5\n", "smtp.max_recipients", 2, 1, "found a float"},
		{"table for string", "hostname.x = \"y\"\n", "hostname", 1, 1, "hostname: expected a string, found a table"},
		{"value for table", "listen = \"0.0.0.0:25\"\n", "listen", 1, 1, "listen: expected a table, found a string"},
		{"array of tables for table", "[[smtp]]\n", "smtp", 1, 3, "found an array of tables"},
		{"string for array", "[outbound]\nsource_ips = \"192.0.2.1\"\n", "outbound.source_ips", 2, 1, "expected an array, found a string"},
		{"wrong array element", "[outbound]\nsource_ips = [\"192.0.2.1\", 2]\n", "outbound.source_ips", 2, 1, "element 2: expected a string, found an integer"},
		{"integer for duration", "[smtp]\ncommand_timeout = 300\n", "smtp.command_timeout", 2, 1, "expected a duration string"},
		{"bad duration", "[imap]\n  idle_timeout = \"30 minutes\"\n", "imap.idle_timeout", 2, 3, `invalid duration "30 minutes"`},
		{"date for string", "data_dir = 1979-05-27\n", "data_dir", 1, 1, "found a date/time"},
		{"boolean for string", "[log]\nlevel = true\n", "log.level", 2, 1, "found a boolean"},
	})
}

func TestSyntaxErrors(t *testing.T) {
	runErrorCases(t, []errorCase{
		{"missing value", "hostname = \"a.example\"\ndata_dir =\n", "", 2, 11, "syntax error: expected value"},
		{"unterminated string", "\n\nhostname = \"abc\n", "", 3, 0, "syntax error"},
		{"duplicate key", "[log]\nlevel = \"info\"\nlevel = \"debug\"\n", "", 3, 1, "already been defined"},
		{"duplicate table", "[log]\n[log]\n", "", 2, 2, "already been defined"},
		{"garbage after value", "[smtp]\nmax_recipients = 1 2\n", "", 2, 19, "syntax error"},
		{"unclosed array", "[outbound]\nsource_ips = [\n\"192.0.2.1\"\n", "", 3, 12, "syntax error"},
		{"unclosed header", "[smtp\n", "", 1, 6, "syntax error"},
	})
}

func TestValidationErrors(t *testing.T) {
	runErrorCases(t, []errorCase{
		{"hostname with underscore", "hostname = \"mail_1.example.com\"\n", "hostname", 1, 1, `hostname = "mail_1.example.com": label "mail_1" contains "_"`},
		{"hostname trailing dot", "hostname = \"mail.example.com.\"\n", "hostname", 1, 1, "without the trailing dot"},
		{"hostname is an IP", "hostname = \"192.0.2.1\"\n", "hostname", 1, 1, "an IP address, not a domain name"},
		{"hostname empty label", "hostname = \"mail..example.com\"\n", "hostname", 1, 1, "empty label"},
		{"hostname hyphen", "hostname = \"-mail.example.com\"\n", "hostname", 1, 1, "starts or ends with a hyphen"},
		{"hostname label too long", "hostname = \"" + strings.Repeat("a", 64) + ".example\"\n", "hostname", 1, 1, "longer than 63"},
		{"empty data_dir", "data_dir = \"\"\n", "data_dir", 1, 1, "data_dir must not be empty"},
		{"listen without port", "[listen]\nsmtp = \"0.0.0.0\"\n", "listen.smtp", 2, 1, `listen.smtp = "0.0.0.0": not a host:port address; use HOST:PORT`},
		{"listen named port", "[listen]\nimap = \"0.0.0.0:imap\"\n", "listen.imap", 2, 1, `port "imap" is not a number`},
		{"listen port range", "[listen]\nhttps = \"0.0.0.0:70000\"\n", "listen.https", 2, 1, "port 70000 is out of range"},
		{"listen bad host", "[listen]\nhttp = \"bad host:80\"\n", "listen.http", 2, 1, `host "bad host"`},
		{"listen duplicate", "[listen]\nsmtp = \"127.0.0.1:2525\"\nsubmission = \"127.0.0.1:2525\"\n", "listen.submission", 3, 1, "already used by listen.smtp"},
		{"store driver", "[store]\ndriver = \"mysql\"\n", "store.driver", 2, 1, `store.driver = "mysql": unknown driver; this version has only "sqlite"`},
		{"postgres", "[store]\n\ndriver = \"postgres\"\n", "store.driver", 3, 1, `store.driver = "postgres": PostgreSQL is not available in this version; use "sqlite"`},
		{"postgres with dsn", "[store]\ndriver = \"postgres\"\ndsn = \"postgres://repute@localhost/repute\"\n", "store.driver", 2, 1, "PostgreSQL is not available in this version"},
		{"dsn with sqlite", "[store]\ndsn = \"postgres://repute@localhost/repute\"\n", "store.dsn", 2, 1, "store.dsn is set, but it is only used with PostgreSQL, which is not available in this version"},
		{"resolver without port", "[dns]\nresolver = \"127.0.0.1\"\n", "dns.resolver", 2, 1, "use IP:PORT"},
		{"resolver host name", "[dns]\nresolver = \"dns.example:53\"\n", "dns.resolver", 2, 1, `"dns.example" is not an IP address`},
		{"resolver port zero", "[dns]\nresolver = \"[::1]:0\"\n", "dns.resolver", 2, 1, "port 0 is out of range"},
		{"source ip", "[outbound]\nsource_ips = [\"192.0.2.1\", \"mail.example\"]\n", "outbound.source_ips", 2, 1, `"mail.example" is not an IP address`},
		{"source ip twice", "[outbound]\nsource_ips = [\"192.0.2.1\", \"::ffff:192.0.2.1\"]\n", "outbound.source_ips", 2, 1, "listed twice"},
		{"remote port zero", "[outbound]\nremote_port = 0\n", "outbound.remote_port", 2, 1, "outbound.remote_port = 0: out of range; allowed 1 to 65535"},
		{"remote port high", "[outbound]\nremote_port = 65536\n", "outbound.remote_port", 2, 1, "allowed 1 to 65535"},
		{"relay without port", "[outbound]\nrelay = \"smtp.example.net\"\n", "outbound.relay", 2, 1, "not a host:port address"},
		{"relay without host", "[outbound]\nrelay = \":587\"\n", "outbound.relay", 2, 1, "the host is missing"},
		{"relay bad port", "[outbound]\nrelay = \"smtp.example.net:x\"\n", "outbound.relay", 2, 1, `port "x" is not a number`},
		{"max message size", "[smtp]\nmax_message_size = 0\n", "smtp.max_message_size", 2, 1, "smtp.max_message_size = 0: allowed 1024 (1 KiB) to 536870912 (512 MiB) bytes"},
		{"max message size small", "[smtp]\nmax_message_size = 1023\n", "smtp.max_message_size", 2, 1, "smtp.max_message_size = 1023: allowed 1024"},
		{"max message size large", "[smtp]\nmax_message_size = 536_870_913\n", "smtp.max_message_size", 2, 1, "smtp.max_message_size = 536870913: allowed"},
		{"max message size near int64 limit", "[smtp]\n  max_message_size = 9223372036854775807\n", "smtp.max_message_size", 2, 3, "smtp.max_message_size = 9223372036854775807: allowed 1024 (1 KiB) to 536870912 (512 MiB) bytes; messages are held in memory"},
		{"min free disk large", "[smtp]\nmin_free_disk = 9223372036854775000\n", "smtp.min_free_disk", 2, 1, "up to 1125899906842624 (1 PiB)"},
		{"retry max over a year", "[queue]\nretry_max = \"8761h\"\n", "queue.retry_max", 2, 1, `queue.retry_max = "8761h0m0s": longer than a year`},
		{"max age huge", "[queue]\nmax_age = \"2000000h\"\n", "queue.max_age", 2, 1, "longer than a year"},
		{"max recipients", "[smtp]\nmax_recipients = -1\n", "smtp.max_recipients", 2, 1, "must be a positive number"},
		{"max connections", "[smtp]\nmax_connections = 0\n", "smtp.max_connections", 2, 1, "must be a positive number"},
		{"max connections per ip", "[smtp]\nmax_connections_per_ip = 0\n", "smtp.max_connections_per_ip", 2, 1, "must be a positive number"},
		{"imap connections per ip", "[imap]\nmax_connections_per_ip = 0\n", "imap.max_connections_per_ip", 2, 1, "must be a positive number"},
		{"min free disk", "[smtp]\nmin_free_disk = -1\n", "smtp.min_free_disk", 2, 1, "must be 0 (no check) or a positive number"},
		{"command timeout", "[smtp]\ncommand_timeout = \"0s\"\n", "smtp.command_timeout", 2, 1, "must be a positive duration"},
		{"data timeout", "[smtp]\ndata_timeout = \"-1m\"\n", "smtp.data_timeout", 2, 1, "must be a positive duration"},
		{"idle timeout", "[imap]\nidle_timeout = \"0s\"\n", "imap.idle_timeout", 2, 1, "must be a positive duration"},
		{"cert without key", "[tls]\ncert_file = \"/c.pem\"\n", "tls.key_file", 2, 1, "tls.key_file is empty but tls.cert_file is set; set both"},
		{"key without cert", "[tls]\nkey_file = \"/k.pem\"\n", "tls.cert_file", 2, 1, "tls.cert_file is empty but tls.key_file is set"},
		{"acme email not an address", "[tls]\nacme_email = \"ops\"\n", "tls.acme_email", 2, 1, "tls.acme_email = \"ops\": not an address"},
		{"acme with files", "[tls]\nacme_email = \"ops@example.com\"\ncert_file = \"testdata/files/cert.pem\"\nkey_file = \"testdata/files/key.pem\"\n", "tls.acme_email", 2, 1, "tls.acme_email and tls.cert_file are both set"},
		{"acme directory without email", "[tls]\nacme_directory = \"https://acme-v02.api.letsencrypt.org/directory\"\n", "tls.acme_directory", 2, 1, "tls.acme_directory is set but tls.acme_email is not"},
		{"acme directory not https", "[tls]\nacme_email = \"ops@example.com\"\nacme_directory = \"http://ca.example/dir\"\n", "tls.acme_directory", 3, 1, "must be the https:// URL"},
		{"mta-sts mode", "[mta_sts]\nmode = \"on\"\n", "mta_sts.mode", 2, 1, "allowed: \"enforce\", \"testing\", \"none\""},
		{"mta-sts max age", "[mta_sts]\nmax_age = \"1h\"\n", "mta_sts.max_age", 2, 1, "allowed 24h to 8766h"},
		{"direct_when unknown", "[outbound]\ndirect_when = \"sometimes\"\n", "outbound.direct_when", 2, 1, "allowed: \"always\", \"checks_pass\""},
		{"direct_when without fallback", "[outbound]\ndirect_when = \"checks_pass\"\n", "outbound.direct_when", 2, 1, "needs outbound.fallback_relay"},
		{"blocklist zone", "[check]\nblocklists = [\"not a zone\"]\n", "check.blocklists", 2, 1, "check.blocklists: \"not a zone\""},
		{"port25 probe", "[check]\nport25_probe = \"nohost\"\n", "check.port25_probe", 2, 1, "not HOST:PORT"},
		{"public ip", "[outbound]\npublic_ips = [\"x\"]\n", "outbound.public_ips", 2, 1, "not a usable IP address"},
		{"data_dir is a file", "data_dir = \"testdata/full.toml\"\n", "data_dir", 1, 1, `data_dir = "testdata/full.toml": exists but is not a directory`},
		{"listen wildcard then specific", "[listen]\nsmtp = \"0.0.0.0:2525\"\nsubmission = \"127.0.0.1:2525\"\n", "listen.submission", 3, 1, `port 2525 is already taken on every address by listen.smtp = "0.0.0.0:2525"`},
		{"listen specific then wildcard", "[listen]\nsmtp = \"127.0.0.1:2525\"\nsubmission = \"[::]:2525\"\n", "listen.submission", 3, 1, `a wildcard address takes port 2525 on every address, and listen.smtp = "127.0.0.1:2525" already uses it`},
		{"listen two wildcards", "[listen]\nsmtp = \":2525\"\nsubmission = \"0.0.0.0:2525\"\n", "listen.submission", 3, 1, "already taken on every address"},
		{"listen same address spelt twice", "[listen]\nsmtp = \"127.0.0.1:2525\"\nsubmission = \"[::ffff:127.0.0.1]:02525\"\n", "listen.submission", 3, 1, "already used by listen.smtp"},
		{"resolver bracketed IPv4", "[dns]\nresolver = \"[127.0.0.1]:53\"\n", "dns.resolver", 2, 1, "an IPv4 address does not"},
		{"resolver unspecified", "[dns]\nresolver = \"0.0.0.0:53\"\n", "dns.resolver", 2, 1, "0.0.0.0 is not the address of a DNS server"},
		{"source ip unspecified", "[outbound]\nsource_ips = [\"0.0.0.0\"]\n", "outbound.source_ips", 2, 1, "the unspecified address; leave source_ips empty"},
		{"source ip multicast", "[outbound]\nsource_ips = [\"ff02::1\"]\n", "outbound.source_ips", 2, 1, "a multicast address"},
		{"relay tls without relay", "[outbound]\nrelay_tls = \"implicit\"\n", "outbound.relay_tls", 2, 1, "outbound.relay_tls is set but outbound.relay is empty"},
		{"relay user without relay", "[outbound]\nrelay_username = \"u\"\nrelay_password_file = \"testdata/files/relay-password\"\n", "outbound.relay_username", 2, 1, "outbound.relay_username is set but outbound.relay is empty"},
		{"relay user without password file", "[outbound]\nrelay = \"smtp.example.net:587\"\nrelay_username = \"u\"\n", "outbound.relay_username", 3, 1, "outbound.relay_username is set but outbound.relay_password_file is not"},
		{"relay password file without user", "[outbound]\nrelay = \"smtp.example.net:587\"\nrelay_password_file = \"testdata/files/relay-password\"\n", "outbound.relay_password_file", 3, 1, "outbound.relay_password_file is set but outbound.relay_username is not"},
		{"relay password file missing", "[outbound]\nrelay = \"smtp.example.net:587\"\nrelay_username = \"u\"\nrelay_password_file = \"testdata/files/absent\"\n", "outbound.relay_password_file", 4, 1, `outbound.relay_password_file = "testdata/files/absent": no such file`},
		{"relay password file is a directory", "[outbound]\nrelay = \"smtp.example.net:587\"\nrelay_username = \"u\"\nrelay_password_file = \"testdata\"\n", "outbound.relay_password_file", 4, 1, "not a regular file"},
		{"route password file missing", "[[outbound.routes]]\ndomains = [\"example.com\"]\nrelay = \"relay.example.net:587\"\nusername = \"u\"\npassword_file = \"/nonexistent/pw\"\n", "outbound.routes[0].password_file", 5, 1, `outbound.routes[0].password_file = "/nonexistent/pw": no such file`},
		{"route user without password file", "[[outbound.routes]]\ndomains = [\"example.com\"]\nrelay = \"relay.example.net:587\"\nusername = \"u\"\n", "outbound.routes[0].username", 4, 1, "outbound.routes[0].username is set but outbound.routes[0].password_file is not"},
		{"cert file missing", "[tls]\ncert_file = \"testdata/files/absent.pem\"\nkey_file = \"testdata/files/key.pem\"\n", "tls.cert_file", 2, 1, `tls.cert_file = "testdata/files/absent.pem": no such file`},
		{"key file missing", "[tls]\ncert_file = \"testdata/files/cert.pem\"\nkey_file = \"testdata/files/absent.pem\"\n", "tls.key_file", 3, 1, `tls.key_file = "testdata/files/absent.pem": no such file`},
		{"cert and key swapped", "[tls]\ncert_file = \"testdata/files/key.pem\"\nkey_file = \"testdata/files/cert.pem\"\n", "tls.cert_file", 2, 1, "holds a private key, not a certificate; are tls.cert_file and tls.key_file swapped?"},
		{"cert file is a device", "[tls]\ncert_file = \"/dev/zero\"\nkey_file = \"testdata/files/key.pem\"\n", "tls.cert_file", 2, 1, `tls.cert_file = "/dev/zero": not a regular file`},
		{"rules file missing", "[bounce]\nrules_file = \"testdata/files/absent.toml\"\n", "bounce.rules_file", 2, 1, `bounce.rules_file = "testdata/files/absent.toml": no such file`},
		{"dnsbl one label", "[smtp]\ndnsbl = [\"spamhaus\"]\n", "smtp.dnsbl", 2, 1, `smtp.dnsbl: "spamhaus": a blocklist zone has at least two labels`},
		{"dnsbl twice", "[smtp]\ndnsbl = [\"zen.spamhaus.org\", \"ZEN.spamhaus.org\"]\n", "smtp.dnsbl", 2, 1, `"ZEN.spamhaus.org": listed twice`},
		{"dnsbl too long", "[smtp]\ndnsbl = [\"" + strings.Repeat("a.", 95) + "org\"]\n", "smtp.dnsbl", 2, 1, "longer than 189 characters, too long for IPv6 queries"},
		{"rate limit exempt", "[smtp]\nrate_limit_exempt = [\"127.0.0.1\"]\n", "smtp.rate_limit_exempt", 2, 1, `smtp.rate_limit_exempt: "127.0.0.1" is not a network; use CIDR notation`},
		{"bulk sender bare at", "[bounce]\nbulk_senders = [\"@\"]\n", "bounce.bulk_senders", 2, 1, `bounce.bulk_senders: "@": the domain after @ is empty; list addresses such as "news@example.org" or whole domains such as "@shop.example.org"`},
		{"bulk sender without domain", "[bounce]\nbulk_senders = [\"news@\"]\n", "bounce.bulk_senders", 2, 1, `"news@": the domain after @ is empty`},
		{"bulk sender without at", "[bounce]\nbulk_senders = [\"shop.example.org\"]\n", "bounce.bulk_senders", 2, 1, `"shop.example.org": not an address (no @)`},
		{"bulk sender bad domain", "[bounce]\nbulk_senders = [\"@shop..example.org\"]\n", "bounce.bulk_senders", 2, 1, "empty label"},
		{"bulk sender space", "[bounce]\nbulk_senders = [\"news letter@example.org\"]\n", "bounce.bulk_senders", 2, 1, `the local part contains " "`},
		{"bulk sender dots", "[bounce]\nbulk_senders = [\"news.@example.org\"]\n", "bounce.bulk_senders", 2, 1, "starts or ends with a dot"},
		{"bulk sender two ats", "[bounce]\nbulk_senders = [\"a@b@example.org\"]\n", "bounce.bulk_senders", 2, 1, `the local part contains "@"`},
		{"feedback address domain only", "[bounce]\nfeedback_addresses = [\"@example.org\"]\n", "bounce.feedback_addresses", 2, 1, `bounce.feedback_addresses: "@example.org": the local part before @ is empty`},
		{"unsubscribe javascript", "[bounce]\nunsubscribe_url = \"javascript:alert(1)\"\n", "bounce.unsubscribe_url", 2, 1, `bounce.unsubscribe_url = "javascript:alert(1)": scheme "javascript" is not allowed`},
		{"unsubscribe relative", "[bounce]\nunsubscribe_url = \"mail.example.org/x\"\n", "bounce.unsubscribe_url", 2, 1, "not an absolute URL"},
		{"unsubscribe no host", "[bounce]\nunsubscribe_url = \"https:///x\"\n", "bounce.unsubscribe_url", 2, 1, "the host is missing"},
		{"unsubscribe opaque", "[bounce]\nunsubscribe_url = \"https:mail.example.org\"\n", "bounce.unsubscribe_url", 2, 1, "the host is missing"},
		{"unsubscribe ftp", "[bounce]\nunsubscribe_url = \"ftp://mail.example.org\"\n", "bounce.unsubscribe_url", 2, 1, `scheme "ftp" is not allowed`},
		{"unsubscribe user info", "[bounce]\nunsubscribe_url = \"https://u:p@mail.example.org\"\n", "bounce.unsubscribe_url", 2, 1, "must not contain a user name or password"},
		{"unsubscribe query", "[bounce]\nunsubscribe_url = \"https://mail.example.org/?a=b\"\n", "bounce.unsubscribe_url", 2, 1, "must not have a query"},
		{"unsubscribe fragment", "[bounce]\nunsubscribe_url = \"https://mail.example.org/#x\"\n", "bounce.unsubscribe_url", 2, 1, "must not have a fragment"},
		{"unsubscribe angle bracket", "[bounce]\nunsubscribe_url = \"https://mail.example.org/>x\"\n", "bounce.unsubscribe_url", 2, 1, `contains ">", which a URL cannot`},
		{"unsubscribe line break", "[bounce]\nunsubscribe_url = \"https://mail.example.org/\\r\\nBcc: x\"\n", "bounce.unsubscribe_url", 2, 1, `contains "\r"`},
		{"unsubscribe bad port", "[bounce]\nunsubscribe_url = \"https://mail.example.org:99999\"\n", "bounce.unsubscribe_url", 2, 1, "port 99999 is out of range"},
		{"unsubscribe bad host", "[bounce]\nunsubscribe_url = \"https://mail_1.example.org\"\n", "bounce.unsubscribe_url", 2, 1, `host "mail_1.example.org"`},
		{"time scale zero", "[shaping]\ntime_scale = 0\n", "shaping.time_scale", 2, 1, "must be a number above 0"},
		{"time scale negative", "[shaping]\ntime_scale = -2.5\n", "shaping.time_scale", 2, 1, "must be a number above 0"},
		{"time scale huge", "[shaping]\ntime_scale = 1e9\n", "shaping.time_scale", 2, 1, "at most 100000"},
		{"cool-down too short", "[shaping]\ncool_down = \"1s\"\n", "shaping.cool_down", 2, 1, "allowed from 1m0s"},
		{"provider id", "[shaping.provider.\"Micro Soft\"]\nmax_connections = 2\n", "shaping.provider.Micro Soft", 1, 19, "not a provider id"},
		{"provider limit negative", "[shaping.provider.microsoft]\nmax_connections = -1\n", "shaping.provider.microsoft.max_connections", 2, 1, "allowed from 0"},
		{"provider rate wrong type", "[shaping.provider.microsoft]\nmessages_per_minute = \"fast\"\n", "shaping.provider.microsoft.messages_per_minute", 2, 1, "expected a number"},
		{"first use not an IP", "[warmup]\nfirst_use = { \"mx.example.com\" = 2026-01-10 }\n", "warmup.first_use", 2, 1, "not an IP address"},
		{"first use not a date", "[warmup]\nfirst_use = { \"192.0.2.1\" = \"yesterday\" }\n", "warmup.first_use.\"192.0.2.1\"", 2, 15, "expected a date"},
		{"warm-up days", "[warmup]\ndays = 0\n", "warmup.days", 2, 1, "allowed from 1 to 365"},
		{"provider fallback relay", "[shaping.provider.yahoo]\nfallback_relay = \"nohost\"\n", "shaping.provider.yahoo.fallback_relay", 2, 1, "not a host:port"},
		{"webhook scheme", "[alerts]\nwebhook_url = \"ftp://example.com/hook\"\n", "alerts.webhook_url", 2, 1, "not an http"},
		{"fallback and relay", "[outbound]\nrelay = \"smart.example.net:587\"\nfallback_relay = \"fb.example.net:25\"\n", "outbound.fallback_relay", 3, 1, "already goes through outbound.relay"},
		{"debug not loopback", "[listen]\ndebug = \"0.0.0.0:6060\"\n", "listen.debug", 2, 1, "must stay on a loopback address"},
		{"debug by name", "[listen]\ndebug = \"localhost:6060\"\n", "listen.debug", 2, 1, "must stay on a loopback address"},
		{"log level", "[log]\nlevel = \"verbose\"\n", "log.level", 2, 1, `log.level = "verbose": allowed: "debug", "info", "warn", "error"`},
		{"log format", "log.format = \"xml\"\n", "log.format", 1, 5, `allowed: "text", "json"`},
	})
}

func TestValidAddresses(t *testing.T) {
	tests := []string{
		"[listen]\nsmtp = \"127.0.0.1:0\"\nsubmission = \"127.0.0.1:0\"\n",
		"[listen]\nsmtp = \"[::]:25\"\nimap = \"localhost:143\"\nhttp = \":80\"\n",
		"[dns]\nresolver = \"[2001:db8::53]:53\"\n",
		"[outbound]\nrelay = \"[2001:db8::25]:25\"\nsource_ips = [\"127.0.0.1\", \"127.0.0.2\"]\n",
		"hostname = \"localhost\"\n",
		"hostname = \"xn--bcher-kva.example\"\n",
		"hostname = \"1mail.example.com\"\n",
		"[listen]\nsmtp = \"127.0.0.1:25\"\nsubmission = \"127.0.0.2:25\"\nimap = \"0.0.0.0:143\"\nimaps = \"[::]:993\"\nhttp = \"localhost:80\"\nhttps = \"localhost:443\"\n",
		"[smtp]\nmax_message_size = 1024\nmin_free_disk = 1125899906842624\n",
		"[smtp]\nmax_message_size = 536870912\ndnsbl = [\"zen.spamhaus.org\", \"bl.spamcop.net\"]\n",
		"[queue]\nretry_max = \"8760h\"\nmax_age = \"8760h\"\n",
		"[bounce]\nbulk_senders = [\"news@example.org\", \"@shop.example.org\", \"first.last+tag@example.org\", \"jörg@example.org\"]\n",
		"[bounce]\nfeedback_addresses = [\"fbl@example.org\"]\nunsubscribe_url = \"http://127.0.0.1:8080/base/\"\n",
		"[bounce]\nunsubscribe_url = \"https://[2001:db8::1]:8443\"\n",
	}
	for _, text := range tests {
		if _, err := Parse([]byte(text)); err != nil {
			t.Errorf("Parse(%q): %v", text, err)
		}
	}
}

func TestSeveralErrorsInFileOrder(t *testing.T) {
	text := "[smtp]\nmax_recipients = 0\n[log]\nlevel = \"loud\"\n[store]\ndriver = \"postgres\"\n"
	_, err := Load(writeFile(t, text))
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(err.Error(), "\n")
	want := []string{":2:1: smtp.max_recipients", ":4:1: log.level", ":6:1: store.driver"}
	if len(lines) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.Contains(lines[i], "repute.toml"+w) {
			t.Errorf("error %d = %q, want it to contain %q", i, lines[i], w)
		}
	}

	// Schema problems are all reported, and stop validation.
	_, err = Parse([]byte("a = 1\n[smtp]\nb = 2\nmax_recipients = 0\n"))
	if err == nil || strings.Count(err.Error(), "unknown key") != 2 || strings.Contains(err.Error(), "positive") {
		t.Errorf("got %v, want exactly the two unknown keys", err)
	}
}

func TestLoadNamesFile(t *testing.T) {
	path := writeFile(t, "[smtp]\n  max_mesage_size = 1\n")
	_, err := Load(path)
	want := path + ":2:3: unknown key smtp.max_mesage_size"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got %v, want prefix %q", err, want)
	}
	var e *Error
	if !errors.As(err, &e) || e.File != path {
		t.Errorf("error %#v does not carry the file name", err)
	}

	missing := filepath.Join(t.TempDir(), "absent.toml")
	_, err = Load(missing)
	if err == nil || !strings.Contains(err.Error(), missing) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want a not-exist error naming %s", err, missing)
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		err  Error
		want string
	}{
		{Error{File: "repute.toml", Line: 12, Column: 3, Msg: "unknown key x"}, "repute.toml:12:3: unknown key x"},
		{Error{File: "repute.toml", Line: 12, Msg: "m"}, "repute.toml:12: m"},
		{Error{File: "repute.toml", Msg: "m"}, "repute.toml: m"},
		{Error{Line: 4, Column: 2, Msg: "m"}, "line 4, column 2: m"},
		{Error{Line: 4, Msg: "m"}, "line 4: m"},
		{Error{Msg: "m"}, "m"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

func TestValidate(t *testing.T) {
	c := Default()
	c.Hostname = "mail.example.com"
	if err := c.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	c.Log.Level = "x"
	c.Store.Driver = "x"
	err := c.Validate()
	var e *Error
	if err == nil || !errors.As(err, &e) || e.Key != "store.driver" || e.Line != 0 {
		t.Errorf("got %v, want joined *Errors without positions", err)
	}
	if !strings.Contains(err.Error(), "log.level") {
		t.Errorf("%v does not mention log.level", err)
	}
}

func TestFillDefaults(t *testing.T) {
	tests := []struct {
		name     string
		set      string
		system   string
		sysErr   error
		want     string
		errorHas string
	}{
		{name: "kept", set: "mx.example.org", system: "box", want: "mx.example.org"},
		{name: "from system", system: "Mail.Example.COM", want: "mail.example.com"},
		{name: "trailing dot", system: "mail.example.com.", want: "mail.example.com"},
		{name: "short name", system: "box", errorHas: `system host name "box" is not a fully qualified domain name`},
		{name: "invalid name", system: "my_box.lan", errorHas: "not a fully qualified domain name"},
		{name: "unknown", sysErr: errors.New("uname failed"), errorHas: "uname failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Hostname = tt.set
			err := c.fillDefaults(func() (string, error) { return tt.system, tt.sysErr })
			if tt.errorHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errorHas) || !strings.Contains(err.Error(), "set hostname") {
					t.Fatalf("got %v, want an error containing %q and advice", err, tt.errorHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Hostname != tt.want {
				t.Errorf("Hostname = %q, want %q", c.Hostname, tt.want)
			}
		})
	}
}

func TestPaths(t *testing.T) {
	c := Config{DataDir: "/var/lib/repute"}
	for got, want := range map[string]string{
		c.DBPath():        "/var/lib/repute/repute.db",
		c.EventsLogPath(): "/var/lib/repute/events.log",
		c.TLSDir():        "/var/lib/repute/tls",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

func TestDefaultPath(t *testing.T) {
	t.Setenv("REPUTE_CONFIG", "")
	if got := DefaultPath(); got != "/etc/repute/repute.toml" {
		t.Errorf("without $REPUTE_CONFIG: %q", got)
	}
	t.Setenv("REPUTE_CONFIG", "/tmp/r.toml")
	if got := DefaultPath(); got != "/tmp/r.toml" {
		t.Errorf("with $REPUTE_CONFIG: %q", got)
	}
}

func TestScanKeys(t *testing.T) {
	text := "# c\n" +
		"a = \"x # not a comment\" # comment\n" +
		"b.'c d'.e = [ 1, [2, 3], { f = 1 } ]\n" +
		"m = \"\"\"\nfake = 1\n\\\"\"\" still string\n\"\"\"\n" +
		"[t . \"u\\\"v\"]\n" +
		"\tw = { x = { y = 2 }, z = 1979-05-27 07:32:00Z }\n" +
		"[[arr]]\n" +
		"k = '''\n[fake]'''''\n" +
		"[[arr]]\n" +
		"k = 2\n"
	data := []byte(text)
	got := scanKeys(data, newLineIndex(data))
	want := keyPositions{
		"a":              {2, 1},
		"b":              {3, 1},
		`b."c d"`:        {3, 3},
		`b."c d".e`:      {3, 9},
		`b."c d".e.f`:    {3, 28},
		"m":              {4, 1},
		"t":              {8, 2},
		`t."u\"v"`:       {8, 6},
		`t."u\"v".w`:     {9, 2},
		`t."u\"v".w.x`:   {9, 8},
		`t."u\"v".w.x.y`: {9, 14},
		`t."u\"v".w.z`:   {9, 23},
		"arr":            {10, 3},
		"arr.k":          {11, 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
	// The scanner must agree with the TOML library about which keys exist.
	var raw map[string]any
	md, err := toml.Decode(text, &raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range md.Keys() {
		if _, ok := got[k.String()]; !ok {
			t.Errorf("key %s has no position", k)
		}
	}
}

func TestLineIndex(t *testing.T) {
	l := newLineIndex([]byte("ab\n\ncd\n"))
	tests := []struct{ off, line, col int }{{0, 1, 1}, {1, 1, 2}, {2, 1, 3}, {3, 2, 1}, {4, 3, 1}, {6, 3, 3}, {7, 4, 1}}
	for _, tt := range tests {
		if line, col := l.position(tt.off); line != tt.line || col != tt.col {
			t.Errorf("position(%d) = %d:%d, want %d:%d", tt.off, line, col, tt.line, tt.col)
		}
		if col := l.column(tt.line, tt.off); col != tt.col {
			t.Errorf("column(%d, %d) = %d, want %d", tt.line, tt.off, col, tt.col)
		}
	}
	if col := l.column(1, 3); col != 0 {
		t.Errorf("column of an offset on another line = %d, want 0", col)
	}
}

func writeFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "repute.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestMessageSizeFromFile is the reported case: a size near the int64 limit passed the
// check, and every size computed from it overflowed, refusing every message.
func TestMessageSizeFromFile(t *testing.T) {
	path := writeFile(t, "hostname = \"mail.example.com\"\n[smtp]\nmax_message_size = 9_223_372_036_854_775_000\n")
	_, err := Load(path)
	want := path + ":3:1: smtp.max_message_size = 9223372036854775000: allowed 1024 (1 KiB) to 536870912 (512 MiB) bytes"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got %v, want prefix %q", err, want)
	}
}

// TestFileChecks runs the checks of the files the configuration names against real files.
func TestFileChecks(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cert, key := writeKeyPair(t, dir, "a")
	_, otherKey := writeKeyPair(t, dir, "b")
	garbage := write("garbage.pem", "not PEM at all\n")
	badCert := write("bad-cert.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")})))
	badKey := write("bad-key.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("junk")})))
	empty := write("empty", "")
	blankFirst := write("blank-first", "\nsecret\n")
	crlf := write("crlf", "secret\r\n")

	tlsText := func(cert, key string) string {
		return fmt.Sprintf("[tls]\ncert_file = %q\nkey_file = %q\n", cert, key)
	}
	relayText := func(pw string) string {
		return fmt.Sprintf("[outbound]\nrelay = \"smtp.example.net:587\"\nrelay_username = \"u\"\nrelay_password_file = %q\n", pw)
	}
	for _, ok := range []string{tlsText(cert, key), relayText(crlf), "[bounce]\nrules_file = " + strconv.Quote(empty) + "\n"} {
		if _, err := Parse([]byte(ok)); err != nil {
			t.Errorf("Parse(%q): %v", ok, err)
		}
	}
	runErrorCases(t, []errorCase{
		{"garbage cert", tlsText(garbage, key), "tls.cert_file", 2, 1, `no PEM "CERTIFICATE" block found`},
		{"garbage key", tlsText(cert, garbage), "tls.key_file", 3, 1, "no PEM private key block found"},
		{"cert does not parse", tlsText(badCert, key), "tls.cert_file", 2, 1, "the certificate does not parse"},
		{"key does not parse", tlsText(cert, badKey), "tls.key_file", 3, 1, "does not go with the certificate in tls.cert_file"},
		{"key of another certificate", tlsText(cert, otherKey), "tls.key_file", 3, 1, fmt.Sprintf("tls.key_file = %q does not go with the certificate in tls.cert_file = %q: private key does not match public key", otherKey, cert)},
		{"cert given as key", tlsText(cert, cert), "tls.key_file", 3, 1, "holds a certificate, not a private key"},
		{"empty password file", relayText(empty), "outbound.relay_password_file", 4, 1, "the first line is empty; it must hold the password"},
		{"password on the second line", relayText(blankFirst), "outbound.relay_password_file", 4, 1, "the first line is empty"},
	})

	if os.Geteuid() == 0 {
		t.Log("running as root: unreadable files cannot be tested")
		return
	}
	unreadable := write("unreadable", "secret\n")
	if err := os.Chmod(unreadable, 0); err != nil {
		t.Fatal(err)
	}
	runErrorCases(t, []errorCase{
		{"unreadable password file", relayText(unreadable), "outbound.relay_password_file", 4, 1, "permission denied: not readable by this user"},
		{"unreadable key", tlsText(cert, unreadable), "tls.key_file", 3, 1, "permission denied"},
		{"unreadable rules", "[bounce]\nrules_file = " + strconv.Quote(unreadable) + "\n", "bounce.rules_file", 2, 1, "permission denied"},
	})
}

// writeKeyPair writes a self-signed certificate and its key as PEM files.
func writeKeyPair(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"mail.example.com"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+"-cert.pem"), filepath.Join(dir, name+"-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestHostAddresses checks that listen and source addresses must belong to this host.
func TestHostAddresses(t *testing.T) {
	l := &localAddrs{addrs: map[netip.Addr]bool{netip.MustParseAddr("192.0.2.7"): true, netip.MustParseAddr("2001:db8::7"): true}}
	for addr, want := range map[string]bool{
		"192.0.2.7": true, "::ffff:192.0.2.7": true, "2001:db8::7": true, "127.0.0.1": true, "127.9.9.9": true,
		"192.0.2.8": false, "2001:db8::8": false, "::1": false,
	} {
		if got := l.check(netip.MustParseAddr(addr)) == ""; got != want {
			t.Errorf("check(%s) local = %v, want %v", addr, got, want)
		}
	}
	l.nonlocal6 = true
	if msg := l.check(netip.MustParseAddr("2001:db8::8")); msg != "" {
		t.Errorf("with ip_nonlocal_bind, IPv6 addresses are bindable: %s", msg)
	}
	if msg := (&localAddrs{unknown: true}).check(netip.MustParseAddr("192.0.2.8")); msg != "" {
		t.Errorf("interfaces unknown: nothing may be refused: %s", msg)
	}

	// This host's own list: loopback is always there; a documentation address (RFC 5737)
	// is not, unless this host binds non-local addresses.
	if listLocalAddrs().check(netip.MustParseAddr("192.0.2.1")) == "" {
		t.Skip("this host accepts 192.0.2.1 (ip_nonlocal_bind?)")
	}
	runErrorCases(t, []errorCase{
		{"listen", "[listen]\nsmtp = \"192.0.2.1:25\"\n", "listen.smtp", 2, 1, `listen.smtp = "192.0.2.1:25": 192.0.2.1 is not an address of this host`},
		{"source ip", "[outbound]\nsource_ips = [\"127.0.0.1\", \"192.0.2.1\"]\n", "outbound.source_ips", 2, 1, `outbound.source_ips: "192.0.2.1": 192.0.2.1 is not an address of this host; every delivery from it would fail`},
	})
}
