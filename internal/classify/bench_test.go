package classify

import "testing"

// BenchmarkClassify classifies the corpus replies round-robin. The budget is 100,000
// classifications in under 2 s on one core, i.e. under 20 µs per reply:
//
//	go test -run='^$' -bench=Classify -cpu=1 ./internal/classify
func BenchmarkClassify(b *testing.B) {
	corpus := loadCorpus(b)
	replies := make([]string, len(corpus))
	for i, e := range corpus {
		replies[i] = e.reply
	}
	c := Default()
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		c.Classify(replies[i])
		i++
		if i == len(replies) {
			i = 0
		}
	}
}

// BenchmarkClassifyLong measures the worst case: a reply at the 8 KiB limit that matches
// nothing until the code-only rules.
func BenchmarkClassifyLong(b *testing.B) {
	long := "550 5.9.9 "
	for len(long) < MaxReplyBytes+1000 {
		long += "lorem ipsum dolor sit amet consectetur adipiscing elit "
	}
	c := Default()
	b.ReportAllocs()
	for b.Loop() {
		c.Classify(long)
	}
}
