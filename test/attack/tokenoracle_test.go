package attack

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// tokenOraclePolicy: a victim service that makes every kind of token, and
// attackers that hold less.
const tokenOraclePolicy = `roles:
  admin:
    - resources: ["*"]
      actions: ["*"]
  random-maker:
    - resources: ["tokens/*"]
      actions: [tokenize]
  email-reader:
    - resources: ["tokens/email"]
      actions: [detokenize]
  email-linker:
    - resources: ["tokens/email", "tokens/string"]
      actions: [tokenize_linkable, detokenize]
`

// TestTokenizationOracles attacks the token routes as an oracle on values
// and on the existence of tokens (#15.2, #15.10), on both backends:
//
//   - recovering a card from its format-preserving token by tokenizing
//     candidates needs tokenize_linkable: with tokenize alone every
//     linkable attempt is refused and random tokens never match;
//   - detokenize answers alike for tokens that exist and tokens that do
//     not, to a caller who could not detokenize them;
//   - a linkable token's settings cannot be turned against their first
//     holder: a shorter TTL does not shorten it, a canary cannot be
//     unplanted by tokenizing its value, nor silently pre-empted.
func TestTokenizationOracles(t *testing.T) {
	forEachBackend(t, setup{}, func(t *testing.T, n *node) {
		r := n.send(t, req{method: "PUT", path: "/v1/policy", token: n.admin, contentType: "application/yaml", body: []byte(tokenOraclePolicy)})
		if r.status != 204 {
			t.Fatalf("put policy: %s", r)
		}
		var planted struct{ Tokens []string }
		const card, victim, decoy = "4111111111111111", "victim@example.com", "decoy@example.com"
		n.must(t, 200, "POST", "/v1/tokenize", n.admin, map[string]any{"items": []map[string]any{
			{"value": card, "type": "card_number", "mode": "format_preserving"},
			{"value": card, "type": "card_number"},
			{"value": card, "type": "card_number", "mode": "deterministic"},
			{"value": victim, "type": "email", "mode": "deterministic"},
			{"value": decoy, "type": "email", "mode": "deterministic", "canary": true},
			{"value": marker + " secret", "type": "string", "mode": "deterministic"},
		}}, &planted)
		fpeTok, randomTok, detTok, victimTok := planted.Tokens[0], planted.Tokens[1], planted.Tokens[2], planted.Tokens[3]
		_, randomMaker := n.newClient(t, "random-maker", "random-maker")
		_, emailReader := n.newClient(t, "email-reader", "email-reader")
		_, linker := n.newClient(t, "email-linker", "email-linker")

		t.Run("a known-BIN card is not recovered with tokenize alone", func(t *testing.T) {
			// The last four and the BIN are known: tokenize candidates
			// for the middle six digits and compare with the token.
			items := func(mode string) []map[string]any {
				var out []map[string]any
				for mid := 111100; mid < 111120; mid++ {
					c := candidate("411111", mid, "1111")
					if c == "" {
						continue
					}
					out = append(out, map[string]any{"value": c, "type": "card_number", "mode": mode})
				}
				return out
			}
			for _, mode := range []string{"format_preserving", "deterministic"} {
				r := n.call(t, "POST", "/v1/tokenize", randomMaker, map[string]any{"items": items(mode)})
				wantProblem(t, r, 403, "not allowed to tokenize_linkable tokens/card_number")
			}
			var got struct{ Tokens []string }
			n.must(t, 200, "POST", "/v1/tokenize", randomMaker, map[string]any{"items": items("random")}, &got)
			for _, tok := range got.Tokens {
				if tok == fpeTok || tok == detTok || tok == randomTok || !strings.HasPrefix(tok, "tok_cc_") {
					t.Fatalf("a random token %q matches or looks like a planted one", tok)
				}
			}
		})

		t.Run("detokenize without rights answers alike, token or not", func(t *testing.T) {
			unknownFPE := "5" + fpeTok[1:]
			for _, tok := range []string{fpeTok, unknownFPE, randomTok, detTok, victimTok, "tok_cc_" + marker, "garbage" + marker} {
				r := n.call(t, "POST", "/v1/detokenize", randomMaker, map[string]any{"tokens": []string{tok}})
				wantProblem(t, r, 403, "not allowed to detokenize tokens")
				noEchoIn(t, r, "")
			}
		})

		t.Run("detokenize with rights on another type: a format-preserving token is as unknown as none", func(t *testing.T) {
			for _, tok := range []string{fpeTok, "5" + fpeTok[1:], "6" + fpeTok[1:]} {
				r := n.call(t, "POST", "/v1/detokenize", emailReader, map[string]any{"tokens": []string{tok}})
				wantProblem(t, r, 404, "tokens[0] is unknown or expired")
			}
			// A token that names its type is refused before any lookup.
			for _, tok := range []string{randomTok, "tok_cc_0000000000000000000000", detTok, "dtk_cc_v1_0000000000000000000000"} {
				r := n.call(t, "POST", "/v1/detokenize", emailReader, map[string]any{"tokens": []string{tok}})
				wantProblem(t, r, 403, "not allowed to detokenize tokens/card_number")
			}
		})

		t.Run("a canary is not unplanted by tokenizing its value", func(t *testing.T) {
			var got struct{ Tokens []string }
			n.must(t, 200, "POST", "/v1/tokenize", linker, map[string]any{"items": []map[string]any{
				{"value": decoy, "type": "email", "mode": "deterministic"}}}, &got)
			n.must(t, 200, "POST", "/v1/detokenize", linker, map[string]any{"tokens": got.Tokens}, nil)
			deadline := time.Now().Add(20 * time.Second)
			for {
				var ev struct {
					Events []struct{ Kind, Principal string }
				}
				n.must(t, 200, "GET", "/v1/security/events?kind=data.canary", n.admin, nil, &ev)
				if len(ev.Events) > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("detokenizing the decoy's token raised no data.canary: the canary was unplanted")
				}
				time.Sleep(100 * time.Millisecond)
			}
		})

		t.Run("a canary is not silently pre-empted", func(t *testing.T) {
			const value = "pre.empted@example.com"
			n.must(t, 200, "POST", "/v1/tokenize", linker, map[string]any{"items": []map[string]any{
				{"value": value, "type": "email", "mode": "deterministic"}}}, nil)
			r := n.call(t, "POST", "/v1/tokenize", n.admin, map[string]any{"items": []map[string]any{
				{"value": value, "type": "email", "mode": "deterministic", "canary": true}}})
			wantProblem(t, r, 409, "items[0]: a token of this value exists and is not a canary; plant canaries only for decoy values")
			// Planting a canary stays an admin's act.
			r = n.call(t, "POST", "/v1/tokenize", linker, map[string]any{"items": []map[string]any{
				{"value": marker + "@example.com", "type": "email", "mode": "deterministic", "canary": true}}})
			wantProblem(t, r, 403, "not allowed to admin tokens/email")
			noEchoIn(t, r, "")
		})

		// Last: it moves the clock past every access token.
		t.Run("a shorter TTL does not shorten another caller's token", func(t *testing.T) {
			var got struct{ Tokens []string }
			n.must(t, 200, "POST", "/v1/tokenize", linker, map[string]any{"items": []map[string]any{
				{"value": victim, "type": "email", "mode": "deterministic", "ttl": "1s"}}}, &got)
			if got.Tokens[0] != victimTok {
				t.Fatalf("deterministic token %q, want the victim's %q", got.Tokens[0], victimTok)
			}
			n.Clock.Advance(time.Hour)
			n.admin = n.Token(n.Init.ClientID, n.Init.ClientSecret)
			var back struct{ Values []string }
			n.must(t, 200, "POST", "/v1/detokenize", n.admin, map[string]any{"tokens": []string{victimTok}}, &back)
			if back.Values[0] != victim {
				t.Fatalf("victim's token reads %q", back.Values[0])
			}
		})

		noEchoInLog(t, n)
	})
}

// candidate returns the card number bin ‖ mid (six digits) ‖ last4 if it
// passes Luhn, "" otherwise.
func candidate(bin string, mid int, last4 string) string {
	s := fmt.Sprintf("%s%06d%s", bin, mid, last4)
	sum := 0
	for i := len(s) - 1; i >= 0; i-- {
		d := int(s[i] - '0')
		if (len(s)-1-i)%2 == 1 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	if sum%10 != 0 {
		return ""
	}
	return s
}
