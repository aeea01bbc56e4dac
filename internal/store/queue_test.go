package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

func queueMany(t *testing.T, db *DB, n int, now time.Time) {
	t.Helper()
	for i := 0; i < n; i += 100 {
		var rcpts []string
		for j := i; j < min(i+100, n); j++ {
			rcpts = append(rcpts, fmt.Sprintf("u%d@b%d.test", j, j%7))
		}
		if _, err := db.Accept(context.Background(), &Delivery{MsgID: NewID(now), From: "a@a.test",
			Body: []byte("Subject: x\r\n\r\nx\r\n"), Remote: rcpts, Received: now}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestQueueClaimConcurrent: two claimers (two nodes, or two loops) claiming at once never
// receive the same entry, and together they receive every due entry exactly once.
func TestQueueClaimConcurrent(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	now := db.Now()
	const n = 1000
	queueMany(t, db, n, now)
	var mu sync.Mutex
	got := map[int64]string{}
	var wg sync.WaitGroup
	for _, node := range []string{"node-a", "node-b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				es, err := db.QueueClaim(ctx, node, ClassTransactional, now, 37, time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				if len(es) == 0 {
					return
				}
				mu.Lock()
				for _, e := range es {
					if other, dup := got[e.ID]; dup {
						t.Errorf("entry %d claimed by %s and %s", e.ID, other, node)
					}
					got[e.ID] = node
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(got) != n {
		t.Fatalf("%d entries claimed, want %d", len(got), n)
	}
	// Leased entries are not due again until the lease ends.
	if es, _ := db.QueueClaim(ctx, "node-c", ClassTransactional, now.Add(59*time.Second), 10, time.Minute); len(es) != 0 {
		t.Errorf("%d leased entries claimed again before the lease ended", len(es))
	}
	if es, _ := db.QueueClaim(ctx, "node-c", ClassTransactional, now.Add(61*time.Second), n, time.Minute); len(es) != n {
		t.Errorf("%d entries claimed after the leases ended, want all %d", len(es), n)
	}
}

// TestQueueClearLeasesOwnNode: a node starting up takes back only its own leases.
func TestQueueClearLeasesOwnNode(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	now := db.Now()
	queueMany(t, db, 10, now)
	a, _ := db.QueueClaim(ctx, "node-a", ClassTransactional, now, 4, time.Hour)
	b, _ := db.QueueClaim(ctx, "node-b", ClassTransactional, now, 6, time.Hour)
	if len(a) != 4 || len(b) != 6 {
		t.Fatalf("claimed %d and %d", len(a), len(b))
	}
	if err := db.QueueClearLeases(ctx, "node-a"); err != nil {
		t.Fatal(err)
	}
	es, err := db.QueueClaim(ctx, "node-c", ClassTransactional, db.Now().Add(time.Second), 100, time.Hour)
	if err != nil || len(es) != 4 {
		t.Fatalf("after node-a restarted: %d entries due (err %v), want node-a's 4", len(es), err)
	}
	for _, e := range es {
		if e.ID != a[0].ID && e.ID != a[1].ID && e.ID != a[2].ID && e.ID != a[3].ID {
			t.Errorf("entry %d of node-b became due", e.ID)
		}
	}
	// Requeue ends a lease without counting an attempt.
	if err := db.QueueRequeue(ctx, []int64{es[0].ID}, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	e, _ := db.QueueGet(ctx, es[0].ID)
	if e.Attempts != 0 || e.NextAttempt != now.Add(time.Minute).Unix() {
		t.Errorf("requeued entry: %+v", e)
	}
}

// TestQueueClaimByClass: each class is claimed on its own, so a bulk backlog due earlier
// never fills a claim meant for transactional mail.
func TestQueueClaimByClass(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	now := db.Now()
	var rcpts []string
	for i := range 50 {
		rcpts = append(rcpts, fmt.Sprintf("n%d@news.test", i))
	}
	if _, err := db.Accept(ctx, &Delivery{MsgID: NewID(now), From: "news@a.test", Body: []byte("x\r\n"),
		Remote: rcpts, Received: now.Add(-time.Hour), Class: ClassBulk}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Accept(ctx, &Delivery{MsgID: NewID(now), From: "alice@a.test", Body: []byte("y\r\n"),
		Remote: []string{"bob@b.test"}, Received: now}); err != nil {
		t.Fatal(err)
	}
	tx, err := db.QueueClaim(ctx, "n", ClassTransactional, now, 10, time.Minute)
	if err != nil || len(tx) != 1 || tx[0].Rcpt != "bob@b.test" || tx[0].Class != ClassTransactional {
		t.Fatalf("transactional claim: %+v, %v", tx, err)
	}
	bulk, err := db.QueueClaim(ctx, "n", ClassBulk, now, 100, time.Minute)
	if err != nil || len(bulk) != 50 || bulk[0].Class != ClassBulk {
		t.Fatalf("bulk claim: %d entries, %v", len(bulk), err)
	}
	sum, _ := db.QueueSummary(ctx)
	for _, s := range sum {
		if s.Domain == "news.test" && s.Bulk != 50 || s.Domain == "b.test" && s.Bulk != 0 {
			t.Errorf("summary %+v", s)
		}
	}
}
