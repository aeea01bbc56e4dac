// Command queuefill fills a stopped Repute server's outbound queue for the benchmarks:
// N copies of one message, each a queue row for one recipient, written through the
// store's own Accept (the same transaction `repute sendmail` ends in) by many writers
// at once, so that group commit makes a 50,000-message queue in seconds instead of the
// minutes that 50,000 sendmail processes take. It measures nothing itself.
//
//	queuefill -db DATA_DIR/repute.db -from bench@bench.test -to sink@sink.test -n 50000 < message.eml
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/repute-mail/repute/internal/store"
)

func main() {
	dbPath := flag.String("db", "", "the server's database (data_dir/repute.db)")
	from := flag.String("from", "", "envelope sender")
	to := flag.String("to", "", "recipient")
	n := flag.Int("n", 1000, "messages")
	par := flag.Int("par", 64, "concurrent writers")
	flag.Parse()
	if *dbPath == "" || *from == "" || *to == "" || *n <= 0 || *par <= 0 {
		flag.Usage()
		os.Exit(2)
	}
	body, err := io.ReadAll(io.LimitReader(os.Stdin, 64<<20))
	if err != nil {
		fail(err)
	}
	ctx := context.Background()
	db, err := store.Open(ctx, store.Options{Path: *dbPath, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fail(err)
	}
	defer db.Close()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, *par)
	for range *par {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(*n) {
				now := time.Now()
				if _, err := db.Accept(ctx, &store.Delivery{MsgID: store.NewID(now), From: *from, Body: body,
					Remote: []string{*to}, Received: now}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "queuefill:", err)
	os.Exit(1)
}
