package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cofferhq/coffer/client"
)

// coffer is a real Coffer deployment served for one test.
type coffer struct {
	url, caFile, adminID, adminSecret string
}

// startCoffer runs `coffer init` and `coffer serve` on a free port, with
// $COFFER_BIN or a binary built from this repository, and stops it with
// the test.
func startCoffer(t *testing.T) coffer {
	t.Helper()
	bin := os.Getenv("COFFER_BIN")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "coffer")
		build := exec.Command("go", "build", "-o", bin, "./cmd/coffer")
		build.Dir = filepath.Join("..", "..")
		build.Env = append(os.Environ(), "GOFLAGS=-mod=readonly")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build coffer: %v\n%s", err, out)
		}
	}
	dir := filepath.Join(t.TempDir(), "data")
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")} // no caller COFFER_* settings
	initCmd := exec.Command(bin, "init", "--data-dir", dir, "--json")
	initCmd.Env = env
	out, err := initCmd.Output()
	if err != nil {
		t.Fatalf("coffer init: %v", err)
	}
	var info struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
		CACert       string `json:"ca_cert"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatalf("coffer init --json: %v", err)
	}
	serve := exec.Command(bin, "serve", "--data-dir", dir, "--listen", "127.0.0.1:0", "--metrics-listen", "localhost:0") // two free ports (equal addresses are refused)
	serve.Env = env
	logs, err := serve.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = serve.Process.Signal(os.Interrupt)
		_ = serve.Wait()
	})
	// The server logs one JSON line "coffer serving" with its URL once it
	// listens.
	var url string
	sc := bufio.NewScanner(logs)
	var seen strings.Builder
	for sc.Scan() {
		seen.WriteString(sc.Text() + "\n")
		var line struct {
			Msg string `json:"msg"`
			URL string `json:"url"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "coffer serving" {
			url = line.URL
			break
		}
	}
	if url == "" {
		t.Fatalf("coffer serve did not start:\n%s", seen.String())
	}
	go func() { _, _ = io.Copy(io.Discard, logs) }()
	return coffer{url: url, caFile: info.CACert, adminID: info.ClientID, adminSecret: info.ClientSecret}
}

// syncBuffer is a log sink safe for the handlers' goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestShop runs the shop against a real Coffer: an operator creates the
// collection, puts policy.yaml in force and makes the shop's client; the
// shop then stores, reads, finds and charges a customer through its API,
// holding only a record id and a token, and its logs never show the card
// or the email.
func TestShop(t *testing.T) {
	srv := startCoffer(t)
	ctx := context.Background()
	admin, err := client.New(srv.url, client.WithCAFile(srv.caFile), client.WithClientCredentials(srv.adminID, srv.adminSecret))
	if err != nil {
		t.Fatal(err)
	}
	if err := New(admin, NewLogger(io.Discard)).Setup(ctx); err != nil {
		t.Fatal(err)
	}
	shopPolicy, err := os.ReadFile("policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc := append([]byte("roles:\n  admin:\n    - resources: [\"*\"]\n      actions: [\"*\"]\n"),
		bytes.TrimPrefix(shopPolicy[bytes.Index(shopPolicy, []byte("roles:\n")):], []byte("roles:\n"))...)
	if err := admin.PutPolicy(ctx, doc, "yaml"); err != nil {
		t.Fatalf("put policy: %v\n%s", err, doc)
	}
	creds, err := admin.CreateClient(ctx, "shop", []string{"shop"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	shopClient, err := client.New(srv.url, client.WithCAFile(srv.caFile), client.WithClientCredentials(creds.ClientID, creds.ClientSecret))
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	shop := New(shopClient, NewLogger(&logs))
	api := httptest.NewServer(shop.Handler())
	defer api.Close()

	// The shop's own client may not change the schema.
	if err := shop.coffer.CreateCollection(ctx, client.Collection{Name: "other", Fields: Schema.Fields}); client.StatusCode(err) != http.StatusForbidden {
		t.Fatalf("the shop's client created a collection: %v", err)
	}

	body := `{"name":"Ada Lovelace","email":"ada@example.com","phone":"+14155550123","address":"12 St James's Square","card":"4111 1111 1111 1111"}`
	res, err := http.Post(api.URL+"/customers", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var created struct{ ID string }
	_ = json.NewDecoder(res.Body).Decode(&created)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated || created.ID == "" {
		t.Fatalf("POST /customers: %d %+v\n%s", res.StatusCode, created, logs.String())
	}
	// The shop holds a reference and a token, never the values.
	acc := shop.accounts[created.ID]
	if acc.RecordID != created.ID || acc.CardToken == "" || strings.ReplaceAll(acc.CardToken, " ", "") == "4111111111111111" {
		t.Fatalf("the shop keeps %+v", acc)
	}

	var got Customer
	res, err = http.Get(api.URL + "/customers/" + created.ID)
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(res.Body).Decode(&got)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || got.Name != "Ada Lovelace" || got.Email != "ada@example.com" || got.CardLast4 != "1111" {
		t.Fatalf("GET /customers/{id}: %d %+v", res.StatusCode, got)
	}
	if got.Phone == "" || got.Phone == "+14155550123" || !strings.HasSuffix(got.Phone, "23") {
		t.Fatalf("the policy shows the phone masked to the shop, got %q", got.Phone)
	}

	res, err = http.Get(api.URL + "/customers?email=ADA@example.com")
	if err != nil {
		t.Fatal(err)
	}
	var found struct{ IDs []string }
	_ = json.NewDecoder(res.Body).Decode(&found)
	res.Body.Close()
	if len(found.IDs) != 1 || found.IDs[0] != created.ID {
		t.Fatalf("search by email: %d %+v", res.StatusCode, found)
	}

	res, err = http.Post(api.URL+"/customers/"+created.ID+"/charge", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent {
		t.Fatalf("charge: %d\n%s", res.StatusCode, logs.String())
	}

	res, err = http.Get(api.URL + "/customers/nope")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("an unknown customer: %d", res.StatusCode)
	}

	out := logs.String()
	for _, want := range []string{`"msg":"customer added"`, `"msg":"charging card"`, "1111"} {
		if !strings.Contains(out, want) {
			t.Fatalf("the logs lack %q:\n%s", want, out)
		}
	}
	for _, secret := range []string{"4111 1111 1111 1111", "4111111111111111", "ada@example.com"} {
		if strings.Contains(out, secret) {
			t.Fatalf("the logs show %q:\n%s", secret, out)
		}
	}
}
