package control

import (
	"context"
	"strings"
	"testing"
)

// FuzzCommand: whatever a client of the socket sends, the server answers with one line
// and never runs a command it does not know.
func FuzzCommand(f *testing.F) {
	for _, seed := range []string{"wake\n", "wake extra args\n", "\n", "bogus\n", strings.Repeat("w", 5000), "wa\x00ke\n"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		ran := ""
		s := &Server{Handlers: map[string]Handler{
			"wake": func(_ context.Context, args []string) (string, error) { ran = "wake"; return "", nil },
		}}
		var out strings.Builder
		s.answer(strings.NewReader(in), &out)
		line := out.String()
		if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") ||
			!strings.HasPrefix(line, "ok") && !strings.HasPrefix(line, "error: ") {
			t.Fatalf("reply %q to %q", line, in)
		}
		if ran == "wake" && (len(strings.Fields(in)) == 0 || strings.Fields(in)[0] != "wake") {
			t.Fatalf("%q ran wake", in)
		}
	})
}
