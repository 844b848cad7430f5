package cluster_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/cluster"
)

// TestFollowerReadinessBound: a node that cannot listen stays ready for
// the bound (polling covers it), then reports why it is not; once it
// listens again it resyncs and is ready at once.
func TestFollowerReadinessBound(t *testing.T) {
	var (
		mu      sync.Mutex
		now     = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
		failing = true
		resyncs int
	)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	listened := make(chan struct{}, 100)
	f := cluster.NewFollower(cluster.FollowConfig{
		Listen: func(ctx context.Context, ready func(), changed func(string)) error {
			mu.Lock()
			fail := failing
			mu.Unlock()
			listened <- struct{}{}
			if fail {
				return errors.New("connection refused")
			}
			ready()
			changed("policy")
			<-ctx.Done()
			return ctx.Err()
		},
		Changed: func(string) {},
		Resync:  func(context.Context) { mu.Lock(); resyncs++; mu.Unlock() },
		Bound:   10 * time.Second, Retry: time.Millisecond, Now: clock,
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { f.Run(ctx); close(done) }()
	<-listened
	<-listened // failed at least once
	if err := f.Healthy(); err != nil {
		t.Fatalf("within the bound: %v", err)
	}
	mu.Lock()
	now = now.Add(11 * time.Second)
	mu.Unlock()
	<-listened // a failure after the clock moved
	if err := f.Healthy(); err == nil {
		t.Fatal("not listening past the bound, still healthy")
	}
	mu.Lock()
	failing = false
	mu.Unlock()
	for {
		<-listened
		mu.Lock()
		r := resyncs
		mu.Unlock()
		if r > 0 {
			break
		}
	}
	for f.Healthy() != nil {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
}
