package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// vaultBinary returns the path of HashiCorp Vault 1.14.2 as
// ../shared/peers/build-vault.sh caches it (VAULT_CACHE, else
// $XDG_CACHE_HOME or ~/.cache, then coffer-peers/vault-1.14.2/vault;
// COFFER_VAULT_BIN names another), or skips the test saying how to get
// it. Its source and binary are never committed.
func vaultBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("COFFER_VAULT_BIN")
	if bin == "" {
		cache := os.Getenv("VAULT_CACHE")
		if cache == "" {
			base := os.Getenv("XDG_CACHE_HOME")
			if base == "" {
				home, _ := os.UserHomeDir()
				base = filepath.Join(home, ".cache")
			}
			cache = filepath.Join(base, "coffer-peers", "vault-1.14.2")
		}
		bin = filepath.Join(cache, "vault")
	}
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		t.Skipf("Vault 1.14.2 binary not found at %s: build it once with `bash ../shared/peers/build-vault.sh` "+
			"(about 20 minutes; cached there, never committed), or set COFFER_VAULT_BIN", bin)
	}
	return bin
}

// vaultCLI runs the vault CLI against addr with token and returns its
// JSON output, decoded.
func vaultCLI(t *testing.T, bin, addr, ca, token, stdin string, args ...string) map[string]any {
	t.Helper()
	out := vaultCLIRaw(t, bin, addr, ca, token, stdin, args...)
	var v map[string]any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("vault %s: output is not JSON: %s", strings.Join(args, " "), out)
	}
	return v
}

// vaultCLIRaw runs the vault CLI and returns its standard output.
func vaultCLIRaw(t *testing.T, bin, addr, ca, token, stdin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...) // #nosec G204 -- the test's own arguments
	cmd.Env = []string{"VAULT_ADDR=" + addr, "VAULT_TOKEN=" + token, "VAULT_CACERT=" + ca, "VAULT_FORMAT=json",
		"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("vault %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.Bytes()
}

// TestVaultCLI: the vault CLI (1.14.2, unchanged) against Coffer on both
// backends, a Coffer access token as VAULT_TOKEN: create, encrypt, decrypt,
// rotate, rewrap, read, list, a batch from stdin, and a key brought with
// `vault transit import` (Vault's BYOK wrapping, done by the CLI).
func TestVaultCLI(t *testing.T) {
	bin := vaultBinary(t)
	forEachBackend(t, func(t *testing.T, n *node) {
		tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
		run := func(stdin string, args ...string) map[string]any {
			t.Helper()
			return vaultCLI(t, bin, n.URL, n.Init.CACert, tok, stdin, args...)
		}
		data := func(v map[string]any) map[string]any {
			t.Helper()
			d, ok := v["data"].(map[string]any)
			if !ok {
				t.Fatalf("no data in %v", v)
			}
			return d
		}
		run("", "write", "-f", "transit/keys/app")
		ct, _ := data(run("", "write", "transit/encrypt/app", "plaintext="+b64s("hello from the vault CLI")))["ciphertext"].(string)
		if !strings.HasPrefix(ct, "vault:v1:") {
			t.Fatalf("encrypt: %q", ct)
		}
		if pt := data(run("", "write", "transit/decrypt/app", "ciphertext="+ct))["plaintext"]; pt != b64s("hello from the vault CLI") {
			t.Fatalf("decrypt: %v", pt)
		}
		run("", "write", "-f", "transit/keys/app/rotate")
		rw, _ := data(run("", "write", "transit/rewrap/app", "ciphertext="+ct))["ciphertext"].(string)
		if !strings.HasPrefix(rw, "vault:v2:") {
			t.Fatalf("rewrap: %q", rw)
		}
		key := data(run("", "read", "transit/keys/app"))
		if key["latest_version"] != float64(2) || key["type"] != "aes256-gcm96" {
			t.Fatalf("read: %v", key)
		}
		// vault list prints the bare list.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "list", "transit/keys") // #nosec G204 -- the test's own arguments
		cmd.Env = []string{"VAULT_ADDR=" + n.URL, "VAULT_TOKEN=" + tok, "VAULT_CACERT=" + n.Init.CACert, "VAULT_FORMAT=json", "HOME=" + t.TempDir()}
		out, err := cmd.CombinedOutput()
		if err != nil || strings.Join(strings.Fields(string(out)), "") != `["app"]` {
			t.Fatalf("list: %s %v", out, err)
		}
		batch := `{"batch_input":[{"plaintext":"` + b64s("one") + `","reference":"1"},{"plaintext":"` + b64s("two") + `"}]}`
		res, _ := data(run(batch, "write", "transit/encrypt/app", "-"))["batch_results"].([]any)
		if len(res) != 2 {
			t.Fatalf("batch: %v", res)
		}
		in := `{"batch_input":[{"ciphertext":"` + res[0].(map[string]any)["ciphertext"].(string) + `"},{"ciphertext":"` + rw + `"}]}`
		out2, _ := data(run(in, "write", "transit/decrypt/app", "-"))["batch_results"].([]any)
		if len(out2) != 2 || out2[0].(map[string]any)["plaintext"] != b64s("one") || out2[1].(map[string]any)["plaintext"] != b64s("hello from the vault CLI") {
			t.Fatalf("batch decrypt: %v", out2)
		}
		material := b64s(strings.Repeat("k", 32))
		if out := vaultCLIRaw(t, bin, n.URL, n.Init.CACert, tok, "", "transit", "import", "transit/keys/brought", material); !bytes.Contains(out, []byte("Success!")) {
			t.Fatalf("transit import: %s", out)
		}
		ict, _ := data(run("", "write", "transit/encrypt/brought", "plaintext="+b64s("x")))["ciphertext"].(string)
		if pt := data(run("", "write", "transit/decrypt/brought", "ciphertext="+ict))["plaintext"]; pt != b64s("x") {
			t.Fatalf("imported key: %v", pt)
		}
	})
}

// vaultDev is a Vault dev server (in memory, TLS) for the differential
// test.
type vaultDev struct {
	addr, ca string
	client   *http.Client
}

// startVaultDev starts `vault server -dev -dev-tls` on a free port with
// the transit engine mounted, upsert off (as Coffer), and stops it when
// the test ends.
func startVaultDev(t *testing.T, bin string) *vaultDev {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(bin, "server", "-dev", "-dev-tls", "-dev-tls-cert-dir="+dir, "-dev-root-token-id=root", // #nosec G204 -- the test's own arguments
		"-dev-listen-address="+addr)
	cmd.Env = []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH")}
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	v := &vaultDev{addr: "https://" + addr, ca: filepath.Join(dir, "vault-ca.pem")}
	for i := 0; ; i++ {
		pem, err := os.ReadFile(v.ca)
		if err == nil {
			pool := x509.NewCertPool()
			if pool.AppendCertsFromPEM(pem) {
				v.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
					TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
				if st, _ := v.do(t, "GET", "/v1/sys/health", "", ""); st == 200 {
					break
				}
			}
		}
		if i == 600 {
			t.Fatalf("vault dev server did not start: %s", logs.String())
		}
		time.Sleep(100 * time.Millisecond) // waiting for another process to listen, not timing anything
	}
	if st, b := v.do(t, "POST", "/v1/sys/mounts/transit", "root", `{"type":"transit"}`); st != 204 {
		t.Fatalf("mount transit: %d %s", st, b)
	}
	if st, b := v.do(t, "POST", "/v1/transit/config/keys", "root", `{"disable_upsert":true}`); st != 200 && st != 204 {
		t.Fatalf("disable upsert: %d %s", st, b)
	}
	return v
}

func (v *vaultDev) do(t *testing.T, method, path, token, body string) (int, []byte) {
	t.Helper()
	return sendVault(t, v.client, v.addr, method, path, token, body)
}

// sendVault sends one request the way Vault's clients do.
func sendVault(t *testing.T, c *http.Client, base, method, path, token, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("X-Vault-Token", token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// shape describes a JSON value's structure without its values: objects
// by their keys (sorted) and each key's shape, arrays by their elements'
// shapes, scalars by type.
func shape(v any) string {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + ":" + shape(x[k])
		}
		return "{" + strings.Join(parts, ",") + "}"
	case []any:
		// The distinct shapes of the elements: how many there are is a
		// value (the dev server's key list holds both backends' keys).
		seen := map[string]bool{}
		var parts []string
		for _, e := range x {
			if s := shape(e); !seen[s] {
				seen[s] = true
				parts = append(parts, s)
			}
		}
		sort.Strings(parts)
		return "[" + strings.Join(parts, ",") + "]"
	case string:
		return "string"
	case json.Number:
		return "number"
	case bool:
		return "bool"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

// shapeOf decodes a body and returns its shape; version keys of a key's
// "keys" map ("1", "2") are kept, being part of the shape.
func shapeOf(t *testing.T, b []byte) string {
	t.Helper()
	if len(bytes.TrimSpace(b)) == 0 {
		return "empty"
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("not JSON: %s", b)
	}
	return shape(v)
}

// TestVaultDifferential: the same sequence of requests against Vault
// 1.14.2's dev server and against Coffer (both backends) answers the same
// status codes and the same JSON shapes, field by field; only values
// differ.
func TestVaultDifferential(t *testing.T) {
	bin := vaultBinary(t)
	v := startVaultDev(t, bin)
	forEachBackend(t, func(t *testing.T, n *node) {
		tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
		coffer := func(method, path, token, body string) (int, []byte) {
			return sendVault(t, n.HTTP, n.URL, method, path, token, body)
		}
		// Vault's dev server is shared by both backends' runs: each uses
		// its own key name.
		key := "diff-" + n.Backend
		pt := b64s("differential")
		// Each step may use values from earlier answers of the same server.
		type step struct {
			name, method, path string
			body               func(prev map[string]any) string
			token              bool
		}
		field := func(prev map[string]any, name string) string {
			d, _ := prev["data"].(map[string]any)
			s, _ := d[name].(string)
			return s
		}
		results := func(prev map[string]any, i int, name string) string {
			d, _ := prev["data"].(map[string]any)
			r, _ := d["batch_results"].([]any)
			if i >= len(r) {
				return ""
			}
			s, _ := r[i].(map[string]any)[name].(string)
			return s
		}
		const none = ""
		static := func(s string) func(map[string]any) string { return func(map[string]any) string { return s } }
		steps := []step{
			{"create", "POST", "/v1/transit/keys/" + key, static(none), true},
			{"read", "GET", "/v1/transit/keys/" + key, static(none), true},
			{"encrypt", "POST", "/v1/transit/encrypt/" + key, static(`{"plaintext":"` + pt + `"}`), true},
			{"decrypt", "POST", "/v1/transit/decrypt/" + key, func(p map[string]any) string {
				return `{"ciphertext":"` + field(p, "ciphertext") + `"}`
			}, true},
			{"decrypt tampered", "POST", "/v1/transit/decrypt/" + key, static(`{"ciphertext":"vault:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`), true},
			{"rotate", "POST", "/v1/transit/keys/" + key + "/rotate", static(none), true},
			{"encrypt v2", "POST", "/v1/transit/encrypt/" + key, static(`{"plaintext":"` + pt + `"}`), true},
			{"rewrap", "POST", "/v1/transit/rewrap/" + key, func(p map[string]any) string {
				return `{"ciphertext":"` + field(p, "ciphertext") + `"}`
			}, true},
			{"config", "POST", "/v1/transit/keys/" + key + "/config", static(`{"min_decryption_version":2,"deletion_allowed":false}`), true},
			{"batch encrypt", "POST", "/v1/transit/encrypt/" + key, static(`{"batch_input":[{"plaintext":"` + pt + `","reference":"a"},{"plaintext":"` + pt + `"}]}`), true},
			{"batch decrypt, one bad", "POST", "/v1/transit/decrypt/" + key, func(p map[string]any) string {
				return `{"batch_input":[{"ciphertext":"` + results(p, 0, "ciphertext") + `","reference":"a"},{"ciphertext":"vault:v2:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]}`
			}, true},
			{"batch encrypt, partial 207", "POST", "/v1/transit/encrypt/" + key, static(`{"partial_failure_response_code":207,"batch_input":[{"plaintext":"` + pt + `"},{"plaintext":"%%%"}]}`), true},
			{"hmac", "POST", "/v1/transit/hmac/" + key, static(`{"input":"` + pt + `"}`), true},
			{"verify", "POST", "/v1/transit/verify/" + key, func(p map[string]any) string {
				return `{"input":"` + pt + `","hmac":"` + field(p, "hmac") + `"}`
			}, true},
			{"hmac sha2-512 batch", "POST", "/v1/transit/hmac/" + key + "/sha2-512", static(`{"batch_input":[{"input":"` + pt + `"},{"input":"%%%"}]}`), true},
			{"datakey plaintext", "POST", "/v1/transit/datakey/plaintext/" + key, static(none), true},
			{"datakey wrapped", "POST", "/v1/transit/datakey/wrapped/" + key, static(`{"bits":512}`), true},
			{"list", "GET", "/v1/transit/keys?list=true", static(none), true},
			{"read missing", "GET", "/v1/transit/keys/missing-" + key, static(none), true},
			{"encrypt missing key", "POST", "/v1/transit/encrypt/missing-" + key, static(`{"plaintext":"` + pt + `"}`), true},
			{"encrypt, no plaintext", "POST", "/v1/transit/encrypt/" + key, static(`{}`), true},
			{"unsupported path", "POST", "/v1/transit/nothing-here/" + key, static(none), true},
			{"no token", "POST", "/v1/transit/encrypt/" + key, static(`{"plaintext":"` + pt + `"}`), false},
		}
		var vPrev, cPrev map[string]any
		for _, s := range steps {
			vTok, cTok := "", ""
			if s.token {
				vTok, cTok = "root", tok
			}
			vs, vb := v.do(t, s.method, s.path, vTok, s.body(vPrev))
			cs, cb := coffer(s.method, s.path, cTok, s.body(cPrev))
			if vs != cs {
				t.Errorf("%s: status Vault %d, Coffer %d\nVault:  %s\nCoffer: %s", s.name, vs, cs, vb, cb)
			}
			if vsh, csh := shapeOf(t, vb), shapeOf(t, cb); vsh != csh {
				t.Errorf("%s: shapes differ\nVault:  %s\nCoffer: %s\n(Vault %s\nCoffer %s)", s.name, vsh, csh, vb, cb)
			}
			vPrev, cPrev = map[string]any{}, map[string]any{}
			_ = json.Unmarshal(vb, &vPrev)
			_ = json.Unmarshal(cb, &cPrev)
		}
	})
}
