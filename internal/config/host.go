package config

// Checks against the host the configuration is checked on: files it names and addresses
// it binds. They run as the user running the check, so `repute config check` should run
// as the user that runs `repute serve`.

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"strings"
)

// Size limits of the files the configuration names, far above any real one; they keep a
// path such as /dev/zero, or a misnamed huge file, from being read.
const (
	maxPEMFile    = 1 << 20
	maxSecretFile = 64 << 10
)

// checkDirIfExists says why path, if it exists, is not a directory, or "".
func checkDirIfExists(path string) string {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return ""
	case err != nil:
		return describeFileErr(err)
	case !fi.IsDir():
		return "exists but is not a directory"
	}
	return ""
}

// readSmallFile reads the regular file at path, if it has at most limit bytes; otherwise
// the error says, for a message, what is wrong.
func readSmallFile(path string, limit int64) ([]byte, string) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, describeFileErr(err)
	}
	if !fi.Mode().IsRegular() {
		return nil, "not a regular file"
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, describeFileErr(err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, describeFileErr(err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Sprintf("larger than %d bytes; not the file meant", limit)
	}
	return data, ""
}

// checkReadable says why the regular file at path cannot be opened for reading, or "".
func checkReadable(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return describeFileErr(err)
	}
	if !fi.Mode().IsRegular() {
		return "not a regular file"
	}
	f, err := os.Open(path)
	if err != nil {
		return describeFileErr(err)
	}
	f.Close()
	return ""
}

// describeFileErr turns a file system error into a message fragment that leaves out the
// path (messages quote the configured value already).
func describeFileErr(err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "no such file"
	case errors.Is(err, fs.ErrPermission):
		return fmt.Sprintf("permission denied: not readable by this user (uid %d)", os.Getuid())
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// checkSecretFile says why the file at path does not hold a password on its first line,
// as serve reads relay passwords, or "".
func checkSecretFile(path string) string {
	data, msg := readSmallFile(path, maxSecretFile)
	if msg != "" {
		return msg
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	if len(bytes.TrimRight(line, "\r")) == 0 {
		return "the first line is empty; it must hold the password"
	}
	return ""
}

// checkKeyPair adds a problem for each reason the PEM files certFile and keyFile would not
// load as one certificate with its private key, the way internal/tlsconf loads them.
func checkKeyPair(v *validator, certFile, keyFile string) {
	certPEM, certMsg := readSmallFile(certFile, maxPEMFile)
	keyPEM, keyMsg := readSmallFile(keyFile, maxPEMFile)
	if certMsg == "" {
		certMsg = checkCertPEM(certPEM)
	}
	if keyMsg == "" && !hasPEMBlock(keyPEM, func(t string) bool { return strings.HasSuffix(t, "PRIVATE KEY") }) {
		keyMsg = "no PEM private key block found; it must hold the certificate's private key, such as certbot's privkey.pem"
		if hasPEMBlock(keyPEM, func(t string) bool { return t == "CERTIFICATE" }) {
			keyMsg = "holds a certificate, not a private key; are tls.cert_file and tls.key_file swapped?"
		}
	}
	if certMsg != "" {
		v.addf("tls.cert_file", "tls.cert_file = %q: %s", certFile, certMsg)
	}
	if keyMsg != "" {
		v.addf("tls.key_file", "tls.key_file = %q: %s", keyFile, keyMsg)
	}
	if certMsg != "" || keyMsg != "" {
		return
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		v.addf("tls.key_file", "tls.key_file = %q does not go with the certificate in tls.cert_file = %q: %s",
			keyFile, certFile, strings.TrimPrefix(err.Error(), "tls: "))
	}
}

// checkCertPEM says why data is not a PEM certificate chain whose first certificate parses,
// or "".
func checkCertPEM(data []byte) string {
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return "the certificate does not parse: " + strings.TrimPrefix(err.Error(), "x509: ")
		}
		return ""
	}
	if hasPEMBlock(data, func(t string) bool { return strings.HasSuffix(t, "PRIVATE KEY") }) {
		return "holds a private key, not a certificate; are tls.cert_file and tls.key_file swapped?"
	}
	return "no PEM \"CERTIFICATE\" block found; it must hold the certificate chain, leaf first, such as certbot's fullchain.pem"
}

func hasPEMBlock(data []byte, match func(blockType string) bool) bool {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return false
		}
		if match(b.Type) {
			return true
		}
	}
}

// localAddrs is what this host can bind: the addresses of its interfaces, all of
// 127.0.0.0/8, and any address of a family for which the kernel allows binding non-local
// addresses (net.ipv4.ip_nonlocal_bind, net.ipv6.ip_nonlocal_bind, as used with floating
// addresses). unknown means the interfaces could not be listed; nothing is refused then.
type localAddrs struct {
	addrs     map[netip.Addr]bool
	nonlocal4 bool
	nonlocal6 bool
	unknown   bool
}

func listLocalAddrs() *localAddrs {
	l := &localAddrs{addrs: map[netip.Addr]bool{},
		nonlocal4: sysctlOn("/proc/sys/net/ipv4/ip_nonlocal_bind"),
		nonlocal6: sysctlOn("/proc/sys/net/ipv6/ip_nonlocal_bind")}
	list, err := net.InterfaceAddrs()
	if err != nil {
		l.unknown = true
		return l
	}
	for _, a := range list {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				l.addrs[ip.Unmap()] = true
			}
		}
	}
	return l
}

func sysctlOn(path string) bool {
	b, err := os.ReadFile(path)
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

// check says why ip cannot be bound here, or "".
func (l *localAddrs) check(ip netip.Addr) string {
	ip = ip.Unmap().WithZone("")
	switch {
	case l.unknown, l.addrs[ip], ip.Is4() && (ip.IsLoopback() || l.nonlocal4), ip.Is6() && l.nonlocal6:
		return ""
	}
	return fmt.Sprintf("%s is not an address of this host", ip)
}
