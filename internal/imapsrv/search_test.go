package imapsrv

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/repute-mail/repute/internal/store"
)

// orChain is "OR leaf(0) OR leaf(1) ... leaf(n-1)" as go-imap's parser builds it: n
// leaves and n-1 ORs, each nested in the second operand of the one before.
func orChain(n int, leaf func(i int) imap.SearchCriteria) imap.SearchCriteria {
	c := leaf(n - 1)
	for i := n - 2; i >= 0; i-- {
		c = imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{leaf(i), c}}}
	}
	return c
}

func textKey(s string) func(int) imap.SearchCriteria {
	return func(i int) imap.SearchCriteria { return imap.SearchCriteria{Text: []string{fmt.Sprintf("%s%d", s, i)}} }
}

func nots(n int, inner imap.SearchCriteria) imap.SearchCriteria {
	for range n {
		inner = imap.SearchCriteria{Not: []imap.SearchCriteria{inner}}
	}
	return inner
}

func TestSearchLimits(t *testing.T) {
	flat := func(n int) imap.SearchCriteria {
		var c imap.SearchCriteria
		for i := range n {
			c.Text = append(c.Text, fmt.Sprint("w", i))
		}
		return c
	}
	withUnseen := func(c imap.SearchCriteria) imap.SearchCriteria {
		c.NotFlag = append(c.NotFlag, imap.FlagSeen)
		return c
	}
	tests := []struct {
		name     string
		criteria imap.SearchCriteria
		refused  bool
	}{
		{"1000 keys side by side", flat(1000), false},
		{"1001 keys side by side", flat(1001), true},
		{"OR chain of 500 and one more key: 1000 keys", withUnseen(orChain(500, textKey("w"))), false},
		{"OR chain of 501 and one more key: 1002 keys", withUnseen(orChain(501, textKey("w"))), true},
		{"5000 OR TEXT", orChain(5000, textKey("w")), true},
		{"NOT 64 deep", nots(64, imap.SearchCriteria{Text: []string{"x"}}), false},
		{"NOT 65 deep", nots(65, imap.SearchCriteria{Text: []string{"x"}}), true},
		{"OR of NOT, 64 deep", nots(63, imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{{Text: []string{"a"}}, {Body: []string{"b"}}}}}), false},
		{"OR of NOT, 65 deep", nots(64, imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{{Text: []string{"a"}}, {Body: []string{"b"}}}}}), true},
		{"64 KiB of strings", imap.SearchCriteria{Text: []string{strings.Repeat("x", 32<<10), strings.Repeat("y", 32<<10)}}, false},
		{"64 KiB and a byte", imap.SearchCriteria{Body: []string{strings.Repeat("x", 64<<10)}, Header: []imap.SearchCriteriaHeaderField{{Key: "X"}}}, true},
	}
	for _, tc := range tests {
		_, err := newQuery(&tc.criteria, 10, 10, nil)
		if tc.refused {
			if imapCode(err) != imap.ResponseCodeLimit {
				t.Errorf("%s: %v, want NO [LIMIT]", tc.name, err)
			}
		} else if err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// A chain of ORs, however it nests, is one list of alternatives: no recursion per OR.
func TestSearchOrChainFlattened(t *testing.T) {
	right := orChain(400, textKey("w"))
	left := textKey("w")(0)
	for i := 1; i < 400; i++ {
		left = imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{left, textKey("w")(i)}}}
	}
	for name, c := range map[string]imap.SearchCriteria{"right": right, "left": left} {
		q, err := newQuery(&c, 1, 1, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(q.root.or) != 1 || len(q.root.or[0]) != 400 {
			t.Fatalf("%s: root has %d ORs", name, len(q.root.or))
		}
		for i, alt := range q.root.or[0] {
			if want := fmt.Sprint("w", i); alt.c.Text[0] != want {
				t.Fatalf("%s: alternative %d is %q, want %q", name, i, alt.c.Text[0], want)
			}
		}
	}
}

// Every key of a SEARCH of 1,000 keys (the limit) is answered from one parse of each message, and the
// answers are those of the direct evaluation.
func TestSearchParsesOnce(t *testing.T) {
	// Message k is found by a TEXT key if k%4 == 0, by a BODY key if k%4 == 1, by a
	// SUBJECT key if k%4 == 2, and not at all if k%4 == 3.
	var raws [][]byte
	for k := range 20 {
		subject, body := fmt.Sprint("message ", k), "nothing"
		switch k % 4 {
		case 0:
			body = fmt.Sprintf("zz%d and more", 3*k)
		case 1:
			body = fmt.Sprintf("at the end YY%d", 3*k+1)
		case 2:
			subject = fmt.Sprintf("message %d!", 3*k+2)
		}
		raws = append(raws, []byte(fmt.Sprintf("From: u%d@example.org\r\nSubject: %s\r\n\r\n%s\r\n", k, subject, body)))
	}
	raws = append(raws, []byte(fuzzMultipart), []byte(fuzzPlain))
	crit := orChain(498, func(i int) imap.SearchCriteria {
		switch i % 3 {
		case 0:
			return imap.SearchCriteria{Text: []string{fmt.Sprintf("zz%d ", i)}}
		case 1:
			return imap.SearchCriteria{Body: []string{fmt.Sprintf("yy%d\r", i)}}
		default:
			return imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "subject", Value: fmt.Sprintf("message %d!", i)}}}
		}
	})
	more := imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{{Text: []string{"secret"}}, {Header: []imap.SearchCriteriaHeaderField{{Key: "SUBJECT", Value: "CAFÉ"}}}}}}
	crit = imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{crit, more}}, NotFlag: []imap.Flag{imap.FlagDeleted}}
	if keys, _, _ := refLimits(&crit); keys != maxSearchKeys {
		t.Fatalf("test criteria have %d keys", keys)
	}
	q, err := newQuery(&crit, uint32(len(raws)), uint32(len(raws)), nil)
	if err != nil {
		t.Fatal(err)
	}
	q.body = func(m store.Message) ([]byte, error) { return raws[m.UID-1], nil }
	var got, want []uint32
	for i, raw := range raws {
		m := refMsg{seq: uint32(i + 1), msg: store.Message{UID: uint32(i + 1), Size: int64(len(raw))}, raw: raw}
		if q.match(&candidate{seq: m.seq, msg: &m.msg}) {
			got = append(got, m.seq)
		}
		if refMatch(&crit, &m, m.seq, m.seq, nil) {
			want = append(want, m.seq)
		}
	}
	if wantSeqs := []uint32{1, 2, 3, 5, 6, 7, 9, 10, 11, 13, 14, 15, 17, 18, 19, 21, 22}; !slices.Equal(want, wantSeqs) {
		t.Errorf("reference matched %v, want %v", want, wantSeqs)
	}
	if !slices.Equal(got, want) {
		t.Errorf("matched %v, want %v", got, want)
	}
	if q.parses != len(raws) {
		t.Errorf("%d parses for %d messages", q.parses, len(raws))
	}
}

// Over IMAP: a SEARCH of 5,000 OR TEXT keys is refused at once with NO [LIMIT], and the
// session goes on; one just under the limits is answered with one parse per message.
func TestSearchManyKeys(t *testing.T) {
	h := start(t, "", nil)
	c := h.login(nil)
	const n = 30
	for i := range n {
		appendMsg(t, c, "INBOX", simpleMsg(fmt.Sprint("s", i), fmt.Sprintf("body k%d", i)), nil)
	}
	mustSelect(t, c, "INBOX", false)

	conn, err := tls.Dial("tcp", h.implicit, h.clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(conn)
	command := func(tag, cmd string) string {
		t.Helper()
		fmt.Fprintf(conn, "%s %s\r\n", tag, cmd)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: %v", tag, err)
			}
			if strings.HasPrefix(line, tag+" ") {
				return strings.TrimSpace(line)
			}
		}
	}
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	command("a1", "LOGIN "+testUser+` "`+testPass+`"`)
	command("a2", "SELECT INBOX")
	before := h.srv.searchParses.Load()
	// 50,000 bytes: just under imapserver's 50 KiB command limit.
	resp := command("a3", "SEARCH "+strings.Repeat("OR TEXT a ", 5000)+"TEXT b")
	if !strings.HasPrefix(resp, "a3 NO [LIMIT]") {
		t.Errorf("5,000 OR TEXT: %s", resp)
	}
	if got := h.srv.searchParses.Load() - before; got != 0 {
		t.Errorf("refused SEARCH parsed %d messages", got)
	}
	if resp := command("a4", "NOOP"); !strings.HasPrefix(resp, "a4 OK") {
		t.Errorf("NOOP after the refusal: %s", resp)
	}

	// 499 ORs and 500 TEXT keys, distinct, through go-imap's client.
	crit := orChain(500, textKey("k"))
	before = h.srv.searchParses.Load()
	data, err := c.Search(&crit, nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	var want []uint32
	for i := range n {
		want = append(want, uint32(i+1))
	}
	if got := data.AllSeqNums(); !slices.Equal(got, want) {
		t.Errorf("SEARCH of 999 keys = %v, want %v", got, want)
	}
	if got := h.srv.searchParses.Load() - before; got != n {
		t.Errorf("SEARCH of 999 keys parsed %d times, want once per message (%d)", got, n)
	}
}

func BenchmarkSearchOrText(b *testing.B) {
	raw := []byte(simpleMsg("bench", strings.Repeat("lorem ipsum dolor sit amet ", 400)))
	crit := orChain(500, textKey("k"))
	msg := store.Message{UID: 1, Size: int64(len(raw))}
	for b.Loop() {
		q, err := newQuery(&crit, 1, 1, nil)
		if err != nil {
			b.Fatal(err)
		}
		q.body = func(store.Message) ([]byte, error) { return raw, nil }
		for range 10 {
			q.match(&candidate{seq: 1, msg: &msg})
		}
	}
}
