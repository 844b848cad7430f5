package app

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/token"
	"github.com/cofferhq/coffer/internal/vault"
)

// BenchmarkTokenize: random and deterministic tokenize per value through
// the token service with its real keyring and SQLite store, no HTTP, in
// 1,000-item batches (ns/op is per value).
func BenchmarkTokenize(b *testing.B) {
	ctx := context.Background()
	dir := filepath.Join(b.TempDir(), "data")
	if _, err := Init(ctx, InitOptions{DataDir: dir}); err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Load(dir, nil)
	if err != nil {
		b.Fatal(err)
	}
	c, err := open(ctx, cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	admin := &coffer.Principal{ID: "bench", Kind: coffer.KindClient, Roles: []string{"admin"}}
	for _, mode := range []string{token.Random, token.Deterministic} {
		b.Run(mode, func(b *testing.B) {
			items := make([]token.Item, 1000)
			for i := range items {
				items[i] = token.Item{Value: "ada@example.com", Type: coffer.TypeEmail, Mode: mode}
			}
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				batch := make([]token.Item, len(items))
				copy(batch, items)
				if _, err := c.tokens.Tokenize(ctx, vault.Caller{Principal: admin, Note: &coffer.AccessNote{}}, batch); err != nil {
					b.Fatal(err)
				}
				n += len(batch)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/value")
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "values/s")
		})
	}
}
