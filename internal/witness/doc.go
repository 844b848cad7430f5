// Package witness hands the audit log's signed checkpoints to a witness:
// something that keeps them where whoever can write Coffer's database
// cannot rewrite them, so that a log cut back in the database, together
// with its checkpoints, is still seen (`coffer audit verify` compares the
// witness's newest checkpoint of each node with the database).
//
// # Protocol
//
// A witness is an https:// URL or an absolute file path (audit.witness).
//
// To a URL, each checkpoint is POSTed as one JSON object, the checkpoint as
// audit.Checkpoint encodes it:
//
//	{"node":"n1","seq":4000,"hash":"<64 hex>","time":"2026-…Z",
//	 "signature":"<base64 Ed25519 signature>","key_version":1}
//
// with Content-Type application/json, X-Coffer-Timestamp (Unix seconds of
// the attempt) and X-Coffer-Signature: "sha256=" and the hex HMAC-SHA256
// of the body under audit.witness_secret, exactly as security-event
// webhooks are signed (detect.Sign; receivers check it with
// detect.VerifySignature, in constant time). The signature authenticates
// the sender; the checkpoint's own Ed25519 signature, which only the
// deployment's audit signing key can make, is what verification trusts.
// The witness answers 2xx once it keeps the checkpoint durably; anything
// else is retried, with backoff, in order. A witness keeps, for each node,
// the checkpoint of the highest seq it was given (a replayed or late older
// one changes nothing), and answers GET on the same URL with
//
//	{"checkpoints":[ <the newest checkpoint of each node>, … ]}
//
// (more checkpoints may be listed; the reader takes the highest seq per
// node). GET carries no secret and needs none: checkpoints hold a hash and
// a signature, nothing of any event.
//
// To a file path, each checkpoint is appended as one JSON line (the same
// object) and synced. Readers take the highest seq per node. Put the file
// on another volume than the database, ideally one the database's host
// cannot rewrite (a separate disk with append-only attributes, a mounted
// share of another host, WORM storage).
//
// # Delivery
//
// [Sink] is an audit.Sink: the audit writer gives it each batch after the
// database holds it, and it queues the batch's checkpoints and delivers
// them from its own goroutine, so a slow or unreachable witness never
// delays or fails a request. [Sink.Ready] reports a checkpoint that has
// waited longer than the maximum lag: the node then answers /readyz 503,
// logs it, and exports the lag as a metric.
//
// # What it must never do
//
// It never sends or writes anything but checkpoints (no event, no value),
// never logs the secret or a URL's path or query, and never fails the
// audit writer: delivery is retried, and lateness is reported through
// readiness, logs and metrics.
package witness
