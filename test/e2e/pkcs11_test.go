//go:build pkcs11

package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/crypto/keyprovider/softhsmtest"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/testserver"
)

var softhsm struct {
	once   sync.Once
	module string
	err    error
}

// hsmModule sets up SoftHSM2 once for this test binary (the module reads
// its configuration once per process). Without SoftHSM2 it skips, except
// in CI, where it fails.
func hsmModule(t *testing.T) string {
	t.Helper()
	softhsm.once.Do(func() {
		dir, err := os.MkdirTemp("", "coffer-e2e-softhsm-")
		if err != nil {
			softhsm.err = err
			return
		}
		softhsm.module, softhsm.err = softhsmtest.Setup(dir, "coffer-e2e")
	})
	switch {
	case softhsm.err == nil:
	case errors.Is(softhsm.err, softhsmtest.ErrMissing) && os.Getenv("CI") == "":
		t.Skipf("no SoftHSM2: %v", softhsm.err)
	default:
		t.Fatalf("SoftHSM2: %v", softhsm.err)
	}
	return softhsm.module
}

// A deployment whose root key lives on a PKCS#11 token (SoftHSM2): init
// creates the key on the token, serve unwraps every data key through it,
// data survives a restart, and a wrong PIN or a missing key stops serve
// before it listens, saying why. No root key file is ever written.
func TestPKCS11Deployment(t *testing.T) {
	module := hsmModule(t)
	t.Setenv("COFFER_PKCS11_PIN", softhsmtest.PIN)
	ctx := context.Background()
	n := &node{Server: testserver.New(t, storetest.Backends()[0], testserver.Options{Init: app.InitOptions{RootKeyProvider: "pkcs11",
		PKCS11: config.RootKeyPKCS11{Module: module, TokenLabel: "coffer-e2e", KeyLabel: "root-e2e"}}}), t: t}
	if _, err := os.Stat(filepath.Join(n.Dir, "root.key")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a pkcs11 deployment has a root key file: %v", err)
	}
	n.Serve("127.0.0.1:0")

	if err := n.Admin.CreateCollection(ctx, customers); err != nil {
		t.Fatal(err)
	}
	id, err := n.Admin.CreateRecord(ctx, "customers", client.NewRecord{Owner: "u1", Data: map[string]any{
		"name": "Ada Lovelace", "email": "ada@example.com", "card_number": "4111111111111111"}})
	if err != nil {
		t.Fatal(err)
	}
	toks, err := n.Admin.Tokenize(ctx, []client.TokenItem{{Value: "123-45-6789", Type: "ssn"}})
	if err != nil {
		t.Fatal(err)
	}
	n.Restart()
	rec, err := n.Admin.GetRecord(ctx, "customers", id)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Data["email"] != "ada@example.com" || rec.Data["card_number"] != "4111111111111111" {
		t.Fatalf("after restart: %v", rec.Data)
	}
	vals, err := n.Admin.Detokenize(ctx, toks)
	if err != nil || vals[0] != "123-45-6789" {
		t.Fatalf("detokenize after restart: %v %v", vals, err)
	}
	n.Stop()

	// Wrong PIN, then a key label the token does not hold: serve refuses.
	for _, tc := range []struct{ name, pin, label, want string }{
		{"wrong PIN", "000000", "", "pin"},
		{"missing key", softhsmtest.PIN, "no-such-key", "no-such-key"},
	} {
		t.Setenv("COFFER_PKCS11_PIN", tc.pin)
		var env []string
		if tc.label != "" {
			env = append(env, "COFFER_ROOT_KEY_PKCS11_KEY_LABEL="+tc.label)
		}
		cfg, err := config.Load(n.Dir, env)
		if err != nil {
			t.Fatalf("%s: config: %v", tc.name, err)
		}
		if tc.label != "" && cfg.RootKey.PKCS11.KeyLabel != tc.label {
			t.Fatalf("%s: COFFER_ROOT_KEY_PKCS11_KEY_LABEL not applied: %q", tc.name, cfg.RootKey.PKCS11.KeyLabel)
		}
		srv, err := app.Open(ctx, cfg, app.Options{})
		if err == nil {
			_ = srv.Shutdown(ctx)
			t.Fatalf("%s: serve opened", tc.name)
		}
		if !strings.Contains(strings.ToLower(err.Error()), tc.want) {
			t.Errorf("%s: error %q does not say %q", tc.name, err, tc.want)
		}
		t.Logf("%s: %v", tc.name, err)
	}
}
