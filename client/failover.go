package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RetryPolicy bounds how the client repeats a call that failed in a way
// another try (on this node or another) may mend: the connection could
// not be made or broke, or the server answered 502, 503 or 504 (and, if
// Throttled, 429).
//
// Only calls that are safe to repeat are retried: GET, HEAD, OPTIONS, PUT
// and DELETE, a POST that carries an Idempotency-Key header, the token
// request, and any request whose connection could not be made at all (it
// never reached a server).
type RetryPolicy struct {
	// Attempts is the number of tries in all (default 3; 1 turns
	// retries off).
	Attempts int
	// MinBackoff and MaxBackoff bound the pause between tries, which
	// doubles from MinBackoff (default 100ms) up to MaxBackoff
	// (default 2s), with jitter.
	MinBackoff, MaxBackoff time.Duration
	// MaxWait is the longest Retry-After the client waits for (default
	// 5s); an answer asking for a longer wait is returned to the caller.
	MaxWait time.Duration
	// Throttled retries 429 answers too (after their Retry-After). Off by
	// default: a 429 is the server asking this caller to slow down, and
	// the caller should see it.
	Throttled bool
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.Attempts <= 0 {
		p.Attempts = 3
	}
	if p.MinBackoff <= 0 {
		p.MinBackoff = 100 * time.Millisecond
	}
	if p.MaxBackoff < p.MinBackoff {
		p.MaxBackoff = max(2*time.Second, p.MinBackoff)
	}
	if p.MaxWait <= 0 {
		p.MaxWait = 5 * time.Second
	}
	return p
}

// WithRetry sets the retry policy (see RetryPolicy for the default).
func WithRetry(p RetryPolicy) Option {
	return func(o *options) error { o.retry = p.withDefaults(); return nil }
}

// WithEndpoints adds further nodes of the same deployment, each
// https://host[:port], beside the URL given to New. Calls are spread over
// the nodes in turn; a node that refuses connections or answers 502, 503
// or 504 is set aside for a while (its Retry-After, else a backoff that
// grows with its failures) and the call that met it moves on to the next
// node when it is safe to repeat (see RetryPolicy). A node set aside
// comes back on its own once its time is up.
func WithEndpoints(urls ...string) Option {
	return func(o *options) error {
		for _, s := range urls {
			u, err := parseBase(s)
			if err != nil {
				return err
			}
			o.endpoints = append(o.endpoints, u)
		}
		return nil
	}
}

// parseBase checks a node URL: https, a host, no path beyond "/".
func parseBase(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(s, "/"))
	if err != nil || u.Scheme != "https" || u.Host == "" || u.Path != "" || u.RawQuery != "" {
		return nil, fmt.Errorf("client: %q: a node URL must be https://host[:port]", s)
	}
	return u, nil
}

// Endpoints reports the nodes the client calls and whether each is in use
// now (false while it is set aside after failures).
func (c *Client) Endpoints() []EndpointStatus {
	if c.pool == nil {
		return []EndpointStatus{{URL: c.base, Up: true}}
	}
	return c.pool.status()
}

// EndpointStatus is one node as the client sees it.
type EndpointStatus struct {
	URL      string
	Up       bool
	Failures int
	// Until is when a node set aside is tried again.
	Until time.Time
}

// pool is the nodes of a deployment with their health as this client
// has seen it.
type pool struct {
	mu   sync.Mutex
	eps  []*endpoint
	next int
	now  func() time.Time
	min  time.Duration
	max  time.Duration
}

type endpoint struct {
	u     *url.URL
	fails int
	until time.Time
}

func newPool(urls []*url.URL, p RetryPolicy) *pool {
	pl := &pool{now: time.Now, min: p.MinBackoff, max: p.MaxBackoff}
	for _, u := range urls {
		pl.eps = append(pl.eps, &endpoint{u: u})
	}
	return pl
}

// pick returns the next node in turn that is up and not yet tried by this
// call; else the untried node that comes back soonest; else (every node
// tried) the one that comes back soonest.
func (p *pool) pick(tried []bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	n := len(p.eps)
	for k := 0; k < n; k++ {
		i := (p.next + k) % n
		if !tried[i] && !p.eps[i].until.After(now) {
			p.next = (i + 1) % n
			return i
		}
	}
	best := -1
	for _, untriedOnly := range []bool{true, false} {
		for i, e := range p.eps {
			if untriedOnly && tried[i] {
				continue
			}
			if best < 0 || e.until.Before(p.eps[best].until) {
				best = i
			}
		}
		if best >= 0 {
			return best
		}
	}
	return 0
}

// fail sets node i aside for retryAfter, or a backoff that doubles with
// its consecutive failures.
func (p *pool) fail(i int, retryAfter time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.eps[i]
	e.fails++
	d := retryAfter
	if d <= 0 {
		d = backoff(p.min, p.max, e.fails-1)
	}
	e.until = p.now().Add(d)
}

func (p *pool) ok(i int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.eps[i].fails, p.eps[i].until = 0, time.Time{}
}

func (p *pool) status() []EndpointStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	out := make([]EndpointStatus, len(p.eps))
	for i, e := range p.eps {
		out[i] = EndpointStatus{URL: e.u.String(), Up: !e.until.After(now), Failures: e.fails, Until: e.until}
	}
	return out
}

// backoff is min·2^n capped at max, with up to a quarter of jitter taken
// off so that many clients do not retry in step.
func backoff(lo, hi time.Duration, n int) time.Duration {
	d := lo
	for ; n > 0 && d < hi; n-- {
		d *= 2
	}
	d = min(d, hi)
	return d - time.Duration(rand.Int64N(int64(d)/4+1)) // #nosec G404 -- jitter, not a secret
}

// retrier is the RoundTripper that spreads calls over the pool's nodes
// and repeats those safe to repeat.
type retrier struct {
	base   http.RoundTripper
	pool   *pool
	policy RetryPolicy
	sleep  func(context.Context, time.Duration) error
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// repeatable says whether req may be sent again after a try whose outcome
// is unknown.
func repeatable(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
		return true
	}
	if req.Header.Get("Idempotency-Key") != "" {
		return true
	}
	// A token request only exchanges credentials: repeating it issues at
	// most a second token.
	return req.Method == http.MethodPost && req.URL.Path == "/v1/oauth/token"
}

// neverSent says whether err means the request did not reach a server
// (the connection could not be made), so that repeating it is safe
// whatever its method.
func neverSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// RoundTrip implements http.RoundTripper.
func (r *retrier) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	bodyOK := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	canRepeat := bodyOK && repeatable(req)
	tried := make([]bool, len(r.pool.eps))
	for attempt := 1; ; attempt++ {
		i := r.pool.pick(tried)
		tried[i] = true
		if all(tried) {
			clear(tried) // a second round over the nodes
		}
		out, err := r.prepare(req, i, attempt)
		if err != nil {
			return nil, err
		}
		resp, err := r.base.RoundTrip(out)
		last := attempt >= r.policy.Attempts
		if err != nil {
			r.pool.fail(i, 0)
			if last || ctx.Err() != nil || !bodyOK || (!canRepeat && !neverSent(err)) {
				return nil, err
			}
			if err := r.sleep(ctx, backoff(r.policy.MinBackoff, r.policy.MaxBackoff, attempt-1)); err != nil {
				return nil, err
			}
			continue
		}
		ra, hasRA := retryAfter(resp.Header)
		switch resp.StatusCode {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			r.pool.fail(i, ra)
		case http.StatusTooManyRequests:
			if !r.policy.Throttled {
				return resp, nil
			}
		default:
			r.pool.ok(i)
			return resp, nil
		}
		if last || !canRepeat || (hasRA && ra > r.policy.MaxWait) {
			return resp, nil
		}
		wait := backoff(r.policy.MinBackoff, r.policy.MaxBackoff, attempt-1)
		if resp.StatusCode == http.StatusTooManyRequests || len(r.pool.eps) == 1 {
			wait = max(wait, ra) // the same node asked for this pause
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
		if err := r.sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

// prepare points a copy of req at node i, with a fresh body after the
// first try.
func (r *retrier) prepare(req *http.Request, i, attempt int) (*http.Request, error) {
	out := req.Clone(req.Context())
	u := r.pool.eps[i].u
	out.URL.Scheme, out.URL.Host, out.Host = u.Scheme, u.Host, u.Host
	if attempt > 1 && req.GetBody != nil {
		b, err := req.GetBody()
		if err != nil {
			return nil, fmt.Errorf("client: repeat request body: %w", err)
		}
		out.Body = b
	}
	return out, nil
}

func all(b []bool) bool {
	for _, v := range b {
		if !v {
			return false
		}
	}
	return true
}

// retryAfter reads a Retry-After header in seconds (the form Coffer
// sends) or as an HTTP date.
func retryAfter(h http.Header) (time.Duration, bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0), true
	}
	return 0, false
}
