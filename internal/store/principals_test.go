package store_test

import (
	"context"
	"testing"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/store"
)

// TestUpdatePrincipalCompareAndSwap: a client's or user's roles and
// attributes change only while they are still what the change was decided
// on; otherwise ECONFLICT, and a missing one is ENOTFOUND. Deleting a user
// removes it.
func TestUpdatePrincipalCompareAndSwap(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		c := coffer.Client{ID: "c1", Name: "svc", SecretHash: "sha256$x", Roles: []string{"support"},
			Attributes: map[string]string{"team": "sales"}, CreatedAt: t0}
		if err := db.CreateClient(ctx, c); err != nil {
			t.Fatal(err)
		}
		next := c
		next.Name, next.Roles, next.Attributes, next.Disabled = "svc2", []string{"support", "hr"}, nil, true
		if err := db.UpdateClient(ctx, next, []string{"admin"}, c.Attributes); coffer.ErrorCode(err) != coffer.ECONFLICT {
			t.Fatalf("update decided on other roles: %v", err)
		}
		if err := db.UpdateClient(ctx, next, c.Roles, map[string]string{"team": "hr"}); coffer.ErrorCode(err) != coffer.ECONFLICT {
			t.Fatalf("update decided on other attributes: %v", err)
		}
		if err := db.UpdateClient(ctx, next, c.Roles, c.Attributes); err != nil {
			t.Fatal(err)
		}
		got, err := db.Client(ctx, "c1")
		if err != nil || got.Name != "svc2" || len(got.Roles) != 2 || got.Attributes != nil || !got.Disabled {
			t.Fatalf("client after update: %+v %v", got, err)
		}
		next.ID = "c-none"
		if err := db.UpdateClient(ctx, next, nil, nil); coffer.ErrorCode(err) != coffer.ENOTFOUND {
			t.Fatalf("update of a missing client: %v", err)
		}

		u := coffer.User{ID: "u1", Username: "ann", UsernameKey: "ann", PasswordHash: "x", Roles: []string{"support"}, CreatedAt: t0}
		if err := db.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		nu := u
		nu.Roles, nu.Attributes, nu.Disabled = []string{}, map[string]string{"team": "hr"}, true
		if err := db.UpdateUser(ctx, nu, []string{"admin"}, nil); coffer.ErrorCode(err) != coffer.ECONFLICT {
			t.Fatalf("user update decided on other roles: %v", err)
		}
		if err := db.UpdateUser(ctx, nu, u.Roles, u.Attributes); err != nil {
			t.Fatal(err)
		}
		us, err := db.Users(ctx)
		if err != nil || len(us) != 1 || !us[0].Disabled || us[0].Attributes["team"] != "hr" || len(us[0].Roles) != 0 {
			t.Fatalf("users after update: %+v %v", us, err)
		}
		if err := db.DeleteUser(ctx, "u1"); err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteUser(ctx, "u1"); coffer.ErrorCode(err) != coffer.ENOTFOUND {
			t.Fatalf("second delete: %v", err)
		}
		if _, err := db.User(ctx, "u1"); coffer.ErrorCode(err) != coffer.ENOTFOUND {
			t.Fatalf("deleted user: %v", err)
		}
	})
}
