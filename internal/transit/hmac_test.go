package transit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/coffer"
)

// TestHMACVerifiesAcrossVersions: an HMAC verifies under its own version
// after a rotation, not once below the minimum decryption version, never
// for another input; each version and algorithm gives another MAC.
func TestHMACVerifiesAcrossVersions(t *testing.T) {
	f := newFixture(t)
	n := f.node()
	mustCreate(t, n, "k", KeySpec{})
	c := caller()
	out, err := n.HMAC(ctx, c, "k", "", 0, []Plaintext{enc("hello"), "not base64!"})
	if err != nil {
		t.Fatal(err)
	}
	if out[0].Error != "" || out[0].MAC.Version != 1 || len(out[0].MAC.Sum) != sha256.Size {
		t.Fatalf("hmac: %+v", out[0])
	}
	if out[1].Error == "" || strings.Contains(out[1].Error, "base64!") {
		t.Fatalf("bad input: %q", out[1].Error)
	}
	if c.Note.Action != "hmac" || c.Note.Resource != "keys/k" || c.Note.Count != 1 || len(c.Note.Targets) != 1 {
		t.Fatalf("note %+v", c.Note)
	}
	v1 := out[0].MAC
	if _, err := n.Rotate(ctx, caller(), "k"); err != nil {
		t.Fatal(err)
	}
	out2, err := n.HMAC(ctx, caller(), "k", "sha2-256", 0, []Plaintext{enc("hello")})
	if err != nil || out2[0].MAC.Version != 2 || bytes.Equal(out2[0].MAC.Sum, v1.Sum) {
		t.Fatalf("after rotate: %+v %v", out2, err)
	}
	out512, err := n.HMAC(ctx, caller(), "k", "sha2-512", 1, []Plaintext{enc("hello")})
	if err != nil || out512[0].MAC.Version != 1 || len(out512[0].MAC.Sum) != 64 {
		t.Fatalf("sha2-512 v1: %+v %v", out512, err)
	}
	check := func(alg string, items ...MACCheck) []bool {
		t.Helper()
		res, err := n.VerifyHMAC(ctx, caller(), "k", alg, items)
		if err != nil {
			t.Fatal(err)
		}
		var valid []bool
		for _, r := range res {
			valid = append(valid, r.Valid)
		}
		return valid
	}
	got := check("", MACCheck{enc("hello"), v1}, MACCheck{enc("hello"), out2[0].MAC}, MACCheck{enc("hellO"), v1},
		MACCheck{enc("hello"), MAC{Version: 9, Sum: v1.Sum}})
	if want := []bool{true, true, false, false}; !equalBools(got, want) {
		t.Fatalf("verify: %v, want %v", got, want)
	}
	if got := check("sha2-512", MACCheck{enc("hello"), out512[0].MAC}, MACCheck{enc("hello"), v1}); !equalBools(got, []bool{true, false}) {
		t.Fatalf("verify sha2-512: %v", got)
	}
	m := uint32(2)
	if _, err := n.Configure(ctx, caller(), "k", KeyConfig{MinDecryptionVersion: &m}); err != nil {
		t.Fatal(err)
	}
	if got := check("", MACCheck{enc("hello"), v1}); got[0] {
		t.Fatal("a MAC below the minimum decryption version verifies")
	}
	_, err = n.HMAC(ctx, caller(), "k", "", 1, []Plaintext{enc("hello")})
	wantCode(t, err, coffer.EINVALID)
	_, err = n.HMAC(ctx, caller(), "k", "md5", 0, []Plaintext{enc("hello")})
	wantCode(t, err, coffer.EINVALID)
	_, err = n.HMAC(ctx, caller(), "missing", "", 0, []Plaintext{enc("hello")})
	wantCode(t, err, coffer.ENOTFOUND)
}

// TestHMACKeyIsNotTheMACKey: the HMAC key of a version is derived, so an
// HMAC reveals nothing the keyring's own MACs (blind indexes) use.
func TestHMACKeyIsNotTheMACKey(t *testing.T) {
	f := newFixture(t)
	n := f.node()
	mustCreate(t, n, "k", KeySpec{})
	out, err := n.HMAC(ctx, caller(), "k", "", 0, []Plaintext{enc("hello")})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := n.keys.MACVersion(ctx, KeyID("k"), 1, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if hmac.Equal(raw, out[0].MAC.Sum) {
		t.Fatal("the HMAC is the keyring's MAC")
	}
}

// TestHMACNeedsThePolicy: hmac needs encrypt, verify needs decrypt; a
// denied call does nothing and is noted as denied.
func TestHMACNeedsThePolicy(t *testing.T) {
	f := newFixture(t)
	n := f.node()
	mustCreate(t, n, "k", KeySpec{})
	f.auth.set("decrypt")
	c := caller()
	_, err := n.HMAC(ctx, c, "k", "", 0, []Plaintext{enc("x")})
	wantCode(t, err, coffer.EFORBIDDEN)
	if c.Note.Decision != "deny" || c.Note.Action != "hmac" || len(c.Note.Targets) != 0 {
		t.Fatalf("note %+v", c.Note)
	}
	if _, err := n.VerifyHMAC(ctx, caller(), "k", "", []MACCheck{{enc("x"), MAC{Version: 1}}}); err != nil {
		t.Fatalf("verify with decrypt: %v", err)
	}
	f.auth.set("encrypt")
	_, err = n.VerifyHMAC(ctx, caller(), "k", "", []MACCheck{{enc("x"), MAC{Version: 1}}})
	wantCode(t, err, coffer.EFORBIDDEN)
}

// TestListShowsOnlyReadableKeys: the names the caller may read; none
// readable of some is refused.
func TestListShowsOnlyReadableKeys(t *testing.T) {
	f := newFixture(t)
	n := f.node()
	c := caller()
	if names, err := n.List(ctx, c); err != nil || len(names) != 0 {
		t.Fatalf("no keys: %v %v", names, err)
	}
	mustCreate(t, n, "b", KeySpec{})
	mustCreate(t, n, "a", KeySpec{})
	if names, err := n.List(ctx, caller()); err != nil || strings.Join(names, ",") != "a,b" {
		t.Fatalf("names %v %v", names, err)
	}
	f.auth.set("encrypt")
	c = caller()
	_, err := n.List(ctx, c)
	wantCode(t, err, coffer.EFORBIDDEN)
	if c.Note.Decision != "deny" || c.Note.Resource != "keys" {
		t.Fatalf("note %+v", c.Note)
	}
}

func equalBools(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
