// Package accesslog is what every answered request leaves behind: it
// turns a coffer.Access (the access note of the use case, who asked, from
// where, the status) into the audit event, the detectors' observation and
// the request metrics, in one place, with the one rule for what counts as
// a failed authentication. The API and the relay hand it their calls
// through one Recorder.
//
// It must never put a value, a token or a secret into an event, an
// observation or a metric label (it copies ids, names and counts only),
// never let the detectors miss a request because its audit event could
// not be written, and never report a request as recorded when its event
// was not made durable.
package accesslog
