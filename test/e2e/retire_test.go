package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/lifecycle"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// keyVersionCall posts {"key_id","version"} to /v1/admin/keys/OP.
func keyVersionCall(n *node, tok, op string, body any) (int, []byte) {
	st, _, b := n.postJSON("/v1/admin/keys/"+op, tok, body)
	return st, b
}

// TestRetireAndDestroyKeyVersion: over HTTPS on both backends, an old
// collection key version cannot be retired while values are sealed under
// it or while a node may still seal under it; after the rewrap it is
// retired and destroyed while every record still reads, and a value kept
// from before the rewrap no longer opens. The current version, unknown
// keys and versions, keys whose versions are not ended this way and
// malformed requests get clear problems.
func TestRetireAndDestroyKeyVersion(t *testing.T) {
	const wait = 2 * time.Second
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			n := startWith(t, b, app.Options{RetireAfter: wait})
			ctx := context.Background()
			want, add, readAll := customerRecords(t, n)
			for i := range 4 {
				add(i)
			}
			db := n.openStore()
			// Keep the rewrap from running until the test says so: hold
			// its lease as another node (once the node's own run, if one
			// started, has let it go).
			var held coffer.JobLease
			waitFor(t, "the rewrap lease", func() bool {
				l, ok, err := db.AcquireLease(ctx, lifecycle.RewrapJob, "e2e-test", time.Now(), time.Hour)
				held = l
				if err != nil {
					t.Fatalf("hold the rewrap lease: %v", err)
				}
				return ok
			})
			var keptID string
			for id := range want {
				keptID = id
				break
			}
			kept, err := db.Record(ctx, "customers", keptID) // sealed under version 1
			if err != nil {
				t.Fatal(err)
			}
			tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
			if st, b := rotate(n, tok, "collection/customers"); st != 200 || !strings.Contains(string(b), `"version":2`) {
				t.Fatalf("rotate: %d %s", st, b)
			}
			rotated := time.Now()
			v1 := map[string]any{"key_id": "collection/customers", "version": 1}
			if st, b := keyVersionCall(n, tok, "retire", v1); st != 409 || !strings.Contains(string(b), "may still seal under version 1: retry at") {
				t.Fatalf("retire version 1 at once after the rotation: %d %s", st, b)
			}
			time.Sleep(time.Until(rotated.Add(wait + 200*time.Millisecond)))
			st, b := keyVersionCall(n, tok, "retire", v1)
			// 8 values and the 4 records' seals.
			if st != 409 || !strings.Contains(string(b), "12 stored values are still sealed under version 1") {
				t.Fatalf("retire version 1 before the rewrap: %d %s", st, b)
			}
			for _, tc := range []struct {
				op     string
				body   any
				status int
				says   string
			}{
				{"retire", map[string]any{"key_id": "collection/customers", "version": 2}, 409, "encrypts"},
				{"destroy", map[string]any{"key_id": "collection/customers", "version": 2}, 409, "retire it first"},
				{"destroy", v1, 409, "retire it first"},
				{"retire", map[string]any{"key_id": "collection/nope", "version": 1}, 404, "no such key"},
				{"retire", map[string]any{"key_id": "collection/customers", "version": 9}, 404, "no version 9"},
				{"destroy", map[string]any{"key_id": "collection/customers", "version": 9}, 404, "no version 9"},
				{"retire", map[string]any{"key_id": "collection/customers", "version": 0}, 422, "version"},
				{"retire", map[string]any{"key_id": "collection/customers"}, 422, "version"},
				{"retire", map[string]any{"key_id": "collection/customers", "version": "one"}, 422, "version"},
				{"retire", map[string]any{"key_id": "collection/customers", "version": -1}, 422, "version"},
				{"retire", map[string]any{"key_id": "index/customers/email", "version": 1}, 422, "cannot"},
				{"destroy", map[string]any{"key_id": "tokens/index", "version": 1}, 422, "cannot"},
				{"retire", map[string]any{"key_id": "tokens/ssn/fpe", "version": 1}, 422, "cannot"},
				{"retire", map[string]any{"key_id": "audit/hmac", "version": 1}, 422, "cannot"},
				{"retire", map[string]any{"key_id": "mask/hash", "version": 1}, 422, "cannot"},
				{"retire", map[string]any{"key_id": "", "version": 1}, 422, "key_id"},
				{"retire", map[string]any{"key_id": "collection/customers", "version": 1, "force": true}, 422, "unknown field"},
			} {
				st, b := keyVersionCall(n, tok, tc.op, tc.body)
				if st != tc.status || !strings.Contains(string(b), tc.says) || !strings.Contains(string(b), `"status"`) {
					t.Errorf("%s %v: %d %s, want %d saying %q", tc.op, tc.body, st, b, tc.status, tc.says)
				}
			}
			if st, _, b := n.do("POST", "/v1/admin/keys/retire", tok, "application/json", strings.NewReader(`{"key_id":`)); st != 400 {
				t.Errorf("malformed JSON: %d %s", st, b)
			}
			if st, _ := keyVersionCall(n, "", "retire", v1); st != 401 {
				t.Errorf("retire without a token: %d", st)
			}
			readAll("after the refusals")

			// Let the rewrap run (a node runs it when it starts).
			if err := db.ReleaseLease(ctx, held); err != nil {
				t.Fatal(err)
			}
			n.Restart()
			tok = n.Token(n.Init.ClientID, n.Init.ClientSecret)
			waitFor(t, "the rewrap to move every value to version 2", func() bool {
				v := versions(t, db, "customers")
				return v[2] == 8 && len(v) == 1
			})
			if st, b := keyVersionCall(n, tok, "retire", v1); st != 200 || !strings.Contains(string(b), `"state":"retired"`) {
				t.Fatalf("retire version 1 after the rewrap: %d %s", st, b)
			}
			readAll("after retiring version 1")
			// Unretire undoes a retirement; retire again.
			if st, b := keyVersionCall(n, tok, "unretire", v1); st != 200 || !strings.Contains(string(b), `"state":"active"`) {
				t.Fatalf("unretire: %d %s", st, b)
			}
			if st, b := keyVersionCall(n, tok, "retire", v1); st != 200 {
				t.Fatalf("retire again: %d %s", st, b)
			}
			if st, b := keyVersionCall(n, tok, "retire", v1); st != 200 {
				t.Fatalf("retire a retired version: %d %s", st, b)
			}
			if st, b := keyVersionCall(n, tok, "destroy", v1); st != 200 || !strings.Contains(string(b), `"state":"destroyed"`) {
				t.Fatalf("destroy version 1: %d %s", st, b)
			}
			readAll("after destroying version 1")
			rows, err := db.DataKeys(ctx, "collection/customers")
			if err != nil || len(rows) != 2 {
				t.Fatalf("data keys: %v %v", rows, err)
			}
			for _, r := range rows {
				if r.Version == 1 && (r.State != coffer.KeyDestroyed || len(r.Wrapped) != 0) {
					t.Fatalf("version 1: %s with %d wrapped bytes", r.State, len(r.Wrapped))
				}
				if r.Version == 2 && r.State != coffer.KeyActive {
					t.Fatalf("version 2: %s", r.State)
				}
			}
			for op, status := range map[string]int{"destroy": 200, "retire": 409, "unretire": 409} {
				if st, b := keyVersionCall(n, tok, op, v1); st != status {
					t.Errorf("%s a destroyed version: %d %s, want %d", op, st, b, status)
				}
			}
			// A value kept from before the rewrap, put back, opens no more.
			now, err := db.Record(ctx, "customers", keptID)
			if err != nil {
				t.Fatal(err)
			}
			// Written as the rewrap job would: under its lease (fencing).
			var tamper coffer.JobLease
			waitFor(t, "the rewrap lease, to write as the job", func() bool {
				l, ok, err := db.AcquireLease(ctx, lifecycle.RewrapJob, "e2e-test", time.Now(), time.Hour)
				if err != nil {
					t.Fatalf("hold the rewrap lease: %v", err)
				}
				tamper = l
				return ok
			})
			if k, err := db.ReplaceValues(ctx, tamper, time.Now(), []coffer.SealedRecord{kept}, []map[string][]byte{now.Values}); err != nil || k != 1 {
				t.Fatalf("put the old values back: %d %v", k, err)
			}
			st, _, body := n.do("GET", "/v1/collections/customers/records/"+keptID, tok, "", nil)
			if st != 409 || !strings.Contains(string(body), "retired or destroyed key version") || bytes.Contains(body, []byte(want[keptID])) || bytes.Contains(body, []byte("123-45-6789")) {
				t.Fatalf("a value sealed under the destroyed version: %d %s", st, body)
			}
			if k, err := db.ReplaceValues(ctx, tamper, time.Now(), []coffer.SealedRecord{now}, []map[string][]byte{kept.Values}); err != nil || k != 1 {
				t.Fatalf("put the current values back: %d %v", k, err)
			}
			readAll("at the end")

			// Each operation is audited as what it was, on the version it
			// changed; the policy asked only for admin on the key.
			st, _, body = n.do("GET", "/v1/audit/events?limit=500", tok, "", nil)
			var evs struct {
				Events []struct {
					Action   string `json:"action"`
					Resource string `json:"resource"`
					Decision string `json:"decision"`
					Status   int    `json:"status"`
				} `json:"events"`
			}
			if st != 200 {
				t.Fatalf("audit: %d %s", st, body)
			}
			if err := json.Unmarshal(body, &evs); err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			for _, e := range evs.Events {
				if strings.HasPrefix(e.Action, "keys.") {
					seen[fmt.Sprintf("%s %s %d %s", e.Action, e.Resource, e.Status, e.Decision)] = true
				}
			}
			const v1res = "system/keys/collection/customers/versions/1"
			for _, want := range []string{
				"keys.retire " + v1res + " 409 allow", "keys.retire " + v1res + " 200 allow",
				"keys.unretire " + v1res + " 200 allow", "keys.unretire " + v1res + " 409 allow",
				"keys.destroy " + v1res + " 200 allow",
			} {
				if !seen[want] {
					t.Errorf("no audit event %q among %v", want, seen)
				}
			}
		})
	}
}

// TestRetireTokenKeyVersion: token values are not rewrapped, so an old
// tokens/TYPE version stays while a token's value is sealed under it.
func TestRetireTokenKeyVersion(t *testing.T) {
	n := startWith(t, storetest.Backends()[0], app.Options{RetireAfter: -1})
	ctx := context.Background()
	if _, err := n.Admin.Tokenize(ctx, []client.TokenItem{{Value: "123-45-6789", Type: "ssn"}}); err != nil {
		t.Fatal(err)
	}
	tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
	if st, b := rotate(n, tok, "tokens/ssn"); st != 200 {
		t.Fatalf("rotate: %d %s", st, b)
	}
	st, b := keyVersionCall(n, tok, "retire", map[string]any{"key_id": "tokens/ssn", "version": 1})
	if st != 409 || !strings.Contains(string(b), "1 stored values are still sealed under version 1") || !strings.Contains(string(b), "not rewrapped") {
		t.Fatalf("retire a token key version with a token on it: %d %s", st, b)
	}
}
