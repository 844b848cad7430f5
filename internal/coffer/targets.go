package coffer

import (
	"net/url"
	"strconv"
)

// The paths that name what a request touched, in audit events (an
// AccessNote's Targets). Each begins like the policy resource it belongs
// to; components a caller chooses freely (a subject, a principal id) are
// path-escaped, so that a path always splits back into its parts. They
// hold ids, never a value, a token or a secret.

// RecordTarget names record id of collection.
func RecordTarget(collection, id string) string {
	return "collections/" + collection + "/records/" + url.PathEscape(id)
}

// CollectionTarget names a collection (its schema).
func CollectionTarget(name string) string { return "collections/" + name }

// SubjectTarget names a data subject.
func SubjectTarget(subject string) string { return "subjects/" + url.PathEscape(subject) }

// KeyTarget names a transit key by its name (Coffer's own keys are
// named by SystemKeyTarget).
func KeyTarget(key string) string { return "keys/" + key }

// KeyVersionTarget names one version of a key (see KeyTarget).
func KeyVersionTarget(key string, version uint32) string {
	return KeyTarget(key) + "/versions/" + strconv.FormatUint(uint64(version), 10)
}

// SystemKeyPrefix begins the policy resource and the audit target of
// each of Coffer's own keys (collection/NAME, audit/hmac, tokens/TYPE/fpe,
// jwt/signing, …): system/keys/KEY_ID. It is a namespace of its own so
// that no pattern written for transit keys (keys/NAME, keys/a*) can
// reach them.
const SystemKeyPrefix = "system/keys/"

// SystemKeyTarget names one of Coffer's own keys by its key id.
func SystemKeyTarget(keyID string) string { return SystemKeyPrefix + keyID }

// SystemKeyVersionTarget names one version of one of Coffer's own keys.
func SystemKeyVersionTarget(keyID string, version uint32) string {
	return SystemKeyTarget(keyID) + "/versions/" + strconv.FormatUint(uint64(version), 10)
}

// ClientTarget names a service client.
func ClientTarget(id string) string { return "clients/" + url.PathEscape(id) }

// UserTarget names a user by id (never by username).
func UserTarget(id string) string { return "users/" + url.PathEscape(id) }

// TokenTarget names a stored token of type typ by id, a keyed MAC of the
// token that says nothing about its value; never the token itself.
func TokenTarget(typ, id string) string { return "tokens/" + typ + "/" + id }

// AccessTokenTarget names an access token by its token id (JWT jti); never
// the token itself.
func AccessTokenTarget(tokenID string) string { return "access_tokens/" + url.PathEscape(tokenID) }

// PolicyTarget names a version of the policy document.
func PolicyTarget(version int64) string { return "policy/versions/" + strconv.FormatInt(version, 10) }

// SuspensionTarget names the suspension of a principal.
func SuspensionTarget(principal string) string { return "suspensions/" + url.PathEscape(principal) }
