package app

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/token"
	"github.com/cofferhq/coffer/internal/vault"
)

// Issue 22: a linkable token of a value tokenized before is its stored
// row; tokenizing the value again with nothing to merge (no later expiry,
// no canary) writes nothing, so it takes no row lock and waits for no
// writer. Before, every such tokenize upserted the row to the same content
// and held its lock until commit: relayed requests carrying one card
// number queued on it, one commit after another (PostgreSQL ran the relay
// at a fifth of a plain proxy's rate). A value that is new, or a stored
// one whose expiry grows, is still written: it waits for the writer.
func TestTokenizeStoredValueWaitsForNoWriter(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dir := filepath.Join(t.TempDir(), "data")
			dbURL := ""
			if b.Name != "sqlite" {
				dbURL = b.DSN(t)
			}
			if _, err := Init(ctx, InitOptions{DataDir: dir, DatabaseURL: dbURL}); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			c, err := open(ctx, cfg, Options{Offline: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Close)
			admin := vault.Caller{Principal: &coffer.Principal{ID: "t", Kind: coffer.KindClient, Roles: []string{"admin"}}, Note: &coffer.AccessNote{}}
			items := func(ttl string, values ...string) []token.Item {
				var out []token.Item
				for _, v := range values {
					out = append(out, token.Item{Value: v, Type: coffer.TypeCardNumber, Mode: token.FormatPreserving, TTL: ttl},
						token.Item{Value: v, Type: coffer.TypeCardNumber, Mode: token.Deterministic, TTL: ttl})
				}
				return out
			}
			const card, other = "4111111111111111", "5555555555554444"
			first, err := c.tokens.Tokenize(ctx, admin, items("", card))
			if err != nil {
				t.Fatal(err)
			}
			ttlFirst, err := c.tokens.Tokenize(ctx, admin, items("1h", other))
			if err != nil {
				t.Fatal(err)
			}

			// Another connection holds the tokens table's write lock, as a
			// writer between its first write and its commit does.
			var db *sql.DB
			var lock []string
			if b.Name == "sqlite" {
				db, err = sql.Open("sqlite", c.db.Path())
				lock = []string{`BEGIN IMMEDIATE`}
			} else {
				db, err = sql.Open("pgx", dbURL)
				lock = []string{`BEGIN`, `LOCK TABLE tokens IN EXCLUSIVE MODE`}
			}
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			conn, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			for _, q := range lock {
				if _, err := conn.ExecContext(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			release := func() {
				if conn != nil {
					_, _ = conn.ExecContext(ctx, `ROLLBACK`)
					conn = nil
				}
			}
			defer release()

			tctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			again, err := c.tokens.Tokenize(tctx, admin, items("", card))
			cancel()
			if err != nil {
				t.Fatalf("tokenizing a stored value again waited for a writer: %v", err)
			}
			for i := range first {
				if again[i] != first[i] {
					t.Errorf("item %d: token %q, first made as %q", i, again[i], first[i])
				}
			}
			// A shorter expiry changes nothing either.
			tctx, cancel = context.WithTimeout(ctx, 3*time.Second)
			_, err = c.tokens.Tokenize(tctx, admin, items("1m", other))
			cancel()
			if err != nil {
				t.Fatalf("a shorter expiry over a stored token waited for a writer: %v", err)
			}

			// A later expiry and a new value are writes: they wait.
			for _, it := range [][]token.Item{items("2h", other), items("", "378282246310005")} {
				tctx, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
				_, err = c.tokens.Tokenize(tctx, admin, it)
				cancel()
				if err == nil {
					t.Fatalf("%s %q was written past another writer's lock", it[0].TTL, it[0].Value)
				}
			}
			release()
			longer, err := c.tokens.Tokenize(ctx, admin, items("", other))
			if err != nil {
				t.Fatal(err)
			}
			for i := range ttlFirst {
				if longer[i] != ttlFirst[i] {
					t.Errorf("item %d: token %q, first made as %q", i, longer[i], ttlFirst[i])
				}
			}
			vals, err := c.tokens.Detokenize(ctx, admin, longer)
			if err != nil || vals[0] != other || vals[1] != other {
				t.Fatalf("detokenize: %v", err)
			}
		})
	}
}
