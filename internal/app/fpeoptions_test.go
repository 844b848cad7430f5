package app

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/token"
	"github.com/cofferhq/coffer/internal/vault"
)

// #16.4: format-preserving card tokens made under one set of options
// still detokenize to their cards once the options change: each token
// carries the options it was made with. (Reversed with the new options,
// about one 19-digit token in nine gave another valid card.)
func TestFPEOptionsChangeKeepsOldTokens(t *testing.T) {
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
			items := make([]token.Item, 2000)
			for i := range items {
				items[i] = token.Item{Value: card19(uint64(i)*104729 + 123456789), Type: coffer.TypeCardNumber, Mode: token.FormatPreserving}
			}
			with := func(firstSix, luhn bool) *token.Service {
				return token.New(token.Config{Store: c.db, Keys: c.keys, Policies: c.policies, CardKeepFirstSix: firstSix, CardLuhnValid: luhn})
			}
			for _, change := range []struct{ from, to [2]bool }{
				{[2]bool{false, false}, [2]bool{true, false}},
				{[2]bool{true, true}, [2]bool{false, false}},
			} {
				toks, err := with(change.from[0], change.from[1]).Tokenize(ctx, admin, items)
				if err != nil {
					t.Fatal(err)
				}
				vals, err := with(change.to[0], change.to[1]).Detokenize(ctx, admin, toks)
				if err != nil {
					t.Fatalf("options %v → %v: %v", change.from, change.to, err)
				}
				wrong := 0
				for i := range items {
					if vals[i] != items[i].Value {
						wrong++
					}
				}
				if wrong > 0 {
					t.Errorf("options %v → %v: %d of %d tokens detokenize to another card", change.from, change.to, wrong, len(items))
				}
			}
		})
	}
}

// card19 returns a 19-digit card number (a 5, n's last 17 digits, a Luhn
// check digit).
func card19(n uint64) string {
	s := fmt.Sprintf("5%017d", n%1e17)
	sum := 0
	for i := len(s) - 1; i >= 0; i-- {
		d := int(s[i] - '0')
		if (len(s)-1-i)%2 == 0 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return s + fmt.Sprint((10-sum%10)%10)
}
