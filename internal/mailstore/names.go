package mailstore

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/repute-mail/repute/internal/store"
)

// ErrInvalidName is returned (wrapped) for a mailbox name that cannot be stored.
var ErrInvalidName = errors.New("invalid mailbox name")

const maxNameLen = 512

// NormalizeName checks a mailbox name given by a client and returns the stored form. The
// name "INBOX" is case-insensitive (RFC 9051 §5.1), and so is it as the first level of a
// hierarchical name. A trailing delimiter is dropped: "CREATE foo/" creates "foo"
// (RFC 9051 §6.3.4).
func NormalizeName(name string) (string, error) {
	name = strings.TrimSuffix(name, store.MailboxDelim)
	switch {
	case name == "":
		return "", fmt.Errorf("%w: empty", ErrInvalidName)
	case len(name) > maxNameLen:
		return "", fmt.Errorf("%w: longer than %d bytes", ErrInvalidName, maxNameLen)
	case !utf8.ValidString(name):
		return "", fmt.Errorf("%w: not UTF-8", ErrInvalidName)
	case strings.HasPrefix(name, store.MailboxDelim) || strings.HasSuffix(name, store.MailboxDelim) ||
		strings.Contains(name, store.MailboxDelim+store.MailboxDelim):
		return "", fmt.Errorf("%w: empty hierarchy level", ErrInvalidName)
	case strings.ContainsAny(name, "*%"):
		return "", fmt.Errorf("%w: contains a LIST wildcard", ErrInvalidName)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("%w: contains a control character", ErrInvalidName)
		}
	}
	first, rest, nested := strings.Cut(name, store.MailboxDelim)
	if strings.EqualFold(first, "INBOX") {
		if !nested {
			return "INBOX", nil
		}
		return "INBOX" + store.MailboxDelim + rest, nil
	}
	return name, nil
}

// SpecialUses are the RFC 6154 attributes a mailbox may carry.
var SpecialUses = []string{`\Archive`, `\Drafts`, `\Junk`, `\Sent`, `\Trash`}

// systemFlags are the RFC 9051 §2.3.2 flags a client may set, in canonical spelling.
var systemFlags = []string{`\Answered`, `\Deleted`, `\Draft`, `\Flagged`, `\Seen`}

// Flag names used by IMAP code.
const (
	FlagSeen    = `\Seen`
	FlagDeleted = `\Deleted`
)

// CanonicalFlags prepares flags from a client for storage: system flags take their
// canonical spelling, \Recent and unknown system flags are dropped (\Recent cannot be set
// by a client, RFC 3501 §2.3.2), and duplicates (compared case-insensitively) go.
func CanonicalFlags(flags []string) []string {
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		if strings.HasPrefix(f, `\`) {
			i := slices.IndexFunc(systemFlags, func(s string) bool { return strings.EqualFold(s, f) })
			if i < 0 {
				continue
			}
			f = systemFlags[i]
		}
		if f == "" || slices.ContainsFunc(out, func(s string) bool { return strings.EqualFold(s, f) }) {
			continue
		}
		out = append(out, f)
	}
	return out
}

// HasFlag reports whether flags holds flag, ignoring case.
func HasFlag(flags []string, flag string) bool {
	return slices.ContainsFunc(flags, func(s string) bool { return strings.EqualFold(s, flag) })
}

// MailboxFlags returns the flags to announce for a mailbox (the FLAGS response of SELECT):
// the system flags and the keywords its messages carry.
func MailboxFlags(keywords []string) []string {
	out := slices.Clone(systemFlags)
	for _, k := range keywords {
		if !strings.HasPrefix(k, `\`) && !HasFlag(out, k) {
			out = append(out, k)
		}
	}
	return out
}
