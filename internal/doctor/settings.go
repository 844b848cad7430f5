package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/config"
)

// hostScope says where a listen address is reachable from.
type hostScope uint8

const (
	scopeLoopback hostScope = iota // this machine only
	scopeAll                       // every interface (0.0.0.0, ::, empty host)
	scopeNetwork                   // a named interface or host
)

// addrScope classifies a host:port listen address.
func addrScope(addr string) hostScope {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	return hostScopeOf(host)
}

func hostScopeOf(host string) hostScope {
	host = strings.Trim(host, "[]")
	if host == "" {
		return scopeAll
	}
	if strings.EqualFold(host, "localhost") {
		return scopeLoopback
	}
	ip := net.ParseIP(host)
	switch {
	case ip == nil:
		return scopeNetwork
	case ip.IsLoopback():
		return scopeLoopback
	case ip.IsUnspecified():
		return scopeAll
	}
	return scopeNetwork
}

// checkListeners flags /metrics reachable from the network (it needs no
// token) and, as information, an API on every interface without client
// certificates.
func checkListeners(st *state) []Finding {
	var out []Finding
	if m := st.cfg.MetricsListen; m != "" && addrScope(m) != scopeLoopback {
		out = append(out, Finding{
			ID: "metrics.exposed", Severity: Medium,
			Title:  "/metrics listens beyond loopback, without authentication",
			Detail: "metrics_listen is " + m + ": request counts and rates tell an attacker about traffic",
			Fix:    "set metrics_listen to 127.0.0.1:9464 and scrape through a local agent or an authenticating proxy",
		})
	}
	if addrScope(st.cfg.Listen) == scopeAll && !st.cfg.TLS.ClientCerts {
		out = append(out, Finding{
			ID: "listen.all_interfaces", Severity: Info,
			Title:  "the API listens on every interface without client certificates",
			Detail: "listen is " + st.cfg.Listen + "; callers authenticate by bearer token only",
			Fix:    "listen on the interface clients use, or set tls.client_certs for services",
		})
	}
	return out
}

// checkRateLimit flags rate limiting, and the quota on linkable
// tokenization, turned off.
func checkRateLimit(st *state) []Finding {
	var out []Finding
	if st.cfg.Limits.RateLimit <= 0 {
		out = append(out, Finding{
			ID: "limits.rate_limit_disabled", Severity: Medium,
			Title:  "per-principal rate limiting is disabled",
			Detail: "limits.rate_limit is 0",
			Fix:    "set limits.rate_limit (requests per second per principal, e.g. 50) and limits.rate_burst",
		})
	}
	if st.cfg.Limits.TokenizeLinkablePerHour <= 0 {
		out = append(out, Finding{
			ID: "limits.tokenize_linkable_unlimited", Severity: Medium,
			Title: "linkable tokenization has no per-principal quota",
			Detail: "limits.tokenize_linkable_per_hour is 0: a principal allowed to tokenize deterministically or " +
				"format-preserving can test guesses of low-entropy values (SSNs, card numbers) without bound",
			Fix: "set limits.tokenize_linkable_per_hour (default 10000), and a larger quota for the roles that need one under limits.roles",
		})
	}
	return out
}

// checkBYOK flags the weaker settings of transit key imports.
func checkBYOK(st *state) []Finding {
	var out []Finding
	b := st.cfg.Transit.BYOK
	if b.AllowSHA1 {
		out = append(out, Finding{
			ID: "transit.byok_sha1", Severity: Low,
			Title: "transit key imports accept RSA-OAEP with SHA-1",
			Fix:   "wrap imports with SHA-256 and unset transit.byok.allow_sha1",
		})
	}
	if b.WrappingKeyRotateAfter.Duration == 0 {
		out = append(out, Finding{
			ID: "transit.byok_wrapping_key_never_rotates", Severity: Low,
			Title: "the import wrapping key never rotates",
			Fix:   "set transit.byok.wrapping_key_rotate_after (default 720h)",
		})
	}
	return out
}

// checkAuditSink advises a file copy of the audit log and a witness of its
// signed checkpoints: each lets a log cut back in the database (its newest
// events deleted with the checkpoints after them) be noticed, which the
// database alone cannot show.
func checkAuditSink(st *state) []Finding {
	out := append(checkAuditWitness(st), checkAuditArchive(st)...)
	if st.cfg.Audit.Durability == config.AuditInterval {
		out = append(out, Finding{
			ID: "audit.not_durable", Severity: Medium,
			Title: "audit events are not durable before the answer (audit.durability: interval)",
			Detail: fmt.Sprintf("requests are answered before their audit event is stored; a crash of the process or "+
				"host loses the events of up to %s of answered requests", st.cfg.Audit.FlushInterval),
			Fix: "remove audit.durability (or set it to durable) unless the throughput is needed more than " +
				"an audit trail without gaps on a crash",
		})
	}
	f := st.cfg.Audit.File
	if f == "" {
		return append(out, Finding{
			ID: "audit.no_file_sink", Severity: Low,
			Title: "the audit log has no file copy",
			Fix: "set audit.file and ship it off the host: `coffer audit verify` then checks the file's own chain " +
				"(rotated files included) and compares it with the database event by event and checkpoint by " +
				"checkpoint, both ways, so a cut or an edit in either shows, with its node and seq",
		})
	}
	fi, err := os.Stat(f)
	if errors.Is(err, fs.ErrNotExist) {
		return out // created by the first event
	}
	if err != nil {
		return append(out, unchecked("audit.file_permissions", "the audit file", err))
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return append(out, Finding{
			ID: "audit.file_permissions", Severity: Medium,
			Title:  "the audit file is writable by group or others",
			Detail: fmt.Sprintf("%s has mode %04o", f, perm),
			Fix:    "chmod 600 " + f,
		})
	}
	return out
}

// checkAuditWitness advises a witness of the signed checkpoints, and one
// that does not share the database's volume.
func checkAuditWitness(st *state) []Finding {
	w := st.cfg.Audit.Witness
	if w == "" {
		return []Finding{{
			ID: "audit.no_witness", Severity: Info,
			Title: "no witness keeps the audit log's signed checkpoints",
			Fix: "set audit.witness to an https URL (with audit.witness_secret) or to a file on another volume: " +
				"`coffer audit verify` then compares the witness's newest checkpoint of each node with the database, " +
				"and a node whose witness falls behind audit.witness_max_lag reports itself not ready",
		}}
	}
	if strings.Contains(w, "://") {
		return nil
	}
	kind, dsn := st.cfg.Database()
	near := st.cfg.DataDir
	if kind == config.DatabaseSQLite {
		near = dsn
	}
	wi, err1 := os.Stat(filepath.Dir(w))
	di, err2 := os.Stat(near)
	if err1 != nil || err2 != nil {
		return nil // not made yet: the first checkpoint creates it
	}
	if same, known := sameDevice(wi, di); known && same {
		return []Finding{{
			ID: "audit.witness_same_volume", Severity: Medium,
			Title:  "the audit witness file is on the same volume as the database",
			Detail: fmt.Sprintf("%s and %s share a file system: whoever can rewrite one can likely rewrite the other", w, near),
			Fix:    "put audit.witness on another volume, ideally one this host can only append to, or use an https witness",
		}}
	}
	return nil
}

// checkAudit verifies the audit chain through the caller's verifier.
func checkAudit(ctx context.Context, verify func(context.Context) (int, error)) []Finding {
	if verify == nil {
		return []Finding{{
			ID: "audit.not_verified", Severity: Info,
			Title: "the audit chain was not verified",
			Fix:   "run `coffer audit verify --data-dir DIR`",
		}}
	}
	n, err := verify(ctx)
	var verr *audit.VerifyError
	switch {
	case errors.As(err, &verr):
		return []Finding{{
			ID: "audit.verify", Severity: High,
			Title:  "the audit log does not verify: an event was changed, removed or reordered, or the database differs from the file copy or the witness",
			Detail: safeError(err),
			Fix:    "treat it as an incident: `coffer audit verify` lists every finding with its node and seq; find who had write access to the database (or the file)",
		}}
	case err != nil:
		// Fail closed: a log that cannot be read may be a tampered one.
		return []Finding{{
			ID: "audit.verify", Severity: High,
			Title:  "the audit log could not be verified",
			Detail: safeError(err),
			Fix:    "fix what stops it (the detail says), then run `coffer audit verify --data-dir DIR`",
		}}
	}
	return []Finding{{
		ID: "audit.verified", Severity: Info,
		Title:  "the audit chain is intact",
		Detail: fmt.Sprintf("%d events", n),
	}}
}

// checkDSN flags a PostgreSQL connection that may travel in plain text,
// or over TLS without checking the server, to a host off this machine.
func checkDSN(st *state) []Finding {
	kind, dsn := st.cfg.Database()
	if kind != config.DatabasePostgres {
		return nil
	}
	pc, err := pgconn.ParseConfig(dsn)
	if err != nil {
		// The message may quote the DSN: name the setting only.
		return []Finding{{
			ID: "database.dsn", Severity: High,
			Title: "database_url does not parse as a PostgreSQL connection string",
			Fix:   "fix database_url (postgres://user@host:5432/db?sslmode=verify-full)",
		}}
	}
	type hop struct {
		host    string
		tls     bool
		checked bool
	}
	hops := []hop{{pc.Host, pc.TLSConfig != nil, pc.TLSConfig != nil && verifiesServer(pc.TLSConfig.InsecureSkipVerify, pc.TLSConfig.VerifyPeerCertificate != nil)}}
	for _, fb := range pc.Fallbacks {
		hops = append(hops, hop{fb.Host, fb.TLSConfig != nil, fb.TLSConfig != nil && verifiesServer(fb.TLSConfig.InsecureSkipVerify, fb.TLSConfig.VerifyPeerCertificate != nil)})
	}
	// Per host, the attempts come in order: plain text first (disable,
	// allow) is high; plain text after TLS (prefer) is a downgrade.
	var plain, fallback, unverified, seen []string
	for _, h := range hops {
		if strings.HasPrefix(h.host, "/") || hostScopeOf(h.host) == scopeLoopback {
			continue // a Unix socket or this machine
		}
		first := !slices.Contains(seen, h.host)
		seen = appendNew(seen, h.host)
		switch {
		case !h.tls && first:
			plain = appendNew(plain, h.host)
		case !h.tls:
			fallback = appendNew(fallback, h.host)
		case !h.checked:
			unverified = appendNew(unverified, h.host)
		}
	}
	fallback = slices.DeleteFunc(fallback, func(h string) bool { return slices.Contains(plain, h) })
	// prefer skips verification too; its fallback is the worse problem.
	unverified = slices.DeleteFunc(unverified, func(h string) bool {
		return slices.Contains(fallback, h) || slices.Contains(plain, h)
	})
	var out []Finding
	if len(plain) > 0 {
		out = append(out, Finding{
			ID: "database.sslmode", Severity: High,
			Title:  "the database connection is not encrypted",
			Detail: "sslmode disable or allow to " + strings.Join(plain, ", "),
			Fix:    "set sslmode=verify-full (with sslrootcert) in database_url",
		})
	}
	if len(fallback) > 0 {
		out = append(out, Finding{
			ID: "database.sslmode", Severity: Medium,
			Title:  "the database connection falls back to plain text",
			Detail: "sslmode prefer (the default) to " + strings.Join(fallback, ", ") + ": an attacker on the path can force the fallback",
			Fix:    "set sslmode=verify-full (with sslrootcert) in database_url",
		})
	}
	if len(unverified) > 0 {
		out = append(out, Finding{
			ID: "database.sslmode", Severity: Low,
			Title:  "the database server's certificate is not verified",
			Detail: "sslmode require to " + strings.Join(unverified, ", "),
			Fix:    "set sslmode=verify-full (with sslrootcert) in database_url",
		})
	}
	return out
}

// verifiesServer reports whether a pgconn TLS configuration checks the
// server's certificate: not skipped, or skipped in favour of pgconn's own
// chain check (verify-ca).
func verifiesServer(insecureSkip, ownCheck bool) bool {
	return !insecureSkip || ownCheck
}

func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// checkAuditArchive advises an audit archive (the database otherwise keeps
// every event forever), on another volume than the database, and one this
// host can still write to: an archive that cannot be written stops pruning.
func checkAuditArchive(st *state) []Finding {
	a := st.cfg.Audit.Archive
	if a == "" {
		return []Finding{{
			ID: "audit.no_archive", Severity: Info,
			Title: "the database keeps every audit event forever",
			Fix: "set audit.archive to a directory on another volume: sealed segments move there and leave the database " +
				"after audit.retain_in_db (see docs/operations.md, Audit archive)",
		}}
	}
	ai, err := os.Stat(a)
	if err != nil {
		return []Finding{{
			ID: "audit.archive_unwritable", Severity: High,
			Title:  "the audit archive directory is missing or unreadable: nothing is archived or pruned",
			Detail: safeError(err),
			Fix:    "create audit.archive (mode 0700, owned by the server's user) on its volume, or mount it",
		}}
	}
	probe, err := os.CreateTemp(a, ".tmp-doctor-")
	if err != nil {
		return []Finding{{
			ID: "audit.archive_unwritable", Severity: High,
			Title:  "the audit archive cannot be written (full, read-only or not the server's): pruning has stopped",
			Detail: safeError(err),
			Fix:    "free space on, or fix the permissions of, audit.archive; the next archive run resumes",
		}}
	}
	_ = probe.Close()
	_ = os.Remove(probe.Name())
	kind, dsn := st.cfg.Database()
	near := st.cfg.DataDir
	if kind == config.DatabaseSQLite {
		near = dsn
	}
	if di, err := os.Stat(near); err == nil {
		if same, known := sameDevice(ai, di); known && same {
			return []Finding{{
				ID: "audit.archive_same_volume", Severity: Medium,
				Title:  "the audit archive is on the same volume as the database",
				Detail: fmt.Sprintf("%s and %s share a file system: one full disk stops both, and whoever can rewrite one can likely rewrite the other", a, near),
				Fix:    "put audit.archive on another volume (or a mounted object store with object lock)",
			}}
		}
	}
	return nil
}
