// Package keyadmin is the administration of Coffer's own keys: rotating a
// data key (and scheduling the rewrap or reindex that follows), retiring,
// bringing back and destroying old versions of the keys that seal stored
// values, rotating and revoking the access token signing key, and moving
// every data key to a new root key. It serves the API (deciding there
// whether the caller may administer the key: action admin on
// system/keys/KEY_ID) and the offline commands (audited on the offline
// chain instead), and owns their results.
//
// It must never retire or destroy a version a stored value is still sealed
// under, nor one a node may still seal under; never rotate a key whose
// MACs find rows (index and order keys, the root check key) or a transit
// key; and never log a key, only key ids and version numbers.
package keyadmin
