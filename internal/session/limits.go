package session

import (
	"net/netip"
	"sync"
	"syscall"

	"github.com/repute-mail/repute/internal/smtp"
)

var errTooManyFiles = syscall.EMFILE

// Limits caps concurrent connections in total and per client address, across all SMTP
// listeners. IPv6 clients are counted per /64, since one host usually owns the whole prefix.
type Limits struct {
	Max   int // 0 = unlimited
	PerIP int // 0 = unlimited

	mu    sync.Mutex
	total int
	byIP  map[netip.Prefix]int
}

func clientKey(a netip.Addr) netip.Prefix {
	if a.Is6() && !a.IsLoopback() {
		p, _ := a.Prefix(64)
		return p
	}
	return netip.PrefixFrom(a, a.BitLen())
}

func (l *Limits) acquire(a netip.Addr) (release func(), refuse *smtp.Reply) {
	k := clientKey(a)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byIP == nil {
		l.byIP = map[netip.Prefix]int{}
	}
	if l.Max > 0 && l.total >= l.Max {
		return nil, smtp.Errorf(421, "4.3.2", "Too many connections; try again later")
	}
	if l.PerIP > 0 && l.byIP[k] >= l.PerIP {
		return nil, smtp.Errorf(421, "4.7.0", "Too many connections from %s; try again later", a)
	}
	l.total++
	l.byIP[k]++
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.total--
		if l.byIP[k]--; l.byIP[k] <= 0 {
			delete(l.byIP, k)
		}
	}, nil
}
