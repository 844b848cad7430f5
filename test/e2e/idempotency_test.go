package e2e

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// post sends a JSON POST with an Idempotency-Key header ("" for none).
func (n *node) post(path, token, key, body string) (int, http.Header, []byte) {
	n.t.Helper()
	req, err := http.NewRequest("POST", n.URL+path, strings.NewReader(body))
	if err != nil {
		n.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := n.HTTP.Do(req)
	if err != nil {
		n.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, resp.Header, b.Bytes()
}

// countRecords counts the records of every collection, in the store.
func countRecords(t *testing.T, db *store.DB) int {
	t.Helper()
	recs, err := db.RecordsAfter(context.Background(), "", "", 10000)
	if err != nil {
		t.Fatal(err)
	}
	return len(recs)
}

// TestIdempotencyKeys, on both backends: a create retried with the same
// Idempotency-Key and the same body gets the first answer (same id, same
// client secret, same tokens), marked replayed, and creates nothing more;
// the same key with another body is refused with 422 problem+json;
// concurrent duplicates create one record; keys are per principal; a
// failed create keeps nothing; a bad key is refused; the kept answers are
// sealed in the store.
func TestIdempotencyKeys(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		ctx := context.Background()
		if err := n.Admin.CreateCollection(ctx, customers); err != nil {
			t.Fatal(err)
		}
		db := n.openStore()
		tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
		const recs = "/v1/collections/customers/records"
		rec := `{"owner":"o","data":{"email":"idem@example.com","ssn":"123-45-6789"}}`

		st1, h1, b1 := n.post(recs, tok, "rec-1", rec)
		st2, h2, b2 := n.post(recs, tok, "rec-1", rec)
		if st1 != 201 || st2 != 201 || !bytes.Equal(b1, b2) || !strings.Contains(string(b1), `"id"`) {
			t.Fatalf("retry: %d %s then %d %s", st1, b1, st2, b2)
		}
		if h1.Get("Idempotent-Replayed") != "" || h2.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay marks: %q then %q", h1.Get("Idempotent-Replayed"), h2.Get("Idempotent-Replayed"))
		}
		if c := countRecords(t, db); c != 1 {
			t.Fatalf("records after a retried create: %d", c)
		}

		// The same key for another request.
		other := strings.Replace(rec, "idem@", "other@", 1)
		st, h, b := n.post(recs, tok, "rec-1", other)
		if st != 422 || h.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(b), "Idempotency-Key") {
			t.Fatalf("same key, another body: %d %s %s", st, h.Get("Content-Type"), b)
		}
		// Without a key, every create creates.
		for range 2 {
			if st, _, b := n.post(recs, tok, "", rec); st != 201 {
				t.Fatalf("create without a key: %d %s", st, b)
			}
		}
		if c := countRecords(t, db); c != 3 {
			t.Fatalf("records: %d, want 3", c)
		}

		// Concurrent duplicates: one record, one answer.
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			answers = map[string]int{}
		)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, _, b := n.post(recs, tok, "rec-concurrent", rec)
				mu.Lock()
				defer mu.Unlock()
				answers[string(rune('0'+st/100))+string(b)]++
			}()
		}
		wg.Wait()
		if len(answers) != 1 {
			t.Fatalf("concurrent duplicates answered differently: %v", answers)
		}
		if c := countRecords(t, db); c != 4 {
			t.Fatalf("records after 8 concurrent duplicates: %d, want 4", c)
		}

		// Keys are per principal: another client's same key is its own.
		id, secret := n.newServiceClient("writer", "admin")
		tok2 := n.Token(id, secret)
		if st, h, b := n.post(recs, tok2, "rec-1", rec); st != 201 || h.Get("Idempotent-Replayed") != "" || bytes.Equal(b, b1) {
			t.Fatalf("another principal's key: %d %s", st, b)
		}

		// A failed create keeps nothing: fixed, the retry creates.
		bad := `{"owner":"o","data":{"email":"not an email"}}`
		if st, _, b := n.post(recs, tok, "rec-fix", bad); st != 422 {
			t.Fatalf("bad record: %d %s", st, b)
		}
		if st, _, b := n.post(recs, tok, "rec-fix", bad); st != 422 {
			t.Fatalf("bad record again: %d %s", st, b)
		}

		// A client: the retry answers the same id and secret.
		cl := `{"name":"idem-client","roles":["viewer"]}`
		st1, _, c1 := n.post("/v1/clients", tok, "client-1", cl)
		st2, _, c2 := n.post("/v1/clients", tok, "client-1", cl)
		if st1 != 201 || st2 != 201 || !bytes.Equal(c1, c2) || !strings.Contains(string(c1), "client_secret") {
			t.Fatalf("client retry: %d %s then %d %s", st1, c1, st2, c2)
		}
		var nc struct {
			ClientSecret string `json:"client_secret"`
		}
		mustJSON(t, c1, &nc)

		// Random tokens: the retry answers the same tokens.
		tk := `{"items":[{"value":"4111111111111111","type":"card_number","mode":"random"}]}`
		st1, _, t1 := n.post("/v1/tokenize", tok, "tok-1", tk)
		st2, _, t2 := n.post("/v1/tokenize", tok, "tok-1", tk)
		if st1 != 200 || st2 != 200 || !bytes.Equal(t1, t2) {
			t.Fatalf("tokenize retry: %d %s then %d %s", st1, t1, st2, t2)
		}
		if st, _, t3 := n.post("/v1/tokenize", tok, "tok-2", tk); st != 200 || bytes.Equal(t1, t3) {
			t.Fatalf("another key, a new random token: %d %s", st, t3)
		}

		// A transit key.
		k := `{"name":"idem-key"}`
		if st, _, b := n.post("/v1/keys", tok, "key-1", k); st != 201 {
			t.Fatalf("transit key: %d %s", st, b)
		}
		if st, h, b := n.post("/v1/keys", tok, "key-1", k); st != 201 || h.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("transit key retry: %d %s", st, b)
		}

		// Bad keys.
		for _, key := range []string{strings.Repeat("k", 256), "a b", "é"} {
			if st, _, b := n.post(recs, tok, key, rec); st != 400 {
				t.Fatalf("key %q: %d %s", key, st, b)
			}
		}

		// The kept answers are sealed: no secret, token or id in clear.
		_, dsn := n.Config().Database()
		cfgDB := storetest.Intruder(t, dsn)
		var bodies [][]byte
		rs, err := cfgDB.QueryContext(ctx, `SELECT body FROM idempotency_keys`)
		if err != nil {
			t.Fatal(err)
		}
		for rs.Next() {
			var b []byte
			if err := rs.Scan(&b); err != nil {
				t.Fatal(err)
			}
			bodies = append(bodies, b)
		}
		rs.Close()
		if len(bodies) < 5 {
			t.Fatalf("kept answers: %d", len(bodies))
		}
		for _, b := range bodies {
			if bytes.Contains(b, []byte(nc.ClientSecret)) || bytes.Contains(b, []byte(`"id"`)) || bytes.Contains(b, []byte("tokens")) {
				t.Fatalf("a kept answer in clear: %q", b)
			}
		}
	})
}
