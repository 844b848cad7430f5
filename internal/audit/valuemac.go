package audit

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"

	"github.com/cofferhq/coffer/internal/coffer"
)

// The audit-only keys that name values in events (Event.ValueHMACs): one
// per searchable field ("audit-value/COLLECTION/FIELD") and one for
// detokenized tokens ("audit-value/tokens"), kept in the keyring and
// rotatable like any data key. They are never the blind index or token
// MAC keys, so a value_hmac matches nothing a database copy holds.
//
// TokenValueKeyID names detokenized tokens.
var TokenValueKeyID = coffer.AuditTokenValueKey.String()

// SearchValueKeyID returns the id of the key that names searched values of
// a collection's field.
func SearchValueKeyID(collection, field string) string {
	return coffer.AuditSearchValueKey(collection, field).String()
}

// valueMACBytes is how much of the HMAC a value_hmac keeps: 128 bits, far
// beyond a collision among one principal's values.
const valueMACBytes = 16

// MACer makes HMAC-SHA256 under the current version of a keyring key
// (keyring.Keyring.MAC): the version and the MAC.
type MACer interface {
	MAC(ctx context.Context, keyID string, data []byte) (version uint32, mac []byte, err error)
}

// ValueHMAC returns what an event carries to name value (a normalised
// search term, a token) that principal submitted: "v" + the key version +
// "." + base64url(HMAC-SHA256(key, len(principal) || principal || value))
// cut to 128 bits, under the current version of the audit value key keyID.
//
// Bound to the principal, one value gives each principal another MAC: a
// principal that may search and read the audit log cannot learn what
// others searched by searching candidates itself (it only ever meets its
// own MACs), while one principal's repeated searches of one value still
// match. Only the keyring's holder can tie a MAC to a value, for a given
// principal and version; once the version is destroyed (a data subject's
// erasure shreds the search value keys) nobody can. The value is MACed
// and forgotten: it is never kept or logged.
func ValueHMAC(ctx context.Context, m MACer, keyID, principal string, value []byte) (string, error) {
	in := make([]byte, 0, 4+len(principal)+len(value))
	in = appendString(in, principal)
	in = append(in, value...)
	v, mac, err := m.MAC(ctx, keyID, in)
	clear(in)
	if err != nil {
		return "", fmt.Errorf("audit: value MAC: %w", err)
	}
	if len(mac) < valueMACBytes {
		return "", fmt.Errorf("audit: value MAC: %d bytes", len(mac))
	}
	return "v" + strconv.FormatUint(uint64(v), 10) + "." + base64.RawURLEncoding.EncodeToString(mac[:valueMACBytes]), nil
}
