package doctor

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"github.com/repute-mail/repute/internal/dns"
)

// checkReverse runs the checks of one sending address: ptr, fcrdns, helo, ip_type and,
// where the PTR looks like a provider's default name, the hint how to change it.
func (c *Checker) checkReverse(ctx context.Context, ip netip.Addr) []Result {
	host := trimDot(c.Setup.Hostname)
	target := ip.String()
	var out []Result
	names, _, err := c.Resolver.LookupAddr(ctx, ip.String())
	var ptrs []string
	for _, n := range names {
		if n = trimDot(n); n != "" {
			ptrs = append(ptrs, n)
		}
	}
	fixPTR := fmt.Sprintf("ask whoever owns %s (the hosting provider's panel, \"reverse DNS\" or \"PTR\") to set its PTR record to %s", ip, host)
	switch {
	case err != nil && !isNotFound(err):
		out = append(out,
			Result{ID: IDPTR, Status: Error, Target: target, Found: lookupErr("PTR record", err), Why: whyPTR, Fix: fixPTR},
			Result{ID: IDFCrDNS, Status: Error, Target: target, Found: "no PTR to check", Why: whyFCrDNS},
			Result{ID: IDHELO, Status: Error, Target: target, Found: "no PTR to check", Why: whyHELO})
	case len(ptrs) == 0:
		out = append(out,
			Result{ID: IDPTR, Status: Fail, Target: target, Found: "no PTR record for " + target, Why: whyPTR, Fix: fixPTR},
			// Without a PTR these two cannot be judged; ptr's failure says what to do.
			Result{ID: IDFCrDNS, Status: Error, Target: target, Found: "no PTR record to confirm (see ptr)", Why: whyFCrDNS},
			Result{ID: IDHELO, Status: Error, Target: target, Found: "no PTR record to compare with the hostname (see ptr)", Why: whyHELO})
	default:
		out = append(out, Result{ID: IDPTR, Status: Pass, Target: target, Found: "PTR " + strings.Join(ptrs, ", "), Why: whyPTR})
		out = append(out, c.checkFCrDNS(ctx, ip, ptrs))
		if containsName(ptrs, host) {
			out = append(out, Result{ID: IDHELO, Status: Pass, Target: target, Found: "PTR " + host + " is the hostname Repute greets with", Why: whyHELO})
		} else {
			out = append(out, Result{ID: IDHELO, Status: Fail, Target: target,
				Found: fmt.Sprintf("PTR %s, but Repute says EHLO %s", strings.Join(ptrs, ", "), host), Why: whyHELO,
				Fix: fmt.Sprintf("set the PTR of %s to %s (hosting provider), or set hostname = %q in the config if that is the name you want", ip, host, ptrs[0])})
		}
	}
	out = append(out, c.checkIPType(ctx, ip, ptrs)...)
	return out
}

const (
	whyPTR    = "Gmail, Outlook and most receivers refuse or junk mail from an address without a PTR (reverse DNS) record."
	whyFCrDNS = "A PTR only counts when its name resolves back to the same address (forward-confirmed reverse DNS); receivers check both directions."
	whyHELO   = "Receivers compare the EHLO name with the PTR; a mismatch is a classic spam signal, and some refuse the connection."
	whyIPType = "Addresses in residential or dynamic ranges are refused outright by the large providers (Spamhaus PBL, Outlook's DY codes), whatever else is right."
)

func (c *Checker) checkFCrDNS(ctx context.Context, ip netip.Addr, ptrs []string) Result {
	var seen []string
	var lastErr error
	for _, name := range ptrs {
		ips, _, err := c.Resolver.LookupIP(ctx, "ip", abs(name))
		if err != nil {
			lastErr = err
			seen = append(seen, name+" does not resolve")
			continue
		}
		for _, a := range ips {
			if x, ok := netip.AddrFromSlice(a); ok && x.Unmap() == ip.Unmap() {
				return Result{ID: IDFCrDNS, Status: Pass, Target: ip.String(), Found: name + " resolves back to " + ip.String(), Why: whyFCrDNS}
			}
		}
		seen = append(seen, fmt.Sprintf("%s resolves to %s", name, joinIPs(ips)))
	}
	st := Fail
	if lastErr != nil && !isNotFound(lastErr) && len(seen) == len(ptrs) {
		st = Error
	}
	return Result{ID: IDFCrDNS, Status: st, Target: ip.String(), Found: strings.Join(seen, "; "), Why: whyFCrDNS,
		Fix: fmt.Sprintf("publish an A/AAAA record %s. IN A %s (the PTR's name must point back to the address), or change the PTR to a name that does", ptrs[0], ip)}
}

// checkIPType says whether ip looks like a static, public server address: not private,
// not in a policy list of end-user ranges, and with a PTR that is not a provider's
// generic name.
func (c *Checker) checkIPType(ctx context.Context, ip netip.Addr, ptrs []string) []Result {
	target := ip.String()
	if !isPublic(ip) {
		return []Result{{ID: IDIPType, Status: Warn, Target: target,
			Found: target + " is not a public address (loopback, private or link-local)", Why: whyIPType,
			Fix: "not public: set outbound.public_ips to the address the world sees your mail come from"}}
	}
	if listed, zone, txt := c.policyListed(ctx, ip); listed {
		return []Result{{ID: IDIPType, Status: Fail, Target: target,
			Found: fmt.Sprintf("%s is in the Spamhaus Policy Block List (%s): an end-user range that should not send mail directly%s", target, zone, txtSuffix(txt)),
			Why:   whyIPType,
			Fix:   "send from a server address, not an end-user one: ask the provider for a static address whose owner removes it from the PBL, remove it yourself at https://check.spamhaus.org/ if it is yours and static, or set outbound.relay",
			URL:   "https://check.spamhaus.org/"}}
	}
	for _, name := range ptrs {
		if generic, why := genericPTR(name, ip); generic {
			fix := fmt.Sprintf("set a PTR of your own for %s: %s (hosting provider)", ip, trimDot(c.Setup.Hostname))
			if g, _ := genericPTR(c.Setup.Hostname, ip); g {
				fix = fmt.Sprintf("choose a hostname in your own domain (hostname = \"mail.example.com\"), point its A record at %s, and set the PTR of %s to it (hosting provider)", ip, ip)
			}
			out := []Result{{ID: IDIPType, Status: Fail, Target: target,
				Found: fmt.Sprintf("the PTR %s looks generic (%s): receivers take it for a dynamic or residential address", name, why),
				Why:   whyIPType, Fix: fix}}
			hint := providerHint(name)
			out = append(out, Result{ID: IDPTRHint, Status: Warn, Target: target, Found: "PTR " + name, Why: "How to set the PTR at this provider.", Fix: hint.how, URL: hint.url})
			return out
		}
	}
	return []Result{{ID: IDIPType, Status: Pass, Target: target, Found: target + " is public, not in a policy list, and its PTR is not generic", Why: whyIPType}}
}

// policyListed queries the Spamhaus PBL (through zen or pbl, if configured) for ip.
func (c *Checker) policyListed(ctx context.Context, ip netip.Addr) (bool, string, string) {
	for _, zone := range c.Blocklists {
		z := trimDot(zone)
		if z != "zen.spamhaus.org" && z != "pbl.spamhaus.org" {
			continue
		}
		ans := c.queryList(ctx, dns.ListName(ip)+"."+z)
		for _, a := range ans.addrs {
			if b := a.As4(); a.Is4() && b[0] == 127 && b[1] == 0 && b[2] == 0 && (b[3] == 10 || b[3] == 11) {
				return true, z, ans.txt
			}
		}
	}
	return false, "", ""
}

func txtSuffix(txt string) string {
	if txt == "" {
		return ""
	}
	return ": " + txt
}

// genericPTR reports whether a PTR name looks like a provider's default name for an
// address: the address's digits in the name, or words of end-user ranges.
func genericPTR(name string, ip netip.Addr) (bool, string) {
	name = trimDot(name)
	first := name
	if i := strings.IndexByte(name, '.'); i >= 0 {
		first = name[:i]
	}
	if ip.Is4() {
		b := ip.As4()
		digits := []string{fmt.Sprint(b[0]), fmt.Sprint(b[1]), fmt.Sprint(b[2]), fmt.Sprint(b[3])}
		// The four octets in order or reversed, separated by anything.
		fwd := regexp.MustCompile(`(^|\D)` + strings.Join(digits, `\D{1,3}`) + `(\D|$)`)
		rev := regexp.MustCompile(`(^|\D)` + strings.Join([]string{digits[3], digits[2], digits[1], digits[0]}, `\D{1,3}`) + `(\D|$)`)
		if fwd.MatchString(name) || rev.MatchString(name) {
			return true, "it contains the address"
		}
		hex := fmt.Sprintf("%02x%02x%02x%02x", b[0], b[1], b[2], b[3])
		if strings.Contains(name, hex) {
			return true, "it contains the address in hexadecimal"
		}
	}
	if m := genericWords.FindString(first); m != "" {
		return true, "it says " + quote(strings.Trim(m, ".-_0123456789"))
	}
	return false, ""
}

// genericWords are words that name end-user or unassigned ranges in a PTR's first label.
var genericWords = regexp.MustCompile(`(^|[.\-_0-9])(dynamic|dyn|dhcp|dsl|adsl|vdsl|xdsl|cable|pool|ppp|pppoe|dial|dialup|dialin|client|clients|cust|customer|broadband|bb|residential|res|home|user|unassigned|unknown|static|host|ip|vps|node|mobile|wireless|wifi|fiber|fibre|ftth|catv)([.\-_0-9]|$)`)

// providerHint tells how a PTR is changed at the provider whose default name it is.
type hint struct{ how, url string }

func providerHint(name string) hint {
	name = trimDot(name)
	for _, p := range ptrProviders {
		for _, s := range p.suffixes {
			if strings.HasSuffix(name, s) {
				return hint{p.how, p.url}
			}
		}
	}
	return hint{how: "this looks like your provider's default name: set the reverse DNS (PTR) of the address in the provider's control panel, or ask its support; without a custom PTR use outbound.relay"}
}

var ptrProviders = []struct {
	suffixes []string
	how, url string
}{
	{[]string{".your-server.de", ".hetzner.com", ".hetzner.cloud"}, "Hetzner: Cloud Console → server → Networking → edit the reverse DNS of the IP (Robot for dedicated servers: IPs → edit the PTR).", "https://docs.hetzner.com/cloud/servers/cloud-server-rdns/"},
	{[]string{".ovh.net", ".ovh.ca", ".ip-ovh.net"}, "OVHcloud: Control Panel → Bare Metal Cloud → Network → IP → … → Modify the reverse path (the name must resolve to the IP first).", "https://help.ovhcloud.com/"},
	{[]string{".vultrusercontent.com", ".vultr.com"}, "Vultr: Products → the server → Settings → IPv4 (or IPv6) → edit Reverse DNS.", "https://docs.vultr.com/"},
	{[]string{".linodeusercontent.com", ".members.linode.com"}, "Akamai/Linode: Cloud Manager → the Linode → Network → the address → Edit RDNS.", "https://techdocs.akamai.com/cloud-computing/docs/configure-rdns-reverse-dns-on-a-compute-instance"},
	{[]string{".compute.amazonaws.com", ".compute.internal", ".amazonaws.com"}, "AWS: give the instance an Elastic IP and set its reverse DNS (EC2 console → Elastic IPs → Update reverse DNS); AWS also blocks outbound port 25 until you request removal of the limit.", "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/Using_Elastic_Addressing_Reverse_DNS.html"},
	{[]string{".bc.googleusercontent.com", ".googleusercontent.com"}, "Google Cloud: set a PTR on the VM's external IP (edit the network interface → Public DNS PTR record); Compute Engine blocks outbound port 25, so use outbound.relay.", "https://cloud.google.com/compute/docs/instances/create-ptr-record"},
	{[]string{".cloudapp.azure.com", ".cloudapp.net"}, "Azure: set the reverse FQDN of the public IP (az network public-ip update --reverse-fqdn); outbound port 25 is blocked for most subscriptions.", "https://learn.microsoft.com/azure/dns/dns-reverse-dns-for-azure-services"},
	{[]string{".contaboserver.net", ".contabo.net", ".contabo.host"}, "Contabo: customer control panel → Reverse DNS management → edit the PTR of the IP.", "https://contabo.com/"},
	{[]string{".scw.cloud", ".scaleway.com"}, "Scaleway: console → Instances → Flexible IPs → edit the reverse DNS.", "https://www.scaleway.com/en/docs/"},
	{[]string{".upcloud.host", ".upcloud.com"}, "UpCloud: Hub → Network → the IP → edit reverse DNS.", "https://upcloud.com/docs/"},
	{[]string{".digitalocean.com"}, "DigitalOcean: the PTR follows the Droplet's name; rename the Droplet to the hostname (Droplet → … → Rename). Outbound port 25 is blocked on new accounts.", "https://docs.digitalocean.com/"},
}

// isPublic reports whether ip is a global unicast address the internet can see.
func isPublic(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsGlobalUnicast() || ip.IsPrivate() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// nonPublic are global-unicast-looking ranges that are not on the internet (RFC 6890):
// shared address space, benchmarking and documentation ranges.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("2001:db8::/32"),
}

func containsName(names []string, want string) bool {
	for _, n := range names {
		if trimDot(n) == want {
			return true
		}
	}
	return false
}
