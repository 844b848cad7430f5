package cluster_test

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/cluster"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// TestMemberLosesItsLease, on both backends: a node whose lease another
// process took (after the database was unreachable for a whole lease, say)
// reports itself not healthy at its next heartbeat, and a second Join of
// a live id is refused with the holder named.
func TestMemberLosesItsLease(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db := storetest.Open(t, b)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cfg := cluster.Config{Store: db, Node: "n1", Host: "h1", Version: "v1", Schema: 15,
				TTL: 2 * time.Second, Heartbeat: 20 * time.Millisecond, Rand: rand.Reader, Hint: "do this."}
			m, err := cluster.Join(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			go m.Run(ctx)
			if err := m.Healthy(); err != nil {
				t.Fatalf("just joined: %v", err)
			}
			second := cfg
			second.Host = "h2"
			_, err = cluster.Join(ctx, second)
			var inUse *cluster.InUseError
			if !errors.As(err, &inUse) || inUse.Holder.Host != "h1" {
				t.Fatalf("second Join of a live id: %v", err)
			}
			// Another process takes the id as if the lease had run out.
			now := time.Now()
			if err := db.ReleaseNodeLease(ctx, "n1", m.Instance()); err != nil {
				t.Fatal(err)
			}
			ok, err := db.AcquireNodeLease(ctx, coffer.Node{ID: "n1", Instance: "thief", Host: "h3", Version: "v1",
				StartedAt: now, HeartbeatAt: now, LeaseUntil: now.Add(time.Hour)})
			if err != nil || !ok {
				t.Fatalf("take over: %v %v", ok, err)
			}
			for m.Healthy() == nil {
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}
