package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// vaultClient is HashiCorp's own Vault API client, pointed at n's
// Vault-compatible transit surface with token tok.
func vaultClient(t *testing.T, n *node, tok string) *vault.Client {
	t.Helper()
	cfg := vault.DefaultConfig()
	cfg.Address = n.URL
	cfg.MaxRetries = 0
	if err := cfg.ConfigureTLS(&vault.TLSConfig{CACert: n.Init.CACert}); err != nil {
		t.Fatal(err)
	}
	vc, err := vault.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	vc.SetToken(tok)
	return vc
}

// vaultStatus returns the status and errors of a Vault API error (0 for
// none).
func vaultStatus(err error) (int, []string) {
	var re *vault.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode, re.Errors
	}
	return 0, nil
}

func b64s(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// num reads a JSON number the Vault client decoded.
func num(t *testing.T, v any) int64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("%v (%T) is not a JSON number", v, v)
	}
	i, err := n.Int64()
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// TestVaultAPIClient: HashiCorp's Vault Go client, unchanged, creates,
// reads, lists, rotates and configures a key, encrypts, decrypts and
// rewraps single values and batch_input, makes and verifies HMACs and
// data keys, over HTTPS on both backends, with a Coffer access token as
// its Vault token. Ciphertexts are vault:vN: and decrypt on Coffer's own
// API too (and Coffer's on Vault's surface); errors are Vault's
// {"errors":[…]} with Vault's statuses; the policy decides every call as
// it does on /v1/keys; and each call is one audit event with its targets
// and no value.
func TestVaultAPIClient(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		ctx := context.Background()
		tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
		vc := vaultClient(t, n, tok)
		l := vc.Logical()

		// Keys: create (vault write -f), read, list, a second create.
		s, err := l.WriteWithContext(ctx, "transit/keys/app", nil)
		if err != nil || s.Data["name"] != "app" || s.Data["type"] != "aes256-gcm96" || num(t, s.Data["latest_version"]) != 1 {
			t.Fatalf("create: %+v %v", s, err)
		}
		s, err = l.ReadWithContext(ctx, "transit/keys/app")
		if err != nil || num(t, s.Data["min_decryption_version"]) != 1 || s.Data["exportable"] != false || s.Data["deletion_allowed"] != false {
			t.Fatalf("read: %+v %v", s, err)
		}
		if keys, _ := s.Data["keys"].(map[string]any); len(keys) != 1 || num(t, keys["1"]) < 1_700_000_000 {
			t.Fatalf("read keys: %v", s.Data["keys"])
		}
		s, err = l.WriteWithContext(ctx, "transit/keys/app", map[string]any{"type": "aes256-gcm96"})
		if err != nil || len(s.Warnings) != 1 || s.Warnings[0] != "key app already existed" {
			t.Fatalf("create again: %+v %v", s, err)
		}
		if _, err := l.WriteWithContext(ctx, "transit/keys/other", nil); err != nil {
			t.Fatal(err)
		}
		s, err = l.ListWithContext(ctx, "transit/keys")
		if err != nil || fmt.Sprint(s.Data["keys"]) != "[app other]" {
			t.Fatalf("list: %+v %v", s, err)
		}
		if s, err := l.ReadWithContext(ctx, "transit/keys/nothing"); s != nil || err != nil {
			t.Fatalf("read of a missing key: %+v %v (the client answers nil, nil for Vault's 404)", s, err)
		}

		// Encrypt and decrypt with a context.
		s, err = l.WriteWithContext(ctx, "transit/encrypt/app", map[string]any{"plaintext": b64s("4111 1111 1111 1111"), "context": b64s("tenant-1")})
		if err != nil {
			t.Fatal(err)
		}
		ct, _ := s.Data["ciphertext"].(string)
		if !strings.HasPrefix(ct, "vault:v1:") || num(t, s.Data["key_version"]) != 1 {
			t.Fatalf("encrypt: %+v", s.Data)
		}
		s, err = l.WriteWithContext(ctx, "transit/decrypt/app", map[string]any{"ciphertext": ct, "context": b64s("tenant-1")})
		if err != nil || s.Data["plaintext"] != b64s("4111 1111 1111 1111") {
			t.Fatalf("decrypt: %+v %v", s, err)
		}
		_, err = l.WriteWithContext(ctx, "transit/decrypt/app", map[string]any{"ciphertext": ct, "context": b64s("tenant-2")})
		if st, msgs := vaultStatus(err); st != 400 || !slices.Equal(msgs, []string{"ciphertext cannot be decrypted"}) {
			t.Fatalf("decrypt with another context: %v", err)
		}

		// Both surfaces decrypt each other's ciphertexts.
		st, _, b := n.postJSON("/v1/keys/app/decrypt", tok, map[string]any{"ciphertext": ct, "context": b64s("tenant-1")})
		if st != 200 || !bytes.Contains(b, []byte(b64s("4111 1111 1111 1111"))) {
			t.Fatalf("Coffer's API decrypting vault:v1: %d %s", st, b)
		}
		st, _, b = n.postJSON("/v1/keys/app/encrypt", tok, map[string]any{"plaintext": b64s("own")})
		var own struct {
			Ciphertext string `json:"ciphertext"`
		}
		mustJSON(t, b, &own)
		if st != 200 || !strings.HasPrefix(own.Ciphertext, "coffer:v1:") {
			t.Fatalf("Coffer's encrypt: %d %s", st, b)
		}
		if s, err = l.WriteWithContext(ctx, "transit/decrypt/app", map[string]any{"ciphertext": own.Ciphertext}); err != nil || s.Data["plaintext"] != b64s("own") {
			t.Fatalf("Vault's surface decrypting coffer:v1: %+v %v", s, err)
		}

		// Rotate, rewrap, config.
		if s, err = l.WriteWithContext(ctx, "transit/keys/app/rotate", nil); err != nil || num(t, s.Data["latest_version"]) != 2 {
			t.Fatalf("rotate: %+v %v", s, err)
		}
		s, err = l.WriteWithContext(ctx, "transit/rewrap/app", map[string]any{"ciphertext": ct, "context": b64s("tenant-1")})
		if err != nil || !strings.HasPrefix(s.Data["ciphertext"].(string), "vault:v2:") || num(t, s.Data["key_version"]) != 2 {
			t.Fatalf("rewrap: %+v %v", s, err)
		}
		ct2 := s.Data["ciphertext"].(string)
		s, err = l.WriteWithContext(ctx, "transit/keys/app/config", map[string]any{"min_decryption_version": 2, "deletion_allowed": true})
		if err != nil || num(t, s.Data["min_decryption_version"]) != 2 || s.Data["deletion_allowed"] != true {
			t.Fatalf("config: %+v %v", s, err)
		}
		_, err = l.WriteWithContext(ctx, "transit/decrypt/app", map[string]any{"ciphertext": ct, "context": b64s("tenant-1")})
		if st, _ := vaultStatus(err); st != 400 {
			t.Fatalf("decrypt below min_decryption_version: %v", err)
		}

		// batch_input: all good, then a bad item (Vault answers 400 with
		// the results, or partial_failure_response_code).
		s, err = l.WriteWithContext(ctx, "transit/encrypt/app", map[string]any{"batch_input": []map[string]any{
			{"plaintext": b64s("a"), "reference": "r1"}, {"plaintext": b64s("b"), "context": b64s("c")},
		}})
		if err != nil {
			t.Fatal(err)
		}
		res, _ := s.Data["batch_results"].([]any)
		if len(res) != 2 {
			t.Fatalf("batch encrypt: %+v", s.Data)
		}
		r0, r1 := res[0].(map[string]any), res[1].(map[string]any)
		if !strings.HasPrefix(r0["ciphertext"].(string), "vault:v2:") || r0["reference"] != "r1" || num(t, r0["key_version"]) != 2 {
			t.Fatalf("batch encrypt item: %+v", r0)
		}
		s, err = l.WriteWithContext(ctx, "transit/decrypt/app", map[string]any{"batch_input": []map[string]any{
			{"ciphertext": r0["ciphertext"]}, {"ciphertext": r1["ciphertext"], "context": b64s("c")},
		}})
		if err != nil {
			t.Fatal(err)
		}
		res, _ = s.Data["batch_results"].([]any)
		if len(res) != 2 || res[0].(map[string]any)["plaintext"] != b64s("a") || res[1].(map[string]any)["plaintext"] != b64s("b") {
			t.Fatalf("batch decrypt: %+v", s.Data)
		}
		s, err = l.WriteWithContext(ctx, "transit/encrypt/app", map[string]any{"partial_failure_response_code": 207, "batch_input": []map[string]any{
			{"plaintext": b64s("a")}, {"plaintext": "not base64 secret"},
		}})
		if err != nil {
			t.Fatalf("partial failure as 207: %v", err)
		}
		res, _ = s.Data["batch_results"].([]any)
		if len(res) != 2 || res[1].(map[string]any)["error"] != "plaintext must be standard base64" || strings.Contains(fmt.Sprint(s.Data), "secret") {
			t.Fatalf("partial failure: %+v", s.Data)
		}
		_, err = l.WriteWithContext(ctx, "transit/encrypt/app", map[string]any{"batch_input": []map[string]any{{"plaintext": "not base64"}}})
		if st, _ := vaultStatus(err); st != 400 {
			t.Fatalf("batch with a bad item: %v", err)
		}

		// HMAC and verify, data keys.
		s, err = l.WriteWithContext(ctx, "transit/hmac/app/sha2-512", map[string]any{"input": b64s("msg")})
		if err != nil || !strings.HasPrefix(s.Data["hmac"].(string), "vault:v2:") {
			t.Fatalf("hmac: %+v %v", s, err)
		}
		mac := s.Data["hmac"].(string)
		for input, want := range map[string]bool{"msg": true, "msG": false} {
			s, err = l.WriteWithContext(ctx, "transit/verify/app", map[string]any{"input": b64s(input), "hmac": mac, "algorithm": "sha2-512"})
			if err != nil || s.Data["valid"] != want {
				t.Fatalf("verify %q: %+v %v", input, s, err)
			}
		}
		s, err = l.WriteWithContext(ctx, "transit/datakey/plaintext/app", map[string]any{"bits": 512})
		if err != nil {
			t.Fatal(err)
		}
		dk, _ := base64.StdEncoding.DecodeString(s.Data["plaintext"].(string))
		if len(dk) != 64 || !strings.HasPrefix(s.Data["ciphertext"].(string), "vault:v2:") {
			t.Fatalf("datakey: %+v", s.Data)
		}
		s, err = l.WriteWithContext(ctx, "transit/decrypt/app", map[string]any{"ciphertext": s.Data["ciphertext"]})
		if err != nil || s.Data["plaintext"] != base64.StdEncoding.EncodeToString(dk) {
			t.Fatalf("datakey decrypt: %+v %v", s, err)
		}
		s, err = l.WriteWithContext(ctx, "transit/datakey/wrapped/app", nil)
		if err != nil || s.Data["plaintext"] != nil || s.Data["ciphertext"] == nil {
			t.Fatalf("wrapped datakey: %+v %v", s, err)
		}

		// Bring your own key, as Vault's BYOK flow wraps it.
		s, err = l.ReadWithContext(ctx, "transit/wrapping_key")
		if err != nil || !strings.Contains(fmt.Sprint(s.Data["public_key"]), "BEGIN PUBLIC KEY") {
			t.Fatalf("wrapping_key: %+v %v", s, err)
		}
		brought := bytes.Repeat([]byte{7}, 32)
		s, err = l.WriteWithContext(ctx, "transit/keys/brought/import", map[string]any{"ciphertext": byokWrap(t, s.Data["public_key"].(string), brought), "hash_function": "SHA256"})
		if err != nil || s != nil {
			t.Fatalf("import: %+v %v", s, err)
		}
		s, err = l.WriteWithContext(ctx, "transit/encrypt/brought", map[string]any{"plaintext": b64s("x")})
		if err != nil || !strings.HasPrefix(s.Data["ciphertext"].(string), "vault:v1:") {
			t.Fatalf("encrypt under the brought key: %+v %v", s, err)
		}
		if got := openTransit(t, brought, "brought", "coffer:"+strings.TrimPrefix(s.Data["ciphertext"].(string), "vault:"), nil); string(got) != "x" {
			t.Fatalf("the brought key's ciphertext opens to %q", got)
		}

		// Vault's refusals: what Coffer's keys cannot be, missing keys, paths.
		for _, tt := range []struct {
			path string
			body map[string]any
			want int
		}{
			{"transit/keys/rsa", map[string]any{"type": "rsa-4096"}, 400},
			{"transit/keys/exp", map[string]any{"exportable": true}, 400},
			{"transit/keys/der", map[string]any{"derived": "true"}, 400},
			{"transit/encrypt/nothing", map[string]any{"plaintext": b64s("x")}, 400},
			{"transit/encrypt/app", map[string]any{"plaintext": b64s("x"), "key_version": 1}, 400},
			{"transit/sign/app", map[string]any{"input": b64s("x")}, 404},
		} {
			_, err := l.WriteWithContext(ctx, tt.path, tt.body)
			if st, msgs := vaultStatus(err); st != tt.want || len(msgs) != 1 {
				t.Errorf("write %s: %v, want %d with one message", tt.path, err, tt.want)
			}
		}

		// No token, a token that is not Coffer's, a principal the policy
		// does not allow: Vault's 403 "permission denied".
		for _, bad := range []string{"", "hvs.not-a-coffer-token"} {
			_, err := vaultClient(t, n, bad).Logical().WriteWithContext(ctx, "transit/encrypt/app", map[string]any{"plaintext": b64s("x")})
			if st, msgs := vaultStatus(err); st != 403 || !slices.Equal(msgs, []string{"permission denied"}) {
				t.Fatalf("token %q: %v", bad, err)
			}
		}
		if err := n.Admin.PutPolicy(ctx, []byte(`roles:
  admin:
    - resources: ["*"]
      actions: ["*"]
  encrypter:
    - resources: ["keys/app"]
      actions: [encrypt]
`), "yaml"); err != nil {
			t.Fatal(err)
		}
		enc, err := n.Admin.CreateClient(ctx, "encrypter", []string{"encrypter"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		el := vaultClient(t, n, n.Token(enc.ClientID, enc.ClientSecret)).Logical()
		if _, err := el.WriteWithContext(ctx, "transit/encrypt/app", map[string]any{"plaintext": b64s("x")}); err != nil {
			t.Fatalf("encrypt allowed: %v", err)
		}
		for _, path := range []string{"transit/decrypt/app", "transit/rewrap/app", "transit/keys/app/rotate", "transit/encrypt/other"} {
			_, err := el.WriteWithContext(ctx, path, map[string]any{"ciphertext": ct2, "plaintext": b64s("x")})
			if st, _ := vaultStatus(err); st != 403 {
				t.Errorf("%s without the grant: %v, want 403", path, err)
			}
		}
		if _, err := el.ListWithContext(ctx, "transit/keys"); err == nil {
			t.Error("list without read on any key answered")
		}

		// The audit log: one event per call, decided, with targets, no value.
		st, _, ab := n.do("GET", "/v1/audit/events?limit=1000", tok, "", nil)
		if st != 200 {
			t.Fatalf("audit: %d %s", st, ab)
		}
		var evs struct {
			Events []struct {
				Principal string   `json:"principal"`
				Action    string   `json:"action"`
				Resource  string   `json:"resource"`
				Decision  string   `json:"decision"`
				Status    int      `json:"status"`
				Targets   []string `json:"targets"`
			} `json:"events"`
		}
		mustJSON(t, ab, &evs)
		seen := map[string]bool{}
		for _, e := range evs.Events {
			seen[fmt.Sprintf("%s %s %s %d %s", e.Action, e.Resource, e.Decision, e.Status, strings.Join(e.Targets, ","))] = true
		}
		for _, want := range []string{
			"keys.create keys/app allow 200 keys/app/versions/1",
			"encrypt keys/app allow 200 keys/app/versions/1",
			"decrypt keys/app allow 200 keys/app/versions/1",
			"decrypt keys/app allow 400 ",
			"keys.rotate keys/app allow 200 keys/app/versions/2",
			"rewrap keys/app allow 200 keys/app/versions/1,keys/app/versions/2",
			"hmac keys/app allow 200 keys/app/versions/2",
			"hmac.verify keys/app allow 200 keys/app/versions/2",
			"datakey.plaintext keys/app allow 200 keys/app/versions/2",
			"read keys allow 200 ",
			"decrypt keys/app deny 403 ",
			"encrypt keys/other deny 403 ",
		} {
			if !seen[want] {
				t.Errorf("no audit event %q", want)
			}
		}
		for _, v := range []string{"4111 1111 1111 1111", b64s("4111 1111 1111 1111"), b64s("tenant-1"), b64s("msg"), mac,
			base64.StdEncoding.EncodeToString(dk)} {
			if bytes.Contains(ab, []byte(v)) {
				t.Errorf("the audit log holds %q", v)
			}
		}
	})
}

// TestVaultTokenGuessingIsBruteForce: bad tokens in X-Vault-Token answer
// Vault's 403, and still count as failed authentications: a burst of them
// raises auth.bruteforce as a burst of bad bearer tokens does.
func TestVaultTokenGuessingIsBruteForce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
		for i := 0; i < 20; i++ {
			st, b := sendVault(t, n.HTTP, n.URL, "POST", "/v1/transit/encrypt/app", fmt.Sprintf("hvs.guess-%d", i), `{"plaintext":"eA=="}`)
			if st != 403 {
				t.Fatalf("guess %d: %d %s", i, st, b)
			}
		}
		var out struct {
			Events []struct {
				Kind string `json:"kind"`
			} `json:"events"`
		}
		// The detectors see audited requests asynchronously: wait for the
		// event (bounded), not for a time.
		for i := 0; i < 150 && len(out.Events) == 0; i++ {
			if i > 0 {
				time.Sleep(100 * time.Millisecond)
			}
			st, _, b := n.do("GET", "/v1/security/events?kind=auth.bruteforce", tok, "", nil)
			if st != 200 {
				t.Fatalf("security events: %d %s", st, b)
			}
			mustJSON(t, b, &out)
		}
		if len(out.Events) == 0 {
			t.Fatal("20 bad X-Vault-Token requests raised no auth.bruteforce")
		}
	})
}
