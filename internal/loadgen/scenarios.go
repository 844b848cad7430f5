package loadgen

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/cofferhq/coffer/client"
)

// Fixtures are the objects the scenarios name: made once per run by
// SetupCoffer or SetupVault.
type Fixtures struct {
	Collection string
	RecordID   string
	Key        string
	Ciphertext string
	// Batch is the number of items of the batch scenario.
	Batch int
}

// CofferScenarioNames are the scenarios of Coffer's own API, in the
// order `coffer bench` runs them by default.
func CofferScenarioNames() []string {
	return []string{"healthz", "read", "create", "tokenize", "encrypt", "decrypt", "batch"}
}

// VaultScenarioNames are the scenarios of the Vault transit API.
func VaultScenarioNames() []string { return []string{"encrypt", "decrypt", "batch"} }

// plaintext is the value every encrypt sends: 100 bytes, base64.
func plaintext() string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("x"), 100)) }

// recordData is the record the create scenario writes and SetupCoffer
// makes for the read scenario.
func recordData() map[string]any {
	return map[string]any{"name": "Ada Lovelace", "email": "ada@example.com"}
}

func suffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// SetupCoffer makes the fixtures of Coffer's scenarios through the SDK: a
// collection with one record, a transit key and one ciphertext of it.
// The names carry a random suffix so runs never collide.
func SetupCoffer(ctx context.Context, c *client.Client, batch int) (Fixtures, error) {
	f := Fixtures{Collection: "bench_" + suffix(), Key: "bench-" + suffix(), Batch: batch}
	err := c.CreateCollection(ctx, client.Collection{Name: f.Collection, Fields: []client.Field{
		{Name: "name", Type: "string"}, {Name: "email", Type: "email", Searchable: true}}})
	if err != nil {
		return f, fmt.Errorf("loadgen: create the collection: %w", err)
	}
	if f.RecordID, err = c.CreateRecord(ctx, f.Collection, client.NewRecord{Owner: "bench", Data: recordData()}); err != nil {
		return f, fmt.Errorf("loadgen: create the record: %w", err)
	}
	if _, err = c.CreateKey(ctx, f.Key, client.KeySpec{}); err != nil {
		return f, fmt.Errorf("loadgen: create the transit key: %w", err)
	}
	pt, _ := base64.StdEncoding.DecodeString(plaintext())
	if f.Ciphertext, err = c.Encrypt(ctx, f.Key, pt, nil); err != nil {
		return f, fmt.Errorf("loadgen: encrypt: %w", err)
	}
	return f, nil
}

func jsonHeader() http.Header { return http.Header{"Content-Type": {"application/json"}} }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only maps of strings: cannot fail
	}
	return b
}

func batchBody(n int) []byte {
	items := make([]map[string]string, n)
	for i := range items {
		items[i] = map[string]string{"plaintext": plaintext()}
	}
	return mustJSON(map[string]any{"batch_input": items})
}

// CofferScenarios returns the named scenarios of Coffer's own API (see
// CofferScenarioNames) on f's objects.
func CofferScenarios(f Fixtures, names []string) ([]Scenario, error) {
	keys := "/v1/keys/" + f.Key
	var out []Scenario
	for _, n := range names {
		var s Scenario
		switch n {
		case "healthz":
			s = Scenario{Request: Request{Method: http.MethodGet, Path: "/healthz"}}
		case "read":
			s = Scenario{Request: Request{Method: http.MethodGet, Path: "/v1/collections/" + f.Collection + "/records/" + f.RecordID}}
		case "create":
			s = Scenario{Request: Request{Method: http.MethodPost, Path: "/v1/collections/" + f.Collection + "/records",
				Body: mustJSON(map[string]any{"owner": "bench", "data": recordData()}), Header: jsonHeader()}}
		case "tokenize":
			s = Scenario{Request: Request{Method: http.MethodPost, Path: "/v1/tokenize",
				Body: mustJSON(map[string]any{"items": []map[string]string{{"value": "ada@example.com", "type": "email"}}}), Header: jsonHeader()}}
		case "encrypt":
			s = Scenario{Request: Request{Method: http.MethodPost, Path: keys + "/encrypt",
				Body: mustJSON(map[string]string{"plaintext": plaintext()}), Header: jsonHeader()}}
		case "decrypt":
			s = Scenario{Request: Request{Method: http.MethodPost, Path: keys + "/decrypt",
				Body: mustJSON(map[string]string{"ciphertext": f.Ciphertext}), Header: jsonHeader()}}
		case "batch":
			s = Scenario{Items: f.Batch, Request: Request{Method: http.MethodPost, Path: keys + "/encrypt", Body: batchBody(f.Batch), Header: jsonHeader()}}
		default:
			return nil, fmt.Errorf("loadgen: scenario %q: one of %s", n, strings.Join(CofferScenarioNames(), ", "))
		}
		s.Name = n
		if s.Items == 0 {
			s.Items = 1
		}
		out = append(out, s)
	}
	return out, nil
}

// SetupVault makes the fixtures of the Vault transit scenarios through
// the Vault transit API at base (HashiCorp Vault, or Coffer's
// compatibility surface): a transit key with a random suffix and one
// ciphertext of it. auth holds the credential (X-Vault-Token).
func SetupVault(ctx context.Context, hc *http.Client, base string, auth http.Header, batch int) (Fixtures, error) {
	f := Fixtures{Key: "bench-" + suffix(), Batch: batch}
	base = strings.TrimRight(base, "/") + "/v1/transit"
	if _, err := vaultCall(ctx, hc, base+"/keys/"+f.Key, auth, nil); err != nil {
		return f, fmt.Errorf("loadgen: create the transit key: %w", err)
	}
	b, err := vaultCall(ctx, hc, base+"/encrypt/"+f.Key, auth, mustJSON(map[string]string{"plaintext": plaintext()}))
	if err != nil {
		return f, fmt.Errorf("loadgen: encrypt: %w", err)
	}
	var out struct {
		Data struct {
			Ciphertext string `json:"ciphertext"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.Data.Ciphertext == "" {
		return f, fmt.Errorf("loadgen: encrypt: no data.ciphertext in the answer (%v)", err)
	}
	f.Ciphertext = out.Data.Ciphertext
	return f, nil
}

func vaultCall(ctx context.Context, hc *http.Client, url string, auth http.Header, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range auth {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("POST %s: status %d", req.URL.Path, resp.StatusCode)
	}
	return b, nil
}

// VaultScenarios returns the named scenarios of the Vault transit API
// (see VaultScenarioNames) on f's key.
func VaultScenarios(f Fixtures, names []string) ([]Scenario, error) {
	base := "/v1/transit"
	var out []Scenario
	for _, n := range names {
		var s Scenario
		switch n {
		case "encrypt":
			s = Scenario{Request: Request{Method: http.MethodPost, Path: base + "/encrypt/" + f.Key,
				Body: mustJSON(map[string]string{"plaintext": plaintext()}), Header: jsonHeader()}}
		case "decrypt":
			s = Scenario{Request: Request{Method: http.MethodPost, Path: base + "/decrypt/" + f.Key,
				Body: mustJSON(map[string]string{"ciphertext": f.Ciphertext}), Header: jsonHeader()}}
		case "batch":
			s = Scenario{Items: f.Batch, Request: Request{Method: http.MethodPost, Path: base + "/encrypt/" + f.Key,
				Body: batchBody(f.Batch), Header: jsonHeader()}}
		default:
			return nil, fmt.Errorf("loadgen: Vault transit scenario %q: one of %s", n, strings.Join(VaultScenarioNames(), ", "))
		}
		s.Name = n
		if s.Items == 0 {
			s.Items = 1
		}
		out = append(out, s)
	}
	return out, nil
}
