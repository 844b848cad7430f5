package policystore

import (
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/policy"
)

// The lockout rule and its stricter form for the console's editor decide
// on the same grants: a caller who keeps update but loses read passes the
// API's rule (someone can still change the policy) and fails the
// editor's (the caller could no longer read what it saved).
func TestLockoutAndSelfLockout(t *testing.T) {
	p, err := policy.Load([]byte("roles:\n  ops:\n    - resources: [\"policy\"]\n      actions: [\"update\"]\n"), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ops := &coffer.Principal{ID: "u_ops", Kind: "user", Roles: []string{"ops"}}
	other := &coffer.Principal{ID: "u_other", Kind: "user", Roles: []string{"viewer"}}
	if err := Lockout(p, ops, "", nil, now); err != nil {
		t.Fatalf("Lockout for a caller who keeps update: %v", err)
	}
	if got := SelfLockout(p, ops, "", now); len(got) != 1 || !strings.Contains(got[0], "no longer read") {
		t.Fatalf("SelfLockout for a caller who loses read: %q", got)
	}
	if err := Lockout(p, other, "", nil, now); coffer.ErrorCode(err) != coffer.EINVALID {
		t.Fatalf("Lockout with nobody able to update: %v, want invalid", err)
	}
	if err := Lockout(p, other, "", []coffer.Principal{*ops}, now); err != nil {
		t.Fatalf("Lockout with another principal able to update: %v", err)
	}
	if got := SelfLockout(p, other, "", now); len(got) != 2 {
		t.Fatalf("SelfLockout for a caller who loses both: %q", got)
	}
	if got := SelfLockout(policy.Default(), &coffer.Principal{ID: "a", Roles: []string{"admin"}}, "", now); got != nil {
		t.Fatalf("SelfLockout for an admin under the bootstrap policy: %q", got)
	}
}
