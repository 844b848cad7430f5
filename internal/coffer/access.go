package coffer

import "time"

// Access is one answered request as the adapter that answered it reports
// it (the API, the Vault-compatible surface, the relay): who asked or tried
// to, from where, the status answered, and the note its use case filled
// in. internal/accesslog turns it into the audit event, the detectors'
// observation and the metrics. It holds ids, names and counts, never a
// value, a token or a secret.
type Access struct {
	Time      time.Time
	RequestID string
	Principal *Principal // nil when not authenticated
	// AttemptedID names who tried to authenticate, when that failed (a
	// client id or a username, never a secret).
	AttemptedID string
	SourceIP    string
	Status      int
	// AuthFailed is true when the caller's credentials were refused,
	// whatever status the route's dialect answered it with (Coffer's 401,
	// the Vault-compatible surface's 403).
	AuthFailed bool
	Note       AccessNote
	// Relay holds the counts of a call the relay forwarded; nil for an
	// API request.
	Relay *RelayCounts
}

// RelayCounts are the values a relayed call changed on its way.
type RelayCounts struct {
	Tokenized, Detokenized int
}
