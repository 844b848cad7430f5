package vaultcompat

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/httpapi"
	"github.com/cofferhq/coffer/internal/transit"
)

// DefaultMount is where the surface is mounted: /v1/transit/.
const DefaultMount = "transit"

// TokenHeader is the header Vault's clients send their token in.
const TokenHeader = "X-Vault-Token" // #nosec G101 -- a header name, not a credential

// Transit is what the surface needs of the transit engine;
// *transit.Service implements it.
type Transit interface {
	Create(ctx context.Context, c transit.Caller, name string, spec transit.KeySpec) (transit.KeyInfo, error)
	Get(ctx context.Context, c transit.Caller, name string) (transit.KeyInfo, error)
	List(ctx context.Context, c transit.Caller) ([]string, error)
	Rotate(ctx context.Context, c transit.Caller, name string) (transit.KeyInfo, error)
	Configure(ctx context.Context, c transit.Caller, name string, cfg transit.KeyConfig) (transit.KeyInfo, error)
	EncryptBatch(ctx context.Context, c transit.Caller, name string, items []transit.BatchItem) ([]transit.BatchCiphertext, error)
	DecryptBatch(ctx context.Context, c transit.Caller, name string, items []transit.BatchCiphertextItem) ([]transit.BatchDecrypted, error)
	RewrapBatch(ctx context.Context, c transit.Caller, name string, items []transit.BatchCiphertextItem) ([]transit.BatchCiphertext, error)
	HMAC(ctx context.Context, c transit.Caller, name, alg string, v uint32, inputs []transit.Plaintext) ([]transit.MACResult, error)
	VerifyHMAC(ctx context.Context, c transit.Caller, name, alg string, items []transit.MACCheck) ([]transit.MACResult, error)
	WrappingKey(ctx context.Context, c transit.Caller) (transit.WrappingKey, error)
	Import(ctx context.Context, c transit.Caller, name string, req transit.ImportRequest) (transit.KeyInfo, error)
	ImportVersion(ctx context.Context, c transit.Caller, name string, req transit.ImportRequest) (transit.KeyInfo, error)
}

// Config configures the surface.
type Config struct {
	// Transit is the engine every call goes to (required).
	Transit Transit
	// Mount is the path under /v1/ the surface answers at, without
	// slashes at either end (default DefaultMount).
	Mount string
}

// surface is the mounted Vault-compatible transit API.
type surface struct {
	t     Transit
	mount string
}

// Routes returns the surface's routes, for httpapi.Config.Extra: one
// route per method (GET, POST, PUT) under /v1/MOUNT/, dispatched here as
// Vault's router does, so that a path Vault does not serve is Vault's 404
// and a method it does not take is Vault's 405.
func Routes(c Config) func(*httpapi.Router) {
	if c.Mount == "" {
		c.Mount = DefaultMount
	}
	s := &surface{t: c.Transit, mount: strings.Trim(c.Mount, "/")}
	return func(rt *httpapi.Router) {
		base := "/v1/" + s.mount + "/"
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut} {
			rt.HandleStyled(m+" "+base+"{path...}", Style, s.dispatch)
		}
		rt.StylePrefix(base, Style)
	}
}

// Style is the surface's dialect for httpapi: Vault's error shape and
// statuses, and the token in X-Vault-Token.
var Style = &httpapi.Style{TokenHeader: TokenHeader, Status: status, Write: writeError}

// vaultError is an error whose answer has a status of Vault's own, which
// Coffer's table would not give (decrypting under a key that does not
// exist is Vault's 400, not 404). Its message is client-safe.
type vaultError struct {
	status int
	msg    string
	cause  error
}

func (e *vaultError) Error() string { return e.msg }
func (e *vaultError) Unwrap() error { return e.cause }

// invalid is Vault's 400 with msg.
func invalid(msg string) error { return &vaultError{status: http.StatusBadRequest, msg: msg} }

// notFound is Vault's 404 for a read of nothing: {"errors":[]}.
func notFound(cause error) error { return &vaultError{status: http.StatusNotFound, cause: cause} }

// permissionDenied is Vault's answer to a missing, invalid or refused token.
const permissionDenied = "permission denied"

// status maps an error to Vault's status for it.
func status(err error) int {
	var ve *vaultError
	if errors.As(err, &ve) {
		return ve.status
	}
	switch coffer.ErrorCode(err) {
	case coffer.EMALFORMED, coffer.EINVALID, coffer.ECONFLICT, "unsupported_media":
		return http.StatusBadRequest
	case coffer.EUNAUTHENTICATED, coffer.EFORBIDDEN:
		return http.StatusForbidden
	case coffer.ENOTFOUND:
		return http.StatusNotFound
	case coffer.ETOOLARGE:
		return http.StatusRequestEntityTooLarge
	case coffer.ERATELIMIT:
		return http.StatusTooManyRequests
	case coffer.EUNAVAILABLE:
		return http.StatusServiceUnavailable
	case "method_not_allowed":
		return http.StatusMethodNotAllowed
	}
	return http.StatusInternalServerError
}

// message is the client-safe text of err's answer, as Vault words the
// common ones.
func message(err error, st int) []string {
	var ve *vaultError
	if errors.As(err, &ve) {
		if ve.msg == "" {
			return []string{}
		}
		return []string{ve.msg}
	}
	switch st {
	case http.StatusForbidden:
		return []string{permissionDenied}
	case http.StatusMethodNotAllowed:
		return []string{"unsupported operation"}
	case http.StatusNotFound:
		if coffer.ErrorMessage(err) == "no such endpoint" {
			return []string{"unsupported path"}
		}
	}
	return []string{coffer.ErrorMessage(err)}
}

// writeError writes Vault's error answer: {"errors":[…]}.
func writeError(w http.ResponseWriter, err error, _ string) int {
	st := status(err)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	var ce *coffer.Error
	if (st == http.StatusTooManyRequests || st == http.StatusServiceUnavailable) && errors.As(err, &ce) && ce.RetryAfterSeconds > 0 {
		h.Set("Retry-After", strconv.Itoa(ce.RetryAfterSeconds))
	}
	b, _ := json.Marshal(struct {
		Errors []string `json:"errors"`
	}{message(err, st)})
	w.WriteHeader(st)
	_, _ = w.Write(append(b, '\n'))
	return st
}

// response is Vault's answer envelope (sdk/logical.HTTPResponse).
type response struct {
	RequestID     string         `json:"request_id"`
	LeaseID       string         `json:"lease_id"`
	Renewable     bool           `json:"renewable"`
	LeaseDuration int            `json:"lease_duration"`
	Data          map[string]any `json:"data"`
	WrapInfo      any            `json:"wrap_info"`
	Warnings      []string       `json:"warnings"`
	Auth          any            `json:"auth"`
}

// ok answers data in Vault's envelope with status 200 (or st when given).
func ok(c *httpapi.Call, data map[string]any, warnings []string, st ...int) (httpapi.Reply, error) {
	r := httpapi.Reply{Body: response{RequestID: c.RequestID, Data: data, Warnings: warnings}}
	if len(st) > 0 {
		r.Status = st[0]
	}
	return r, nil
}

// caller is the transit caller of c.
func caller(c *httpapi.Call) transit.Caller {
	return transit.Caller{Principal: c.Principal, IP: c.IP, Note: &c.Note}
}

// dispatch routes one request by its path under the mount, as Vault's
// router does.
func (s *surface) dispatch(c *httpapi.Call) (httpapi.Reply, error) {
	path := strings.Trim(c.R.PathValue("path"), "/")
	seg := strings.Split(path, "/")
	write := c.R.Method == http.MethodPost || c.R.Method == http.MethodPut
	read := c.R.Method == http.MethodGet
	// Each case names the operation for the audit log before anything
	// else can fail.
	switch {
	case len(seg) == 1 && seg[0] == "keys":
		c.Note.Target("read", "keys")
		if read && c.R.URL.Query().Get("list") == "true" {
			return s.listKeys(c)
		}
	case len(seg) == 2 && seg[0] == "keys":
		switch {
		case read:
			c.Note.Target("read", resource(seg[1]))
			return s.readKey(c, seg[1])
		case write:
			c.Note.Target("keys.create", resource(seg[1]))
			return s.createKey(c, seg[1])
		}
	case len(seg) == 3 && seg[0] == "keys":
		c.Note.Target("request", resource(seg[1]))
		if write {
			switch seg[2] {
			case "rotate":
				return s.rotateKey(c, seg[1])
			case "config":
				return s.configKey(c, seg[1])
			case "import":
				return s.importKey(c, seg[1], false)
			case "import_version":
				return s.importKey(c, seg[1], true)
			}
			return httpapi.Reply{}, notFoundPath()
		}
	case len(seg) == 1 && seg[0] == "wrapping_key":
		c.Note.Target("keys.wrapping_key", "keys")
		if read {
			return s.wrappingKey(c)
		}
	case len(seg) == 2 && (seg[0] == "encrypt" || seg[0] == "decrypt" || seg[0] == "rewrap"):
		c.Note.Target(seg[0], resource(seg[1]))
		if write {
			switch seg[0] {
			case "encrypt":
				return s.encrypt(c, seg[1])
			case "decrypt":
				return s.decrypt(c, seg[1])
			}
			return s.rewrap(c, seg[1])
		}
	case (len(seg) == 2 || len(seg) == 3) && (seg[0] == "hmac" || seg[0] == "verify"):
		c.Note.Target(seg[0], resource(seg[1]))
		if write {
			alg := ""
			if len(seg) == 3 {
				alg = seg[2]
			}
			if seg[0] == "hmac" {
				return s.hmac(c, seg[1], alg)
			}
			return s.verify(c, seg[1], alg)
		}
	case len(seg) == 3 && seg[0] == "datakey":
		c.Note.Target("datakey", resource(seg[2]))
		if write {
			return s.datakey(c, seg[1], seg[2])
		}
	default:
		c.Note.Target("request", "transit")
		return httpapi.Reply{}, notFoundPath()
	}
	return httpapi.Reply{}, &vaultError{status: http.StatusMethodNotAllowed, msg: "unsupported operation"}
}

// resource is the policy resource of the key name in a path, or "keys"
// for a name no key can have: an attacker's path stays out of the audit
// log.
func resource(name string) string {
	if transit.ValidName(name) {
		return transit.Resource(name)
	}
	return "keys"
}

// notFoundPath is Vault's answer for a path the engine does not serve.
func notFoundPath() error {
	return &vaultError{status: http.StatusNotFound, msg: "unsupported path"}
}

// translate turns a transit error into Vault's answer for an operation
// on a key: a key that does not exist is a 400 with missing as its
// message (Vault's words for that operation), and a refused call is
// Vault's 403; anything else keeps its code.
func translate(err error, missing string) error {
	if err == nil {
		return nil
	}
	switch coffer.ErrorCode(err) {
	case coffer.ENOTFOUND:
		return &vaultError{status: http.StatusBadRequest, msg: missing, cause: err}
	case coffer.ETOOLARGE:
		// Vault has no batch limit of its own; a request over Coffer's is
		// one it should not repeat as it is.
		return &vaultError{status: http.StatusBadRequest, msg: coffer.ErrorMessage(err), cause: err}
	}
	return err
}
