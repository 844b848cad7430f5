package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/cofferhq/coffer/internal/testclock"
	"strings"
	"testing"
	"time"
)

// tokenOraclePolicy gives each kind of caller of the tokenization oracle
// tests its role.
const tokenOraclePolicy = `roles:
  admin:
    - resources: ["*"]
      actions: ["*"]
  random-only:
    - resources: ["tokens/*"]
      actions: [tokenize]
  linkable:
    - resources: ["tokens/card_number", "tokens/ssn"]
      actions: [tokenize_linkable]
  email-reader:
    - resources: ["tokens/email"]
      actions: [detokenize]
  masked-cards:
    - resources: ["tokens/card_number"]
      actions: [detokenize]
      fields: {card_number: deny}
  nothing:
    - resources: ["collections/none"]
      actions: [read]
`

// problemOf decodes a problem+json body.
func problemOf(t *testing.T, b []byte) (status int, detail string) {
	t.Helper()
	var p struct {
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("not a problem: %s", b)
	}
	return p.Status, p.Detail
}

// clientWithRole makes a service client holding role and returns its
// bearer token.
func (n *node) clientWithRole(role string) string {
	n.t.Helper()
	nc, err := n.Admin.CreateClient(context.Background(), role, []string{role}, nil)
	if err != nil {
		n.t.Fatal(err)
	}
	return n.Token(nc.ClientID, nc.ClientSecret)
}

// #15.2: a linkable token (deterministic, format-preserving) is an oracle
// on its value for whoever may make them, so they need tokenize_linkable;
// tokenize alone makes random tokens only. A batch that needs a right the
// caller lacks stores nothing.
func TestLinkableTokenizationNeedsItsOwnAction(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		ctx := context.Background()
		if err := n.Admin.PutPolicy(ctx, []byte(tokenOraclePolicy), "yaml"); err != nil {
			t.Fatal(err)
		}
		random, linkable := n.clientWithRole("random-only"), n.clientWithRole("linkable")
		tokenize := func(tok string, items ...tokenItem) (int, []byte) {
			st, _, b := n.postJSON("/v1/tokenize", tok, map[string]any{"items": items})
			return st, b
		}
		const card = "4111111111111111"
		for _, c := range []struct {
			who   string
			tok   string
			items []tokenItem
			want  int
		}{
			{"random-only, random", random, []tokenItem{{Value: card, Type: "card_number"}}, 200},
			{"random-only, deterministic", random, []tokenItem{{Value: card, Type: "card_number", Mode: "deterministic"}}, 403},
			{"random-only, format-preserving", random, []tokenItem{{Value: card, Type: "card_number", Mode: "format_preserving"}}, 403},
			{"random-only, a mixed batch", random, []tokenItem{{Value: card, Type: "card_number"},
				{Value: "123-45-6789", Type: "ssn", Mode: "deterministic"}}, 403},
			{"linkable, format-preserving", linkable, []tokenItem{{Value: card, Type: "card_number", Mode: "format_preserving"}}, 200},
			{"linkable, deterministic", linkable, []tokenItem{{Value: "123-45-6789", Type: "ssn", Mode: "deterministic"}}, 200},
			{"linkable, another type", linkable, []tokenItem{{Value: "ada@example.com", Type: "email", Mode: "deterministic"}}, 403},
			{"linkable, random", linkable, []tokenItem{{Value: card, Type: "card_number"}}, 403},
		} {
			st, b := tokenize(c.tok, c.items...)
			if st != c.want {
				t.Errorf("%s: %d %s, want %d", c.who, st, b, c.want)
				continue
			}
			if st == 403 {
				if _, detail := problemOf(t, b); strings.Contains(detail, card) || !strings.Contains(detail, "not allowed to tokenize") {
					t.Errorf("%s: detail %q", c.who, detail)
				}
			}
		}
		// The refused mixed batch stored nothing: its random token of the
		// card is not there to find, and the ssn was never tokenized (the
		// deterministic token the linkable role makes is new: no stored
		// row had its settings fixed by the refused batch).
		if st, b := tokenize(linkable, tokenItem{Value: "123-45-6789", Type: "ssn", Mode: "deterministic", TTL: "1h"}); st != 200 {
			t.Fatalf("linkable ssn: %d %s", st, b)
		}
		// The refusals are audited as what was asked.
		st, _, b := n.do("GET", "/v1/audit/events?limit=1000", n.Token(n.Init.ClientID, n.Init.ClientSecret), "", nil)
		var evs struct {
			Events []struct{ Action, Decision, Reason string } `json:"events"`
		}
		mustJSON(t, b, &evs)
		denied := 0
		for _, e := range evs.Events {
			if e.Action == "tokenize_linkable" && e.Decision == "deny" {
				denied++
			}
		}
		if st != 200 || denied < 3 {
			t.Errorf("%d denied tokenize_linkable events, want at least 3 (%d)", denied, st)
		}
	})
}

// #15.10: detokenize checks rights before it looks a token up, so its
// answer never says whether a token it may not detokenize exists.
func TestDetokenizeIsNoExistenceOracle(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		ctx := context.Background()
		if err := n.Admin.PutPolicy(ctx, []byte(tokenOraclePolicy), "yaml"); err != nil {
			t.Fatal(err)
		}
		toks, err := tokenize(t, n.Admin,
			tokenItem{Value: "4111111111111111", Type: "card_number", Mode: "format_preserving"},
			tokenItem{Value: "4111111111111111", Type: "card_number"},
			tokenItem{Value: "ada@example.com", Type: "email", Mode: "deterministic"})
		if err != nil {
			t.Fatal(err)
		}
		fpe, random := toks[0], toks[1]
		// A card-shaped string that is no token: same length, last four
		// kept, digits changed.
		unknown := "5" + fpe[1:]
		if unknown == fpe {
			unknown = "6" + fpe[1:]
		}
		ask := func(tok string, tokens ...string) (int, string) {
			t.Helper()
			_, _, b := n.postJSON("/v1/detokenize", tok, map[string]any{"tokens": tokens})
			return problemOf(t, b)
		}
		same := func(who string, a, b []string, tok string, want int) {
			t.Helper()
			sa, da := ask(tok, a...)
			sb, db := ask(tok, b...)
			if sa != want || sb != want || da != db {
				t.Errorf("%s: existing %d %q, unknown %d %q; want the same %d", who, sa, da, sb, db, want)
			}
		}
		// No detokenize right on any type: one 403 whatever the token.
		for _, role := range []string{"nothing", "random-only", "masked-cards"} {
			same(role, []string{fpe}, []string{unknown}, n.clientWithRole(role), 403)
		}
		// A right on emails only: a format-preserving card token that
		// exists answers as one that does not.
		emails := n.clientWithRole("email-reader")
		same("email-reader, format-preserving", []string{fpe}, []string{unknown}, emails, 404)
		same("email-reader, in a batch", []string{toks[2], fpe}, []string{toks[2], unknown}, emails, 404)
		// A random token names its type: refused before any lookup,
		// existing or not.
		forged := random[:len(random)-1] + "A"
		if forged == random {
			forged = random[:len(random)-1] + "B"
		}
		same("email-reader, random card token", []string{random}, []string{forged}, emails, 403)
		// And the email is still readable by its reader.
		vals, err := n.Client(n.Init.ClientID, n.Init.ClientSecret).Detokenize(ctx, toks[2:])
		if err != nil || vals[0] != "ada@example.com" {
			t.Fatalf("detokenize as admin: %v %v", vals, err)
		}
	})
}

// #15.10: the first tokenization of a value no longer fixes its token's
// settings for every later caller. The later expiry wins (none beats
// any), an expired token is made anew, a canary stays one, and a canary
// over a real token is refused (409) without echoing the value.
func TestLinkableTokenSettingsAreMergedOrRefused(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		clock := &testclock.Offset{}
		n.Stop()
		n.serveAt("127.0.0.1:0", clock.Now)
		// The clock moves past access tokens' lifetime: a fresh one for
		// every request.
		tok := func() string { return n.Token(n.Init.ClientID, n.Init.ClientSecret) }
		put := func(items ...map[string]any) (int, []string, []byte) {
			t.Helper()
			st, _, b := n.postJSON("/v1/tokenize", tok(), map[string]any{"items": items})
			var out struct{ Tokens []string }
			if st == 200 {
				mustJSON(t, b, &out)
			}
			return st, out.Tokens, b
		}
		detokenize := func(tokens []string) ([]string, error) {
			t.Helper()
			st, _, b := n.postJSON("/v1/detokenize", tok(), map[string]any{"tokens": tokens})
			if st != 200 {
				return nil, fmt.Errorf("detokenize: %d %s", st, b)
			}
			var out struct{ Values []string }
			mustJSON(t, b, &out)
			return out.Values, nil
		}
		item := func(v, mode, ttl string, canary bool) map[string]any {
			m := map[string]any{"value": v, "type": "email", "mode": mode}
			if ttl != "" {
				m["ttl"] = ttl
			}
			if canary {
				m["canary"] = true
			}
			return m
		}
		for _, mode := range []string{"deterministic", "format_preserving"} {
			v := mode + ".keeper@example.com"
			st, first, b := put(item(v, mode, "1h", false))
			if st != 200 {
				t.Fatalf("%s: %d %s", mode, st, b)
			}
			// A second caller asks for no expiry: the token no longer
			// expires, for both.
			if st, again, b := put(item(v, mode, "", false)); st != 200 || again[0] != first[0] {
				t.Fatalf("%s again: %d %s", mode, st, b)
			}
			clock.Advance(2 * time.Hour)
			if vals, err := detokenize(first); err != nil || vals[0] != v {
				t.Fatalf("%s: the token expired with the first caller's ttl: %v %v", mode, vals, err)
			}

			// Expired tokens are made anew.
			w := mode + ".short@example.com"
			if st, _, b := put(item(w, mode, "1h", false)); st != 200 {
				t.Fatalf("%s: %d %s", mode, st, b)
			}
			clock.Advance(2 * time.Hour)
			st, again, b := put(item(w, mode, "", false))
			if st != 200 {
				t.Fatalf("%s: tokenize over an expired token: %d %s", mode, st, b)
			}
			if vals, err := detokenize(again); err != nil || vals[0] != w {
				t.Fatalf("%s: the token made anew does not detokenize: %v %v", mode, vals, err)
			}

			// A canary over a real token: 409, nothing planted.
			st, _, b = put(item(v, mode, "", true))
			if st != 409 {
				t.Fatalf("%s: a canary over a real token: %d %s", mode, st, b)
			}
			if s, d := problemOf(t, b); s != 409 || !strings.Contains(d, "items[0]") || !strings.Contains(d, "canary") || strings.Contains(d, v) {
				t.Fatalf("%s: conflict detail %q", mode, d)
			}
			if vals, err := detokenize(first); err != nil || vals[0] != v {
				t.Fatalf("%s: %v %v", mode, vals, err)
			}
			// A canary first stays one when a caller tokenizes its value.
			decoy := mode + ".decoy@example.com"
			if st, _, b := put(item(decoy, mode, "", true)); st != 200 {
				t.Fatalf("%s: plant a canary: %d %s", mode, st, b)
			}
			st, real, b := put(item(decoy, mode, "", false))
			if st != 200 {
				t.Fatalf("%s: tokenize a canary's value: %d %s", mode, st, b)
			}
			if _, err := detokenize(real); err != nil {
				t.Fatal(err)
			}
			waitFor(t, mode+" canary event", func() bool {
				st, _, b := n.do("GET", "/v1/security/events?kind=data.canary", tok(), "", nil)
				return st == 200 && strings.Count(string(b), `"kind":"data.canary"`) >= map[string]int{"deterministic": 1, "format_preserving": 2}[mode]
			})
			// One request asking for both: 409.
			if st, _, b := put(item("both@example.com", mode, "", true), item("both@example.com", mode, "", false)); st != 409 {
				t.Fatalf("%s: canary and real in one request: %d %s", mode, st, b)
			}
		}
		if strings.Contains(n.Logs.String(), "keeper@example.com") {
			t.Fatal("the log holds a tokenized value")
		}
	})
}

// #16.4: a format-preserving token keeps the options it was made with: a
// change of tokens.card_keep_first_six (or card_luhn_valid) changes new
// tokens only, and every existing one still detokenizes to its card.
func TestFPEOptionsTravelWithTheToken(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		ctx := context.Background()
		cards := make([]tokenItem, 500)
		for i := range cards {
			cards[i] = tokenItem{Value: luhnCard(1234_5678_9012_3456 + uint64(i)*7919), Type: "card_number", Mode: "format_preserving"}
		}
		before, err := tokenize(t, n.Admin, cards...)
		if err != nil {
			t.Fatal(err)
		}
		n.Env = append(n.Env, "COFFER_TOKENS_CARD_KEEP_FIRST_SIX=true", "COFFER_TOKENS_CARD_LUHN_VALID=true")
		n.Restart()
		vals, err := n.Admin.Detokenize(ctx, before)
		if err != nil {
			t.Fatal(err)
		}
		wrong := 0
		for i := range cards {
			if vals[i] != cards[i].Value {
				wrong++
			}
		}
		if wrong > 0 {
			t.Fatalf("after the options changed, %d of %d card tokens detokenize to another card", wrong, len(cards))
		}
		after, err := tokenize(t, n.Admin, cards[:20]...)
		if err != nil {
			t.Fatal(err)
		}
		for i, tok := range after {
			if tok[:6] != cards[i].Value[:6] || !luhn(tok) {
				t.Fatalf("a new token %q does not keep the first six or pass Luhn", tok)
			}
		}
		if vals, err := n.Admin.Detokenize(ctx, append(after, before[:20]...)); err != nil || vals[0] != cards[0].Value || vals[20] != cards[0].Value {
			t.Fatalf("old and new tokens together: %v %v", vals, err)
		}
	})
}

// luhnCard returns a 19-digit card number: 4, then n's last 17 digits,
// then its Luhn check digit.
func luhnCard(n uint64) string {
	s := []byte("4" + strings.Repeat("0", 17))
	for i := 17; i >= 1; i-- {
		s[i] = byte('0' + n%10)
		n /= 10
	}
	for d := byte('0'); d <= '9'; d++ {
		if c := string(s) + string(d); luhn(c) {
			return c
		}
	}
	panic("no check digit")
}
