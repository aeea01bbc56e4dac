package provider

import "testing"

func TestLookupAndGroup(t *testing.T) {
	tab := NewTable([]Entry{
		{ID: "mine", MXSuffixes: []string{"google.com"}}, // an admin's entry comes first and wins
		{ID: "google", MXSuffixes: []string{".google.com", ".googlemail.com"}},
		{ID: "microsoft", MXSuffixes: []string{".protection.outlook.com"}},
	})
	lookups := []struct{ host, want string }{
		{"aspmx.l.google.com", "mine"},
		{"ASPMX.L.GOOGLE.COM.", "mine"},
		{"alt1.aspmx.l.googlemail.com", "google"},
		{"evilgoogle.com", ""},
		{"example-com.mail.protection.outlook.com", "microsoft"},
		{"", ""},
	}
	for _, l := range lookups {
		if got := tab.Lookup(l.host); got != l.want {
			t.Errorf("Lookup(%q) = %q, want %q", l.host, got, l.want)
		}
	}
	groups := []struct {
		hosts []string
		want  string
	}{
		{[]string{"a-com.mail.protection.outlook.com"}, "microsoft"},
		{[]string{"mx2.hoster.example.", "MX1.hoster.example", "mx1.hoster.example"}, "mx:mx1.hoster.example,mx2.hoster.example"},
		{nil, ""},
	}
	for _, g := range groups {
		if got := tab.Group(g.hosts); got != g.want {
			t.Errorf("Group(%v) = %q, want %q", g.hosts, got, g.want)
		}
	}
	var nilTable *Table
	if nilTable.Lookup("aspmx.l.google.com") != "" {
		t.Error("a nil table knows no provider")
	}
}
