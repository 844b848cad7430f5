// Package doctor audits a Coffer deployment's configuration for `coffer
// doctor`: the root key and data directory on disk, the TLS certificate and
// keys (and, given a URL, what a running server's TLS accepts), the policy in
// force, the bootstrap admin client, the audit log, the database and its
// roles, retention, development leftovers, the listeners and rate limits.
// Each problem is a [Finding] with a stable ID, a severity and a fix; [Run]
// collects them into a [Report], which renders as text or JSON, and
// [Report.High] says whether the command should exit 1.
//
// # What it owns
//
// The checks and their severities, and the finding IDs, which are stable:
// scripts and CI filter on them. A check is a small function of the
// deployment's state; a check that cannot look (a file it may not read, a
// database it cannot reach) says so as a finding rather than staying silent.
//
// # What it must never do
//
// It must never put a secret or a stored value into a finding: no key
// bytes, no DSN password, no client secret, no record value, no condition
// text of the policy (it names the rule instead). It reads the deployment
// and changes nothing it can avoid changing; the one exception is that
// opening a SQLite store sets the file's mode to 0600, so the file's mode is
// read before the store is opened. It never loads the root key or the CA
// key: the audit log is verified through [Options.VerifyAudit], which the
// caller wires to the server's own verifier.
package doctor
