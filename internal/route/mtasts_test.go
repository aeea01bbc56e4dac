package route

import (
	"context"
	"testing"
	"time"
)

func TestMemoryPolicyCache(t *testing.T) {
	var mc MemoryPolicyCache
	ctx := context.Background()
	if _, ok, err := mc.Get(ctx, "b.test"); ok || err != nil {
		t.Fatalf("empty cache: ok %v, err %v", ok, err)
	}
	p := CachedPolicy{RecordID: "1", Policy: "version: STSv1\n", Expires: time.Unix(100, 0)}
	if err := mc.Put(ctx, "b.test", p); err != nil {
		t.Fatal(err)
	}
	if got, ok, _ := mc.Get(ctx, "b.test"); !ok || got != p {
		t.Errorf("got %+v, %v", got, ok)
	}
}
