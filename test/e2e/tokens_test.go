package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

type tokenItem struct {
	Value string `json:"value"`
	Type  string `json:"type"`
	Mode  string `json:"mode,omitempty"`
	TTL   string `json:"ttl,omitempty"`
}

func tokenize(t *testing.T, c *client.Client, items ...tokenItem) ([]string, error) {
	t.Helper()
	toks, err := c.Tokenize(context.Background(), toClientItems(items))
	return toks, err
}

func toClientItems(items []tokenItem) []client.TokenItem {
	out := make([]client.TokenItem, len(items))
	for i, it := range items {
		out[i] = client.TokenItem(it)
	}
	return out
}

func luhn(d string) bool {
	sum, alt := 0, false
	for i := len(d) - 1; i >= 0; i-- {
		n := int(d[i] - '0')
		if alt {
			if n *= 2; n > 9 {
				n -= 9
			}
		}
		sum += n
		alt = !alt
	}
	return sum%10 == 0
}

func TestTokens(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		ctx := context.Background()
		const card = "4111111111111111"
		toks, err := tokenize(t, n.Admin,
			tokenItem{Value: card, Type: "card_number", Mode: "format_preserving"},
			tokenItem{Value: "ada@example.com", Type: "email", Mode: "deterministic"},
			tokenItem{Value: "ADA@example.com", Type: "email", Mode: "deterministic"},
			tokenItem{Value: "ada@example.com", Type: "email"},
			tokenItem{Value: "ada@example.com", Type: "email"},
			tokenItem{Value: "123-45-6789", Type: "ssn"},
		)
		if err != nil {
			t.Fatal(err)
		}
		fp := toks[0]
		if len(fp) != len(card) || fp == card || !strings.HasSuffix(fp, "1111") || luhn(fp) {
			t.Fatalf("FPE card token %q: want same length, last four kept, Luhn-invalid, different", fp)
		}
		if toks[1] != toks[2] {
			t.Fatalf("deterministic tokens differ for the same email: %q %q", toks[1], toks[2])
		}
		if toks[3] == toks[4] {
			t.Fatal("random tokens repeat")
		}
		vals, err := n.Admin.Detokenize(ctx, toks)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{card, "ada@example.com", "ada@example.com", "ada@example.com", "ada@example.com", "123-45-6789"}
		for i := range want {
			if vals[i] != want[i] {
				t.Errorf("detokenize[%d] = %q, want %q", i, vals[i], want[i])
			}
		}
		// Unknown token: 404, and all or nothing.
		if _, err := n.Admin.Detokenize(ctx, []string{toks[3], "tok_em_0000000000000000000000"}); client.StatusCode(err) != 404 {
			t.Fatalf("unknown token: %v", err)
		}
		// Invalid values: 422.
		for _, it := range []tokenItem{
			{Value: "4111111111111112", Type: "card_number"},
			{Value: "not-an-email", Type: "email"},
			{Value: "x", Type: "blood_type"},
			// FF1 needs a domain of at least 10^6: 26^4 letters is too small.
			{Value: "abcd", Type: "string", Mode: "format_preserving"},
		} {
			if _, err := tokenize(t, n.Admin, it); client.StatusCode(err) != 422 {
				t.Errorf("invalid item %+v: %v", it, err)
			}
		}
		// Expired tokens answer 404 (ttl is at least 1s; use a fresh token and
		// check the validation of a too-short ttl instead of sleeping).
		if _, err := tokenize(t, n.Admin, tokenItem{Value: "ada@example.com", Type: "email", TTL: "1ms"}); client.StatusCode(err) != 422 {
			t.Fatalf("too-short ttl: %v", err)
		}

		// A role with tokenize but not detokenize gets 403 on detokenize.
		pol := `roles:
  admin:
    - resources: ["*"]
      actions: ["*"]
  billing:
    - resources: ["tokens/card_number"]
      actions: [tokenize]
`
		if err := n.Admin.PutPolicy(ctx, []byte(pol), "yaml"); err != nil {
			t.Fatal(err)
		}
		nc, err := n.Admin.CreateClient(ctx, "billing", []string{"billing"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		billing := n.Client(nc.ClientID, nc.ClientSecret)
		bt, err := tokenize(t, billing, tokenItem{Value: card, Type: "card_number"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := billing.Detokenize(ctx, bt); client.StatusCode(err) != 403 {
			t.Fatalf("detokenize without the right: %v", err)
		}
		if _, err := tokenize(t, billing, tokenItem{Value: "ada@example.com", Type: "email"}); client.StatusCode(err) != 403 {
			t.Fatalf("tokenize of a type without the right: %v", err)
		}
	})
}

func TestTokenBatchLimit(t *testing.T) {
	n := start(t, storetest.Backends()[0])
	items := make([]tokenItem, 10001)
	for i := range items {
		items[i] = tokenItem{Value: "ada@example.com", Type: "email"}
	}
	body, _ := json.Marshal(map[string]any{"items": items})
	tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
	st, _, b := n.do(http.MethodPost, "/v1/tokenize", tok, "application/json", bytes.NewReader(body))
	if st != 413 {
		t.Fatalf("10,001 items: %d %s", st, b)
	}
}

// Random tokens of one batch are stored side by side (their rows' keys
// start with an increasing prefix), yet the tokens themselves share no
// structure a holder could use to link them, and any altered token is 404.
func TestRandomTokensStoredTogetherButUnlinkable(t *testing.T) {
	n := start(t, storetest.Backends()[0])
	ctx := context.Background()
	items := make([]tokenItem, 500)
	for i := range items {
		items[i] = tokenItem{Value: "ada@example.com", Type: "email"}
	}
	first, err := tokenize(t, n.Admin, items...)
	if err != nil {
		t.Fatal(err)
	}
	second, err := tokenize(t, n.Admin, items...)
	if err != nil {
		t.Fatal(err)
	}

	// Unlinkable: after the fixed prefix, characters 2–4 of the base62
	// body are close to uniform across one batch (linked tokens would share them).
	seen := map[string]bool{}
	for _, tok := range first {
		body := strings.TrimPrefix(tok, "tok_em_")
		if len(body) != 22 {
			t.Fatalf("token %q: want tok_em_ and 22 base62 characters", tok)
		}
		seen[body[1:4]] = true
	}
	if len(seen) < 490 {
		t.Errorf("only %d distinct 3-character slices in 500 tokens of one batch: tokens look linkable", len(seen))
	}

	// Stored together: the rows' keys sort in tokenize order, batch by batch.
	db, err := sql.Open("sqlite", filepath.Join(n.Dir, "coffer.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var keys [][]byte
	rows, err := db.Query(`SELECT mac FROM tokens WHERE mode = 'random' ORDER BY mac`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k []byte
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	rows.Close()
	if len(keys) != 1000 {
		t.Fatalf("%d random token rows, want 1000", len(keys))
	}
	vals, err := n.Admin.Detokenize(ctx, append(append([]string{}, first...), second...))
	if err != nil || len(vals) != 1000 {
		t.Fatalf("detokenize both batches: %d values, %v", len(vals), err)
	}
	// The keys begin with the time they were made (µs, shifted by 8): all
	// 1,000 lie within a minute of each other, where random keys would be
	// spread over the whole 64-bit space (and over every page of the table).
	lo, hi := binary.BigEndian.Uint64(keys[0][:8]), binary.BigEndian.Uint64(keys[len(keys)-1][:8])
	if span := (hi - lo) >> 8; span > uint64(time.Minute/time.Microsecond) {
		t.Errorf("the rows' key prefixes span %d µs: not stored together", span)
	}
	if now := uint64(time.Now().UnixMicro()); hi>>8 > now || now-hi>>8 > uint64(time.Minute/time.Microsecond) {
		t.Errorf("key prefix %d is not the time the token was made (now %d µs)", hi>>8, now)
	}

	for _, bad := range []string{
		first[0][:len(first[0])-1] + flip(first[0][len(first[0])-1]),
		"tok_em_zzzzzzzzzzzzzzzzzzzzzz", // above 2^128
		"tok_em_short",
		"tok_em_!!!!!!!!!!!!!!!!!!!!!!",
		"tok_cc_" + strings.TrimPrefix(first[0], "tok_em_"), // another type's prefix
	} {
		if _, err := n.Admin.Detokenize(ctx, []string{bad}); client.StatusCode(err) != 404 {
			t.Errorf("detokenize %q: %v, want 404", bad, err)
		}
	}
}

func flip(c byte) string {
	if c == 'a' {
		return "b"
	}
	return "a"
}
