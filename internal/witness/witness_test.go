package witness

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/detect"
)

var signKey = ed25519.NewKeyFromSeed([]byte("witness-test-signing-seed-32-byt"))

func checkpoint(node string, seq uint64) audit.Checkpoint {
	c := audit.Checkpoint{Node: node, Seq: seq, Hash: audit.Genesis(node), Time: time.Date(2026, 1, 1, 0, 0, int(seq), 0, time.UTC), KeyVersion: 1}
	audit.SignCheckpoint(signKey, &c)
	return c
}

// receiver is a witness over HTTPS that records the bodies it accepts.
type receiver struct {
	srv    *httptest.Server
	caFile string
	secret string
	down   atomic.Bool
	mu     sync.Mutex
	bodies [][]byte
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	r := &receiver{secret: "s3cret"}
	r.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodGet {
			r.mu.Lock()
			var cps []json.RawMessage
			for _, b := range r.bodies {
				cps = append(cps, b)
			}
			r.mu.Unlock()
			_ = json.NewEncoder(w).Encode(map[string]any{"checkpoints": cps})
			return
		}
		body, _ := io.ReadAll(req.Body)
		if r.down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if !detect.VerifySignature(r.secret, body, req.Header.Get(detect.HeaderSignature)) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		r.mu.Lock()
		r.bodies = append(r.bodies, body)
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	r.caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(r.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.bodies)
}

var quiet = slog.New(slog.DiscardHandler)

// TestSinkDeliversSignedCheckpointsInOrder: over real HTTPS, each
// checkpoint is POSTed signed, in order, and Read gives back the newest of
// each node, whose Ed25519 signature still verifies.
func TestSinkDeliversSignedCheckpointsInOrder(t *testing.T) {
	r := newReceiver(t)
	s, err := New(Config{Target: r.srv.URL + "/w", Secret: r.secret, CAFile: r.caFile, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WriteBatch(context.Background(), []audit.Event{{ID: "n1:1"}}, []audit.Checkpoint{checkpoint("n1", 4), checkpoint("n2", 2)}); err != nil {
		t.Fatal(err)
	}
	s.Add(checkpoint("n1", 8))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if r.count() != 3 {
		t.Fatalf("the witness took %d checkpoints, want 3", r.count())
	}
	for _, b := range r.bodies {
		if strings.Contains(string(b), `"id"`) {
			t.Fatalf("an event went to the witness: %s", b)
		}
	}
	got, err := Read(context.Background(), r.srv.URL+"/w", r.caFile)
	if err != nil || len(got) != 2 || got[0].Node != "n1" || got[0].Seq != 8 || got[1].Seq != 2 {
		t.Fatalf("Read = %+v, %v", got, err)
	}
	if !audit.VerifyCheckpoint(signKey.Public().(ed25519.PublicKey), &got[0]) {
		t.Fatal("the checkpoint read back does not verify")
	}
}

// TestSinkLagFailsReadinessUntilDelivered: a witness that refuses makes
// Ready fail once a checkpoint waited past the maximum lag (measured on
// the injected clock), and pass again once the witness takes it.
func TestSinkLagFailsReadinessUntilDelivered(t *testing.T) {
	r := newReceiver(t)
	r.down.Store(true)
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	var failures atomic.Int64
	var lag atomic.Value
	s, err := New(Config{Target: r.srv.URL + "/w", Secret: r.secret, CAFile: r.caFile, Logger: quiet, MaxLag: time.Minute,
		Now:   func() time.Time { return time.Unix(0, now.Load()) },
		OnLag: func(v float64) { lag.Store(v) }, OnFailure: func() { failures.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Ready(context.Background()); err != nil {
		t.Fatalf("Ready with nothing waiting: %v", err)
	}
	s.Add(checkpoint("n1", 4))
	now.Add(int64(59 * time.Second))
	if err := s.Ready(context.Background()); err != nil {
		t.Fatalf("Ready within the lag: %v", err)
	}
	now.Add(int64(2 * time.Second))
	if err := s.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "audit.witness_max_lag") {
		t.Fatalf("Ready past the lag = %v", err)
	}
	if v, _ := lag.Load().(float64); v < 60 {
		t.Fatalf("lag reported %v", v)
	}
	for failures.Load() == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	r.down.Store(false)
	for s.Ready(context.Background()) != nil {
		time.Sleep(20 * time.Millisecond) // the retry is on its own backoff
	}
	if r.count() != 1 {
		t.Fatalf("the witness took %d checkpoints", r.count())
	}
}

// TestSinkRefusesAWrongSecretAndPlainHTTP: a witness that refuses the
// signature takes nothing; http:// and relative paths are refused.
func TestSinkRefusesAWrongSecretAndPlainHTTP(t *testing.T) {
	r := newReceiver(t)
	s, err := New(Config{Target: r.srv.URL, Secret: "not-the-secret", CAFile: r.caFile, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	s.Add(checkpoint("n1", 1))
	_ = s.Close()
	if r.count() != 0 {
		t.Fatal("a badly signed checkpoint was taken")
	}
	for _, target := range []string{"http://127.0.0.1:1/w", "witness.jsonl"} {
		if _, err := New(Config{Target: target, Secret: "x"}); err == nil {
			t.Errorf("New(%q) accepted", target)
		}
	}
}

// TestFileWitness appends one line per checkpoint (mode 0600) and reads
// back the newest per node, skipping a torn last line.
func TestFileWitness(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vol", "witness.jsonl")
	s, err := New(Config{Target: path, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	s.Add(checkpoint("n1", 4), checkpoint("n1", 8), checkpoint("n2", 3))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("witness file: %v %v", fi, err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`{"node":"n1","seq":99`)
	_ = f.Close()
	got, err := Read(context.Background(), path, "")
	if err != nil || len(got) != 2 || got[0].Seq != 8 || got[1].Node != "n2" {
		t.Fatalf("Read = %+v, %v", got, err)
	}
	if err := os.WriteFile(path, []byte("not json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(context.Background(), path, ""); err == nil {
		t.Fatal("a line that is not a checkpoint was accepted")
	}
}
