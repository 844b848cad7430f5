package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/cofferhq/coffer/internal/coffer"
)

// statusOf is the one table from error code to HTTP status.
var statusOf = map[string]int{
	coffer.EMALFORMED:       http.StatusBadRequest,
	coffer.EUNAUTHENTICATED: http.StatusUnauthorized,
	coffer.EFORBIDDEN:       http.StatusForbidden,
	coffer.ENOTFOUND:        http.StatusNotFound,
	coffer.ECONFLICT:        http.StatusConflict,
	coffer.ETOOLARGE:        http.StatusRequestEntityTooLarge,
	coffer.EINVALID:         http.StatusUnprocessableEntity,
	coffer.ERATELIMIT:       http.StatusTooManyRequests,
	coffer.EUNAVAILABLE:     http.StatusServiceUnavailable,
	coffer.EINTERNAL:        http.StatusInternalServerError,
	"method_not_allowed":    http.StatusMethodNotAllowed,
	"unsupported_media":     http.StatusUnsupportedMediaType,
	CodeBadGateway:          http.StatusBadGateway,
	CodeGatewayTimeout:      http.StatusGatewayTimeout,
}

// Codes of the relay's answers about its upstreams (internal/relay).
const (
	// CodeBadGateway: an upstream could not be reached, or its answer
	// could not be transformed as its route says (502).
	CodeBadGateway = "bad_gateway"
	// CodeGatewayTimeout: an upstream did not answer in time (504).
	CodeGatewayTimeout = "gateway_timeout"
)

// StatusOf returns the status the one table gives err (500 for anything
// that is not a *coffer.Error with a known code).
func StatusOf(err error) int {
	if st, ok := statusOf[coffer.ErrorCode(err)]; ok {
		return st
	}
	return http.StatusInternalServerError
}

// WriteProblem writes err as problem+json, as every API answer is, and
// returns the status written (for the relay, which shares this table).
func WriteProblem(w http.ResponseWriter, err error, requestID string) int {
	return writeProblem(w, err, requestID)
}

// Problem is an RFC 9457 problem details body.
type Problem struct {
	Type      string   `json:"type"`
	Title     string   `json:"title"`
	Status    int      `json:"status"`
	Detail    string   `json:"detail"`
	RequestID string   `json:"request_id"`
	Problems  []string `json:"problems,omitempty"`
}

// problemFor turns err into a status and a problem body that is safe to
// show: the client-safe message of a *coffer.Error, or "internal error".
func problemFor(err error, requestID string) (int, Problem) {
	code := coffer.ErrorCode(err)
	status, ok := statusOf[code]
	if !ok {
		status, code = http.StatusInternalServerError, coffer.EINTERNAL
	}
	typ := code
	var ce *coffer.Error
	if asErr(err, &ce) && ce.Type != "" {
		typ = ce.Type
	}
	p := Problem{
		Type:      "https://coffer.dev/problems/" + typ,
		Title:     http.StatusText(status),
		Status:    status,
		Detail:    coffer.ErrorMessage(err),
		RequestID: requestID,
	}
	if ce != nil {
		p.Problems = ce.Problems
	}
	return status, p
}

// writeProblem writes a problem+json answer with the headers its status needs.
func writeProblem(w http.ResponseWriter, err error, requestID string) int {
	status, p := problemFor(err, requestID)
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	switch status {
	case http.StatusUnauthorized:
		h.Set("WWW-Authenticate", `Bearer realm="coffer", error="invalid_token"`)
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		var ce *coffer.Error
		secs := 1
		if asErr(err, &ce) && ce.RetryAfterSeconds > 0 {
			secs = ce.RetryAfterSeconds
		}
		h.Set("Retry-After", strconv.Itoa(secs))
	}
	b, _ := json.Marshal(p)
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
	return status
}
