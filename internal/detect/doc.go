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
// Counts are kept per fixed window (the observation time truncated to
// Config.Window) in the store through [Store.AddCount], so every node of a
// cluster adds to the same totals. An event is raised by the one call that
// carries a total across its threshold, which makes it once per key and
// window cluster-wide without coordination. The kinds:
//
//	auth.bruteforce      failed logins or token requests reach FailedAuthBurst
//	                     per window, per attempted principal or per source IP
//	access.denied_burst  denied requests reach DeniedBurst per window
//	data.enumeration     requests naming missing records or tokens reach
//	                     Enumeration per window
//	data.bulk_read       values read, searched, detokenized or decrypted by
//	                     one principal exceed BulkReadValues per window
//	data.unusual_hour    an allowed request outside the principal's or its
//	                     roles' configured hours
//	data.canary          any touch of a canary record or token, at once
//
// Config.Cooldown (default: the window) keeps the same kind for the same
// principal (or source) from being raised more than once per cooldown
// window, again through a shared count.
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
