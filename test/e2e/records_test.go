package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

func mustJSON(t testing.TB, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %q: %v", b, err)
	}
}

var customers = client.Collection{
	Name: "customers",
	Fields: []client.Field{
		{Name: "name", Type: "string"},
		{Name: "email", Type: "email", Searchable: true},
		{Name: "card_number", Type: "card_number"},
		{Name: "ssn", Type: "ssn"},
		{Name: "birth_date", Type: "date"},
		{Name: "age", Type: "integer"},
	},
}

// TestRecordLifecycle is the walking skeleton: init → token → collection →
// record → read → search → restart → read, on both backends.
func TestRecordLifecycle(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		ctx := context.Background()
		if err := n.Admin.CreateCollection(ctx, customers); err != nil {
			t.Fatal(err)
		}
		if err := n.Admin.CreateCollection(ctx, customers); client.StatusCode(err) != 409 {
			t.Fatalf("duplicate collection: %v", err)
		}
		id, err := n.Admin.CreateRecord(ctx, "customers", client.NewRecord{
			Owner: "user-1", Subject: "subject-1",
			Data: map[string]any{
				"name": "Ada Lovelace", "email": "Ada@Example.com", "card_number": "4111 1111 1111 1111",
				"ssn": "123-45-6789", "birth_date": "1815-12-10", "age": 36,
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		r, err := n.Admin.GetRecord(ctx, "customers", id)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"name": "Ada Lovelace", "email": "Ada@Example.com",
			"card_number": "4111 1111 1111 1111", "ssn": "123-45-6789", "birth_date": "1815-12-10", "age": float64(36)}
		for k, v := range want {
			if r.Data[k] != v {
				t.Errorf("field %s = %v, want %v", k, r.Data[k], v)
			}
		}
		if r.Owner != "user-1" || r.ID != id {
			t.Errorf("record metadata: %+v", r)
		}
		// Search is exact on the normalised value: case does not matter for email.
		hits, err := n.Admin.Search(ctx, "customers", map[string]any{"email": "ada@example.COM"}, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(hits) != 1 || hits[0].ID != id {
			t.Fatalf("search: %+v", hits)
		}
		if hits, _ := n.Admin.Search(ctx, "customers", map[string]any{"email": "bob@example.com"}, 10); len(hits) != 0 {
			t.Fatalf("search found a non-match: %+v", hits)
		}
		if _, err := n.Admin.Search(ctx, "customers", map[string]any{"name": "Ada Lovelace"}, 10); client.StatusCode(err) != 422 {
			t.Fatalf("search on a non-searchable field: %v", err)
		}
		if err := n.Admin.UpdateRecord(ctx, "customers", id, map[string]any{"email": "ada@lovelace.org"}); err != nil {
			t.Fatal(err)
		}
		if hits, _ := n.Admin.Search(ctx, "customers", map[string]any{"email": "Ada@Example.com"}, 10); len(hits) != 0 {
			t.Fatalf("old email still indexed: %+v", hits)
		}

		n.Restart()

		r, err = n.Admin.GetRecord(ctx, "customers", id)
		if err != nil {
			t.Fatalf("read after restart: %v", err)
		}
		if r.Data["email"] != "ada@lovelace.org" || r.Data["ssn"] != "123-45-6789" {
			t.Fatalf("after restart: %+v", r.Data)
		}
		hits, err = n.Admin.Search(ctx, "customers", map[string]any{"email": "ada@lovelace.org"}, 10)
		if err != nil || len(hits) != 1 {
			t.Fatalf("search after restart: %v %+v", err, hits)
		}
		if err := n.Admin.DeleteRecord(ctx, "customers", id); err != nil {
			t.Fatal(err)
		}
		if _, err := n.Admin.GetRecord(ctx, "customers", id); client.StatusCode(err) != 404 {
			t.Fatalf("read after delete: %v", err)
		}
	})
}

// TestPlaintextNeverAtRest writes a known value and scans every file of the
// data directory (database, WAL, keys, config, logs) and the server output.
func TestPlaintextNeverAtRest(t *testing.T) {
	n := start(t, storetest.Backends()[0])
	ctx := context.Background()
	if err := n.Admin.CreateCollection(ctx, customers); err != nil {
		t.Fatal(err)
	}
	const marker = "zebra.quokka.marker@example.com"
	const card = "5555555555554444"
	id, err := n.Admin.CreateRecord(ctx, "customers", client.NewRecord{Owner: "o",
		Data: map[string]any{"email": marker, "card_number": card, "name": "Marker Name Xylophone"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Admin.GetRecord(ctx, "customers", id); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Admin.Search(ctx, "customers", map[string]any{"email": marker}, 1); err != nil {
		t.Fatal(err)
	}
	// A rejected request with the value in it must not leak it either.
	_, _, _ = n.do("POST", "/v1/collections/customers/records", n.Token(n.Init.ClientID, n.Init.ClientSecret),
		"application/json", strings.NewReader(`{"data":{"email":"`+marker+`","bogus":"`+card+`"}}`))
	n.Stop() // flush everything to disk
	needles := [][]byte{[]byte(marker), []byte(strings.ToLower(marker)), []byte(card), []byte("Xylophone")}
	err = filepath.WalkDir(n.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, nd := range needles {
			if bytes.Contains(b, nd) {
				return fmt.Errorf("plaintext %q found in %s", nd, path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, nd := range needles {
		if strings.Contains(n.Logs.String(), string(nd)) {
			t.Fatalf("plaintext %q found in the server's log output", nd)
		}
	}
}

// TestBadInput: each malformed or invalid request gets its status and a
// problem+json body that does not echo the submitted value.
func TestBadInput(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		ctx := context.Background()
		if err := n.Admin.CreateCollection(ctx, customers); err != nil {
			t.Fatal(err)
		}
		tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
		const secret = "SECRETVALUE-7741"
		big := `{"data":{"name":"` + strings.Repeat("a", 2<<20) + `"}}`
		cases := []struct {
			name, method, path, token, body string
			status                          int
		}{
			{"malformed json", "POST", "/v1/collections/customers/records", tok, `{"data":{"email":"` + secret, 400},
			{"not an object", "POST", "/v1/collections/customers/records", tok, `["` + secret + `"]`, 422},
			{"wrong type", "POST", "/v1/collections/customers/records", tok, `{"owner":42,"data":{"email":"` + secret + `@x.io"}}`, 422},
			{"invalid email", "POST", "/v1/collections/customers/records", tok, `{"data":{"email":"` + secret + `"}}`, 422},
			{"luhn-invalid card", "POST", "/v1/collections/customers/records", tok, `{"data":{"card_number":"4111111111111112"}}`, 422},
			{"unknown data field", "POST", "/v1/collections/customers/records", tok, `{"data":{"nickname":"` + secret + `"}}`, 422},
			{"unknown top-level field", "POST", "/v1/collections/customers/records", tok, `{"id":"x","data":{"name":"` + secret + `"}}`, 422},
			{"unknown collection", "POST", "/v1/collections/ghosts/records", tok, `{"data":{"name":"` + secret + `"}}`, 404},
			{"unknown record", "GET", "/v1/collections/customers/records/0190a0f0-0000-7000-8000-000000000000", tok, "", 404},
			{"missing token", "GET", "/v1/collections/customers", "", "", 401},
			{"bad token", "GET", "/v1/collections/customers", "eyJhbGciOiJub25lIn0.e30.", "", 401},
			{"body too large", "POST", "/v1/collections/customers/records", tok, big, 413},
			{"invalid utf-8", "POST", "/v1/collections/customers/records", tok, "{\"data\":{\"name\":\"\xff\xfe" + secret + "\"}}", 400},
			{"search non-searchable", "POST", "/v1/collections/customers/records/search", tok, `{"where":{"ssn":"` + secret + `"}}`, 422},
			{"unknown route", "GET", "/v1/nothing-here", tok, "", 404},
			{"wrong method", "PUT", "/v1/collections/customers/records/x", tok, "{}", 405},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				var body *strings.Reader
				if c.body != "" {
					body = strings.NewReader(c.body)
				} else {
					body = strings.NewReader("")
				}
				st, h, b := n.do(c.method, c.path, c.token, "application/json", body)
				if st != c.status {
					t.Fatalf("status %d, want %d: %s", st, c.status, b)
				}
				if ct := h.Get("Content-Type"); ct != "application/problem+json" {
					t.Fatalf("content type %q", ct)
				}
				var p struct {
					Type      string `json:"type"`
					Title     string `json:"title"`
					Detail    string `json:"detail"`
					RequestID string `json:"request_id"`
					Status    int    `json:"status"`
				}
				mustJSON(t, b, &p)
				if p.Status != c.status || p.Title == "" || p.RequestID == "" || p.Type == "" {
					t.Fatalf("problem body: %s", b)
				}
				if bytes.Contains(b, []byte(secret)) || bytes.Contains(b, []byte("4111111111111112")) {
					t.Fatalf("problem echoes the submitted value: %s", b)
				}
				if st == 401 && !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
					t.Fatalf("401 without WWW-Authenticate: Bearer")
				}
			})
		}
		// Nothing was stored by any of them.
		hits, err := n.Admin.Search(ctx, "customers", map[string]any{"email": secret + "@x.io"}, 10)
		if err != nil || len(hits) != 0 {
			t.Fatalf("a refused request stored something: %v %+v", err, hits)
		}
	})
}
