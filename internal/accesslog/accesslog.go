package accesslog

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/detect"
	"github.com/cofferhq/coffer/internal/metrics"
)

// maxAttemptedID bounds the attempted id an event and an observation keep.
const maxAttemptedID = 128

// AuthFailure reports whether a counts as a failed authentication, for
// the detectors (auth.bruteforce) and the metrics alike: credentials
// refused (AuthFailed, whatever status the dialect answered), any 401,
// and a login or token request refused 429 (the account or the address
// is locked out: guessing that goes on into a lockout is still
// guessing). A relayed call never is: the relay authenticates no one, and
// its status may be the upstream's.
func AuthFailure(a coffer.Access) bool {
	if a.Relay != nil {
		return false
	}
	return a.AuthFailed || a.Status == http.StatusUnauthorized ||
		a.Status == http.StatusTooManyRequests && (a.Note.Action == "token" || a.Note.Action == "login")
}

// Event is a's audit event, before the writer chains it. An
// unauthenticated caller that named itself is recorded as
// "unauthenticated:ID".
func Event(a coffer.Access) audit.Event {
	n := a.Note
	ev := audit.Event{
		RequestID: a.RequestID, SourceIP: a.SourceIP, Action: n.Action, Resource: n.Resource,
		Fields: n.Fields, Decision: n.Decision, Rule: n.Rule, Reason: n.Reason,
		Status: a.Status, Count: n.Count, ValueHMACs: n.ValueHMACs, Targets: n.Targets,
	}
	if a.Principal != nil {
		ev.PrincipalID, ev.PrincipalKind, ev.Roles = a.Principal.ID, a.Principal.Kind, a.Principal.Roles
	} else if a.AttemptedID != "" {
		ev.PrincipalID = "unauthenticated:" + truncate(a.AttemptedID, maxAttemptedID)
	}
	return ev
}

// Observation is what the detectors see of a, and false for what they do
// not see: a relay's release of values on their way back (the call's own
// event follows). A relayed call's Count is the values it tokenized.
func Observation(a coffer.Access) (detect.Observation, bool) {
	n := a.Note
	o := detect.Observation{
		Time: a.Time, SourceIP: a.SourceIP, Action: n.Action, Resource: n.Resource,
		Decision: n.Decision, Status: a.Status, Count: n.Count, Values: n.Values, Linkable: n.Linkable,
		Missing: n.Missing, Canary: n.Canary, Tampered: n.Tampered,
		AuthFailure: AuthFailure(a), AttemptedID: truncate(a.AttemptedID, maxAttemptedID),
	}
	if a.Relay != nil {
		if n.Action != "relay" {
			return detect.Observation{}, false
		}
		o.Count = a.Relay.Tokenized
	}
	if a.Principal != nil {
		o.PrincipalID, o.PrincipalKind, o.Roles = a.Principal.ID, a.Principal.Kind, a.Principal.Roles
	}
	return o, true
}

// Log is the audit log a Recorder writes to (audit.Writer).
type Log interface {
	Log(ctx context.Context, e audit.Event) error
	Healthy() error
}

// Observer is the detectors a Recorder shows requests to (detect.Detector).
type Observer interface {
	Observe(ctx context.Context, o detect.Observation)
}

// Recorder writes each answered request's audit event, durably before
// its answer, and shows it to the detectors and the metrics. The
// detectors see every request, whether or not its event could be
// written: a burst must not hide behind an audit outage. It is the API's
// httpapi.Auditor and the relay's relay.Auditor.
type Recorder struct {
	Log      Log
	Detector Observer
	Metrics  *metrics.Metrics
	// Discard skips the audit log (app.Options.AuditDiscard): the
	// benchmark baseline that measures what auditing costs.
	Discard bool
}

// Audit records a: its audit event (the error says it was not made
// durable), its observation and its metrics.
func (r Recorder) Audit(ctx context.Context, a coffer.Access) error {
	var err error
	if !r.Discard {
		err = r.Log.Log(ctx, Event(a))
	}
	if err != nil && !errors.Is(err, audit.ErrNotDurable) {
		// A failed batch is counted once by the writer; an event not
		// confirmed within the server's bound is counted here.
		r.Metrics.AuditFailures.Inc()
	}
	o, ok := Observation(a)
	if !ok {
		return err
	}
	r.Detector.Observe(ctx, o)
	count(r.Metrics, a)
	return err
}

// Healthy returns an error while audit events cannot be made durable
// (httpapi.AuditHealth): the API then refuses requests before acting.
func (r Recorder) Healthy() error {
	if r.Discard {
		return nil
	}
	return r.Log.Healthy()
}

// keyOperation returns the key operation a request with this audit action
// and resource was, if any: transit key administration and Coffer's own
// (both audited as keys.OP; reading the BYOK wrapping key is none), a
// transit rewrap, and the erasure of a data subject, which destroys its key.
func keyOperation(action, resource string) (string, bool) {
	switch action {
	case "keys.create", "keys.import", "keys.import_version", "keys.import_vault", "keys.configure", "keys.delete",
		"keys.rotate", "keys.retire", "keys.unretire", "keys.destroy":
		return strings.TrimPrefix(action, "keys."), true
	case "rewrap":
		return "rewrap", true
	case "delete":
		return "erase_subject", resource == "subjects" || strings.HasPrefix(resource, "subjects/")
	}
	return "", false
}

// outcome labels a request's status for the key operations metric.
func outcome(status int) string {
	switch {
	case status >= 500:
		return "error"
	case status >= 400:
		return "refused"
	}
	return "ok"
}

// authMethod labels a failed authentication by what it presented.
func authMethod(action string) string {
	switch action {
	case "token":
		return "client_secret"
	case "login":
		return "password"
	}
	return "bearer"
}

// count feeds a's outcome to the metrics: bounded labels only.
func count(m *metrics.Metrics, a coffer.Access) {
	n := a.Note
	if n.Decision == "allow" || n.Decision == "deny" {
		m.Decisions.WithLabelValues(n.Decision).Inc()
	}
	if a.Relay != nil {
		if a.Relay.Tokenized > 0 {
			m.TokenValues.WithLabelValues("tokenize").Add(float64(a.Relay.Tokenized))
		}
		if a.Relay.Detokenized > 0 {
			m.TokenValues.WithLabelValues("detokenize").Add(float64(a.Relay.Detokenized))
		}
		return
	}
	if op, ok := keyOperation(n.Action, n.Resource); ok {
		m.KeyOps.WithLabelValues(op, outcome(a.Status)).Inc()
	}
	if AuthFailure(a) {
		m.AuthFailures.WithLabelValues(authMethod(n.Action)).Inc()
	}
	if a.Status >= 400 || n.Count == 0 {
		return
	}
	switch n.Action {
	case "tokenize", "detokenize":
		m.TokenValues.WithLabelValues(n.Action).Add(float64(n.Count))
	case "read", "search", "create", "update", "delete":
		if strings.HasPrefix(n.Resource, "collections/") {
			m.Records.WithLabelValues(n.Action).Add(float64(n.Count))
		}
	}
}

func truncate(s string, n int) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) > n {
		return s[:n]
	}
	return s
}
