package app

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/crypto/envelope"
	"github.com/cofferhq/coffer/internal/token"
	"github.com/cofferhq/coffer/internal/vault"
)

// A random token issued by Coffer's first release — 16 random bytes in
// base62, its row stored under the token's whole index MAC, the value
// sealed with that MAC in its additional data — still detokenizes, next to
// a current one; a made-up token in that shape still does not.
func TestDetokenizeFirstReleaseRandomToken(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := Init(ctx, InitOptions{DataDir: dir}); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := open(ctx, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	admin := vault.Caller{Principal: &coffer.Principal{ID: "t", Kind: coffer.KindClient, Roles: []string{"admin"}}, Note: &coffer.AccessNote{}}

	// The first release's layout, written as it wrote it.
	const old = "tok_em_0aB3dE5fG7hI9jK1lM3nO5" // 22 base62 characters
	_, mac, err := c.keys.MAC(ctx, "tokens/index", []byte(old))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := c.keys.Seal(ctx, "tokens/"+coffer.TypeEmail, []byte("grace@example.com"),
		envelope.AAD("token", coffer.TypeEmail, string(mac)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.db.PutTokens(ctx, []coffer.StoredToken{{MAC: mac, Type: coffer.TypeEmail, Mode: token.Random,
		Sealed: sealed, CreatedAt: time.Now().UTC()}}); err != nil {
		t.Fatal(err)
	}
	out, err := c.tokens.Tokenize(ctx, admin, []token.Item{{Value: "ada@example.com", Type: coffer.TypeEmail}})
	if err != nil {
		t.Fatal(err)
	}
	vals, err := c.tokens.Detokenize(ctx, admin, []string{out[0], old, old})
	if err != nil {
		t.Fatalf("detokenize a current and a first-release token: %v", err)
	}
	if vals[0] != "ada@example.com" || vals[1] != "grace@example.com" || vals[2] != "grace@example.com" {
		t.Fatalf("values %q", vals)
	}
	if _, err := c.tokens.Detokenize(ctx, admin, []string{"tok_em_0aB3dE5fG7hI9jK1lM3nO6"}); coffer.ErrorCode(err) != coffer.ENOTFOUND {
		t.Fatalf("an unknown token in the old shape: %v, want not found", err)
	}
}
