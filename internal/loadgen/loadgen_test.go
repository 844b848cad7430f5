package loadgen_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/loadgen"
	"github.com/cofferhq/coffer/internal/testserver"
)

// bearer is the Auth of a Coffer token.
func bearer(tok string) func(context.Context) (http.Header, error) {
	return func(context.Context) (http.Header, error) {
		return http.Header{"Authorization": {"Bearer " + tok}}, nil
	}
}

// roundTrip encodes rep as JSON and decodes it back, as a reader of
// `coffer bench -o json` would.
func roundTrip(t *testing.T, rep *loadgen.Report) loadgen.Report {
	t.Helper()
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var out loadgen.Report
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func sane(t *testing.T, s loadgen.Summary) {
	t.Helper()
	if s.Requests == 0 || s.ReqPerSec <= 0 {
		t.Errorf("%s c=%d: no requests answered: %+v", s.Scenario, s.Concurrency, s)
	}
	if !(s.P50ms > 0 && s.P50ms <= s.P90ms && s.P90ms <= s.P99ms && s.P99ms <= s.MaxMs) {
		t.Errorf("%s c=%d: percentiles out of order: %+v", s.Scenario, s.Concurrency, s)
	}
	if len(s.Errors) != 0 {
		t.Errorf("%s c=%d: errors %v", s.Scenario, s.Concurrency, s.Errors)
	}
}

// TestBenchAgainstServer drives every scenario of both surfaces (Coffer's
// API and its Vault transit surface) against a real server on each
// backend, and checks the report, its JSON and its plot.
func TestBenchAgainstServer(t *testing.T) {
	testserver.ForEachBackend(t, testserver.Options{Env: []string{"COFFER_LIMITS_RATE_LIMIT=0"}}, func(t *testing.T, s *testserver.Server) {
		ctx := context.Background()
		admin := s.Client(s.Init.ClientID, s.Init.ClientSecret)
		f, err := loadgen.SetupCoffer(ctx, admin, 10)
		if err != nil {
			t.Fatal(err)
		}
		scs, err := loadgen.CofferScenarios(f, loadgen.CofferScenarioNames())
		if err != nil {
			t.Fatal(err)
		}
		tok := s.Token(s.Init.ClientID, s.Init.ClientSecret)
		tlsc := &tls.Config{RootCAs: s.CAPool, MinVersion: tls.VersionTLS12}
		var progress []loadgen.Status
		rep, err := loadgen.Run(ctx, loadgen.Config{BaseURL: s.URL, TLS: tlsc, Scenarios: scs, Concurrency: []int{1, 4},
			Duration: 150 * time.Millisecond, Rounds: 2, Auth: bearer(tok),
			Progress: func(st loadgen.Status) { progress = append(progress, st) }})
		if err != nil {
			t.Fatal(err)
		}
		got := roundTrip(t, rep)
		if len(got.Runs) != 2*2*7 || len(got.Summary) != 2*7 {
			t.Fatalf("%d runs, %d summaries; want 28 and 14", len(got.Runs), len(got.Summary))
		}
		for _, sm := range got.Summary {
			sane(t, sm)
			if sm.Rounds != 2 {
				t.Errorf("%s: %d rounds", sm.Scenario, sm.Rounds)
			}
			want := sm.ReqPerSec
			if sm.Scenario == "batch" {
				want *= 10
			}
			if d := sm.ItemsPerSec - want; d > 1e-6*want || d < -1e-6*want {
				t.Errorf("%s: %v items/s at %v req/s", sm.Scenario, sm.ItemsPerSec, sm.ReqPerSec)
			}
		}
		// Rounds are interleaved: the first scenario of a step rotates.
		if got.Runs[0].Scenario == got.Runs[7].Scenario {
			t.Errorf("the order did not rotate: %s then %s", got.Runs[0].Scenario, got.Runs[7].Scenario)
		}
		done := 0
		for _, p := range progress {
			if p.Done {
				done++
			}
		}
		if done != 28 || progress[len(progress)-1].Step != 28 || progress[len(progress)-1].Steps != 28 {
			t.Errorf("progress: %d steps done, last %+v", done, progress[len(progress)-1])
		}
		checkSVG(t, rep, 7)

		// The Vault transit surface, with Coffer's token as X-Vault-Token.
		vauth := http.Header{"X-Vault-Token": {tok}}
		vf, err := loadgen.SetupVault(ctx, &http.Client{Transport: &http.Transport{TLSClientConfig: tlsc}}, s.URL, vauth, 10)
		if err != nil {
			t.Fatal(err)
		}
		vscs, err := loadgen.VaultScenarios(vf, loadgen.VaultScenarioNames())
		if err != nil {
			t.Fatal(err)
		}
		vrep, err := loadgen.Run(ctx, loadgen.Config{BaseURL: s.URL, TLS: tlsc, Scenarios: vscs, Concurrency: []int{2},
			Duration: 150 * time.Millisecond, Rounds: 1,
			Auth: func(context.Context) (http.Header, error) { return vauth, nil }})
		if err != nil {
			t.Fatal(err)
		}
		for _, sm := range roundTrip(t, vrep).Summary {
			sane(t, sm)
		}
	})
}

// TestBenchCountsErrors: answers that are not 2xx are counted by status
// and never as throughput; requests that get no answer count as transport
// errors.
func TestBenchCountsErrors(t *testing.T) {
	testserver.ForEachBackend(t, testserver.Options{Env: []string{"COFFER_LIMITS_RATE_LIMIT=0"}}, func(t *testing.T, s *testserver.Server) {
		ctx := context.Background()
		tok := s.Token(s.Init.ClientID, s.Init.ClientSecret)
		tlsc := &tls.Config{RootCAs: s.CAPool, MinVersion: tls.VersionTLS12}
		scs := []loadgen.Scenario{
			{Name: "missing", Items: 1, Request: loadgen.Request{Method: http.MethodGet, Path: "/v1/keys/no-such-key"}},
			{Name: "healthz", Items: 1, Request: loadgen.Request{Method: http.MethodGet, Path: "/healthz"}},
		}
		run := func(auth func(context.Context) (http.Header, error), base string) map[string]loadgen.Summary {
			rep, err := loadgen.Run(ctx, loadgen.Config{BaseURL: base, TLS: tlsc, Scenarios: scs, Concurrency: []int{3},
				Duration: 150 * time.Millisecond, Rounds: 1, Auth: auth})
			if err != nil {
				t.Fatal(err)
			}
			out := map[string]loadgen.Summary{}
			for _, sm := range roundTrip(t, rep).Summary {
				out[sm.Scenario] = sm
			}
			return out
		}
		got := run(bearer(tok), s.URL)
		if m := got["missing"]; m.Requests == 0 || m.Errors["404"] != m.Requests || m.ReqPerSec != 0 || len(m.Errors) != 1 {
			t.Errorf("missing key: %+v; want every request counted as a 404 and no throughput", m)
		}
		if h := got["healthz"]; h.Requests == 0 || len(h.Errors) != 0 || h.ReqPerSec == 0 {
			t.Errorf("healthz: %+v", h)
		}
		// No credential: 401 on the API, /healthz still answers.
		got = run(nil, s.URL)
		if m := got["missing"]; m.Requests == 0 || m.Errors["401"] != m.Requests || m.ReqPerSec != 0 {
			t.Errorf("no credential: %+v; want every request counted as a 401", m)
		}
		// A port nothing listens on: every attempt is a transport error.
		s.Stop()
		got = run(bearer(tok), s.URL)
		if h := got["healthz"]; h.Requests == 0 || h.Errors["transport"] != h.Requests || h.ReqPerSec != 0 {
			t.Errorf("server down: %+v; want transport errors only", h)
		}
	})
}

// TestRunRejectsBadConfig: a run that cannot measure anything says so.
func TestRunRejectsBadConfig(t *testing.T) {
	sc := []loadgen.Scenario{{Name: "x", Request: loadgen.Request{Method: "GET", Path: "/"}}}
	for name, cfg := range map[string]loadgen.Config{
		"no url":         {Scenarios: sc, Concurrency: []int{1}, Duration: time.Second, Rounds: 1},
		"no scenario":    {BaseURL: "https://x", Concurrency: []int{1}, Duration: time.Second, Rounds: 1},
		"zero workers":   {BaseURL: "https://x", Scenarios: sc, Concurrency: []int{0}, Duration: time.Second, Rounds: 1},
		"no duration":    {BaseURL: "https://x", Scenarios: sc, Concurrency: []int{1}, Rounds: 1},
		"no round":       {BaseURL: "https://x", Scenarios: sc, Concurrency: []int{1}, Duration: time.Second},
		"no concurrency": {BaseURL: "https://x", Scenarios: sc, Duration: time.Second, Rounds: 1},
	} {
		if _, err := loadgen.Run(context.Background(), cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := loadgen.CofferScenarios(loadgen.Fixtures{}, []string{"read", "nope"}); err == nil {
		t.Error("an unknown scenario was accepted")
	}
}

// checkSVG: the plot is well-formed XML with one line per scenario in each
// of its two panels and the scenarios named in the legend.
func checkSVG(t *testing.T, rep *loadgen.Report, scenarios int) {
	t.Helper()
	var buf bytes.Buffer
	if err := loadgen.WriteSVG(&buf, rep); err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(bytes.NewReader(buf.Bytes()))
	lines, root := 0, ""
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
			}
			if se.Name.Local == "polyline" {
				lines++
			}
		}
	}
	if root != "svg" || lines != 2*scenarios {
		t.Errorf("SVG root %q with %d polylines; want svg and %d", root, lines, 2*scenarios)
	}
	for _, n := range rep.Scenarios {
		if !strings.Contains(buf.String(), ">"+n+"</text>") {
			t.Errorf("legend lacks %q", n)
		}
	}
	if buf.Len() > 64<<10 {
		t.Errorf("SVG of %d bytes: meant to be small", buf.Len())
	}
}
