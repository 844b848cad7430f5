package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/store"
)

// #15.6: `coffer keys revoke-signing` drops a signing key at once, offline:
// the active one is replaced first; an unknown kid is an error; the
// command is audited on the offline chain.
func TestRevokeSigningKeyCLI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	if code, _, errs := runCLI(t, "init", "--data-dir", dir); code != 0 {
		t.Fatal(errs)
	}
	cfg, err := config.Load(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, dsn := cfg.Database()
	db, err := store.Open(context.Background(), dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// A serving node makes the first signing key; the offline rotation does too.
	if code, _, errs := runCLI(t, "keys", "rotate", "--data-dir", dir, "jwt/signing"); code != 0 {
		t.Fatalf("rotate jwt/signing: %s", errs)
	}
	keys, err := db.SigningKeys(context.Background())
	if err != nil || len(keys) != 1 {
		t.Fatalf("signing keys after a rotation: %v %v", keys, err)
	}
	kid := keys[0].KID
	if code, _, errs := runCLI(t, "keys", "revoke-signing", "--data-dir", dir, "no-such-kid"); code != 1 || !strings.Contains(errs, "no such signing key") {
		t.Fatalf("revoke an unknown kid: %d %q", code, errs)
	}
	code, out, errs := runCLI(t, "keys", "revoke-signing", "--data-dir", dir, kid)
	if code != 0 || !strings.Contains(out, "signing key "+kid+" revoked") || !strings.Contains(out, "signs from now on") {
		t.Fatalf("revoke-signing: %d %q %q", code, out, errs)
	}
	keys, err = db.SigningKeys(context.Background())
	if err != nil || len(keys) != 1 || keys[0].KID == kid || !keys[0].Active {
		t.Fatalf("signing keys after the revocation: %+v %v", keys, err)
	}
	got := strings.Join(offlineEvents(t, dir), "\n")
	if !strings.Contains(got, "keys.revoke_signing system/keys/jwt/signing/kids/"+kid+" done") {
		t.Fatalf("offline audit events:\n%s", got)
	}
	if code, out, errs := runCLI(t, "audit", "verify", "--data-dir", dir); code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("audit verify: %d %q %q", code, out, errs)
	}
}
