package doctor

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/store"
)

// Severity ranks a finding. A High finding makes `coffer doctor` exit 1.
type Severity string

// Severities, from worst to mildest.
const (
	High   Severity = "high"   // exploitable or losing data now: fix before serving
	Medium Severity = "medium" // weakens a protection; fix soon
	Low    Severity = "low"    // hardening advice
	Info   Severity = "info"   // a fact worth knowing, nothing to fix
)

// rank orders severities for sorting, worst first.
func (s Severity) rank() int {
	switch s {
	case High:
		return 0
	case Medium:
		return 1
	case Low:
		return 2
	}
	return 3
}

// Finding is one problem or fact the doctor found.
type Finding struct {
	// ID is stable across releases, e.g. "root_key.permissions"; several
	// findings may share one (one per role, per collection…), told apart by
	// Detail.
	ID string `json:"id"`
	// Severity is high, medium, low or info.
	Severity Severity `json:"severity"`
	// Title says what is wrong in a few words.
	Title string `json:"title"`
	// Detail names the file, role, collection or setting concerned; never a
	// secret or a stored value.
	Detail string `json:"detail,omitempty"`
	// Fix says what to do about it.
	Fix string `json:"fix,omitempty"`
}

// Report is the outcome of Run: every finding, worst first, then by ID.
type Report struct {
	Findings []Finding `json:"findings"`
}

// High reports whether any finding is high: `coffer doctor` then exits 1.
func (r Report) High() bool {
	return slices.ContainsFunc(r.Findings, func(f Finding) bool { return f.Severity == High })
}

// Count returns how many findings have severity s.
func (r Report) Count(s Severity) int {
	n := 0
	for _, f := range r.Findings {
		if f.Severity == s {
			n++
		}
	}
	return n
}

// WriteText writes one line per finding:
//
//	HIGH root_key.permissions: root key file is readable by group or others (…/root.key has mode 0644) — chmod 600 …
//
// that is, the severity in capitals, the ID, the title, the detail in
// parentheses when there is one, and the fix after a dash. Control
// characters are replaced, so a finding is always one line. A report
// without findings writes "ok: no findings".
func (r Report) WriteText(w io.Writer) error {
	if len(r.Findings) == 0 {
		_, err := io.WriteString(w, "ok: no findings\n")
		return err
	}
	var b strings.Builder
	for _, f := range r.Findings {
		b.WriteString(strings.ToUpper(string(f.Severity)))
		b.WriteByte(' ')
		b.WriteString(oneLine(f.ID))
		b.WriteString(": ")
		b.WriteString(oneLine(f.Title))
		if f.Detail != "" {
			b.WriteString(" (")
			b.WriteString(oneLine(f.Detail))
			b.WriteByte(')')
		}
		if f.Fix != "" {
			b.WriteString(" — ")
			b.WriteString(oneLine(f.Fix))
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the report as one JSON object,
// {"high":bool,"findings":[{"id","severity","title","detail","fix"}…]},
// followed by a newline.
func (r Report) WriteJSON(w io.Writer) error {
	findings := r.Findings
	if findings == nil {
		findings = []Finding{}
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(struct {
		High     bool      `json:"high"`
		Findings []Finding `json:"findings"`
	}{r.High(), findings})
}

// oneLine replaces control characters (newlines above all) with spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// Options are the inputs of Run.
type Options struct {
	// DataDir is the directory given to `coffer doctor --data-dir`; the
	// configuration is loaded from it when Config is nil.
	DataDir string
	// Config is the deployment's configuration, loaded by the caller with
	// its environment and flags applied. If nil, Run loads DataDir's
	// configuration with Env.
	Config *config.Config
	// Env is the environment (os.Environ()) Run loads the configuration
	// with when Config is nil.
	Env []string
	// LiveURL, if set, is the https URL of a running server whose TLS is
	// probed: which version it negotiates, and whether it accepts TLS 1.1 or
	// a CBC cipher suite.
	LiveURL string
	// CAFile holds the PEM certificates trusted for the live probe (default:
	// the deployment's tls.ca_file, then the system roots).
	CAFile string
	// VerifyAudit checks the audit chain and returns how many events are
	// intact (wire it to app.VerifyAudit). Nil skips the check, which is
	// reported as an info finding.
	VerifyAudit func(ctx context.Context) (int, error)
	// Now is the current time (default time.Now), for certificate expiry.
	Now func() time.Time
}

// state is what the checks look at.
type state struct {
	cfg *config.Config
	// dir is Options.DataDir (the configuration directory), which may
	// differ from cfg.DataDir.
	dir string
	now time.Time
	// db is the open store, or nil when it could not be opened.
	db *store.DB
	// collections are the store's collections (nil without a store).
	collections []coffer.Collection
}

// Run audits the deployment and returns every finding, worst first. It
// returns an error only when it cannot audit at all: no configuration, one
// that does not load, or ctx ending. Problems it meets while auditing (an
// unreadable file, an unreachable database) are findings.
func Run(ctx context.Context, opts Options) (Report, error) {
	cfg := opts.Config
	if cfg == nil {
		if opts.DataDir == "" {
			return Report{}, errors.New("doctor: no configuration and no data directory")
		}
		var err error
		if cfg, err = config.Load(opts.DataDir, opts.Env); err != nil {
			return Report{}, fmt.Errorf("doctor: %w", err)
		}
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	st := &state{cfg: cfg, dir: opts.DataDir, now: now()}
	if st.dir == "" {
		st.dir = cfg.Dir()
	}

	var out []Finding
	for _, check := range []func(*state) []Finding{
		checkDev,
		checkDataDir,
		checkConfigFile,
		checkRootKey,
		checkServerCert,
		checkTLSKeyFiles,
		checkListeners,
		checkRelay,
		checkRateLimit,
		checkBYOK,
		checkAuditSink,
		checkDSN,
		checkDatabaseFile, // before the store is opened: opening sets the mode
	} {
		out = append(out, check(st)...)
	}
	if err := ctx.Err(); err != nil {
		return Report{}, err
	}

	db, fs := openStore(ctx, cfg)
	out = append(out, fs...)
	if db != nil {
		defer db.Close()
		st.db = db
		out = append(out, checkStore(ctx, st)...)
	}
	out = append(out, checkAudit(ctx, opts.VerifyAudit)...)
	if opts.LiveURL != "" {
		ca := opts.CAFile
		if ca == "" {
			ca = cfg.TLS.CAFile
		}
		out = append(out, probeLive(ctx, opts.LiveURL, ca)...)
	}
	if err := ctx.Err(); err != nil {
		return Report{}, err
	}
	return newReport(out), nil
}

// newReport sorts findings worst first, then by ID and detail.
func newReport(fs []Finding) Report {
	slices.SortStableFunc(fs, func(a, b Finding) int {
		return cmp.Or(
			cmp.Compare(a.Severity.rank(), b.Severity.rank()),
			strings.Compare(a.ID, b.ID),
			strings.Compare(a.Detail, b.Detail),
		)
	})
	return Report{Findings: fs}
}

// checkStore runs the checks that read the store.
func checkStore(ctx context.Context, st *state) []Finding {
	var out []Finding
	if pending, err := st.db.Pending(ctx); err != nil {
		out = append(out, unchecked("database.migrations", "schema version", err))
	} else if pending {
		out = append(out, Finding{
			ID: "database.migrations", Severity: Medium,
			Title: "the database schema is older than this binary",
			Fix:   "run `coffer migrate` (as the schema owner) before serving",
		})
		// Queries below may fail on the old schema; they say so.
	}
	cols, err := st.db.Collections(ctx)
	if err != nil {
		out = append(out, unchecked("retention.unset", "collections", err))
	}
	st.collections = cols
	out = append(out, checkPostgresRoles(ctx, st)...)
	out = append(out, checkPolicy(ctx, st)...)
	out = append(out, checkClients(ctx, st)...)
	out = append(out, checkRelayClient(ctx, st)...)
	out = append(out, checkRetention(st)...)
	out = append(out, checkIssuer(ctx, st)...)
	return out
}

// checkIssuer compares an auth.issuer setting with the deployment's issuer
// in the store: tokens this node issues would be refused by the nodes that
// use the deployment's (docs/cluster.md).
func checkIssuer(ctx context.Context, st *state) []Finding {
	if st.cfg.Derived("auth.issuer") {
		return nil
	}
	dep, err := st.db.Meta(ctx, "auth.issuer")
	if err != nil || dep == st.cfg.Auth.Issuer {
		return nil // none recorded yet: the first node to serve records its own
	}
	return []Finding{{
		ID: "cluster.issuer", Severity: Medium,
		Title:  "auth.issuer differs from the deployment's token issuer",
		Detail: "auth.issuer " + st.cfg.Auth.Issuer + ", deployment " + dep,
		Fix:    "remove auth.issuer so that this node issues the deployment's, or set it the same on every node (docs/cluster.md)",
	}}
}

// unchecked is the finding of a check that could not look.
func unchecked(id, what string, err error) Finding {
	return Finding{
		ID: id, Severity: Medium,
		Title:  "could not check " + what,
		Detail: safeError(err),
		Fix:    "run `coffer doctor` as the user the server runs as, with the same configuration",
	}
}

// userinfo matches the credentials part of a URL.
var userinfo = regexp.MustCompile(`://[^/@\s]*@`)

// password matches a password=… keyword of a libpq connection string.
var password = regexp.MustCompile(`(?i)password=\S*`)

// safeError renders err for a finding's detail with any URL credentials
// and passwords cut out, in case a driver's message quoted a DSN.
func safeError(err error) string {
	if err == nil {
		return ""
	}
	s := userinfo.ReplaceAllString(err.Error(), "://…@")
	s = password.ReplaceAllString(s, "password=…")
	const max = 300
	if len(s) > max {
		s = strings.ToValidUTF8(s[:max], "") + "…"
	}
	return s
}

// sensitiveTypes are the field types whose plain view or lack of retention
// the doctor points out.
var sensitiveTypes = []string{coffer.TypeSSN, coffer.TypeCardNumber}

// sensitiveFields returns the names of c's fields that hold SSNs or card
// numbers (by type, or by a field literally so named).
func sensitiveFields(c coffer.Collection) []string {
	var out []string
	for _, f := range c.Fields {
		if slices.Contains(sensitiveTypes, f.Type) || slices.Contains(sensitiveTypes, f.Name) {
			out = append(out, f.Name)
		}
	}
	return out
}
