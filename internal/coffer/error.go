package coffer

import (
	"errors"
	"fmt"
)

// Error codes. Callers branch on these; one table in the HTTP layer maps each
// to a status code. Anything that is not an *Error is an internal error.
const (
	EMALFORMED       = "malformed"       // 400: the request cannot be parsed
	EUNAUTHENTICATED = "unauthenticated" // 401: no or bad credentials
	EFORBIDDEN       = "forbidden"       // 403: authenticated but not allowed
	ENOTFOUND        = "not_found"       // 404: unknown, or not to be known
	ECONFLICT        = "conflict"        // 409: already exists or state clash
	ETOOLARGE        = "too_large"       // 413: body or batch over the limit
	EINVALID         = "invalid"         // 422: well-formed but breaks the schema
	ERATELIMIT       = "rate_limited"    // 429: rate limited or locked out
	EUNAVAILABLE     = "unavailable"     // 503: not ready (sealed, store down)
	EINTERNAL        = "internal"        // 500: a bug or an outage, never bad input
)

// Problem types more specific than an error code: a client branches on
// them (the HTTP layer serves https://coffer.dev/problems/TYPE), each is
// documented in the OpenAPI document.
const (
	// ProblemSubjectErased: a write names a data subject that was erased
	// (409); an erased subject stays erased.
	ProblemSubjectErased = "subject-erased"
	// ProblemIntegrity: a stored record failed its integrity check (409):
	// its data was changed outside Coffer. A security event is raised.
	ProblemIntegrity = "integrity"
	// ProblemKeyDestroyed: a key was destroyed (crypto-shredded) (409).
	ProblemKeyDestroyed = "key-destroyed"
	// ProblemKeyVersionDestroyed: a value is sealed under a key version
	// that was destroyed (409); it is gone for good.
	ProblemKeyVersionDestroyed = "key-version-destroyed"
	// ProblemKeyRetired: a value is sealed under a retired key version, or
	// a key has no active version to seal with (409).
	ProblemKeyRetired = "key-retired"
	// ProblemPolicyLockout: a policy document under which no principal
	// could change the policy again (422); it is put in force only when
	// forced (PUT /v1/policy?force=true, `coffer policy apply --force`).
	ProblemPolicyLockout = "policy-lockout"
)

// Error is a domain error: a code callers branch on and a message that is
// safe to show a client. Message must never contain a submitted value, a key
// or a secret. Cause, if set, is for logs only and never reaches a client.
type Error struct {
	Code string
	// Type, if set, is a problem type more specific than Code (one of the
	// Problem… constants); the status is still Code's.
	Type    string
	Message string
	// Problems lists every individual problem where there are several
	// (a policy that does not compile, several invalid fields).
	Problems []string
	// RetryAfter, for ERATELIMIT and EUNAVAILABLE, says when to try again.
	RetryAfterSeconds int
	Cause             error
}

// Error implements error. It includes the cause for logs.
func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Cause)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Unwrap returns the log-only cause.
func (e *Error) Unwrap() error { return e.Cause }

// Errorf returns an *Error with the given code and a formatted message.
// Never format a submitted value into it.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL
// for any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	var e *Error
	if err == nil {
		return ""
	}
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the client-safe message of the first *Error in err's
// chain, or "internal error" for anything else.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
