package store_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// A linkable token made again is merged into its row, never silently
// dropped: the later expiry (or none) wins, a canary stays one, a new
// canary over a real token and a row that means something else are
// conflicts that write nothing, and an expired row is replaced.
func TestPutTokensMergesOrRefuses(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		at := func(d time.Duration) *time.Time { x := t0.Add(d); return &x }
		det := func(mac byte, exp *time.Time, canary bool, created time.Time) coffer.StoredToken {
			return coffer.StoredToken{MAC: []byte{mac}, Type: "email", Mode: "deterministic", Version: 1,
				Sealed: []byte{mac, 1}, Canary: canary, ExpiresAt: exp, CreatedAt: created}
		}
		put := func(ts ...coffer.StoredToken) [][]byte {
			t.Helper()
			c, err := db.PutTokens(ctx, ts)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		get := func(mac byte) (coffer.StoredToken, bool) {
			t.Helper()
			rows, err := db.Tokens(ctx, [][]byte{{mac}})
			if err != nil {
				t.Fatal(err)
			}
			r, ok := rows[string([]byte{mac})]
			return r, ok
		}
		sameExp := func(got, want *time.Time) bool {
			return got == nil && want == nil || got != nil && want != nil && got.Equal(*want)
		}

		// Expiries: the later one wins; none beats any.
		put(det(1, nil, false, t0), det(2, at(time.Hour), false, t0))
		put(det(1, at(time.Hour), false, t0.Add(time.Minute)), det(2, at(2*time.Hour), false, t0.Add(time.Minute)))
		if r, _ := get(1); r.ExpiresAt != nil {
			t.Errorf("a token without expiry got one: %v", r.ExpiresAt)
		}
		if r, _ := get(2); !sameExp(r.ExpiresAt, at(2*time.Hour)) || !r.CreatedAt.Equal(t0) {
			t.Errorf("later expiry: got %v created %v", r.ExpiresAt, r.CreatedAt)
		}
		put(det(2, at(30*time.Minute), false, t0.Add(2*time.Minute)))
		if r, _ := get(2); !sameExp(r.ExpiresAt, at(2*time.Hour)) {
			t.Errorf("an earlier expiry shortened the token: %v", r.ExpiresAt)
		}
		put(det(2, nil, false, t0.Add(3*time.Minute)))
		if r, _ := get(2); r.ExpiresAt != nil {
			t.Errorf("no expiry did not win: %v", r.ExpiresAt)
		}

		// A canary stays one when its value is tokenized as a real one.
		put(det(3, nil, true, t0))
		if c := put(det(3, nil, false, t0.Add(time.Minute))); len(c) != 0 {
			t.Fatalf("a real token over a canary conflicted: %x", c)
		}
		if r, _ := get(3); !r.Canary {
			t.Error("the canary flag was dropped")
		}

		// A canary over a real token conflicts, and nothing of its batch
		// is written, across the statements of a large batch too.
		batch := []coffer.StoredToken{}
		for i := range 60 {
			batch = append(batch, coffer.StoredToken{MAC: []byte{0x80, byte(i)}, Type: "email", Mode: "random",
				Sealed: []byte{1}, CreatedAt: t0})
		}
		batch = append(batch, det(1, nil, true, t0.Add(time.Minute)))
		c := put(batch...)
		if len(c) != 1 || !bytes.Equal(c[0], []byte{1}) {
			t.Fatalf("conflicts %x, want the canary's MAC alone", c)
		}
		if r, _ := get(1); r.Canary {
			t.Error("a conflicting canary was planted")
		}
		rows, err := db.Tokens(ctx, [][]byte{{0x80, 0}, {0x80, 59}})
		if err != nil || len(rows) != 0 {
			t.Fatalf("a batch with a conflict wrote %d rows (%v)", len(rows), err)
		}

		// A row that means something else conflicts.
		fpe := coffer.StoredToken{MAC: []byte{4}, Type: "card_number", Mode: "format_preserving", Version: 2, CreatedAt: t0}
		put(fpe)
		for _, other := range []func(*coffer.StoredToken){
			func(r *coffer.StoredToken) { r.FPEOptions = 1 },
			func(r *coffer.StoredToken) { r.Version = 3 },
			func(r *coffer.StoredToken) { r.Type = "ssn" },
			func(r *coffer.StoredToken) { r.Mode = "deterministic" },
		} {
			r := fpe
			other(&r)
			if c := put(r); len(c) != 1 {
				t.Errorf("row %+v over %+v: conflicts %x", r, fpe, c)
			}
		}
		if r, _ := get(4); r.FPEOptions != 0 || r.Version != 2 || r.Type != "card_number" {
			t.Errorf("the stored row changed: %+v", r)
		}

		// An expired row is replaced, canary, value and all.
		put(det(5, at(time.Hour), false, t0))
		if c := put(det(5, nil, true, t0.Add(2*time.Hour))); len(c) != 0 {
			t.Fatalf("a token over an expired row conflicted: %x", c)
		}
		if r, _ := get(5); r.ExpiresAt != nil || !r.Canary || !r.CreatedAt.Equal(t0.Add(2*time.Hour)) {
			t.Errorf("expired row not replaced: %+v", r)
		}
	})
}

// An upgraded store keeps its token rows and policy: format-preserving
// tokens made before options were recorded read as made with none (the
// only options there were), and the policy as written for the language
// before schema 10, so that coffer migrate rewrites it once. A document
// saved since records the schema it was written for, and a rewrite of a
// document that changed meanwhile is refused.
func TestUpgradeRecordsTokenOptionsAndPolicySchema(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db, err := store.Open(ctx, b.DSN(t), store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.MigrateUpTo(ctx, 4); err != nil {
				t.Fatal(err)
			}
			if err := db.ExecRaw(ctx, `INSERT INTO tokens (mac, type, mode, version, sealed, canary, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
				[]byte{9}, "card_number", "format_preserving", 1, []byte{}, 0, int64(1700000000000000)); err != nil {
				t.Fatal(err)
			}
			if err := db.ExecRaw(ctx, `INSERT INTO policy (id, version, format, source, updated_at) VALUES (1, 3, 'yaml', $1, 0)`,
				[]byte("roles: {}")); err != nil {
				t.Fatal(err)
			}
			if err := db.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			rows, err := db.Tokens(ctx, [][]byte{{9}})
			if r, ok := rows[string([]byte{9})]; err != nil || !ok || r.FPEOptions != 0 || r.Version != 1 {
				t.Fatalf("upgraded token row %+v %v", rows, err)
			}
			v, _, src, schema, err := db.StoredPolicy(ctx)
			if err != nil || v != 3 || string(src) != "roles: {}" || schema != 0 {
				t.Fatalf("upgraded policy: version %d schema %d %q %v", v, schema, src, err)
			}
			if _, err := db.RewritePolicy(ctx, 2, "yaml", []byte("roles: {x: []}"), t0); coffer.ErrorCode(err) != coffer.ECONFLICT {
				t.Fatalf("rewrite of a stale version: %v, want a conflict", err)
			}
			if v, err := db.RewritePolicy(ctx, 3, "yaml", []byte("roles: {y: []}"), t0); err != nil || v != 4 {
				t.Fatalf("rewrite: version %d %v", v, err)
			}
			_, _, src, schema, err = db.StoredPolicy(ctx)
			if _, latest, verr := db.SchemaVersions(ctx); err != nil || verr != nil || schema != max(latest, store.PolicyLanguageVersion) || string(src) != "roles: {y: []}" {
				t.Fatalf("rewritten policy: schema %d (latest %d) %q %v %v", schema, latest, src, err, verr)
			}
		})
	}
}
