package console

import (
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/policy"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Prefix is the path the console is served under.
const Prefix = "/ui/"

// Config holds the console's dependencies.
type Config struct {
	// API is Coffer's API handler: every read and every action of the
	// console goes through it, with the signed-in user's token.
	API http.Handler
	// Authenticate verifies an access token and returns its principal
	// (the API's own check), so the console knows who is signed in.
	Authenticate func(ctx context.Context, token string) (*coffer.Principal, error)
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Rand makes session ids and CSRF tokens (crypto/rand when nil).
	Rand io.Reader
	// Logger logs what went wrong inside the console (never a value).
	Logger *slog.Logger
	// IdleTimeout ends a session unused this long (DefaultIdleTimeout when 0).
	IdleTimeout time.Duration
	// ReauthMaxAge is how recent a sign-in a destructive action needs
	// (DefaultReauthMaxAge when 0).
	ReauthMaxAge time.Duration
	// MaxSessions bounds the sessions held (DefaultMaxSessions when 0).
	MaxSessions int
}

// Defaults.
const (
	DefaultIdleTimeout  = 10 * time.Minute
	DefaultReauthMaxAge = 5 * time.Minute
	DefaultMaxSessions  = 10000
	// pendingTimeout bounds a session between the password and the second
	// factor, and an anonymous session holding only a CSRF token.
	pendingTimeout = 5 * time.Minute
)

// Console serves the web console.
type Console struct {
	c        Config
	mux      *http.ServeMux
	pages    map[string]*template.Template
	sessions *sessionStore
	static   fs.FS
}

// ContentSecurityPolicy is the console's CSP: nothing but its own script
// and stylesheet, no inline script or eval, no framing.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// New builds the console.
func New(c Config) (*Console, error) {
	if c.API == nil || c.Authenticate == nil {
		return nil, fmt.Errorf("console: API and Authenticate are required")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.ReauthMaxAge <= 0 {
		c.ReauthMaxAge = DefaultReauthMaxAge
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	st, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("console: static assets: %w", err)
	}
	con := &Console{c: c, mux: http.NewServeMux(), static: st,
		sessions: newSessionStore(c.MaxSessions)}
	if err := con.parseTemplates(); err != nil {
		return nil, err
	}
	con.routes()
	return con, nil
}

var funcs = template.FuncMap{
	"fmtTime": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"rfc3339": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"join":    strings.Join,
	"json": func(v any) string {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return ""
		}
		return string(b)
	},
	"add": func(a, b int) int { return a + b },
}

func (con *Console) parseTemplates() error {
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return fmt.Errorf("console: layout: %w", err)
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return fmt.Errorf("console: templates: %w", err)
	}
	con.pages = map[string]*template.Template{}
	for _, n := range names {
		base := path.Base(n)
		if base == "layout.html" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return fmt.Errorf("console: template %s: %w", base, err)
		}
		con.pages[strings.TrimSuffix(base, ".html")] = t
	}
	return nil
}

// ServeHTTP implements http.Handler for every path under Prefix.
func (con *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
	h.Set("Strict-Transport-Security", "max-age=31536000")
	if !strings.HasPrefix(r.URL.Path, Prefix+"static/") {
		h.Set("Cache-Control", "no-store")
	}
	con.mux.ServeHTTP(w, r)
}

// page is what every template gets.
type page struct {
	Title   string
	Nav     string
	S       *sessionView
	CSRF    string
	Flash   string
	Error   *Problem
	Data    any
	Version string
}

// sessionView is the signed-in user as the layout shows it.
type sessionView struct {
	Principal string
	Username  string
	Roles     []string
	MFA       bool
	Expires   time.Time
	IdleEnds  time.Time
}

func (con *Console) render(w http.ResponseWriter, r *http.Request, s *session, status int, name string, p page) {
	t, ok := con.pages[name]
	if !ok {
		http.Error(w, "no such page", http.StatusInternalServerError)
		return
	}
	if s != nil {
		p.CSRF = s.csrf
		if s.signedIn() {
			p.S = &sessionView{Principal: s.principal, Username: s.username, Roles: s.roles, MFA: s.mfa,
				Expires: s.expires, IdleEnds: s.lastSeen.Add(con.c.IdleTimeout)}
		}
		if p.Flash == "" {
			p.Flash = con.sessions.takeFlash(s)
		}
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		con.c.Logger.Error("console: render failed", "page", name, "error", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// renderPart renders the template part of page name alone, without the
// layout: a fragment the page's script puts in place.
func (con *Console) renderPart(w http.ResponseWriter, _ *http.Request, s *session, name, part string, p page) {
	t, ok := con.pages[name]
	if !ok {
		http.Error(w, "no such page", http.StatusInternalServerError)
		return
	}
	if s != nil {
		p.CSRF = s.csrf
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, part, p); err != nil {
		con.c.Logger.Error("console: render failed", "page", name, "part", part, "error", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

// Problem is an API error as the console shows it (RFC 9457 fields).
type Problem struct {
	Status    int      `json:"status"`
	Title     string   `json:"title"`
	Detail    string   `json:"detail"`
	RequestID string   `json:"request_id"`
	Problems  []string `json:"problems"`
}

// apiResult is one in-process API answer.
type apiResult struct {
	Status int
	Header http.Header
	Body   []byte
}

// problem returns the answer's problem, or nil for a success.
func (a apiResult) problem() *Problem {
	if a.Status < 400 {
		return nil
	}
	p := &Problem{Status: a.Status}
	_ = json.Unmarshal(a.Body, p)
	if p.Detail == "" {
		p.Detail = http.StatusText(a.Status)
	}
	if p.RequestID == "" {
		p.RequestID = a.Header.Get("X-Request-Id")
	}
	return p
}

// decode decodes a JSON success body into out.
func (a apiResult) decode(out any) error {
	if err := json.Unmarshal(a.Body, out); err != nil {
		return fmt.Errorf("console: decode API answer: %w", err)
	}
	return nil
}

// recorder collects an in-process API answer.
type recorder struct {
	h      http.Header
	status int
	buf    bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.h }
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.buf.Write(b)
}
func (r *recorder) WriteHeader(s int) {
	if r.status == 0 {
		r.status = s
	}
}

// call runs one API request in-process as the browser's user: its token
// (none for the sign-in routes), its address, its TLS state. The API
// authenticates, decides, audits and answers exactly as for a request
// from outside.
func (con *Console) call(r *http.Request, token, method, target, contentType string, body []byte) apiResult {
	// Never sent over a network: the request is served in process by the
	// API's handler (ServeHTTP below), and target is a path the console builds.
	req, err := http.NewRequestWithContext(r.Context(), method, target, bytes.NewReader(body)) // #nosec G704 -- served in process, see above
	if err != nil {
		return apiResult{Status: http.StatusInternalServerError, Header: http.Header{}}
	}
	req.RemoteAddr = r.RemoteAddr
	req.TLS = r.TLS
	req.Host = r.Host
	req.ContentLength = int64(len(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("User-Agent", "coffer-console")
	rec := &recorder{h: http.Header{}}
	con.c.API.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return apiResult{Status: rec.status, Header: rec.h, Body: rec.buf.Bytes()}
}

// callJSON is call with a JSON body (nil for none).
func (con *Console) callJSON(r *http.Request, s *session, method, target string, body any) apiResult {
	var b []byte
	ct := ""
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return apiResult{Status: http.StatusInternalServerError, Header: http.Header{}}
		}
		ct = "application/json"
	}
	res := con.call(r, s.token, method, target, ct, b)
	if res.Status == http.StatusUnauthorized && s.signedIn() {
		// The token expired or was revoked: the session ends with it.
		con.sessions.drop(s)
	}
	return res
}

// apiPath joins escaped path segments under /v1/.
func apiPath(parts ...string) string {
	var b strings.Builder
	b.WriteString("/v1")
	for _, p := range parts {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(p))
	}
	return b.String()
}

// Policy compiles a policy document as PUT /v1/policy would (for the
// editor's validation, its test tables and the self-lockout check).
func compilePolicy(doc, format string) (*policy.Policy, []string) {
	p, err := policy.Load([]byte(doc), format)
	if err == nil {
		return p, nil
	}
	if pe, ok := err.(*policy.ProblemsError); ok {
		out := make([]string, 0, len(pe.Problems))
		for _, pr := range pe.Problems {
			out = append(out, pr.String())
		}
		return nil, out
	}
	return nil, []string{err.Error()}
}
