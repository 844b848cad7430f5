package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/transit/transittest"
)

// listedEvent is an audit event as GET /v1/audit/events shows it.
type listedEvent struct {
	RequestID  string   `json:"request_id"`
	Action     string   `json:"action"`
	Resource   string   `json:"resource"`
	Status     int      `json:"status"`
	Count      int      `json:"count"`
	ValueHMACs []string `json:"value_hmacs"`
	Targets    []string `json:"targets"`
}

// auditTrail finds the events of requests through the events API.
type auditTrail struct {
	n     *node
	token string
	since time.Time
}

// event returns the event of request rid.
func (a *auditTrail) event(rid string) listedEvent {
	a.n.t.Helper()
	after := ""
	for {
		q := url.Values{"limit": {"1000"}, "since": {a.since.Format(time.RFC3339Nano)}}
		if after != "" {
			q.Set("after", after)
		}
		st, _, b := a.n.do("GET", "/v1/audit/events?"+q.Encode(), a.token, "", nil)
		if st != 200 {
			a.n.t.Fatalf("GET /v1/audit/events: %d %s", st, b)
		}
		var page struct {
			Events []listedEvent `json:"events"`
			Next   string        `json:"next"`
		}
		mustJSON(a.n.t, b, &page)
		for _, e := range page.Events {
			if e.RequestID == rid {
				return e
			}
		}
		if page.Next == "" {
			a.n.t.Fatalf("no audit event of request %s", rid)
		}
		after = page.Next
	}
}

// wrappingKey answers GET /v1/keys/wrapping_key. The first call makes the
// RSA key: under the race detector on a busy machine it may outlast the
// client's and the server's write timeouts, and its answer is lost, but
// the key is made all the same (the handler outlives its caller), so the
// call is tried again.
func (n *node) wrappingKey(tok string) []byte {
	n.t.Helper()
	patient := *n.HTTP
	patient.Timeout = 5 * time.Minute
	for try := 0; ; try++ {
		req, err := http.NewRequest("GET", n.URL+"/v1/keys/wrapping_key", nil)
		if err != nil {
			n.t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := patient.Do(req)
		if err != nil && try < 3 {
			continue
		}
		if err != nil {
			n.t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			n.t.Fatalf("GET /v1/keys/wrapping_key: %d %s %v", resp.StatusCode, b, err)
		}
		return b
	}
}

// TestAuditEventsNameTheirTargets: every state-changing route's audit
// event names, in targets, the ids it touched (the record created, the
// subject erased, the key version made, the client or user changed, …),
// over HTTPS as the events API shows them; the value-derived ids of
// deterministic tokens are counted, not named, and no event holds a
// submitted value, token or secret.
func TestAuditEventsNameTheirTargets(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			n := startWith(t, b, app.Options{RetireAfter: -1})
			tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
			trail := &auditTrail{n: n, token: tok, since: time.Now().Add(-time.Minute)}
			var secrets []string // what no event may hold
			call := func(method, path, token string, body any, want int) (listedEvent, []byte) {
				t.Helper()
				var r io.Reader
				ct := ""
				switch v := body.(type) {
				case nil:
				case string:
					r, ct = strings.NewReader(v), "application/x-www-form-urlencoded"
				default:
					j, _ := json.Marshal(v)
					r, ct = strings.NewReader(string(j)), "application/json"
				}
				st, h, b := n.do(method, path, token, ct, r)
				if st != want {
					t.Fatalf("%s %s: %d %s, want %d", method, path, st, b, want)
				}
				return trail.event(h.Get("X-Request-Id")), b
			}
			expect := func(what string, e listedEvent, targets ...string) {
				t.Helper()
				if !slices.Equal(e.Targets, targets) {
					t.Errorf("%s: targets %q, want %q", what, e.Targets, targets)
				}
			}
			field := func(b []byte, name string) string {
				t.Helper()
				var m map[string]any
				mustJSON(t, b, &m)
				return fmt.Sprint(m[name])
			}

			// Collections and records.
			e, _ := call("POST", "/v1/collections", tok, map[string]any{"name": "t", "fields": []map[string]any{
				{"name": "note", "type": "string"}, {"name": "email", "type": "email", "searchable": true}}}, 201)
			expect("collection create", e, "collections/t")
			secrets = append(secrets, "secret note 1", "ada@example.com", "secret note 2")
			e, b := call("POST", "/v1/collections/t/records", tok, map[string]any{"owner": "o",
				"data": map[string]any{"note": "secret note 1", "email": "ada@example.com"}}, 201)
			rec := "collections/t/records/" + field(b, "id")
			expect("record create", e, rec)
			e, _ = call("GET", "/v1/"+rec, tok, nil, 200)
			expect("record read", e, rec)
			e, _ = call("PATCH", "/v1/"+rec, tok, map[string]any{"data": map[string]any{"note": "secret note 2"}}, 200)
			expect("record update", e, rec)
			e, _ = call("POST", "/v1/collections/t/records/search", tok, map[string]any{"where": map[string]any{"email": "ada@example.com"}}, 200)
			expect("record search", e, rec)
			e, _ = call("DELETE", "/v1/"+rec, tok, nil, 204)
			expect("record delete", e, rec)
			e, _ = call("GET", "/v1/"+rec, tok, nil, 404)
			expect("read of a deleted record", e)
			const subject = "s é/1"
			call("POST", "/v1/collections/t/records", tok, map[string]any{"subject": subject, "data": map[string]any{"note": "secret note 1"}}, 201)
			e, _ = call("DELETE", "/v1/subjects/"+url.PathEscape(subject), tok, nil, 200)
			expect("subject erasure", e, "subjects/s%20%C3%A9%2F1")

			// Tokens: each named by the MAC detokenize records for it.
			secrets = append(secrets, "4111111111111111", "5555555555554444")
			e, b = call("POST", "/v1/tokenize", tok, map[string]any{"items": []map[string]any{
				{"value": "4111111111111111", "type": "card_number"},
				{"value": "5555555555554444", "type": "card_number"},
				{"value": "4111111111111111", "type": "card_number", "mode": "deterministic"}}}, 200)
			var toks struct {
				Tokens []string `json:"tokens"`
			}
			mustJSON(t, b, &toks)
			secrets = append(secrets, toks.Tokens...)
			if e.Count != 3 || len(e.Targets) != 3 {
				t.Fatalf("tokenize: count %d, targets %q; want the 3 tokens named", e.Count, e.Targets)
			}
			d, _ := call("POST", "/v1/detokenize", tok, map[string]any{"tokens": toks.Tokens}, 200)
			for i := range toks.Tokens {
				if len(d.ValueHMACs) != 3 || "tokens/card_number/"+d.ValueHMACs[i] != e.Targets[i] {
					t.Errorf("detokenize of the tokens records %q; tokenize named them %q", d.ValueHMACs, e.Targets)
					break
				}
			}

			// Transit keys.
			e, _ = call("POST", "/v1/keys", tok, map[string]any{"name": "tk", "deletable": true}, 201)
			expect("transit create", e, "keys/tk/versions/1")
			secrets = append(secrets, base64.StdEncoding.EncodeToString([]byte("transit secret")))
			pt := map[string]any{"plaintext": base64.StdEncoding.EncodeToString([]byte("transit secret"))}
			_, b = call("POST", "/v1/keys/tk/encrypt", tok, pt, 200)
			ct1 := field(b, "ciphertext")
			e, _ = call("POST", "/v1/keys/tk/rotate", tok, nil, 200)
			expect("transit rotate", e, "keys/tk/versions/2")
			e, b = call("POST", "/v1/keys/tk/encrypt", tok, pt, 200)
			expect("transit encrypt", e, "keys/tk/versions/2")
			ct2 := field(b, "ciphertext")
			e, _ = call("POST", "/v1/keys/tk/decrypt", tok, map[string]any{"items": []map[string]any{
				{"ciphertext": ct2}, {"ciphertext": ct1}, {"ciphertext": ct2}}}, 200)
			expect("transit decrypt", e, "keys/tk/versions/2", "keys/tk/versions/1")
			e, _ = call("POST", "/v1/keys/tk/rewrap", tok, map[string]any{"ciphertext": ct1}, 200)
			expect("transit rewrap", e, "keys/tk/versions/1", "keys/tk/versions/2")
			e, _ = call("POST", "/v1/keys/tk/config", tok, map[string]any{"min_decryption_version": 2}, 200)
			expect("transit config", e, "keys/tk")
			e, _ = call("DELETE", "/v1/keys/tk", tok, nil, 204)
			expect("transit delete", e, "keys/tk")
			pub, err := transittest.ParsePublicKey(field(n.wrappingKey(tok), "public_key"))
			if err != nil {
				t.Fatal(err)
			}
			wrap := func(key string) string {
				w, err := transittest.Wrap(pub, sha256.New(), []byte(key))
				if err != nil {
					t.Fatal(err)
				}
				return base64.StdEncoding.EncodeToString(w)
			}
			secrets = append(secrets, "0123456789abcdef0123456789ABCDEF")
			e, _ = call("POST", "/v1/keys/imp/import", tok, map[string]any{"ciphertext": wrap("0123456789abcdef0123456789ABCDEF")}, 201)
			expect("transit import", e, "keys/imp/versions/1")
			e, _ = call("POST", "/v1/keys/imp/import_version", tok, map[string]any{"ciphertext": wrap("ABCDEF0123456789abcdef0123456789")}, 200)
			expect("transit import_version", e, "keys/imp/versions/2")

			// Coffer's own keys (nothing is sealed under collection/t now).
			e, b = call("POST", "/v1/admin/keys/rotate", tok, map[string]any{"key_id": "collection/t"}, 200)
			expect("key rotate", e, "system/keys/collection/t/versions/"+field(b, "version"))
			for _, op := range []string{"retire", "unretire", "retire", "destroy"} {
				e, _ = call("POST", "/v1/admin/keys/"+op, tok, map[string]any{"key_id": "collection/t", "version": 1}, 200)
				expect("key "+op, e, "system/keys/collection/t/versions/1")
			}

			// Clients.
			e, b = call("POST", "/v1/clients", tok, map[string]any{"name": "c1"}, 201)
			cid, csecret := field(b, "client_id"), field(b, "client_secret")
			expect("client create", e, "clients/"+cid)
			e, b = call("POST", "/v1/clients/"+cid+"/rotate", tok, nil, 200)
			expect("client rotate", e, "clients/"+cid)
			secrets = append(secrets, csecret, field(b, "client_secret"))
			csecret = field(b, "client_secret")
			e, b = call("POST", "/v1/oauth/token", "", "grant_type=client_credentials&client_id="+cid+"&client_secret="+url.QueryEscape(csecret), 200)
			expect("token", e, "clients/"+cid)
			access := field(b, "access_token")
			secrets = append(secrets, access)
			parts := strings.Split(access, ".")
			claims, err := base64.RawURLEncoding.DecodeString(parts[1])
			if err != nil {
				t.Fatal(err)
			}
			e, _ = call("POST", "/v1/oauth/revoke", "", "token="+access, 200)
			expect("revoke", e, "access_tokens/"+field(claims, "jti"))
			e, _ = call("POST", "/v1/oauth/revoke", "", "token=not-a-token", 200)
			expect("revoke of nothing", e)
			e, _ = call("PATCH", "/v1/clients/"+cid, tok, map[string]any{"name": "c2", "disabled": true}, 200)
			expect("client update", e, "clients/"+cid)
			e, _ = call("DELETE", "/v1/clients/"+cid, tok, nil, 204)
			expect("client delete", e, "clients/"+cid)

			// Users and MFA.
			const pw = "correct horse battery staple 77"
			secrets = append(secrets, pw)
			e, b = call("POST", "/v1/users", tok, map[string]any{"username": "u1", "password": pw}, 201)
			uid := field(b, "id")
			expect("user create", e, "users/"+uid)
			e, b = call("POST", "/v1/auth/login", "", map[string]any{"username": "u1", "password": pw}, 200)
			expect("login", e, "users/"+uid)
			utok := field(b, "access_token")
			e, b = call("POST", "/v1/auth/mfa/totp", utok, map[string]any{}, 200)
			expect("TOTP start", e, "users/"+uid)
			var en struct {
				Secret        string   `json:"secret"`
				RecoveryCodes []string `json:"recovery_codes"`
			}
			mustJSON(t, b, &en)
			secrets = append(append(secrets, en.Secret), en.RecoveryCodes...)
			code, err := totp.GenerateCode(en.Secret, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			e, _ = call("POST", "/v1/auth/mfa/totp/confirm", utok, map[string]any{"code": code}, 204)
			expect("TOTP confirm", e, "users/"+uid)
			_, b = call("POST", "/v1/auth/login", "", map[string]any{"username": "u1", "password": pw}, 200)
			mfaToken := field(b, "mfa_token")
			secrets = append(secrets, mfaToken)
			e, _ = call("POST", "/v1/auth/mfa", "", map[string]any{"mfa_token": mfaToken, "code": en.RecoveryCodes[0]}, 200)
			expect("MFA", e, "users/"+uid)
			e, _ = call("PATCH", "/v1/users/"+uid, tok, map[string]any{"attributes": map[string]string{"team": "a"}}, 200)
			expect("user update", e, "users/"+uid)
			e, _ = call("DELETE", "/v1/users/"+uid, tok, nil, 204)
			expect("user delete", e, "users/"+uid)

			// Policy and suspensions.
			db := n.openStore()
			v0, err := db.PolicyVersion(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			st, h, b := n.do("PUT", "/v1/policy", tok, "application/yaml", strings.NewReader("roles:\n  admin:\n    - resources: [\"*\"]\n      actions: [\"*\"]\n"))
			if st != 204 {
				t.Fatalf("put policy: %d %s", st, b)
			}
			expect("policy", trail.event(h.Get("X-Request-Id")), fmt.Sprintf("policy/versions/%d", v0+1))
			if err := db.SuspendPrincipal(context.Background(), "p/1", time.Now().Add(time.Hour), "data.bulk_read"); err != nil {
				t.Fatal(err)
			}
			e, _ = call("DELETE", "/v1/security/suspensions/"+url.PathEscape("p/1"), tok, nil, 204)
			expect("suspension lift", e, "suspensions/p%2F1")
			if e.Count != 1 {
				t.Errorf("suspension lift: count %d, want 1", e.Count)
			}
			e, _ = call("DELETE", "/v1/security/suspensions/p2", tok, nil, 204)
			expect("lift of no suspension", e)

			// No event holds a submitted value, a token or a secret.
			st, _, b = n.do("GET", "/v1/audit/events?limit=1000&since="+url.QueryEscape(trail.since.Format(time.RFC3339Nano)), tok, "", nil)
			if st != 200 {
				t.Fatalf("list events: %d", st)
			}
			for _, s := range secrets {
				if strings.Contains(string(b), s) {
					t.Errorf("an audit event holds %q", s)
				}
			}
		})
	}
}
