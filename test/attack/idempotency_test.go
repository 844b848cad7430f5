package attack

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"testing"
)

// replayWithheld checks that a retry of an idempotent create, sent after
// the caller's authority changed, gets neither the kept answer nor a new
// create: 403, no Idempotent-Replayed, none of the first answer's secret.
func replayWithheld(t *testing.T, r reply, secret string) {
	t.Helper()
	if r.status != 403 || r.header.Get("Idempotent-Replayed") != "" || bytes.Contains(r.body, []byte(secret)) {
		t.Fatalf("a retry after the caller's roles changed: %s (want 403 with nothing of the kept answer)", r)
	}
}

// idempotencyAttacks: an Idempotency-Key is per principal. Another
// principal sending a key someone else used gets nothing of theirs (not
// their answer, not even that the key was used): its request is decided
// as if the key were new.
func idempotencyAttacks() []attack {
	return []attack{
		{"POST /v1/tokenize", "another principal's Idempotency-Key replays none of its answer", func(t *testing.T, w *world) {
			n := w.n
			body := []byte(`{"items":[{"value":"4111111111111111","type":"card_number"}]}`)
			send := func(token, key string) reply {
				return n.send(t, req{method: "POST", path: "/v1/tokenize", token: token, contentType: "application/json",
					body: body, header: map[string]string{"Idempotency-Key": key}})
			}
			first := send(n.admin, "attack-shared-key")
			if first.status != 200 {
				t.Fatalf("admin's tokenize: %s", first)
			}
			if again := send(n.admin, "attack-shared-key"); !bytes.Equal(again.body, first.body) || again.header.Get("Idempotent-Replayed") != "true" {
				t.Fatalf("admin's own retry: %s", again)
			}
			for _, token := range []string{w.tokenA, w.tokenSupport, w.tokenClerk} {
				stolen := send(token, "attack-shared-key")
				fresh := send(token, "attack-fresh-key-"+token[len(token)-8:])
				if bytes.Equal(stolen.body, first.body) || stolen.header.Get("Idempotent-Replayed") != "" {
					t.Fatalf("another principal got the admin's kept answer: %s", stolen)
				}
				if stolen.status != fresh.status {
					t.Fatalf("a key another principal used answers %d, a fresh one %d: the key's use shows", stolen.status, fresh.status)
				}
			}
		}},
		{"POST /v1/clients", "another principal's Idempotency-Key on another route: decided as new, no 422", func(t *testing.T, w *world) {
			n := w.n
			used := n.send(t, req{method: "POST", path: "/v1/tokenize", token: n.admin, contentType: "application/json",
				body: []byte(`{"items":[{"value":"4111111111111111","type":"card_number"}]}`), header: map[string]string{"Idempotency-Key": "attack-client-key"}})
			if used.status != 200 {
				t.Fatalf("admin's tokenize: %s", used)
			}
			r := n.send(t, req{method: "POST", path: "/v1/clients", token: w.tokenA, contentType: "application/json",
				body: []byte(`{"name":"mallory","roles":["admin"]}`), header: map[string]string{"Idempotency-Key": "attack-client-key"}})
			if r.status != 403 || bytes.Contains(r.body, []byte("client_secret")) || bytes.Contains(r.body, []byte("Idempotency")) {
				t.Fatalf("customer A with the admin's key: %s (want 403, as with any key)", r)
			}
		}},
		{"POST /v1/tokenize", "a database reader cannot test guesses of a tokenized value against the key's fingerprint", func(t *testing.T, w *world) {
			n := w.n
			body := []byte(`{"items":[{"value":"4000056655665556","type":"card_number"}]}`)
			r := n.send(t, req{method: "POST", path: "/v1/tokenize", token: n.admin, contentType: "application/json",
				body: body, header: map[string]string{"Idempotency-Key": "attack-guessable-key"}})
			if r.status != 200 {
				t.Fatalf("admin's tokenize: %s", r)
			}
			var fp []byte
			openRaw(t, n).row(t, `SELECT fingerprint FROM idempotency_keys WHERE key = $1`, []any{"attack-guessable-key"}, &fp)
			// What an intruder who knows the format would compute for the
			// right guess: the method, path and body, bare or framed.
			framed := sha256.Sum256(append([]byte(fmt.Sprintf("POST\n/v1/tokenize\n%d\n", len(body))), body...))
			bare := sha256.Sum256(body)
			if len(fp) == 0 || bytes.Contains(fp, framed[:]) || bytes.Contains(fp, bare[:]) || bytes.Contains(fp, []byte("4000056655665556")) {
				t.Fatalf("the stored fingerprint %x is a guessable hash of the body", fp)
			}
		}},
		{"POST /v1/clients", "a kept answer (a new client's secret) is withheld once the caller's roles were cut", func(t *testing.T, w *world) {
			n := w.n
			id, secret := n.newClientSecret(t, "idem-demoted", "admin")
			defer n.must(t, 204, "DELETE", "/v1/clients/"+id, n.admin, nil, nil)
			create := func(token string) reply {
				return n.send(t, req{method: "POST", path: "/v1/clients", token: token, contentType: "application/json",
					body: []byte(`{"name":"idem-child","roles":["admin"]}`), header: map[string]string{"Idempotency-Key": "attack-demoted-key"}})
			}
			first := create(n.Token(id, secret))
			var made struct {
				ClientID     string `json:"client_id"`
				ClientSecret string `json:"client_secret"`
			}
			if first.status != 201 {
				t.Fatalf("the admin client's create: %s", first)
			}
			mustJSON(t, first.body, &made)
			defer n.must(t, 204, "DELETE", "/v1/clients/"+made.ClientID, n.admin, nil, nil)
			// The admin takes its roles away (its tokens end with them); a
			// token it gets afterwards carries no right to create clients.
			n.must(t, 200, "PATCH", "/v1/clients/"+id, n.admin, map[string]any{"roles": []string{}}, nil)
			replayWithheld(t, create(n.Token(id, secret)), made.ClientSecret)
		}},
	}
}
