package client

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// node is one real HTTPS server standing in for a Coffer node: it counts
// what reaches it and answers as its mode says.
type node struct {
	srv  *httptest.Server
	hits atomic.Int64
	mode atomic.Value // "ok", "503", "503-long", "429"
	body atomic.Value // last request body
}

func newNode(t *testing.T) *node {
	t.Helper()
	n := &node{}
	n.mode.Store("ok")
	n.body.Store("")
	n.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		n.body.Store(string(b))
		switch n.mode.Load().(string) {
		case "503":
			w.Header().Set("Retry-After", "0")
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(503)
			fmt.Fprint(w, `{"status":503,"title":"Service Unavailable","type":"about:blank"}`)
		case "503-long":
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(503)
		case "429":
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(429)
		default:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"name":%q,"fields":[]}`, r.Host)
		}
	}))
	t.Cleanup(n.srv.Close)
	return n
}

func caOf(n *node) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: n.srv.Certificate().Raw})
}

// deadURL is an https URL on which nothing listens.
func deadURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return "https://" + addr
}

func fastRetry() Option {
	return WithRetry(RetryPolicy{Attempts: 4, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, MaxWait: time.Second})
}

// TestRoundRobin: calls are spread over every node in turn.
func TestRoundRobin(t *testing.T) {
	a, b, c := newNode(t), newNode(t), newNode(t)
	cl, err := New(a.srv.URL, WithCAPEM(caOf(a)), WithEndpoints(b.srv.URL, c.srv.URL), WithToken("t"), fastRetry())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for range 9 {
		col, err := cl.GetCollection(context.Background(), "x")
		if err != nil {
			t.Fatal(err)
		}
		seen[col.Name]++
	}
	if len(seen) != 3 || a.hits.Load() != 3 || b.hits.Load() != 3 || c.hits.Load() != 3 {
		t.Fatalf("spread %v (hits %d %d %d), want 3 each", seen, a.hits.Load(), b.hits.Load(), c.hits.Load())
	}
}

// TestFailoverDeadNode: a node that refuses connections is set aside and
// every call still succeeds, POSTs included (they never reached it).
func TestFailoverDeadNode(t *testing.T) {
	a := newNode(t)
	dead := deadURL(t)
	cl, err := New(dead, WithCAPEM(caOf(a)), WithEndpoints(a.srv.URL), WithToken("t"), fastRetry())
	if err != nil {
		t.Fatal(err)
	}
	// The pool's clock stands still: a node set aside stays aside for the
	// whole test, however slow the machine.
	now := time.Now()
	cl.pool.now = func() time.Time { return now }
	for i := range 6 {
		if _, err := cl.GetCollection(context.Background(), "x"); err != nil {
			t.Fatalf("GET %d: %v", i, err)
		}
		if err := cl.CreateCollection(context.Background(), Collection{Name: "c"}); err != nil {
			t.Fatalf("POST %d (connection refused is safe to repeat): %v", i, err)
		}
	}
	st := cl.Endpoints()
	if len(st) != 2 || st[0].Up || st[0].Failures == 0 || !st[1].Up {
		t.Fatalf("endpoint status %+v: want the dead node set aside, the live one up", st)
	}
	// Set aside, the dead node is not dialled on every call.
	if a.hits.Load() != 12 {
		t.Fatalf("live node hits %d, want 12", a.hits.Load())
	}
}

// TestFailover503: an idempotent call that meets a 503 moves on to the
// next node; a POST without an Idempotency-Key is not repeated (the
// first node may have acted on it), one with a key is.
func TestFailover503(t *testing.T) {
	a, b := newNode(t), newNode(t)
	a.mode.Store("503")
	cl, err := New(a.srv.URL, WithCAPEM(caOf(a)), WithEndpoints(b.srv.URL), WithToken("t"), fastRetry())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.GetCollection(context.Background(), "x"); err != nil {
		t.Fatalf("GET with one node answering 503: %v", err)
	}
	if a.hits.Load() != 1 || b.hits.Load() != 1 {
		t.Fatalf("hits a=%d b=%d, want 1 and 1", a.hits.Load(), b.hits.Load())
	}

	// Only node a from here: a POST without a key (not a create) gets the 503.
	solo, err := New(a.srv.URL, WithCAPEM(caOf(a)), WithToken("t"), fastRetry())
	if err != nil {
		t.Fatal(err)
	}
	before := a.hits.Load()
	_, err = solo.Encrypt(context.Background(), "k", []byte("x"), nil)
	if StatusCode(err) != 503 || a.hits.Load()-before != 1 {
		t.Fatalf("POST without Idempotency-Key: %v after %d tries, want one try and 503", err, a.hits.Load()-before)
	}

	// With a key the same POST is repeated, body and all.
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, a.srv.URL+"/v1/collections", strings.NewReader(`{"name":"k"}`))
	req.Header.Set("Idempotency-Key", "k1")
	before = a.hits.Load()
	resp, err := solo.raw.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || a.hits.Load()-before != 4 || a.body.Load().(string) != `{"name":"k"}` {
		t.Fatalf("POST with Idempotency-Key: %d after %d tries, last body %q; want 4 tries with the body each time",
			resp.StatusCode, a.hits.Load()-before, a.body.Load())
	}
}

// TestRetryAfterTooLong: a Retry-After beyond MaxWait is the caller's to
// see, at once.
func TestRetryAfterTooLong(t *testing.T) {
	a := newNode(t)
	a.mode.Store("503-long")
	cl, err := New(a.srv.URL, WithCAPEM(caOf(a)), WithToken("t"), fastRetry())
	if err != nil {
		t.Fatal(err)
	}
	_, err = cl.GetCollection(context.Background(), "x")
	if StatusCode(err) != 503 || a.hits.Load() != 1 {
		t.Fatalf("%v after %d tries, want the 503 after one", err, a.hits.Load())
	}
}

// TestThrottled: a 429 is the caller's by default, retried when asked.
func TestThrottled(t *testing.T) {
	a := newNode(t)
	a.mode.Store("429")
	cl, err := New(a.srv.URL, WithCAPEM(caOf(a)), WithToken("t"), fastRetry())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.GetCollection(context.Background(), "x"); StatusCode(err) != 429 || a.hits.Load() != 1 {
		t.Fatalf("%v after %d tries, want 429 after one", err, a.hits.Load())
	}
	cl2, err := New(a.srv.URL, WithCAPEM(caOf(a)), WithToken("t"),
		WithRetry(RetryPolicy{Attempts: 3, MinBackoff: time.Millisecond, Throttled: true}))
	if err != nil {
		t.Fatal(err)
	}
	a.hits.Store(0)
	if _, err := cl2.GetCollection(context.Background(), "x"); StatusCode(err) != 429 || a.hits.Load() != 3 {
		t.Fatalf("Throttled: %v after %d tries, want 3 tries", err, a.hits.Load())
	}
}

// TestRecovers: a node set aside comes back once its time is up.
func TestRecovers(t *testing.T) {
	a, b := newNode(t), newNode(t)
	a.mode.Store("503")
	cl, err := New(a.srv.URL, WithCAPEM(caOf(a)), WithEndpoints(b.srv.URL), WithToken("t"), fastRetry())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	cl.pool.now = func() time.Time { return now }
	if _, err := cl.GetCollection(context.Background(), "x"); err != nil {
		t.Fatal(err)
	}
	a.mode.Store("ok")
	for range 4 {
		if _, err := cl.GetCollection(context.Background(), "x"); err != nil {
			t.Fatal(err)
		}
	}
	if a.hits.Load() != 1 {
		t.Fatalf("a node set aside was called %d times while aside", a.hits.Load()-1)
	}
	now = now.Add(10 * time.Second)
	for range 4 {
		if _, err := cl.GetCollection(context.Background(), "x"); err != nil {
			t.Fatal(err)
		}
	}
	if a.hits.Load() != 3 {
		t.Fatalf("after its time the node got %d of 4 calls, want 2", a.hits.Load()-1)
	}
}

// TestEndpointURLs: node URLs are checked like the base URL.
func TestEndpointURLs(t *testing.T) {
	for _, bad := range []string{"http://x:1", "https://", "https://x/path", "://"} {
		if _, err := New("https://a:1", WithEndpoints(bad)); err == nil {
			t.Errorf("WithEndpoints(%q) accepted", bad)
		}
	}
}

// TestCreatesCarryIdempotencyKeys: every create carries a key (the
// caller's, else a fresh random one), so that a create repeated by the
// retry policy runs once on the server; other POSTs carry none.
func TestCreatesCarryIdempotencyKeys(t *testing.T) {
	var keys []string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		keys = append(keys, r.URL.Path+"="+r.Header.Get("Idempotency-Key"))
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":"r1","tokens":["t"]}`)
	}))
	defer srv.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	cl, err := New(srv.URL, WithCAPEM(ca), WithToken("t"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, _ = cl.CreateRecord(ctx, "people", NewRecord{Data: map[string]any{"a": "b"}})
	_, _ = cl.CreateRecord(ctx, "people", NewRecord{Data: map[string]any{"a": "b"}})
	_, _ = cl.CreateRecord(WithIdempotencyKey(ctx, "order-42"), "people", NewRecord{Data: map[string]any{"a": "b"}})
	_ = cl.CreateCollection(ctx, Collection{Name: "c"})
	_, _ = cl.Encrypt(ctx, "k", []byte("x"), nil)
	if len(keys) != 5 {
		t.Fatalf("requests %v", keys)
	}
	r1, r2 := strings.TrimPrefix(keys[0], "/v1/collections/people/records="), strings.TrimPrefix(keys[1], "/v1/collections/people/records=")
	if len(r1) != 32 || len(r2) != 32 || r1 == r2 {
		t.Fatalf("random keys %q %q: want two distinct 128-bit keys", r1, r2)
	}
	if keys[2] != "/v1/collections/people/records=order-42" || !strings.HasPrefix(keys[3], "/v1/collections=") || len(keys[3]) != len("/v1/collections=")+32 {
		t.Fatalf("keys %v", keys)
	}
	if keys[4] != "/v1/keys/k/encrypt=" {
		t.Fatalf("an encrypt carried a key: %v", keys[4])
	}
}
