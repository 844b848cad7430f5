package audit

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"strings"
	"testing"
)

// macKeys is a MACer over fixed keys, one per key id, at version 3.
type macKeys map[string][]byte

func (m macKeys) MAC(_ context.Context, keyID string, data []byte) (uint32, []byte, error) {
	h := hmac.New(sha256.New, m[keyID])
	h.Write(data)
	return 3, h.Sum(nil), nil
}

// TestValueHMACIsBoundToPrincipalAndKey: one value gives each principal,
// and each key, another MAC; the same principal and value the same; the
// key version is named; the value itself appears nowhere.
func TestValueHMACIsBoundToPrincipalAndKey(t *testing.T) {
	ctx := context.Background()
	keys := macKeys{SearchValueKeyID("customers", "email"): []byte("k1"), SearchValueKeyID("customers", "name"): []byte("k2")}
	mac := func(keyID, principal, value string) string {
		t.Helper()
		h, err := ValueHMAC(ctx, keys, keyID, principal, []byte(value))
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	email := SearchValueKeyID("customers", "email")
	a := mac(email, "alice", "ada@example.com")
	if !strings.HasPrefix(a, "v3.") || len(a) != len("v3.")+22 || strings.Contains(a, "ada") {
		t.Fatalf("ValueHMAC = %q", a)
	}
	if a != mac(email, "alice", "ada@example.com") {
		t.Fatal("not deterministic for one principal")
	}
	for name, other := range map[string]string{
		"another principal": mac(email, "bob", "ada@example.com"),
		"another field":     mac(SearchValueKeyID("customers", "name"), "alice", "ada@example.com"),
		"another value":     mac(email, "alice", "bob@example.com"),
		// The principal's length is bound: no shifting bytes between it and the value.
		"a shifted split": mac(email, "alicea", "da@example.com"),
	} {
		if other == a {
			t.Errorf("%s gives the same MAC", name)
		}
	}
}
