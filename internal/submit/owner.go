package submit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"

	"github.com/repute-mail/repute/internal/smtp"
	"github.com/repute-mail/repute/internal/store"
)

// owns reports whether who may use a as a sender address (envelope, From or Sender): see
// the package documentation.
func (s *Submitter) owns(ctx context.Context, who Who, a smtp.Address) (bool, error) {
	if who.local {
		return true, nil
	}
	if a.IsZero() {
		return false, nil
	}
	targets, err := s.Store.ResolveExplicit(ctx, a)
	switch {
	case err == nil:
		for _, t := range targets {
			if t.UserID == who.user.ID {
				return true, nil
			}
		}
	case !errors.Is(err, store.ErrNotLocal) && !errors.Is(err, store.ErrNoSuchUser):
		return false, fmt.Errorf("resolve sender %s: %w", a, err)
	}
	grants, err := s.Store.UserGrants(ctx, who.user.ID)
	if err != nil {
		return false, fmt.Errorf("read grants of %s: %w", who.user.Address, err)
	}
	key, base := a.Key(), untagged(a)
	for _, g := range grants {
		if g == key || g == base || g == "@"+a.Domain {
			return true, nil
		}
	}
	return false, nil
}

// untagged is a's key without its +tag (plus-addressing).
func untagged(a smtp.Address) string {
	local := strings.ToLower(a.Local)
	if plus := strings.IndexByte(local, '+'); plus > 0 {
		local = local[:plus]
	}
	return local + "@" + a.Domain
}

// checkAuthors refuses a message whose authorship is ambiguous (several From fields or
// From addresses) or, from a user, not theirs (an address in From or Sender they do not
// own). A local injection is only held to the first rule, and only as far as its From
// parses: it may send as anyone, and an unreadable From is left to the reader (it is not
// signed, since the signer cannot tell its domain either).
func (s *Submitter) checkAuthors(ctx context.Context, who Who, h *Header) error {
	froms := h.Values("From")
	if len(froms) > 1 {
		return smtp.Errorf(550, "5.7.1", "Message has %d From fields; a message must have exactly one author", len(froms))
	}
	for _, name := range []string{"From", "Sender"} {
		for _, v := range h.Values(name) {
			list, err := ParseAddressList(v)
			if err != nil {
				if who.local {
					continue
				}
				return smtp.Wrap(550, "5.6.0", fmt.Sprintf("%s field is not a valid address list", name), err)
			}
			if name == "From" && len(list) > 1 {
				return smtp.Errorf(550, "5.7.1", "From field names %d addresses; a message must have exactly one author", len(list))
			}
			if name == "From" && len(list) == 0 && !who.local {
				return smtp.Errorf(550, "5.6.0", "From field names no address")
			}
			if err := s.checkOwned(ctx, who, name, list); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkOwned refuses with 553 5.7.1 the first address of list, from the named field,
// that who does not own.
func (s *Submitter) checkOwned(ctx context.Context, who Who, name string, list []string) error {
	if who.local {
		return nil
	}
	for _, raw := range list {
		a, err := smtp.ParseAddress(raw)
		if err != nil {
			return smtp.Wrap(550, "5.6.0", fmt.Sprintf("%s address %q is not valid", name, printable(raw, 100)), err)
		}
		ok, err := s.owns(ctx, who, a)
		if err != nil {
			return err
		}
		if !ok {
			return smtp.Errorf(553, "5.7.1", "%s address <%s> not owned by authenticated user %s", name, a, who.user.Address)
		}
	}
	return nil
}

// addressParser reads RFC 5322 address lists. Display names in any charset are fine:
// only the addresses are used, so encoded words are not converted.
var addressParser = &mail.AddressParser{WordDecoder: &mime.WordDecoder{
	CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil },
}}

// ParseAddressList returns the addresses (addr-specs) of an address list such as a From
// or To field's value; groups contribute their members. Its input is bounded by the
// header limits.
func ParseAddressList(v string) ([]string, error) {
	list, err := addressParser.ParseList(v)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(list))
	for i, a := range list {
		out[i] = a.Address
	}
	return out, nil
}
