package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/httpapi"
	"github.com/cofferhq/coffer/internal/mask"
	"github.com/cofferhq/coffer/internal/quota"
	"github.com/cofferhq/coffer/internal/relay/fieldpath"
	"github.com/cofferhq/coffer/internal/token"
	"github.com/cofferhq/coffer/internal/vault"
)

// Tokens tokenizes and detokenizes under the policy (token.Service). Its
// errors are *coffer.Error for anything the caller's input or rights
// caused.
type Tokens interface {
	Tokenize(ctx context.Context, c vault.Caller, items []token.Item) ([]string, error)
	Detokenize(ctx context.Context, c vault.Caller, tokens []string) ([]string, error)
}

// Quotas charges the relay client's tokenization to its quotas (see
// httpapi.Quotas): all or nothing, with a refund for work not done.
type Quotas interface {
	Take(ctx context.Context, p *coffer.Principal, use map[string]int) (refund func(context.Context), err error)
}

// Auditor records a relayed call's event durably before its answer
// leaves; an error fails the call (503). Healthy returns an error while
// events cannot be made durable: calls are then refused before anything
// is done.
type Auditor interface {
	Audit(ctx context.Context, e Event) error
	Healthy() error
}

// Event is a relayed call's audit record, as an API request's is (the
// domain's Access, with Relay set): Note's Action is "relay" or
// "relay.release", its Resource "relay/routes/NAME", its Fields the counts
// per field and the upstream's status. A release ("relay.release") is
// written before detokenized values are sent to an upstream.
type Event = coffer.Access

// Config holds the relay's dependencies and limits.
type Config struct {
	// Client is the id of the client the relay acts as.
	Client string
	// Principal resolves Client (each call: a disabled or deleted client,
	// or changed roles, take effect at once).
	Principal func(ctx context.Context) (*coffer.Principal, error)
	// Suspended reports whether a principal is suspended by a security
	// response (nil: never).
	Suspended func(id string) bool
	Tokens    Tokens
	Quotas    Quotas // nil: no quotas
	Masker    *mask.Masker
	Audit     Auditor
	// Transport reaches the upstreams (its TLS configuration verifies
	// them; it must use no proxy).
	Transport http.RoundTripper
	// MaxBodyBytes bounds a request body and a transformed response body.
	MaxBodyBytes int64
	// Observe is told of every call: its route ("unmatched" for none), its
	// outcome and its duration.
	Observe func(route, outcome string, d time.Duration)
	Logger  *slog.Logger
	Now     func() time.Time
}

// Outcomes of a call, as Observe is told.
const (
	OutcomeForwarded   = "forwarded"    // the upstream answered; its answer was returned
	OutcomeRefused     = "refused"      // refused by the relay (4xx) before anything was forwarded
	OutcomeUnreachable = "unreachable"  // the upstream could not be reached (502)
	OutcomeTimeout     = "timeout"      // the upstream did not answer in time (504)
	OutcomeBadUpstream = "bad_upstream" // the upstream's answer could not be transformed (502)
	OutcomeError       = "error"        // the relay failed (audit or token service down, 5xx)
	OutcomeUnmatched   = "unmatched"    // no route (404), nothing forwarded
)

// UnmatchedRoute is the route label of calls that matched no route.
const UnmatchedRoute = "unmatched"

// Outcomes lists every outcome (for metrics exported at 0).
func Outcomes() []string {
	return []string{OutcomeForwarded, OutcomeRefused, OutcomeUnreachable, OutcomeTimeout, OutcomeBadUpstream, OutcomeError, OutcomeUnmatched}
}

// Relay is the relay's HTTP handler.
type Relay struct {
	c      Config
	routes atomic.Pointer[[]*route]
	proxy  *httputil.ReverseProxy
}

// op kinds.
const (
	opTokenize = iota
	opDetokenize
	opMask
)

var opNames = [...]string{"tokenize", "detokenize", "mask"}

type op struct {
	kind   int
	path   fieldpath.Path
	field  string
	typ    string
	mode   string
	masker mask.Spec
}

type section struct {
	name string // "request" or "response"
	ops  []op
}

type route struct {
	name     string
	method   string
	path     string
	prefix   bool
	upstream *url.URL
	req      section
	resp     section
}

// New builds a relay over routes, which must have passed
// config.RelayRouteProblems.
func New(c Config, routes []config.RelayRoute) (*Relay, error) {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.Transport == nil || c.Tokens == nil || c.Audit == nil || c.Principal == nil || c.Masker == nil {
		return nil, errors.New("relay: transport, tokens, audit, principal and masker are required")
	}
	r := &Relay{c: c}
	if err := r.Reload(routes); err != nil {
		return nil, err
	}
	r.proxy = &httputil.ReverseProxy{
		Rewrite:        r.rewrite,
		Transport:      c.Transport,
		FlushInterval:  -1, // stream: flush after every write
		ModifyResponse: r.modifyResponse,
		ErrorHandler:   r.proxyError,
		ErrorLog:       slog.NewLogLogger(c.Logger.Handler(), slog.LevelDebug),
	}
	return r, nil
}

// Reload replaces the routes at once (in-flight calls finish on the old
// ones). Invalid routes are refused and the old ones kept.
func (r *Relay) Reload(routes []config.RelayRoute) error {
	if ps := config.RelayRouteProblems(routes); len(ps) > 0 {
		var msgs []string
		for _, p := range ps {
			msgs = append(msgs, p.Key+": "+p.Message)
		}
		return fmt.Errorf("relay routes: %s", strings.Join(msgs, "; "))
	}
	out := make([]*route, 0, len(routes))
	for _, rt := range routes {
		u, err := url.Parse(rt.Upstream)
		if err != nil {
			return fmt.Errorf("relay route %s: upstream: %w", rt.Name, err)
		}
		u.Path, u.RawPath = "", ""
		cr := &route{name: rt.Name, method: rt.Match.Method, path: rt.Match.Path, upstream: u,
			req: section{name: "request"}, resp: section{name: "response"}}
		if p, ok := strings.CutSuffix(rt.Match.Path, "/*"); ok {
			cr.path, cr.prefix = p+"/", true
		}
		for _, s := range []struct {
			in  config.RelaySection
			out *section
		}{{rt.Request, &cr.req}, {rt.Response, &cr.resp}} {
			for _, f := range s.in.Tokenize {
				p, _ := fieldpath.Parse(f.Field) // checked above
				mode := f.Mode
				if mode == "" {
					mode = token.Random
				}
				s.out.ops = append(s.out.ops, op{kind: opTokenize, path: p, field: f.Field, typ: f.Type, mode: mode})
			}
			for _, f := range s.in.Detokenize {
				p, _ := fieldpath.Parse(f.Field)
				s.out.ops = append(s.out.ops, op{kind: opDetokenize, path: p, field: f.Field})
			}
			for _, f := range s.in.Mask {
				p, _ := fieldpath.Parse(f.Field)
				ms, err := mask.Parse(f.Masker)
				if err != nil {
					return fmt.Errorf("relay route %s: masker: %w", rt.Name, err)
				}
				s.out.ops = append(s.out.ops, op{kind: opMask, path: p, field: f.Field, masker: ms})
			}
		}
		out = append(out, cr)
	}
	r.routes.Store(&out)
	return nil
}

// match returns the first route for the request's method and path.
func (r *Relay) match(method, p string) *route {
	for _, rt := range *r.routes.Load() {
		if rt.method != "*" && rt.method != method {
			continue
		}
		if rt.prefix && (strings.HasPrefix(p, rt.path) || p+"/" == rt.path) || !rt.prefix && p == rt.path {
			return rt
		}
	}
	return nil
}

// call is one relayed call in flight.
type call struct {
	rt                 *route
	id                 string
	start              time.Time
	ip                 string
	principal          *coffer.Principal
	note               coffer.AccessNote
	counts             map[string]int // "request.tokenize:card.number" → values
	tok, detok, masked int
	upstream           int
	audited            bool
	status             int
	outcome            string
}

type ctxKey struct{}

// ServeHTTP relays one call.
func (r *Relay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	c := &call{id: newRequestID(), start: r.c.Now(), ip: clientIP(req), counts: map[string]int{}}
	w.Header().Set("X-Coffer-Request-Id", c.id)
	defer func() {
		if r.c.Observe != nil {
			name := UnmatchedRoute
			if c.rt != nil {
				name = c.rt.name
			}
			r.c.Observe(name, c.outcome, r.c.Now().Sub(c.start))
		}
	}()
	if err := cleanRequest(req); err != nil {
		c.outcome = OutcomeUnmatched
		r.problem(w, c, err)
		return
	}
	c.rt = r.match(req.Method, req.URL.Path)
	if c.rt == nil {
		c.outcome = OutcomeUnmatched
		r.problem(w, c, coffer.Errorf(coffer.ENOTFOUND, "no relay route for this method and path"))
		return
	}
	c.note.Target("relay", "relay/routes/"+c.rt.name)
	if err := r.c.Audit.Healthy(); err != nil {
		r.fail(w, c, &coffer.Error{Code: coffer.EUNAVAILABLE, Message: "audit log unavailable; request not relayed", RetryAfterSeconds: 5, Cause: err})
		return
	}
	// The work and its audit outlive a caller that hangs up.
	ctx := context.WithoutCancel(req.Context())
	p, err := r.c.Principal(ctx)
	if err != nil {
		r.c.Logger.Error("relay client cannot be resolved: refusing every call", "client", r.c.Client, "error", err)
		r.fail(w, c, &coffer.Error{Code: coffer.EUNAVAILABLE, Message: "the relay's client is not available; request not relayed", RetryAfterSeconds: 5, Cause: err})
		return
	}
	c.principal = p
	if r.c.Suspended != nil && r.c.Suspended(p.ID) {
		c.note.Deny("principal suspended")
		r.fail(w, c, coffer.Errorf(coffer.EFORBIDDEN, "the relay's client is suspended by a security response"))
		return
	}
	if err := r.prepareRequest(ctx, w, req, c); err != nil {
		r.fail(w, c, err)
		return
	}
	if c.detok > 0 {
		// Values leave in clear: their release is on record first.
		if err := r.audit(ctx, c, "relay.release", 0); err != nil {
			r.fail(w, c, &coffer.Error{Code: coffer.EUNAVAILABLE, Message: "audit log unavailable; request not relayed", RetryAfterSeconds: 5, Cause: err})
			return
		}
	}
	out := req.WithContext(context.WithValue(req.Context(), ctxKey{}, c))
	r.proxy.ServeHTTP(w, out)
	if c.outcome == "" {
		c.outcome = OutcomeForwarded
	}
}

// cleanRequest refuses what must never reach an upstream: a path that is
// not clean (".." or "." segments, "//", escaped slashes, dots or
// backslashes: an upstream could resolve it to a path no route allows),
// protocol upgrades (the relay could not see the traffic) and CONNECT.
func cleanRequest(req *http.Request) error {
	p := req.URL.Path
	if req.Method == http.MethodConnect || !strings.HasPrefix(p, "/") || req.URL.Opaque != "" {
		return coffer.Errorf(coffer.ENOTFOUND, "no relay route for this method and path")
	}
	clean := path.Clean(p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	raw := strings.ToLower(req.URL.RawPath)
	if clean != p || strings.Contains(raw, "%2f") || strings.Contains(raw, "%5c") || strings.Contains(raw, "%2e") ||
		strings.ContainsRune(p, '\\') || strings.ContainsFunc(p, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return coffer.Errorf(coffer.ENOTFOUND, "no relay route for this path: it is not a clean path")
	}
	if req.Header.Get("Upgrade") != "" {
		return &coffer.Error{Code: coffer.EMALFORMED, Message: "protocol upgrades are not relayed"}
	}
	return nil
}

// prepareRequest transforms the request's query and body as its route's
// request section says, or, when it says nothing, bounds the body and
// leaves it to stream.
func (r *Relay) prepareRequest(ctx context.Context, w http.ResponseWriter, req *http.Request, c *call) error {
	max := r.c.MaxBodyBytes
	if req.ContentLength > max {
		return coffer.Errorf(coffer.ETOOLARGE, "the request body is over the relay's limit of %d bytes", max)
	}
	if len(c.rt.req.ops) == 0 {
		if req.Body != nil && req.Body != http.NoBody {
			req.Body = http.MaxBytesReader(w, req.Body, max)
		}
		return nil
	}
	var q *form
	if req.URL.RawQuery != "" {
		var err error
		if q, err = parseForm(req.URL.RawQuery); err != nil {
			return coffer.Errorf(coffer.EMALFORMED, "query: %v", err)
		}
	}
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(http.MaxBytesReader(w, req.Body, max))
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return coffer.Errorf(coffer.ETOOLARGE, "the request body is over the relay's limit of %d bytes", max)
		case err != nil:
			return coffer.Errorf(coffer.EMALFORMED, "the request body could not be read")
		}
		body = b
	}
	newBody, changed, err := r.transform(ctx, c, &c.rt.req, req.Header, body, q)
	if err != nil {
		return err
	}
	if q != nil && changed {
		req.URL.RawQuery = q.encode()
	}
	if changed && body != nil {
		body = newBody
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	req.Header.Del("Content-Length")
	req.Header.Del("Expect") // the body is read already
	req.TransferEncoding = nil
	if body == nil {
		req.Body = http.NoBody
	}
	return nil
}

// Body kinds.
const (
	kindNone = iota
	kindJSON
	kindForm
)

// bodyKind reads a body's media type: JSON (application/json or
// +json), a form, or nothing the relay can read (a 415, or for a response
// a 502: a listed field could hide in it).
func bodyKind(h http.Header, body []byte, what string, unreadable string) (int, error) {
	if len(body) == 0 {
		return kindNone, nil
	}
	if ce := h.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return 0, &coffer.Error{Code: unreadable, Message: what + " is content-encoded; the relay reads only identity bodies on this route"}
	}
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		return 0, &coffer.Error{Code: unreadable, Message: what + " has no readable Content-Type; this route reads JSON and form bodies"}
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return 0, &coffer.Error{Code: unreadable, Message: what + " must be UTF-8 on this route"}
	}
	switch {
	case mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"):
		return kindJSON, nil
	case mt == "application/x-www-form-urlencoded":
		return kindForm, nil
	}
	return 0, &coffer.Error{Code: unreadable, Message: what + " is neither JSON nor a form; this route reads only those"}
}

// transform applies sec to a body (and, for a request, its query q):
// every listed field found is tokenized, detokenized or masked, all or
// nothing. It returns the new body and whether anything changed.
func (r *Relay) transform(ctx context.Context, c *call, sec *section, h http.Header, body []byte, q *form) ([]byte, bool, error) {
	unreadable := codeUnsupportedMedia
	bad := coffer.EMALFORMED
	if sec.name == "response" {
		unreadable, bad = codeBadUpstream, codeBadUpstream
	}
	kind, err := bodyKind(h, body, "the "+sec.name+" body", unreadable)
	if err != nil {
		return nil, false, err
	}
	var (
		sites []site
		doc   *node
		f     *form
	)
	switch kind {
	case kindJSON:
		if doc, err = parseJSON(body); err != nil {
			return nil, false, &coffer.Error{Code: bad, Message: "the " + sec.name + " body is not JSON the relay can read: " + safeParseError(err)}
		}
	case kindForm:
		if f, err = parseForm(string(body)); err != nil {
			return nil, false, &coffer.Error{Code: bad, Message: "the " + sec.name + " body: " + err.Error()}
		}
	}
	for i, o := range sec.ops {
		if doc != nil {
			collect(doc, o.path, i, &sites)
		}
		if f != nil {
			collectForm(f, o.path, i, &sites)
		}
		if q != nil {
			collectForm(q, o.path, i, &sites)
		}
	}
	if len(sites) == 0 {
		return body, false, nil
	}
	for _, s := range sites {
		if s.kind != 's' {
			o := sec.ops[s.op]
			return nil, false, r.fieldError(sec, o, "holds a number, boolean, object or array, not a string")
		}
	}
	if err := r.apply(ctx, c, sec, sites); err != nil {
		return nil, false, err
	}
	switch {
	case doc != nil:
		var b bytes.Buffer
		doc.encode(&b)
		return b.Bytes(), true, nil
	case f != nil:
		return []byte(f.encode()), true, nil
	}
	return body, true, nil
}

// Codes beyond the domain's, each in httpapi's one status table.
const (
	codeUnsupportedMedia = "unsupported_media"
	codeBadUpstream      = httpapi.CodeBadGateway
	codeTimeout          = httpapi.CodeGatewayTimeout
)

func (r *Relay) fieldError(sec *section, o op, why string) error {
	code := coffer.EINVALID
	if sec.name == "response" {
		code = codeBadUpstream
	}
	return &coffer.Error{Code: code, Message: fmt.Sprintf("%s field %s %s; nothing was forwarded", sec.name, o.field, why)}
}

// apply (de)tokenizes and masks the sites: one tokenize and one detokenize
// batch, each decided by the token service under the relay's client.
func (r *Relay) apply(ctx context.Context, c *call, sec *section, sites []site) error {
	var tokItems []token.Item
	var tokSites, detSites []int
	var detTokens []string
	linkable := 0
	for i, s := range sites {
		o := sec.ops[s.op]
		switch o.kind {
		case opTokenize:
			tokItems = append(tokItems, token.Item{Value: s.value, Type: o.typ, Mode: o.mode})
			tokSites = append(tokSites, i)
			if token.Linkable(o.mode) {
				linkable++
			}
		case opDetokenize:
			detTokens = append(detTokens, s.value)
			detSites = append(detSites, i)
		}
	}
	if len(tokItems) > 0 {
		refund := func(context.Context) {}
		if r.c.Quotas != nil {
			var err error
			refund, err = r.c.Quotas.Take(ctx, c.principal, map[string]int{quota.Tokenize: len(tokItems), quota.TokenizeLinkable: linkable})
			if err != nil {
				c.note.Deny("tokenize quota")
				return err
			}
		}
		var n coffer.AccessNote
		toks, err := r.c.Tokens.Tokenize(ctx, vault.Caller{Principal: c.principal, IP: c.ip, Note: &n}, tokItems)
		c.merge(&n)
		if err != nil {
			refund(ctx)
			return r.itemError(sec, sites, tokSites, err, "tokenized")
		}
		for j, i := range tokSites {
			sites[i].set(toks[j])
		}
		c.tok += len(toks)
		c.note.Linkable += linkable
	}
	if len(detTokens) > 0 {
		var n coffer.AccessNote
		vals, err := r.c.Tokens.Detokenize(ctx, vault.Caller{Principal: c.principal, IP: c.ip, Note: &n}, detTokens)
		c.merge(&n)
		if err != nil {
			return r.itemError(sec, sites, detSites, err, "detokenized")
		}
		for j, i := range detSites {
			sites[i].set(vals[j])
		}
		c.detok += len(vals)
		c.note.Values += len(vals)
	}
	for i := range sites {
		o := sec.ops[sites[i].op]
		if o.kind == opMask {
			sites[i].set(r.c.Masker.Apply(o.masker, sites[i].value))
			c.masked++
		}
		c.counts[sec.name+"."+opNames[o.kind]+":"+o.field]++
	}
	if c.note.Decision == "" {
		c.note.Allow("")
	}
	return nil
}

// merge folds a token call's note into the call's: the first denial
// stands, rules add up, targets and value HMACs are kept, and the
// detector's flags carried.
func (c *call) merge(n *coffer.AccessNote) {
	switch {
	case n.Decision == "deny" && c.note.Decision != "deny":
		c.note.Decision, c.note.Reason, c.note.Rule = "deny", n.Reason, ""
	case n.Decision == "allow" && c.note.Decision != "deny":
		c.note.Decision = "allow"
		if n.Rule != "" {
			if c.note.Rule != "" {
				c.note.Rule += ","
			}
			c.note.Rule += n.Rule
		}
	}
	c.note.Targets = append(c.note.Targets, n.Targets...)
	c.note.ValueHMACs = append(c.note.ValueHMACs, n.ValueHMACs...)
	c.note.Missing = c.note.Missing || n.Missing
	c.note.Canary = c.note.Canary || n.Canary
}

// itemError turns a token service error into the call's answer, naming the
// field (never the value): a value or token that cannot be (de)tokenized
// is a 422 on a request, a 502 on a response; a denial stays 403, a quota
// 429, an outage 503.
func (r *Relay) itemError(sec *section, sites []site, idx []int, err error, verb string) error {
	code := coffer.ErrorCode(err)
	switch code {
	case coffer.EINVALID, coffer.ENOTFOUND, coffer.ECONFLICT:
		field := "a listed field"
		if i, ok := itemIndex(coffer.ErrorMessage(err)); ok && i < len(idx) {
			field = sec.ops[sites[idx[i]].op].field
		}
		o := op{field: field}
		return r.fieldError(sec, o, "cannot be "+verb)
	case coffer.EFORBIDDEN:
		return &coffer.Error{Code: coffer.EFORBIDDEN, Message: "the relay's client may not do what this route asks: " + coffer.ErrorMessage(err) + "; nothing was forwarded"}
	}
	return err
}

// itemIndex reads N out of a token service message "items[N]: …" or
// "tokens[N] …".
func itemIndex(msg string) (int, bool) {
	_, rest, ok := strings.Cut(msg, "[")
	if !ok {
		return 0, false
	}
	num, _, ok := strings.Cut(rest, "]")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(num)
	return n, err == nil && n >= 0
}

func safeParseError(err error) string {
	switch {
	case errors.Is(err, errDuplicate):
		return err.Error()
	case strings.Contains(err.Error(), "nested deeper"):
		return err.Error()
	}
	return "malformed"
}

// rewrite sends the request to its route's upstream, whatever its Host
// header or request URL said, with the X-Forwarded-* headers set afresh.
func (r *Relay) rewrite(pr *httputil.ProxyRequest) {
	c := pr.In.Context().Value(ctxKey{}).(*call)
	u := c.rt.upstream
	pr.Out.URL.Scheme, pr.Out.URL.Host, pr.Out.URL.User = u.Scheme, u.Host, nil
	pr.Out.URL.Path, pr.Out.URL.RawPath = pr.In.URL.Path, pr.In.URL.RawPath
	pr.Out.URL.RawQuery = pr.In.URL.RawQuery
	pr.Out.Host = u.Host
	pr.SetXForwarded()
	if len(c.rt.resp.ops) > 0 {
		// The answer must be readable to be transformed.
		pr.Out.Header.Set("Accept-Encoding", "identity")
	}
}

// modifyResponse transforms the upstream's answer as the route's
// response section says and writes the call's audit event; either failing
// turns the answer into the relay's error.
func (r *Relay) modifyResponse(resp *http.Response) error {
	c := resp.Request.Context().Value(ctxKey{}).(*call)
	c.upstream = resp.StatusCode
	ctx := context.WithoutCancel(resp.Request.Context())
	if len(c.rt.resp.ops) > 0 && resp.StatusCode != http.StatusSwitchingProtocols {
		if err := r.transformResponse(ctx, c, resp); err != nil {
			return err
		}
	}
	c.outcome = OutcomeForwarded
	if err := r.audit(ctx, c, "relay", resp.StatusCode); err != nil {
		return &coffer.Error{Code: coffer.EUNAVAILABLE, Message: "audit log unavailable; the upstream's answer is not returned", RetryAfterSeconds: 5, Cause: err}
	}
	return nil
}

func (r *Relay) transformResponse(ctx context.Context, c *call, resp *http.Response) error {
	max := r.c.MaxBodyBytes
	if resp.ContentLength > max {
		return &coffer.Error{Code: codeBadUpstream, Message: fmt.Sprintf("the upstream's answer is over the relay's limit of %d bytes on a route that transforms it", max)}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	_ = resp.Body.Close()
	if err != nil {
		return &coffer.Error{Code: codeBadUpstream, Message: "the upstream's answer could not be read", Cause: err}
	}
	if int64(len(b)) > max {
		return &coffer.Error{Code: codeBadUpstream, Message: fmt.Sprintf("the upstream's answer is over the relay's limit of %d bytes on a route that transforms it", max)}
	}
	nb, changed, err := r.transform(ctx, c, &c.rt.resp, resp.Header, b, nil)
	if err != nil {
		return err
	}
	if changed {
		b = nb
		resp.Header.Del("Etag")
		resp.Header.Del("Content-Md5")
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	resp.TransferEncoding = nil
	resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
	return nil
}

// proxyError answers a call the proxy could not complete: the upstream
// unreachable (502) or too slow (504), a streamed request body over the
// limit (413), or an error of modifyResponse.
func (r *Relay) proxyError(w http.ResponseWriter, req *http.Request, err error) {
	c := req.Context().Value(ctxKey{}).(*call)
	var ce *coffer.Error
	var mbe *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &ce):
	case errors.As(err, &mbe):
		err = coffer.Errorf(coffer.ETOOLARGE, "the request body is over the relay's limit of %d bytes", r.c.MaxBodyBytes)
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		r.c.Logger.Warn("relay upstream timed out", "route", c.rt.name, "request_id", c.id, "error", err)
		err = &coffer.Error{Code: codeTimeout, Message: "the upstream did not answer in time"}
	default:
		r.c.Logger.Warn("relay upstream unreachable", "route", c.rt.name, "request_id", c.id, "error", err)
		err = &coffer.Error{Code: codeBadUpstream, Message: "the upstream could not be reached"}
	}
	r.fail(w, c, err)
}

// fail audits a refused or failed call (once) and answers its problem.
func (r *Relay) fail(w http.ResponseWriter, c *call, err error) {
	status := httpapi.StatusOf(err)
	if c.outcome == "" || c.outcome == OutcomeForwarded {
		c.outcome = outcomeOf(coffer.ErrorCode(err), status)
	}
	// A refusal for the body's shape is no policy decision: the event's
	// decision stays empty, so that callers sending bad bodies cannot make
	// the relay's client look like a principal denied again and again
	// (access.denied_burst, and a suspension if one is configured).
	if c.note.Reason == "" && status >= 400 {
		c.note.Reason = coffer.ErrorMessage(err)
	}
	if !c.audited && c.principal != nil {
		if aerr := r.audit(context.Background(), c, "relay", status); aerr != nil {
			c.outcome = OutcomeError
			err = &coffer.Error{Code: coffer.EUNAVAILABLE, Message: "audit log unavailable; request not answered", RetryAfterSeconds: 5, Cause: aerr}
		}
	}
	r.problem(w, c, err)
}

func outcomeOf(code string, status int) string {
	switch {
	case code == codeTimeout:
		return OutcomeTimeout
	case code == codeBadUpstream && status == http.StatusBadGateway:
		return OutcomeUnreachable
	case status >= 500:
		return OutcomeError
	}
	return OutcomeRefused
}

func (r *Relay) problem(w http.ResponseWriter, c *call, err error) {
	if st := httpapi.StatusOf(err); st >= 500 && coffer.ErrorCode(err) != codeBadUpstream && coffer.ErrorCode(err) != codeTimeout {
		r.c.Logger.Error("relay call failed", "request_id", c.id, "error", err)
	}
	c.status = httpapi.WriteProblem(w, err, c.id)
}

// audit writes the call's event (Action action) with the counts so far.
func (r *Relay) audit(ctx context.Context, c *call, action string, status int) error {
	n := c.note
	n.Action = action
	n.Count = c.tok + c.detok + c.masked
	fields := make([]string, 0, len(c.counts)+1)
	for k, v := range c.counts {
		fields = append(fields, k+"="+strconv.Itoa(v))
	}
	sort.Strings(fields)
	if c.upstream != 0 {
		fields = append(fields, "upstream_status="+strconv.Itoa(c.upstream))
	}
	n.Fields = fields
	e := Event{Time: c.start, RequestID: c.id, Principal: c.principal, SourceIP: c.ip, Status: status, Note: n,
		Relay: &coffer.RelayCounts{Tokenized: c.tok, Detokenized: c.detok}}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), httpapi.DefaultAuditTimeout)
	defer cancel()
	err := r.c.Audit.Audit(actx, e)
	if action == "relay" {
		c.audited = true
	}
	return err
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
