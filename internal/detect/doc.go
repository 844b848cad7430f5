// Package detect owns Coffer's anomaly detection: streaming detectors over
// the outcome of each request, the security events they raise, principal
// suspension, and the signed webhooks that carry events to responders.
//
// # Detectors
//
// The HTTP layer hands every finished request to [Detector.Observe] as an
// [Observation] (who, from where, what, the decision, how many values came
// back). Observe never blocks the request: it puts the observation on a
// bounded queue and returns; when the queue is full the observation is
// dropped, counted ([Detector.Dropped]) and logged. One goroutine started by
// [Detector.Start] works through the queue.
//
// Counts are kept over a sliding window: each observation adds to the
// slice (a twelfth of Config.Window) its time falls in, through
// [Store.AddCounts] so that every node of a cluster adds to the same
// totals, and a total is the sum of the slices from one window before the
// observation's slice through it. A burst within any span of the window is
// therefore always counted whole, wherever minute boundaries fall (one
// spread over up to 13/12 of the window may be too). An event is raised by
// the one addition whose atomic increment carries a total across its
// threshold. The kinds:
//
//	auth.bruteforce      failed logins or token requests reach FailedAuthBurst
//	                     in a window, per attempted principal or per source IP
//	access.denied_burst  denied requests reach DeniedBurst in a window
//	data.enumeration     requests naming missing records or tokens reach
//	                     Enumeration in a window
//	data.bulk_read       values that left for one principal (Observation.Values:
//	                     each field of each record read, searched or answered
//	                     to an update; each value detokenized or decrypted)
//	                     exceed BulkReadValues in a window
//	data.bulk_tokenize   values tokenized by one principal exceed
//	                     BulkTokenizeValues in a window, or those tokenized in
//	                     a linkable mode (deterministic, format-preserving:
//	                     a dictionary oracle) exceed BulkTokenizeLinkable
//	data.unusual_hour    an allowed request outside the principal's or its
//	                     roles' configured hours
//	data.canary          any touch of a canary record or token, at once
//	data.integrity       a record failed its integrity check on a read or a
//	                     search (its stored data was changed outside Coffer,
//	                     or a blind index row was planted), at once
//
// Config.Cooldown (default: the window) keeps the same kind for the same
// principal (or source) from being raised more than once per cooldown
// window, through a shared count of fixed cooldown windows.
//
// Each event is stored, logged, counted through Deps.OnEvent and POSTed to
// every configured webhook, signed as described at [VerifySignature], with
// retries and exponential backoff on a per-webhook queue, so a slow or
// hanging receiver delays nothing else. Kinds listed in Config.SuspendOn
// also suspend the principal for Config.SuspendFor; the HTTP layer refuses
// a principal for which [Detector.Suspended] is true, every node learns of
// a suspension from the store within Config.SyncInterval, and
// [Detector.Lift] ends one.
//
// # What it must never do
//
// An observation carries names, counts and addresses, never a value, and
// neither an event's detail, a log line, a counter key nor a webhook body
// may ever contain a submitted value, a token, a key or a secret. Webhook
// secrets never appear in logs or in the String of a [Webhook]. Detection
// must never slow down, fail or block a request: every error in here is
// logged and swallowed, and the request path touches only a channel send
// and a read-locked map.
package detect
