package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// Every change that must end a principal's tokens raises its generation,
// and TokenState reads it (0 once deleted or disabled), the token's
// revocation and its signing key's state in one query.
func TestGenerationsAndTokenState(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		must(db.CreateClient(ctx, coffer.Client{ID: "cl_1", Name: "a", SecretHash: "h", Roles: []string{"r"}, CreatedAt: t0}))
		must(db.CreateUser(ctx, coffer.User{ID: "u_1", Username: "ann", UsernameKey: "ann", PasswordHash: "h", CreatedAt: t0}))
		must(db.InsertActiveSigningKey(ctx, coffer.SigningKeyRecord{KID: "k1", Sealed: []byte{1}, CreatedAt: t0,
			NotAfter: t0.Add(time.Hour), Active: true}, t0))
		state := func(kind, id, jti, kid string) store.TokenState {
			t.Helper()
			st, err := db.TokenState(ctx, kind, id, jti, kid, t0)
			must(err)
			return st
		}
		gen := func(kind, id string) int64 { return state(kind, id, "j", "k1").Generation }

		if st := state(coffer.KindClient, "cl_1", "j1", "k1"); st.Generation != 1 || st.Revoked || !st.KeyLive {
			t.Fatalf("a new client: %+v", st)
		}
		must(db.UpdateClientSecret(ctx, "cl_1", "h2"))
		if g := gen(coffer.KindClient, "cl_1"); g != 2 {
			t.Fatalf("after a secret rotation: generation %d, want 2", g)
		}
		c, err := db.Client(ctx, "cl_1")
		must(err)
		was := c.Roles
		c.Roles = []string{"other"}
		must(db.UpdateClient(ctx, c, was, c.Attributes))
		if g := gen(coffer.KindClient, "cl_1"); g != 3 {
			t.Fatalf("after a role change: generation %d, want 3", g)
		}
		c.Disabled = true
		must(db.UpdateClient(ctx, c, c.Roles, c.Attributes))
		if g := gen(coffer.KindClient, "cl_1"); g != 0 {
			t.Fatalf("a disabled client: generation %d, want 0", g)
		}
		must(db.DeleteClient(ctx, "cl_1"))
		if g := gen(coffer.KindClient, "cl_1"); g != 0 {
			t.Fatalf("a deleted client: generation %d, want 0", g)
		}

		if g := gen(coffer.KindUser, "u_1"); g != 1 {
			t.Fatalf("a new user: generation %d", g)
		}
		must(db.ResetUserMFA(ctx, "u_1"))
		u, err := db.User(ctx, "u_1")
		must(err)
		if u.Generation != 2 {
			t.Fatalf("after an MFA reset: generation %d, want 2", u.Generation)
		}
		wasAttrs := u.Attributes
		u.Attributes = map[string]string{"team": "x"}
		must(db.UpdateUser(ctx, u, u.Roles, wasAttrs))
		if g := gen(coffer.KindUser, "u_1"); g != 3 {
			t.Fatalf("after an attribute change: generation %d, want 3", g)
		}
		must(db.DeleteUser(ctx, "u_1"))
		if g := gen(coffer.KindUser, "u_1"); g != 0 {
			t.Fatalf("a deleted user: generation %d, want 0", g)
		}
		if err := db.DeleteUser(ctx, "u_1"); coffer.ErrorCode(err) != coffer.ENOTFOUND {
			t.Fatalf("deleting a deleted user: %v", err)
		}

		// Revocations and signing keys.
		must(db.RevokeToken(ctx, "j1", t0.Add(time.Minute)))
		if st := state(coffer.KindClient, "x", "j1", "k1"); !st.Revoked {
			t.Fatal("a revoked jti reads as not revoked")
		}
		must(db.InsertActiveSigningKey(ctx, coffer.SigningKeyRecord{KID: "k2", Sealed: []byte{2}, CreatedAt: t0,
			NotAfter: t0.Add(time.Hour), Active: true}, t0.Add(16*time.Minute)))
		keys, err := db.SigningKeys(ctx)
		must(err)
		for _, k := range keys {
			if k.KID == "k1" && (k.Active || !k.NotAfter.Equal(t0.Add(16*time.Minute))) {
				t.Fatalf("the key rotated out: %+v, want inactive until %s", k, t0.Add(16*time.Minute))
			}
		}
		if err := db.DeleteSigningKey(ctx, "k2"); coffer.ErrorCode(err) != coffer.ECONFLICT {
			t.Fatalf("deleting the active key: %v, want ECONFLICT", err)
		}
		must(db.DeleteSigningKey(ctx, "k1"))
		if st := state(coffer.KindClient, "x", "j", "k1"); st.KeyLive {
			t.Fatal("a deleted signing key reads as live")
		}
		if err := db.DeleteSigningKey(ctx, "k1"); coffer.ErrorCode(err) != coffer.ENOTFOUND {
			t.Fatalf("deleting an unknown key: %v", err)
		}
	})
}

// BenchmarkTokenState measures the check every authenticated request
// makes (one query: generation, revocation, signing key).
func BenchmarkTokenState(b *testing.B) {
	for _, be := range storetest.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			db := storetest.Open(b, be)
			ctx := context.Background()
			if err := db.CreateClient(ctx, coffer.Client{ID: "cl_1", Name: "a", SecretHash: "h", Roles: []string{"r"}, CreatedAt: t0}); err != nil {
				b.Fatal(err)
			}
			if err := db.InsertActiveSigningKey(ctx, coffer.SigningKeyRecord{KID: "k1", Sealed: []byte{1}, CreatedAt: t0,
				NotAfter: t0.Add(time.Hour), Active: true}, t0); err != nil {
				b.Fatal(err)
			}
			for i := range 1000 {
				if err := db.RevokeToken(ctx, "jti-"+string(rune('a'+i%26))+time.Duration(i).String(), t0.Add(time.Hour)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					st, err := db.TokenState(ctx, coffer.KindClient, "cl_1", "not-revoked", "k1", t0)
					if err != nil || st.Generation != 1 || st.Revoked || !st.KeyLive {
						b.Errorf("%+v %v", st, err)
						return
					}
				}
			})
		})
	}
}
