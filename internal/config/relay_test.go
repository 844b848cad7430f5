package config

import (
	"errors"
	"strings"
	"testing"
)

const goodRelay = `relay:
  listen: 127.0.0.1:8444
  client: relay-client
  routes:
    - name: signup
      match: {method: POST, path: /signup}
      upstream: http://127.0.0.1:9000
      request:  {tokenize: [{field: card.number, type: card_number, mode: format_preserving},
                            {field: email, type: email, mode: deterministic}]}
      response: {detokenize: [{field: received.card.number}], mask: [{field: "items[*].ssn", masker: ssn}]}
    - name: pay
      match: {method: POST, path: /pay/*}
      upstream: https://payments.example
      request:  {detokenize: [{field: card}]}
`

func TestRelayFromFile(t *testing.T) {
	c := mustLoad(t, writeFile(t, goodRelay))
	r := c.Relay
	if r.Listen != "127.0.0.1:8444" || r.Client != "relay-client" || len(r.Routes) != 2 {
		t.Fatalf("relay = %+v", r)
	}
	s := r.Routes[0]
	if s.Name != "signup" || s.Match.Method != "POST" || s.Match.Path != "/signup" || s.Upstream != "http://127.0.0.1:9000" ||
		len(s.Request.Tokenize) != 2 || s.Request.Tokenize[0].Mode != "format_preserving" ||
		s.Response.Detokenize[0].Field != "received.card.number" || s.Response.Mask[0].Masker != "ssn" {
		t.Fatalf("route = %+v", s)
	}
	// The relay's scalars come from the environment as every key does.
	c = mustLoad(t, writeFile(t, goodRelay), "COFFER_RELAY_CLIENT=other")
	if c.Relay.Client != "other" {
		t.Fatalf("client = %q", c.Relay.Client)
	}
}

func TestRelayOffByDefault(t *testing.T) {
	c := mustLoad(t, t.TempDir())
	if c.Relay.Listen != "" || len(c.Relay.Routes) != 0 {
		t.Fatalf("relay = %+v", c.Relay)
	}
}

// TestRelayInvalid: every problem of a relay section is listed at once,
// each by its key.
func TestRelayInvalid(t *testing.T) {
	yaml := `relay:
  listen: 127.0.0.1:8443
  routes:
    - name: "bad name"
      match: {method: post, path: signup}
      upstream: ftp://x
      request:  {tokenize: [{field: "card..number", type: pan}, {field: email, type: email, mode: reversible}]}
    - name: dup
      match: {method: POST, path: /a/*/b}
      upstream: https://user:pw@pay.example
    - name: dup
      match: {method: POST, path: /pay}
      upstream: https://pay.example/v1
      request: {detokenize: [{field: card, type: card_number}, {field: CARD}]}
      response: {mask: [{field: x, masker: stars}]}
    - name: again
      match: {method: POST, path: /pay}
      upstream: http://127.0.0.1:9
      request: {tokenize: [{field: a, type: string, masker: card}]}
`
	_, err := Load(writeFile(t, yaml), nil)
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"relay.listen: must differ from listen",
		"relay.client: must name the client",
		"relay.routes[0].name: must be 1-64",
		"relay.routes[0].match.method: must be an upper-case HTTP method",
		"relay.routes[0].match.path: must start with /",
		"relay.routes[0].upstream: must be an http:// or https:// URL",
		`relay.routes[0].request.tokenize[0].field: fieldpath: bad path "card..number"`,
		`relay.routes[0].request.tokenize[0].type: "pan" is not a token type`,
		`relay.routes[0].request.tokenize[1].mode: "reversible" is not a mode`,
		"relay.routes[1].match.path: only a final /* may be a wildcard",
		"relay.routes[1].upstream: must not contain credentials",
		`relay.routes[2].name: "dup" is also the name of relay.routes[1]`,
		"relay.routes[2].upstream: must be scheme://host[:port] only",
		"relay.routes[2].request.detokenize[0]: takes only field",
		`relay.routes[2].request.detokenize[1].field: "CARD" is also relay.routes[2].request.detokenize[0]`,
		`relay.routes[2].response.mask[0].masker: "stars" is not a masker`,
		"relay.routes[3].match: duplicate of relay.routes[2].match",
		"relay.routes[3].request.tokenize[0].masker: is only for mask fields",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in\n%s", want, strings.ReplaceAll(msg, "; ", "\n"))
		}
	}
	if strings.Contains(msg, "pw@") {
		t.Error("the error repeats an upstream's credentials")
	}
}

func TestRelayRoutesWithoutListen(t *testing.T) {
	_, err := Load(writeFile(t, "relay:\n  client: x\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "relay.listen: must be set") {
		t.Fatalf("err = %v", err)
	}
}

func TestRelayUnknownKey(t *testing.T) {
	_, err := Load(writeFile(t, "relay:\n  listen: 127.0.0.1:8444\n  client: c\n  routes:\n    - name: a\n      match: {method: GET, path: /}\n      upstream: http://x\n      request: {encrypt: []}\n"), nil)
	if !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), "relay.routes[0].request.encrypt") {
		t.Fatalf("err = %v", err)
	}
}
