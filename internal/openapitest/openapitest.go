package openapitest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	"github.com/pb33f/libopenapi-validator/paths"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"

	"github.com/cofferhq/coffer/internal/httpapi"
)

// maxBody bounds how much of an answer is read to check it.
const maxBody = 64 << 20

// Checker checks answers against the OpenAPI document the server serves.
// Safe for concurrent use.
type Checker struct {
	mu    sync.Mutex // the validator's caches are not documented as concurrent-safe
	doc   libopenapi.Document
	model *v3.Document
	opts  *config.ValidationOptions
	v     validator.Validator
}

var (
	sharedOnce sync.Once
	shared     *Checker
	sharedErr  error
)

// Shared returns the one Checker of the test binary (building a validator
// parses the whole document, so suites share it).
func Shared() (*Checker, error) {
	sharedOnce.Do(func() { shared, sharedErr = New(httpapi.OpenAPI()) })
	return shared, sharedErr
}

// New returns a Checker for the OpenAPI 3.1 document spec.
func New(spec []byte) (*Checker, error) {
	doc, err := libopenapi.NewDocument(spec)
	if err != nil {
		return nil, fmt.Errorf("openapitest: parse: %w", err)
	}
	m, err := doc.BuildV3Model()
	if err != nil {
		return nil, fmt.Errorf("openapitest: build model: %w", err)
	}
	opts := []config.Option{config.WithFormatAssertions()}
	return &Checker{
		doc:   doc,
		model: &m.Model,
		opts:  config.NewValidationOptions(opts...),
		v:     validator.NewValidatorFromV3Model(&m.Model, opts...),
	}, nil
}

// Check returns every way the answer (status, header, body) to req breaks
// the document; none when it holds. An answer to a path or method the
// document does not name must be an error (4xx or 5xx) with a problem+json
// body, as every error is.
func (c *Checker) Check(req *http.Request, status int, header http.Header, body []byte) []string {
	if !InContract(req.URL.Path) {
		return nil
	}
	resp := &http.Response{StatusCode: status, Header: header, Body: io.NopCloser(bytes.NewReader(body)), Request: req}
	c.mu.Lock()
	defer c.mu.Unlock()
	item, errs, _ := paths.FindPath(req, c.model, c.opts)
	if item == nil || len(errs) > 0 || !hasOperation(item, req.Method) {
		return checkProblem(status, header, body)
	}
	ok, verrs := c.v.ValidateHttpResponse(req, resp)
	if ok {
		return nil
	}
	var out []string
	for _, e := range verrs {
		msg := e.Message
		if e.Reason != "" {
			msg += ": " + e.Reason
		}
		for _, f := range e.SchemaValidationErrors {
			msg += fmt.Sprintf("; at %s: %s", f.FieldPath, f.Reason)
		}
		out = append(out, msg)
	}
	return out
}

// InContract says whether the OpenAPI document speaks for path: the JSON
// API under /v1/, the well-known documents and the health checks. The
// console (/ui/, HTML), the relay's proxied paths (another listener) and
// the Vault-compatible transit surface (/v1/transit/…, Vault's own bodies
// and {"errors": […]} answers, one wildcard route the validator cannot
// match) are other contracts, tested by their own suites.
func InContract(path string) bool {
	switch {
	case strings.HasPrefix(path, "/v1/transit/"):
		return false
	case strings.HasPrefix(path, "/v1/"), strings.HasPrefix(path, "/.well-known/"), path == "/healthz", path == "/readyz":
		return true
	}
	return false
}

func hasOperation(item *v3.PathItem, method string) bool {
	return item.GetOperations().GetOrZero(strings.ToLower(method)) != nil
}

// checkProblem checks an answer to a request the document has no operation
// for.
func checkProblem(status int, header http.Header, body []byte) []string {
	if status < 400 {
		return []string{fmt.Sprintf("status %d for an operation the document does not name", status)}
	}
	mt, _, _ := mime.ParseMediaType(header.Get("Content-Type"))
	if mt != "application/problem+json" {
		return []string{fmt.Sprintf("status %d with Content-Type %q, want application/problem+json", status, mt)}
	}
	var p struct {
		Type      *string `json:"type"`
		Title     *string `json:"title"`
		Status    *int    `json:"status"`
		Detail    *string `json:"detail"`
		RequestID *string `json:"request_id"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return []string{fmt.Sprintf("problem body does not decode: %v", err)}
	}
	if p.Type == nil || p.Title == nil || p.Status == nil || p.Detail == nil || p.RequestID == nil {
		return []string{"problem body lacks one of type, title, status, detail, request_id"}
	}
	if *p.Status != status {
		return []string{fmt.Sprintf("problem status %d on a %d answer", *p.Status, status)}
	}
	return nil
}

// Recorder collects the mismatches of the answers its transports see and
// fails its test with them when the test ends.
type Recorder struct {
	c     *Checker
	mu    sync.Mutex
	found []string
	seen  map[string]bool
}

// Watch returns a Recorder for t: at t's cleanup, every mismatch seen fails t.
func Watch(t testing.TB) *Recorder {
	t.Helper()
	c, err := Shared()
	if err != nil {
		t.Fatal(err)
	}
	r := &Recorder{c: c, seen: map[string]bool{}}
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, f := range r.found {
			t.Errorf("OpenAPI contract: %s", f)
		}
	})
	return r
}

// Transport wraps base (http.DefaultTransport when nil) so that every answer
// it carries is checked; the caller still reads the whole body. A nil
// Recorder checks nothing and returns base.
func (r *Recorder) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	if r == nil {
		return base
	}
	return &transport{r: r, base: base}
}

// Client returns a copy of hc whose answers are checked.
func (r *Recorder) Client(hc *http.Client) *http.Client {
	out := *hc
	out.Transport = r.Transport(hc.Transport)
	return &out
}

// Found returns the mismatches recorded so far.
func (r *Recorder) Found() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.found...)
}

func (r *Recorder) add(req *http.Request, status int, problems []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range problems {
		msg := fmt.Sprintf("%s %s → %d: %s", req.Method, req.URL.Path, status, p)
		if !r.seen[msg] {
			r.seen[msg] = true
			r.found = append(r.found, msg)
		}
	}
}

type transport struct {
	r    *Recorder
	base http.RoundTripper
}

// RoundTrip sends req, reads the whole answer, checks it and hands it on.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil || req.Method == http.MethodHead {
		return resp, err //nolint:wrapcheck // a transport passes its base's errors on as they are
	}
	b, rerr := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	_ = resp.Body.Close()
	if rerr != nil {
		// The caller reads what came and then the error; an answer cut
		// off in flight is not a contract mismatch.
		resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(b), errReader{rerr}))
		return resp, nil
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	t.r.add(req, resp.StatusCode, t.r.c.Check(req, resp.StatusCode, resp.Header, b))
	return resp, nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
