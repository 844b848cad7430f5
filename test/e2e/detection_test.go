package e2e

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/detect"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/testclock"
)

// securityEvent is one event of GET /v1/security/events.
type securityEvent struct {
	Kind, Principal string
	Detail          map[string]any
}

// securityEvents returns the node's security events of kind.
func securityEvents(t *testing.T, n *node, tok, kind string) []securityEvent {
	t.Helper()
	st, _, b := n.do("GET", "/v1/security/events?kind="+url.QueryEscape(kind), tok, "", nil)
	if st != 200 {
		t.Fatalf("security events: %d %s", st, b)
	}
	var out struct {
		Events []securityEvent `json:"events"`
	}
	mustJSON(t, b, &out)
	return out.Events
}

// awaitEvents waits (detection is asynchronous) until the node holds want
// events of kind, and for a while longer to see that no more come.
func awaitEvents(t *testing.T, n *node, tok, kind string, want int) []securityEvent {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	evs := securityEvents(t, n, tok, kind)
	for len(evs) < want && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		evs = securityEvents(t, n, tok, kind)
	}
	time.Sleep(300 * time.Millisecond)
	if evs = securityEvents(t, n, tok, kind); len(evs) != want {
		t.Fatalf("%d %s events, want %d: %+v", len(evs), kind, want, evs)
	}
	return evs
}

// fiveFields is a record of five values, one of them a shared searchable email.
func fiveFields(i int) map[string]any {
	return map[string]any{"name": fmt.Sprintf("Customer %d", i), "email": "shared@example.com",
		"card_number": "4111111111111111", "ssn": "123-45-6789", "birth_date": "1980-01-02"}
}

// #14.7: data.bulk_read counts values, as detect.bulk_read_values says:
// one search answering 120 records of five fields is 600 values, over the
// default 500. It used to count 120 records.
func TestBulkReadCountsValues(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		ctx := context.Background()
		if err := n.Admin.CreateCollection(ctx, customers); err != nil {
			t.Fatal(err)
		}
		for i := range 120 {
			if _, err := n.Admin.CreateRecord(ctx, "customers", client.NewRecord{Owner: "o", Data: fiveFields(i)}); err != nil {
				t.Fatal(err)
			}
		}
		tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
		recs, err := n.Admin.Search(ctx, "customers", map[string]any{"email": "shared@example.com"}, 120)
		if err != nil || len(recs) != 120 {
			t.Fatalf("search: %d records, %v", len(recs), err)
		}
		evs := awaitEvents(t, n, tok, detect.KindBulkRead, 1)
		if evs[0].Detail["count"] != float64(600) || evs[0].Principal != n.Init.ClientID {
			t.Fatalf("bulk_read event: %+v, want a count of 600 values", evs[0])
		}
	})
}

// boundaryClock is a clock 10 seconds before the next minute boundary.
func boundaryClock() *testclock.Clock {
	return testclock.New(time.Now().Truncate(time.Minute).Add(time.Minute - 10*time.Second))
}

// emailTokens tokenizes n distinct emails (random tokens) as c.
func emailTokens(t *testing.T, c *client.Client, n int) []string {
	t.Helper()
	items := make([]client.TokenItem, n)
	for i := range items {
		items[i] = client.TokenItem{Value: fmt.Sprintf("p%d@example.com", i), Type: "email"}
	}
	toks, err := c.Tokenize(context.Background(), items)
	if err != nil {
		t.Fatal(err)
	}
	return toks
}

// #14.7: windows slide. 300 values detokenized 10 seconds before a minute
// boundary and 300 more 10 seconds after it are 600 within 20 seconds:
// one data.bulk_read. With fixed minutes it was two halves and nothing.
// The server's clock is injected.
func TestBulkReadAcrossMinuteBoundary(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		ctx := context.Background()
		clock := boundaryClock()
		n.Stop()
		n.serveAt("127.0.0.1:0", clock.Now)
		toks := emailTokens(t, n.Admin, 300)
		if _, err := n.Admin.Detokenize(ctx, toks); err != nil {
			t.Fatal(err)
		}
		clock.Advance(20 * time.Second)
		if _, err := n.Admin.Detokenize(ctx, toks); err != nil {
			t.Fatal(err)
		}
		tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
		awaitEvents(t, n, tok, detect.KindBulkRead, 1)
	})
}

// #14.7 on a cluster: two nodes on one PostgreSQL share the sliding window
// through the store. 300 values read on one node before the boundary and
// 300 on the other after it raise exactly one data.bulk_read.
func TestBulkReadAcrossNodesAndBoundary(t *testing.T) {
	b := storetest.Backends()[len(storetest.Backends())-1]
	if b.Name != "postgres" {
		t.Skip("needs PostgreSQL")
	}
	ctx := context.Background()
	n := start(t, b)
	clock := boundaryClock()
	n.Stop()
	n.serveAt("127.0.0.1:0", clock.Now)
	other := n.peer(t, "node-b", clock.Now)
	toks := emailTokens(t, n.Admin, 300)
	if _, err := n.Admin.Detokenize(ctx, toks); err != nil {
		t.Fatal(err)
	}
	clock.Advance(20 * time.Second)
	if _, err := other.Detokenize(ctx, toks); err != nil {
		t.Fatal(err)
	}
	tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
	awaitEvents(t, n, tok, detect.KindBulkRead, 1)
}

// peer serves n's deployment (its configuration, its PostgreSQL) as a
// second node named name, with its own clock, and returns an admin client
// of it.
func (n *node) peer(t *testing.T, name string, now func() time.Time) *client.Client {
	t.Helper()
	p := n.Peer("COFFER_NODE=" + name)
	p.Logs, p.App = n.Logs, app.Options{Now: now}
	p.Serve("127.0.0.1:0")
	return p.Admin
}

// #15.2: linkable tokenization is counted by the detectors: 250 values
// tokenized deterministically in a minute (over detect.bulk_tokenize_linkable,
// 200) raise data.bulk_tokenize.
func TestBulkTokenizeDetected(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		items := make([]tokenItem, 250)
		for i := range items {
			items[i] = tokenItem{Value: fmt.Sprintf("123-45-%04d", 1000+i), Type: "ssn", Mode: "deterministic"}
		}
		if _, err := tokenize(t, n.Admin, items...); err != nil {
			t.Fatal(err)
		}
		tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
		evs := awaitEvents(t, n, tok, detect.KindBulkTokenize, 1)
		if evs[0].Detail["modes"] != "linkable" || evs[0].Detail["count"] != float64(250) {
			t.Fatalf("bulk_tokenize event: %+v", evs[0])
		}
	})
}
