// Package provider knows the mailbox providers Repute treats as one destination: Gmail and
// Google Workspace, Microsoft's Outlook.com and Microsoft 365, Yahoo and AOL, and the others
// of docs/CONTRACTS.md §4. A provider is recognised by the suffixes of its MX host names
// (an embedded table, providers.toml, that the admin can extend), because that is what
// decides who judges our mail: thousands of Workspace and Microsoft 365 domains are served
// by the same receivers, keep one reputation for a sending IP and throttle it as one.
//
// It is a leaf: classify uses the table to name the provider of a reply, route to group
// destinations (the MX rollup), and later the shaper keys its limits by the same ids.
package provider

import (
	_ "embed"
	"slices"
	"strings"
)

// Embedded is the built-in provider table (TOML, [[provider]] tables; see the file's
// comments for the keys). Its parser, with the admin's additions, lives in classify, which
// also compiles the tables' text patterns; the MX suffixes end up in a Table.
//
//go:embed providers.toml
var Embedded string

// Entry is one provider's MX host suffixes, lower case, without leading dots.
type Entry struct {
	ID         string
	MXSuffixes []string
}

// Table maps MX host names to provider ids. It is immutable once built and safe for
// concurrent use.
type Table struct {
	bySuffix map[string]string
	ids      []string
}

// NewTable builds a table from entries in priority order: when two entries claim the same
// suffix, the first one keeps it (callers put the admin's entries first).
func NewTable(entries []Entry) *Table {
	t := &Table{bySuffix: map[string]string{}}
	for _, e := range entries {
		t.ids = append(t.ids, e.ID)
		for _, s := range e.MXSuffixes {
			s = strings.Trim(strings.ToLower(s), ".")
			if _, ok := t.bySuffix[s]; !ok && s != "" {
				t.bySuffix[s] = e.ID
			}
		}
	}
	return t
}

// Lookup returns the provider id of an MX host name by its longest known suffix, on label
// boundaries ("gmail-smtp-in.l.google.com" → "google"; "evilgoogle.com" → ""), or "".
func (t *Table) Lookup(mxHost string) string {
	if t == nil {
		return ""
	}
	h := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(mxHost)), ".")
	for h != "" {
		if id, ok := t.bySuffix[h]; ok {
			return id
		}
		i := strings.IndexByte(h, '.')
		if i < 0 {
			break
		}
		h = h[i+1:]
	}
	return ""
}

// IDs lists the providers in the table's order.
func (t *Table) IDs() []string { return slices.Clone(t.ids) }

// Group returns the destination group of a set of MX hosts: the provider id when the
// first (most preferred) host belongs to a known provider, else "mx:" and the sorted,
// de-duplicated host names, so that unknown domains served by the same hosts (a hosting
// company's shared MX) are one destination too. No hosts gives "".
func (t *Table) Group(mxHosts []string) string {
	if len(mxHosts) == 0 {
		return ""
	}
	if id := t.Lookup(mxHosts[0]); id != "" {
		return id
	}
	hs := make([]string, 0, len(mxHosts))
	for _, h := range mxHosts {
		hs = append(hs, strings.TrimSuffix(strings.ToLower(h), "."))
	}
	slices.Sort(hs)
	return "mx:" + strings.Join(slices.Compact(hs), ",")
}
