package cli

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestVaultURLSafe: the Vault token and the exported keys never cross
// the network in the clear.
func TestVaultURLSafe(t *testing.T) {
	for raw, ok := range map[string]bool{
		"https://vault.example.com:8200": true,
		"http://127.0.0.1:8200":          true,
		"http://[::1]:8200":              true,
		"http://localhost:8200":          true,
		"http://vault.example.com:8200":  false,
		"http://10.0.0.5:8200":           false,
		"ftp://vault.example.com":        false,
		"vault.example.com:8200":         false,
		"":                               false,
	} {
		if err := vaultURLSafe(raw); (err == nil) != ok {
			t.Errorf("vaultURLSafe(%q) = %v, want ok=%t", raw, err, ok)
		}
	}
}

// TestVaultImportFollowsNoRedirect: a Vault address that redirects
// elsewhere does not get the token sent on (net/http would forward
// X-Vault-Token to any host).
func TestVaultImportFollowsNoRedirect(t *testing.T) {
	var leaked atomic.Bool
	elsewhere := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Vault-Token") != "" {
			leaked.Store(true)
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer elsewhere.Close()
	vault := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer vault.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	// Both test servers share httptest's certificate.
	if err := os.WriteFile(ca, pemOf(vault.Certificate().Raw), 0o600); err != nil {
		t.Fatal(err)
	}
	hc, err := vaultHTTP(ca, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	v := vaultSource{hc: hc, base: vault.URL, mount: "transit", token: "hvs.secret-token"}
	var out map[string]any
	err = v.get(context.Background(), "keys/app", &out)
	if err == nil || leaked.Load() {
		t.Fatalf("redirect: err %v, token sent on: %t", err, leaked.Load())
	}
	if strings.Contains(err.Error(), "hvs.secret-token") {
		t.Fatalf("the error shows the token: %v", err)
	}
}

func pemOf(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
