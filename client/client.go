package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// Client calls one Coffer server.
type Client struct {
	base string
	hc   *http.Client       // authenticated
	raw  *http.Client       // TLS only
	src  oauth2.TokenSource // nil without credentials
	pool *pool              // the nodes calls are spread over
}

// Option configures New.
type Option func(*options) error

type options struct {
	roots      *x509.CertPool
	id, secret string
	token      string
	timeout    time.Duration
	cert       *tls.Certificate
	wrap       func(http.RoundTripper) http.RoundTripper
	endpoints  []*url.URL
	retry      RetryPolicy
}

// WithCAFile trusts the CA certificate in the PEM file (Coffer's own CA).
func WithCAFile(path string) Option {
	return func(o *options) error {
		b, err := os.ReadFile(path) // #nosec G304 -- the caller names its CA file
		if err != nil {
			return fmt.Errorf("client: read CA: %w", err)
		}
		return WithCAPEM(b)(o)
	}
}

// WithCAPEM trusts the given PEM CA certificates.
func WithCAPEM(pem []byte) Option {
	return func(o *options) error {
		p := x509.NewCertPool()
		if !p.AppendCertsFromPEM(pem) {
			return errors.New("client: no certificate in CA PEM")
		}
		o.roots = p
		return nil
	}
}

// WithClientCredentials authenticates with the client-credentials grant;
// tokens are fetched and renewed automatically.
func WithClientCredentials(clientID, clientSecret string) Option {
	return func(o *options) error { o.id, o.secret = clientID, clientSecret; return nil }
}

// WithToken authenticates with a fixed bearer token.
func WithToken(token string) Option {
	return func(o *options) error { o.token = token; return nil }
}

// WithClientCertificate presents a TLS client certificate (mTLS).
func WithClientCertificate(c tls.Certificate) Option {
	return func(o *options) error { o.cert = &c; return nil }
}

// WithTimeout bounds each request (default 30s).
func WithTimeout(d time.Duration) Option {
	return func(o *options) error { o.timeout = d; return nil }
}

// WithTransportWrapper wraps the HTTP transport the client sends every
// request through, token requests included (for tracing, metrics or a
// test's contract check). wrap gets the TLS transport and returns the
// RoundTripper to use.
func WithTransportWrapper(wrap func(http.RoundTripper) http.RoundTripper) Option {
	return func(o *options) error { o.wrap = wrap; return nil }
}

// New returns a client for the server at baseURL (https://host:port).
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || u.Scheme != "https" || u.Host == "" || u.Path != "" {
		return nil, errors.New("client: base URL must be https://host[:port]")
	}
	o := options{timeout: 30 * time.Second, retry: RetryPolicy{}.withDefaults()}
	for _, f := range opts {
		if err := f(&o); err != nil {
			return nil, err
		}
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: o.roots}
	if o.cert != nil {
		tc.Certificates = []tls.Certificate{*o.cert}
	}
	tr := &http.Transport{
		TLSClientConfig:     tc,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	var rt http.RoundTripper = tr
	if o.wrap != nil {
		rt = o.wrap(tr)
	}
	pl := newPool(append([]*url.URL{u}, o.endpoints...), o.retry)
	rt = &retrier{base: rt, pool: pl, policy: o.retry, sleep: sleepCtx}
	raw := &http.Client{Transport: rt, Timeout: o.timeout}
	c := &Client{base: u.String(), raw: raw, hc: raw, pool: pl}
	switch {
	case o.id != "":
		cc := clientcredentials.Config{
			ClientID: o.id, ClientSecret: o.secret,
			TokenURL:  c.base + "/v1/oauth/token",
			AuthStyle: oauth2.AuthStyleInHeader,
		}
		ctx := context.WithValue(context.Background(), oauth2.HTTPClient, raw)
		c.src = cc.TokenSource(ctx)
		c.hc = &http.Client{Transport: &oauth2.Transport{Source: c.src, Base: rt}, Timeout: o.timeout}
	case o.token != "":
		c.src = oauth2.StaticTokenSource(&oauth2.Token{AccessToken: o.token, TokenType: "Bearer"})
		c.hc = &http.Client{Transport: &oauth2.Transport{Source: c.src, Base: rt}, Timeout: o.timeout}
	}
	return c, nil
}

// Error is a failed call: the server's problem+json answer.
type Error struct {
	Status    int      `json:"status"`
	Type      string   `json:"type"`
	Title     string   `json:"title"`
	Detail    string   `json:"detail"`
	RequestID string   `json:"request_id"`
	Problems  []string `json:"problems,omitempty"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("coffer: %d %s: %s (request %s)", e.Status, e.Title, e.Detail, e.RequestID)
}

// StatusCode returns the HTTP status of err if it is an *Error, else 0.
func StatusCode(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		return re.Response.StatusCode
	}
	return 0
}

// do sends a JSON request and decodes a JSON answer into out (if non-nil).
func (c *Client) do(ctx context.Context, hc *http.Client, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("client: encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if method == http.MethodPost && createPath(path) {
		key, err := idempotencyKey(ctx)
		if err != nil {
			return err
		}
		req.Header.Set("Idempotency-Key", key)
	}
	return c.send(hc, req, out)
}

func (c *Client) send(hc *http.Client, req *http.Request, out any) error {
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("client: %s %s: %w", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("client: read answer: %w", err)
	}
	if resp.StatusCode >= 400 {
		return problem(resp.StatusCode, b)
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("client: decode answer: %w", err)
		}
	}
	return nil
}

// problem decodes a problem+json answer (or stands in for one).
func problem(status int, b []byte) *Error {
	e := &Error{Status: status}
	if json.Unmarshal(b, e) != nil || e.Status == 0 {
		e.Status, e.Title = status, http.StatusText(status)
	}
	return e
}

func esc(s string) string { return url.PathEscape(s) }

// Field is one field of a collection schema.
type Field struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	Searchable bool   `json:"searchable,omitempty"`
	Mask       string `json:"mask,omitempty"`
}

// Collection is a collection schema.
type Collection struct {
	Name      string    `json:"name"`
	Fields    []Field   `json:"fields"`
	Retention string    `json:"retention,omitempty"`
	CreatedAt time.Time `json:"created_at,omitzero"`
}

// CreateCollection creates a collection.
func (c *Client) CreateCollection(ctx context.Context, col Collection) error {
	return c.do(ctx, c.hc, http.MethodPost, "/v1/collections", col, nil)
}

// GetCollection returns a collection's schema.
func (c *Client) GetCollection(ctx context.Context, name string) (*Collection, error) {
	var out Collection
	if err := c.do(ctx, c.hc, http.MethodGet, "/v1/collections/"+esc(name), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// NewRecord is a record to create.
type NewRecord struct {
	Owner   string         `json:"owner,omitempty"`
	Subject string         `json:"subject,omitempty"`
	Data    map[string]any `json:"data"`
}

// Record is a record as the caller may see it.
type Record struct {
	ID        string         `json:"id"`
	Owner     string         `json:"owner"`
	Subject   string         `json:"subject,omitempty"`
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
	ExpiresAt *time.Time     `json:"expires_at,omitempty"`
	Data      map[string]any `json:"data"`
}

// CreateRecord stores a record and returns its id.
func (c *Client) CreateRecord(ctx context.Context, collection string, r NewRecord) (string, error) {
	var out struct {
		ID string `json:"id"`
	}
	if err := c.do(ctx, c.hc, http.MethodPost, "/v1/collections/"+esc(collection)+"/records", r, &out); err != nil {
		return "", err
	}
	return out.ID, nil
}

// GetRecord reads a record, shaped by the caller's field views.
func (c *Client) GetRecord(ctx context.Context, collection, id string) (*Record, error) {
	var out Record
	if err := c.do(ctx, c.hc, http.MethodGet, "/v1/collections/"+esc(collection)+"/records/"+esc(id), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UpdateRecord replaces the given fields of a record.
func (c *Client) UpdateRecord(ctx context.Context, collection, id string, data map[string]any) error {
	return c.do(ctx, c.hc, http.MethodPatch, "/v1/collections/"+esc(collection)+"/records/"+esc(id),
		map[string]any{"data": data}, nil)
}

// DeleteRecord deletes a record.
func (c *Client) DeleteRecord(ctx context.Context, collection, id string) error {
	return c.do(ctx, c.hc, http.MethodDelete, "/v1/collections/"+esc(collection)+"/records/"+esc(id), nil, nil)
}

// Search finds records by exact match on searchable fields.
func (c *Client) Search(ctx context.Context, collection string, where map[string]any, limit int) ([]Record, error) {
	var out struct {
		Records []Record `json:"records"`
	}
	body := map[string]any{"where": where}
	if limit > 0 {
		body["limit"] = limit
	}
	if err := c.do(ctx, c.hc, http.MethodPost, "/v1/collections/"+esc(collection)+"/records/search", body, &out); err != nil {
		return nil, err
	}
	return out.Records, nil
}

// EraseSubject crypto-shreds a data subject everywhere.
func (c *Client) EraseSubject(ctx context.Context, subject string) error {
	return c.do(ctx, c.hc, http.MethodDelete, "/v1/subjects/"+esc(subject), nil, nil)
}

// NewClient is a created service client; the secret is shown only here.
type NewClient struct {
	ClientID     string            `json:"client_id"`
	ClientSecret string            `json:"client_secret"`
	Name         string            `json:"name"`
	Roles        []string          `json:"roles"`
	Attributes   map[string]string `json:"attributes,omitempty"`
}

// CreateClient creates a service client with roles and attributes.
func (c *Client) CreateClient(ctx context.Context, name string, roles []string, attrs map[string]string) (*NewClient, error) {
	var out NewClient
	in := map[string]any{"name": name, "roles": roles}
	if attrs != nil {
		in["attributes"] = attrs
	}
	if err := c.do(ctx, c.hc, http.MethodPost, "/v1/clients", in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// PutPolicy replaces the policy; format is "yaml" or "json".
func (c *Client) PutPolicy(ctx context.Context, doc []byte, format string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.base+"/v1/policy", bytes.NewReader(doc))
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	ct := "application/json"
	if format == "yaml" {
		ct = "application/yaml"
	}
	req.Header.Set("Content-Type", ct)
	return c.send(c.hc, req, nil)
}

// GetPolicy returns the policy document in force, as it was put.
func (c *Client) GetPolicy(ctx context.Context) ([]byte, error) {
	b, _, err := c.getRaw(ctx, c.hc, "/v1/policy")
	return b, err
}

// Health reports whether the server is live (/healthz) without a token.
func (c *Client) Health(ctx context.Context) error {
	return c.do(ctx, c.raw, http.MethodGet, "/healthz", nil, nil)
}

// Ready reports whether the server is ready (/readyz) without a token.
func (c *Client) Ready(ctx context.Context) error {
	return c.do(ctx, c.raw, http.MethodGet, "/readyz", nil, nil)
}

// HTTPClient returns the authenticated HTTP client, for calls the SDK does
// not wrap yet.
func (c *Client) HTTPClient() *http.Client { return c.hc }

// BaseURL returns the server's base URL.
func (c *Client) BaseURL() string { return c.base }

// TokenItem is one value to tokenize.
type TokenItem struct {
	Value string `json:"value"`
	Type  string `json:"type"`
	Mode  string `json:"mode,omitempty"`
	TTL   string `json:"ttl,omitempty"`
}

// Tokenize replaces values with tokens, in order.
func (c *Client) Tokenize(ctx context.Context, items []TokenItem) ([]string, error) {
	var out struct {
		Tokens []string `json:"tokens"`
	}
	if err := c.do(ctx, c.hc, http.MethodPost, "/v1/tokenize", map[string]any{"items": items}, &out); err != nil {
		return nil, err
	}
	return out.Tokens, nil
}

// Detokenize returns the values of tokens, in order, all or nothing.
func (c *Client) Detokenize(ctx context.Context, tokens []string) ([]string, error) {
	var out struct {
		Values []string `json:"values"`
	}
	if err := c.do(ctx, c.hc, http.MethodPost, "/v1/detokenize", map[string]any{"tokens": tokens}, &out); err != nil {
		return nil, err
	}
	return out.Values, nil
}

// Node is one live node of the deployment, as GET /v1/sys/nodes lists it.
type Node struct {
	Node          string    `json:"node"`
	Host          string    `json:"host"`
	Version       string    `json:"version"`
	SchemaVersion int64     `json:"schema_version"`
	StartedAt     time.Time `json:"started_at"`
	LastHeartbeat time.Time `json:"last_heartbeat"`
	LeaseUntil    time.Time `json:"lease_until"`
	// Self marks the node that answered.
	Self bool `json:"self"`
}

// Nodes lists the deployment's live nodes (needs read on nodes).
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	var out struct {
		Nodes []Node `json:"nodes"`
	}
	if err := c.do(ctx, c.hc, http.MethodGet, "/v1/sys/nodes", nil, &out); err != nil {
		return nil, err
	}
	return out.Nodes, nil
}
