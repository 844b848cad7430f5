package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/config"
)

// The examples run against a live Coffer (SQLite, real HTTPS) that TestMain
// starts; these are its URL, CA certificate and admin client.
var serverURL, caFile, clientID, clientSecret string

func TestMain(m *testing.M) {
	os.Exit(serveForExamples(m))
}

func serveForExamples(m *testing.M) int {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "coffer-client-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "data")
	res, err := app.Init(ctx, app.InitOptions{DataDir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		log.Fatal(err)
	}
	cfg, err := config.Load(dir, nil)
	if err != nil {
		log.Fatal(err)
	}
	srv, err := app.Open(ctx, cfg, app.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	serverURL, caFile, clientID, clientSecret = "https://"+ln.Addr().String(), res.CACert, res.ClientID, res.ClientSecret
	return m.Run()
}

// admin returns a client of the bootstrap admin.
func admin() *client.Client {
	c, err := client.New(serverURL, client.WithCAFile(caFile), client.WithClientCredentials(clientID, clientSecret))
	if err != nil {
		log.Fatal(err)
	}
	return c
}

func Example() {
	ctx := context.Background()
	c, err := client.New(serverURL, // e.g. https://127.0.0.1:8443
		client.WithCAFile(caFile), // Coffer's CA, DATA_DIR/tls/ca.pem
		client.WithClientCredentials(clientID, clientSecret))
	if err != nil {
		log.Fatal(err)
	}
	err = c.CreateCollection(ctx, client.Collection{Name: "customers", Fields: []client.Field{
		{Name: "name", Type: "string"},
		{Name: "email", Type: "email", Searchable: true},
		{Name: "card_number", Type: "card_number"},
	}})
	if err != nil {
		log.Fatal(err)
	}
	id, err := c.CreateRecord(ctx, "customers", client.NewRecord{Owner: "user-1", Data: map[string]any{
		"name": "Ada Lovelace", "email": "ada@example.com", "card_number": "4111 1111 1111 1111"}})
	if err != nil {
		log.Fatal(err)
	}
	r, err := c.GetRecord(ctx, "customers", id)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.Owner, r.Data["name"], r.Data["email"])
	// Output: user-1 Ada Lovelace ada@example.com
}

func ExampleClient_Search() {
	ctx := context.Background()
	c := admin()
	_ = c.CreateCollection(ctx, client.Collection{Name: "members", Fields: []client.Field{{Name: "email", Type: "email", Searchable: true}}})
	if _, err := c.CreateRecord(ctx, "members", client.NewRecord{Data: map[string]any{"email": "grace@example.com"}}); err != nil {
		log.Fatal(err)
	}
	// Exact match on a blind index: the server decrypts nothing to match.
	recs, err := c.Search(ctx, "members", map[string]any{"email": "GRACE@example.com"}, 10)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(recs), recs[0].Data["email"])
	// Output: 1 grace@example.com
}

func ExampleClient_Tokenize() {
	ctx := context.Background()
	c := admin()
	toks, err := c.Tokenize(ctx, []client.TokenItem{{Value: "4111111111111111", Type: "card_number", Mode: "format_preserving"}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(toks[0]), strings.HasSuffix(toks[0], "1111"))
	vals, err := c.Detokenize(ctx, toks)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(vals[0])
	// Output:
	// 16 true
	// 4111111111111111
}

func ExampleClient_Encrypt() {
	ctx := context.Background()
	c := admin()
	if _, err := c.CreateKey(ctx, "payments", client.KeySpec{}); err != nil {
		log.Fatal(err)
	}
	ct, err := c.Encrypt(ctx, "payments", []byte("iban DE89 3704 0044 0532 0130 00"), nil)
	if err != nil {
		log.Fatal(err)
	}
	pt, err := c.Decrypt(ctx, "payments", ct, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(strings.HasPrefix(ct, "coffer:v1:"), string(pt))
	k, err := c.RotateKey(ctx, "payments")
	if err != nil {
		log.Fatal(err)
	}
	ct2, err := c.Rewrap(ctx, "payments", ct, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(k.LatestVersion, strings.HasPrefix(ct2, "coffer:v2:"))
	// Output:
	// true iban DE89 3704 0044 0532 0130 00
	// 2 true
}

func ExampleClient_EncryptBatch() {
	ctx := context.Background()
	c := admin()
	if _, err := c.CreateKey(ctx, "batch", client.KeySpec{}); err != nil {
		log.Fatal(err)
	}
	res, err := c.EncryptBatch(ctx, "batch", []client.BatchItem{{Plaintext: []byte("a"), Reference: "1"}, {Plaintext: []byte("b"), Reference: "2"}})
	if err != nil {
		log.Fatal(err)
	}
	// The second ciphertext is altered: it fails alone.
	altered := []byte(res[1].Ciphertext)
	i := len(altered) - 8
	if altered[i] == 'A' {
		altered[i] = 'B'
	} else {
		altered[i] = 'A'
	}
	items := []client.BatchItem{{Ciphertext: res[0].Ciphertext}, {Ciphertext: string(altered)}}
	out, err := c.DecryptBatch(ctx, "batch", items)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s %q\n", out[0].Plaintext, out[1].Error)
	// Output: a "ciphertext cannot be decrypted"
}

func ExampleClient_GetKey() {
	ctx := context.Background()
	c := admin()
	if _, err := c.CreateKey(ctx, "session", client.KeySpec{Deletable: true}); err != nil {
		log.Fatal(err)
	}
	min := uint32(1)
	if _, err := c.ConfigureKey(ctx, "session", client.KeyConfig{MinDecryptionVersion: &min}); err != nil {
		log.Fatal(err)
	}
	k, err := c.GetKey(ctx, "session")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(k.Name, k.LatestVersion, k.Deletable, k.Exportable)
	fmt.Println(c.DeleteKey(ctx, "session"))
	// Output:
	// session 1 true false
	// <nil>
}

func ExampleClient_PutPolicy() {
	ctx := context.Background()
	c := admin()
	doc := []byte(`roles:
  admin:
    - resources: ["*"]
      actions: ["*"]
  support:
    - resources: [collections/customers]
      actions: [read, search]
      fields: {email: masked, card_number: deny, "*": plain}
`)
	if err := c.PutPolicy(ctx, doc, "yaml"); err != nil {
		log.Fatal(err)
	}
	d, err := c.CheckPolicy(ctx, client.PolicyCheck{Action: "read", Resource: "collections/customers",
		Principal: client.PolicyPrincipal{ID: "agent-7", Kind: "user", Roles: []string{"support"}},
		Fields:    []string{"email", "card_number", "name"}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(d.Allowed, d.Fields["email"], d.Fields["card_number"], d.Fields["name"])
	got, err := c.GetPolicy(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(got) == string(doc))
	// A policy that does not compile is refused with every problem listed.
	err = c.PutPolicy(ctx, []byte(`{"roles":{"x":[{"resources":["*"],"actions":["fly"]}]}}`), "json")
	fmt.Println(client.StatusCode(err))
	// Output:
	// true masked deny plain
	// true
	// 422
}

func ExampleClient_CreateClient() {
	ctx := context.Background()
	c := admin()
	nc, err := c.CreateClient(ctx, "billing", []string{"admin"}, map[string]string{"team": "billing"})
	if err != nil {
		log.Fatal(err)
	}
	// The new client works with its secret, shown only here.
	billing, err := client.New(serverURL, client.WithCAFile(caFile), client.WithClientCredentials(nc.ClientID, nc.ClientSecret))
	if err != nil {
		log.Fatal(err)
	}
	tok, err := billing.Token(ctx)
	if err != nil {
		log.Fatal(err)
	}
	in, err := c.Introspect(ctx, tok)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(in.Active, in.ClientID == nc.ClientID)
	rotated, err := c.RotateClientSecret(ctx, nc.ClientID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(rotated.ClientSecret != nc.ClientSecret)
	if err := c.Revoke(ctx, tok); err != nil {
		log.Fatal(err)
	}
	in, _ = c.Introspect(ctx, tok)
	fmt.Println(in.Active)
	list, err := c.ListClients(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(list) >= 2, c.DeleteClient(ctx, nc.ClientID))
	// Output:
	// true true
	// true
	// false
	// true <nil>
}

func ExampleClient_Login() {
	ctx := context.Background()
	c := admin()
	u, err := c.CreateUser(ctx, "ada", "correct horse battery staple", []string{"admin"}, nil)
	if err != nil {
		log.Fatal(err)
	}
	anon, err := client.New(serverURL, client.WithCAFile(caFile))
	if err != nil {
		log.Fatal(err)
	}
	res, err := anon.Login(ctx, "ada", "correct horse battery staple")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(u.Username, res.MFARequired, res.Token.TokenType)
	// The signed-in user starts TOTP enrolment with their own token.
	ada, err := client.New(serverURL, client.WithCAFile(caFile), client.WithToken(res.Token.AccessToken))
	if err != nil {
		log.Fatal(err)
	}
	en, err := ada.StartTOTP(ctx, "")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(strings.HasPrefix(en.OTPAuthURL, "otpauth://totp/"), len(en.RecoveryCodes))
	_, err = anon.Login(ctx, "ada", "wrong")
	fmt.Println(client.StatusCode(err))
	// Output:
	// ada false Bearer
	// true 10
	// 401
}

func ExampleClient_EraseSubjectCount() {
	ctx := context.Background()
	c := admin()
	_ = c.CreateCollection(ctx, client.Collection{Name: "patients", Fields: []client.Field{{Name: "name", Type: "string"}}})
	id, err := c.CreateRecord(ctx, "patients", client.NewRecord{Subject: "patient-42", Data: map[string]any{"name": "Mary"}})
	if err != nil {
		log.Fatal(err)
	}
	e, err := c.EraseSubjectCount(ctx, "patient-42")
	if err != nil {
		log.Fatal(err)
	}
	_, err = c.GetRecord(ctx, "patients", id)
	fmt.Println(e.SubjectErased, e.RecordsDeleted, client.StatusCode(err))
	// Output: true 1 404
}

func ExampleClient_Redact() {
	ctx := context.Background()
	c := admin()
	text := "card 4111 1111 1111 1111, mail ada@example.com"
	f, err := c.Inspect(ctx, text)
	if err != nil {
		log.Fatal(err)
	}
	for _, x := range f {
		fmt.Println(x.Type, text[x.Start:x.End] != "")
	}
	red, err := c.Redact(ctx, text, "placeholder")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(strings.Contains(red, "4111"), strings.Contains(red, "ada@"))
	// Unordered output:
	// card_number true
	// email true
	// false false
}

func ExampleClient_AuditEvents() {
	ctx := context.Background()
	c := admin()
	if _, err := c.ListCollections(ctx); err != nil {
		log.Fatal(err)
	}
	page, err := c.AuditEvents(ctx, client.AuditFilter{Action: "read", Limit: 1})
	if err != nil {
		log.Fatal(err)
	}
	e := page.Events[0]
	fmt.Println(len(page.Events), e.Principal == clientID, len(e.Hash), page.Next != "")
	sec, err := c.SecurityEvents(ctx, time.Now().Add(-time.Hour), "auth.bruteforce")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(sec))
	// Output:
	// 1 true 64 true
	// 0
}

func ExampleClient_RotateCofferKey() {
	ctx := context.Background()
	c := admin()
	_ = c.CreateCollection(ctx, client.Collection{Name: "orders", Fields: []client.Field{{Name: "ref", Type: "string"}}})
	// A collection's data key is made with its first value.
	if _, err := c.CreateRecord(ctx, "orders", client.NewRecord{Data: map[string]any{"ref": "A-1"}}); err != nil {
		log.Fatal(err)
	}
	r, err := c.RotateCofferKey(ctx, "collection/orders")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.KeyID, r.Version, r.RewrapScheduled)
	// The current version cannot be retired.
	_, err = c.RetireKeyVersion(ctx, "collection/orders", 2)
	fmt.Println(client.StatusCode(err))
	// Output:
	// collection/orders 2 true
	// 409
}

func ExampleClient_Metadata() {
	ctx := context.Background()
	c := admin()
	md, err := c.Metadata(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(strings.TrimPrefix(md.TokenEndpoint, md.Issuer), strings.TrimPrefix(md.IntrospectionEndpoint, md.Issuer))
	jwks, err := c.JWKS(ctx)
	if err != nil {
		log.Fatal(err)
	}
	doc, err := c.OpenAPI(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(strings.Contains(string(jwks), `"keys"`), strings.Contains(string(doc), `"openapi"`))
	fmt.Println(c.Health(ctx), c.Ready(ctx))
	// Output:
	// /v1/oauth/token /v1/oauth/introspect
	// true true
	// <nil> <nil>
}

func ExampleStatusCode() {
	ctx := context.Background()
	c := admin()
	_, err := c.GetRecord(ctx, "customers", "no-such-record")
	var e *client.Error
	fmt.Println(client.StatusCode(err), errors.As(err, &e) && e.Type != "")
	// Output: 404 true
}
