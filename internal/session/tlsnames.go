package session

import "crypto/tls"

func tlsVersion(v uint16) string { return tls.VersionName(v) }

func tlsCipher(id uint16) string { return tls.CipherSuiteName(id) }
