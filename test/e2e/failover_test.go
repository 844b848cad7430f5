package e2e

import (
	"context"
	"testing"

	"github.com/cofferhq/coffer/client"
)

// TestClientFailsOverBetweenNodes (#18.5): a client given every node of a
// deployment spreads its calls over them, and when one node goes away it
// keeps working on the others — reads, and creates that never reached the
// dead node — and reports that node set aside.
func TestClientFailsOverBetweenNodes(t *testing.T) {
	a := startWith(t, postgres(), clusterOpts)
	b := a.copyNode()
	ctx := context.Background()
	c, err := client.New(a.URL, client.WithCAFile(a.Init.CACert),
		client.WithClientCredentials(a.Init.ClientID, a.Init.ClientSecret), client.WithEndpoints(b.URL))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CreateCollection(ctx, client.Collection{Name: "people", Fields: []client.Field{{Name: "email", Type: "string"}}}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 6 {
		id, err := c.CreateRecord(ctx, "people", client.NewRecord{Data: map[string]any{"email": "p@example.com"}})
		if err != nil {
			t.Fatalf("create %d with both nodes up: %v", i, err)
		}
		ids = append(ids, id)
	}
	a.Stop()
	for i := range 6 {
		if _, err := c.GetRecord(ctx, "people", ids[i]); err != nil {
			t.Fatalf("read %d with node a down: %v", i, err)
		}
		id, err := c.CreateRecord(ctx, "people", client.NewRecord{Data: map[string]any{"email": "q@example.com"}})
		if err != nil {
			t.Fatalf("create %d with node a down: %v", i, err)
		}
		ids = append(ids, id)
	}
	st := c.Endpoints()
	if len(st) != 2 || st[0].Up || st[0].Failures == 0 || !st[1].Up {
		t.Fatalf("endpoints %+v: want a set aside, b up", st)
	}
	// Every acknowledged create is there, once.
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("id %s twice", id)
		}
		seen[id] = true
		if _, err := c.GetRecord(ctx, "people", id); err != nil {
			t.Fatalf("acknowledged record %s: %v", id, err)
		}
	}
}
