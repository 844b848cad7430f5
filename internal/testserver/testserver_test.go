package testserver

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// TestServer: a deployment on each backend serves over HTTPS with its own
// CA, applies the policy it was given, reads the settings and the clock it
// was given, restarts on the same data, and a peer serves the same data.
func TestServer(t *testing.T) {
	const policy = "roles:\n  admin:\n    - resources: [\"*\"]\n      actions: [\"*\"]\n  reader:\n    - resources: [\"collections/c\"]\n      actions: [read]\n"
	ForEachBackend(t, Options{Policy: policy, Settings: map[string]string{"limits.max_batch_items": "7"}},
		func(t *testing.T, s *Server) {
			ctx := context.Background()
			get := func(s *Server, path string) (int, string) {
				t.Helper()
				req, _ := http.NewRequest("GET", s.URL+path, nil)
				req.Header.Set("Authorization", "Bearer "+s.Token(s.Init.ClientID, s.Init.ClientSecret))
				resp, err := s.HTTP.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			if st, body := get(s, "/v1/policy"); st != 200 || !strings.Contains(body, "reader") {
				t.Fatalf("policy: %d %s", st, body)
			}
			if got := s.Config().Limits.MaxBatchItems; got != 7 {
				t.Fatalf("settings: max_batch_items = %d", got)
			}
			if err := s.Admin.CreateCollection(ctx, client.Collection{Name: "c", Fields: []client.Field{{Name: "f", Type: "string"}}}); err != nil {
				t.Fatal(err)
			}
			s.Clock.Advance(time.Hour)
			if d := time.Until(s.Clock.Now()); d < 59*time.Minute {
				t.Fatalf("clock: %v ahead", d)
			}
			old := s.URL
			s.Restart()
			if s.URL == old {
				t.Fatalf("restart kept the port")
			}
			if st, body := get(s, "/v1/collections"); st != 200 || !strings.Contains(body, `"c"`) {
				t.Fatalf("after restart: %d %s", st, body)
			}
			p := s.Peer("COFFER_NODE=peer")
			p.Serve("127.0.0.1:0")
			if st, body := get(p, "/v1/collections"); st != 200 || !strings.Contains(body, `"c"`) {
				t.Fatalf("peer: %d %s", st, body)
			}
		})
}

// TestSealed: with shares, the server starts sealed and init hands out the
// shares.
func TestSealed(t *testing.T) {
	s := Start(t, storetest.Backends()[0], Options{Init: app.InitOptions{Shares: 3, Threshold: 2}})
	if len(s.Init.UnsealShares) != 3 {
		t.Fatalf("%d shares", len(s.Init.UnsealShares))
	}
	resp, err := s.HTTP.Get(s.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("readyz while sealed: %d", resp.StatusCode)
	}
}
