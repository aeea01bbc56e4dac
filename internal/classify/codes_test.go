package classify

import (
	"os"
	"path/filepath"
	"testing"
)

// TestProviderCodes checks that a provider's own status code decides the category however
// little of the reply is left, and that the code is matched only as a whole token.
func TestProviderCodes(t *testing.T) {
	tests := []struct {
		name, reply, mx, want string
	}{
		// The code decides alone, the text cut or garbled.
		{"outlook S3140 alone", "550 5.7.1 (S3140)", "", IPReputation},
		{"outlook S3150 bare", "550 5.7.1 S3150", "", IPReputation},
		{"outlook S3140 with unrelated text", "550 5.7.1 Message refused by policy (S3140)", "", IPReputation},
		{"outlook S775", "451 4.7.650 ... (S775)", "", IPReputation},
		{"outlook 4.7.651 no text", "451 4.7.651", "", IPReputation},
		{"outlook server busy", "451 4.7.500 Server bus= y. (S77714)", "", RateLimited},
		{"outlook SC-001 cut", "550 SC-001 (BAY004-MC4F49) Unfortunately, messages fr", "", IPReputation},
		{"outlook RP-001", "421 RP-001 (BAY004-MC1F21)", "", RateLimited},
		{"exo access denied", "451 4.7.500 Access denied, please try again later", "x.mail.protection.outlook.com", IPReputation},
		{"exo server busy", "451 4.7.500 Server busy, please try again later", "x.mail.protection.outlook.com", RateLimited},
		{"exo 5.7.705 over policy text", "550 5.7.705 Access denied, tenant has exceeded threshold.", "", IPReputation},
		{"exo 5.7.515 cut", "550 5.7.515 Access denied, sending dom", "", Authentication},
		{"gmail 4.7.28 ip", "421-4.7.28 unusual rate of unsolicited email from your IP - gsmtp", "", RateLimited}, // a deferral: CONTRACTS §3
		{"gmail 5.7.28 ip", "550-5.7.28 unusual rate of unsolicited email from your IP - gsmtp", "", IPReputation},
		{"gmail 4.7.28 dkim domain", "421-4.7.28 unsolicited email originating from your DKIM domain - gsmtp", "", DomainReputation},
		{"gmail 4.7.28 alone", "421 4.7.28 - gsmtp", "", RateLimited},
		{"gmail 5.7.28 alone", "550 5.7.28", "gmail-smtp-in.l.google.com", IPReputation},
		{"gmail 5.7.27 is spf", "550 5.7.27 - gsmtp", "", Authentication},
		{"gmail 4.7.23 is ptr", "451 4.7.23 - gsmtp", "", ReverseDNS},
		{"gmail 4.7.32 cut", "421-4.7.32 Your email has been rate limited because the Fr", "gmail-smtp-in.l.google.com", Authentication},
		{"gmail help link only", "550-5.7.1 https://support.google.com/mail/?p=UnsolicitedIPError - gsmtp", "", IPReputation},
		{"yahoo TSS04 alone", "421 4.7.0 [TSS04]", "", RateLimited},
		{"yahoo TSS09 cut", "553 5.7.2 [TSS09] All messages from 192.0.2.1 will be perm", "", IPReputation},
		{"yahoo PH01", "554 Message not allowed - [PH01] Email not accepted for policy reasons.", "", ContentSpam},
		{"comcast BL000001", "554 comcast 192.0.2.1 see #BL000001", "", IPReputation},
		{"comcast RL000001", "421 comcast 192.0.2.1 RL000001", "", RateLimited},
		{"orange 102", "550 mwinf5c04 ME ... OFR006_102 [102]", "", IPReputation},
		{"laposte 517", "571 5.7.1 Message refused LPN007_517", "", Authentication},

		// Not a code: inside a longer word or number, or from another provider.
		{"AS prefix is not S3140", "550 5.7.1 Message refused (AS31400)", "", Policy},
		{"longer number is not S3140", "550 5.7.1 Message refused, id S31401", "", Policy},
		{"S7771 is not S777xx", "451 4.7.1 id S7771 please try again later", "", Transient},
		{"TSS040 is not TSS04", "421 4.7.0 [TSS040] try again later", "", Transient},
		{"BL code needs comcast", "554 5.7.1 ref BL000001", "mx.example.org", Policy},
		{"5.7.27 elsewhere is null MX", "550 5.7.27 Sender address has null MX", "mx.example.org", InvalidSender},
		{"4.7.23 elsewhere is SPF", "550 5.7.23 SPF validation failed", "mx.example.org", Authentication},
		{"orange code inside number", "550 5.7.1 rejected OFR_1020", "", Policy},
	}
	c := Default()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := c.ClassifyFrom(tt.reply, tt.mx)
			if got.Category != tt.want {
				t.Errorf("ClassifyFrom(%q, %q) = %s (%s), want %s", tt.reply, tt.mx, got.Category, ruleID(c, tt.reply), tt.want)
			}
		})
	}
}

// TestDecisiveAdminRule checks that an admin's decisive rule comes before the built-in text
// rules ("access denied" is a policy text), whether it matches by substring or regexp.
func TestDecisiveAdminRule(t *testing.T) {
	tests := []struct {
		name, rules, reply, want string
	}{
		{"substring", `[[rule]]
id = "ticket-code"
category = "rate_limited"
decisive = true
match = ["ticket rl-7"]
`, "550 5.7.1 Access denied, ticket RL-7", RateLimited},
		{"regexp", `[[rule]]
id = "digits"
category = "rate_limited"
decisive = true
regexp = ['\d{5}']
`, "550 5.7.1 Access denied 12345", RateLimited},
		{"not matching leaves the text rules", `[[rule]]
id = "digits"
category = "rate_limited"
decisive = true
regexp = ['\d{5}']
`, "550 5.7.1 Access denied 1234", Policy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := filepath.Join(t.TempDir(), "rules.toml")
			if err := os.WriteFile(name, []byte(tt.rules), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := Load(name)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Classify(tt.reply).Category; got != tt.want {
				t.Errorf("Classify(%q) = %s (%s), want %s", tt.reply, got, ruleID(c, tt.reply), tt.want)
			}
		})
	}
}
