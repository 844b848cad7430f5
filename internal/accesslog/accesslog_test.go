package accesslog

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/detect"
	"github.com/cofferhq/coffer/internal/metrics"
)

// The one rule: what counts as a failed authentication, for the
// detectors and the metrics alike.
func TestAuthFailure(t *testing.T) {
	for _, c := range []struct {
		name string
		a    coffer.Access
		want bool
	}{
		{"a 401", coffer.Access{Status: 401, Note: coffer.AccessNote{Action: "read"}}, true},
		{"refused credentials answered 403 (Vault dialect)", coffer.Access{Status: 403, AuthFailed: true}, true},
		{"a login refused while locked out", coffer.Access{Status: 429, Note: coffer.AccessNote{Action: "login"}}, true},
		{"a token request refused while locked out", coffer.Access{Status: 429, Note: coffer.AccessNote{Action: "token"}}, true},
		{"a rate-limited read", coffer.Access{Status: 429, Note: coffer.AccessNote{Action: "read"}}, false},
		{"a denied read", coffer.Access{Status: 403, Note: coffer.AccessNote{Action: "read", Decision: "deny"}}, false},
		{"a good login", coffer.Access{Status: 200, Note: coffer.AccessNote{Action: "login"}}, false},
		{"an upstream's 401 through the relay", coffer.Access{Status: 401, Note: coffer.AccessNote{Action: "relay"}, Relay: &coffer.RelayCounts{}}, false},
	} {
		if got := AuthFailure(c.a); got != c.want {
			t.Errorf("%s: AuthFailure = %v, want %v", c.name, got, c.want)
		}
		o, ok := Observation(c.a)
		if ok && o.AuthFailure != c.want {
			t.Errorf("%s: the observation says AuthFailure %v, the rule %v", c.name, o.AuthFailure, c.want)
		}
	}
}

func TestEventAndObservation(t *testing.T) {
	p := &coffer.Principal{ID: "svc", Kind: coffer.KindClient, Roles: []string{"reader"}}
	a := coffer.Access{RequestID: "r1", SourceIP: "10.0.0.1", Principal: p, Status: 200,
		Note: coffer.AccessNote{Action: "read", Resource: "collections/c", Decision: "allow", Rule: "r", Fields: []string{"email"},
			Count: 2, Values: 8, Targets: []string{"collections/c/records/1"}, ValueHMACs: []string{"m"}, Missing: true, Canary: true}}
	ev := Event(a)
	if ev.PrincipalID != "svc" || ev.PrincipalKind != coffer.KindClient || ev.Roles[0] != "reader" || ev.Action != "read" ||
		ev.Resource != "collections/c" || ev.Decision != "allow" || ev.Rule != "r" || ev.Status != 200 || ev.Count != 2 ||
		ev.RequestID != "r1" || ev.SourceIP != "10.0.0.1" || ev.Targets[0] != "collections/c/records/1" || ev.ValueHMACs[0] != "m" || ev.Fields[0] != "email" {
		t.Errorf("event %+v", ev)
	}
	o, ok := Observation(a)
	if !ok || o.PrincipalID != "svc" || o.Values != 8 || o.Count != 2 || !o.Missing || !o.Canary || o.AuthFailure {
		t.Errorf("observation %+v, %v", o, ok)
	}

	// Who tried, when authentication failed: bounded, valid UTF-8.
	long := strings.Repeat("x", 300) + "\xff"
	ev = Event(coffer.Access{AttemptedID: long, Status: 401, Note: coffer.AccessNote{Action: "token"}})
	if ev.PrincipalID != "unauthenticated:"+strings.Repeat("x", 128) {
		t.Errorf("attempted id in the event: %q", ev.PrincipalID)
	}
	if o, _ := Observation(coffer.Access{AttemptedID: long}); len(o.AttemptedID) != 128 {
		t.Errorf("attempted id in the observation: %d bytes", len(o.AttemptedID))
	}

	// A relayed call counts what it tokenized; its release is not observed.
	rl := coffer.Access{Principal: p, Status: 200, Note: coffer.AccessNote{Action: "relay", Count: 7}, Relay: &coffer.RelayCounts{Tokenized: 3, Detokenized: 4}}
	if o, ok := Observation(rl); !ok || o.Count != 3 {
		t.Errorf("relayed call: %+v %v", o, ok)
	}
	rl.Note.Action = "relay.release"
	if _, ok := Observation(rl); ok {
		t.Error("a release was observed")
	}
}

type fakeLog struct {
	err    error
	events []audit.Event
}

func (f *fakeLog) Log(_ context.Context, e audit.Event) error {
	f.events = append(f.events, e)
	return f.err
}
func (f *fakeLog) Healthy() error { return f.err }

type fakeObserver struct{ seen []detect.Observation }

func (f *fakeObserver) Observe(_ context.Context, o detect.Observation) { f.seen = append(f.seen, o) }

func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

// The detectors see a request whose audit event could not be written, the
// error is returned (no answer), and the failure is counted.
func TestRecorderObservesThroughAnAuditOutage(t *testing.T) {
	down := errors.New("disk full")
	log, obs, m := &fakeLog{err: down}, &fakeObserver{}, metrics.New()
	r := Recorder{Log: log, Detector: obs, Metrics: m}
	err := r.Audit(context.Background(), coffer.Access{Status: 429, AttemptedID: "alice", Note: coffer.AccessNote{Action: "login"}})
	if !errors.Is(err, down) || r.Healthy() == nil {
		t.Fatalf("Audit = %v, Healthy = %v: the outage must show", err, r.Healthy())
	}
	if len(obs.seen) != 1 || !obs.seen[0].AuthFailure || obs.seen[0].AttemptedID != "alice" {
		t.Fatalf("observed %+v", obs.seen)
	}
	text := scrape(t, m)
	for _, want := range []string{"coffer_audit_write_failures_total 1", `coffer_auth_failures_total{method="password"} 1`} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// A relay's release is written but neither observed nor counted; its call
// is all three, its values counted by what was done to them.
func TestRecorderRelay(t *testing.T) {
	log, obs, m := &fakeLog{}, &fakeObserver{}, metrics.New()
	r := Recorder{Log: log, Detector: obs, Metrics: m}
	p := &coffer.Principal{ID: "relay-client", Kind: coffer.KindClient}
	rel := coffer.Access{Principal: p, Note: coffer.AccessNote{Action: "relay.release", Decision: "allow"}, Relay: &coffer.RelayCounts{Detokenized: 2}}
	call := rel
	call.Status, call.Note.Action, call.Relay = 401, "relay", &coffer.RelayCounts{Tokenized: 5, Detokenized: 2}
	for _, a := range []coffer.Access{rel, call} {
		if err := r.Audit(context.Background(), a); err != nil {
			t.Fatal(err)
		}
	}
	if len(log.events) != 2 || len(obs.seen) != 1 || obs.seen[0].Count != 5 || obs.seen[0].AuthFailure {
		t.Fatalf("events %d, observations %+v", len(log.events), obs.seen)
	}
	text := scrape(t, m)
	for _, want := range []string{`coffer_policy_decisions_total{outcome="allow"} 1`, `coffer_token_values_total{op="tokenize"} 5`, `coffer_token_values_total{op="detokenize"} 2`} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(text, "coffer_auth_failures_total{") {
		t.Error("an upstream's 401 was counted as a failed authentication")
	}
}

// The benchmark's baseline writes nothing and is always healthy, but the
// detectors still see every request.
func TestRecorderDiscard(t *testing.T) {
	log, obs := &fakeLog{err: errors.New("down")}, &fakeObserver{}
	r := Recorder{Log: log, Detector: obs, Metrics: metrics.New(), Discard: true}
	if err := r.Audit(context.Background(), coffer.Access{Status: 200, Note: coffer.AccessNote{Action: "read"}}); err != nil || r.Healthy() != nil {
		t.Fatal(err, r.Healthy())
	}
	if len(log.events) != 0 || len(obs.seen) != 1 {
		t.Fatalf("wrote %d, observed %d", len(log.events), len(obs.seen))
	}
}
