package coffer

import (
	"errors"
	"strings"
)

// Conflicts of the data key table that the keyring branches on and the
// store reports: one value each, so that no adapter has to translate.
var (
	// ErrKeyVersionExists: a data key version is already stored (another
	// node made it first).
	ErrKeyVersionExists = errors.New("data key version already exists")
	// ErrWrappedKeyChanged: a data key row is gone, destroyed, or no
	// longer holds the wrapped bytes the caller read.
	ErrWrappedKeyChanged = errors.New("wrapped data key changed meanwhile")
)

// ErrPendingMigrations: the database schema is older than this binary.
var ErrPendingMigrations = errors.New("the database schema is out of date: run `coffer migrate`")

// KeyKind is what a keyring key protects; its kind decides what may be
// done to it (see KeyID's methods).
type KeyKind int

// The kinds of key ids, with their string forms.
const (
	KeyUnknown            KeyKind = iota // any other id
	KeyCollection                        // collection/NAME: a collection's record values
	KeySubject                           // subject/ID: one data subject's record values
	KeyTokenValue                        // tokens/TYPE: the values of one token type
	KeyTokenFPE                          // tokens/TYPE/fpe: format-preserving tokens of a type
	KeyTokenDeterministic                // tokens/TYPE/deterministic: deterministic tokens of a type
	KeyTokenIndex                        // tokens/index: finds token rows
	KeyTokenOrder                        // tokens/order: orders token rows
	KeyIndex                             // index/COLLECTION/FIELD: a field's blind index
	KeyPseudonym                         // mask/hash/COLLECTION/FIELD: a field's hash mask pseudonyms
	KeyAudit                             // audit/NAME: the audit log's keys (audit/hmac, audit/signing)
	KeyAuditValue                        // audit-value/COLLECTION/FIELD or audit-value/tokens: MACs of searched values
	KeyTransit                           // transit/NAME: a transit key
	KeyRootCheck                         // coffer/root-check: proves the root key
)

// KeyID is a keyring key id: its kind and name (the part after the
// kind's prefix: "customers" of collection/customers, "leads/email" of
// index/leads/email, "card" of tokens/card/fpe). ParseKeyID and String
// are the only places that know the text form.
type KeyID struct {
	Kind KeyKind
	Name string
	raw  string // the text of an unknown id
}

// Key ids of fixed keys.
var (
	AuditHMACKey    = KeyID{Kind: KeyAudit, Name: "hmac"}
	AuditSigningKey = KeyID{Kind: KeyAudit, Name: "signing"}
	TokenIndexKey   = KeyID{Kind: KeyTokenIndex}
	TokenOrderKey   = KeyID{Kind: KeyTokenOrder}
	RootCheckKey    = KeyID{Kind: KeyRootCheck}
	// AuditTokenValueKey names detokenized tokens in audit events.
	AuditTokenValueKey = KeyID{Kind: KeyAuditValue, Name: "tokens"}
)

// AuditSearchValueKey names, in audit events, the values searched in a
// collection's field.
func AuditSearchValueKey(collection, field string) KeyID {
	return KeyID{Kind: KeyAuditValue, Name: collection + "/" + field}
}

// keyPrefixes are the text forms' prefixes, longest match first where
// one is a prefix of another.
var keyPrefixes = []struct {
	kind   KeyKind
	prefix string
}{
	{KeyCollection, "collection/"},
	{KeySubject, "subject/"},
	{KeyIndex, "index/"},
	{KeyPseudonym, "mask/hash/"},
	{KeyAuditValue, "audit-value/"},
	{KeyAudit, "audit/"},
	{KeyTransit, "transit/"},
}

// ParseKeyID reads a key id's text form. A malformed or unknown id is
// KeyUnknown (it keeps its text for String).
func ParseKeyID(s string) KeyID {
	switch s {
	case "tokens/index":
		return TokenIndexKey
	case "tokens/order":
		return TokenOrderKey
	case "coffer/root-check":
		return RootCheckKey
	}
	if typ, ok := strings.CutPrefix(s, "tokens/"); ok {
		name, suffix, two := strings.Cut(typ, "/")
		switch {
		case name == "" || strings.Contains(suffix, "/"):
		case !two:
			return KeyID{Kind: KeyTokenValue, Name: name}
		case suffix == "fpe":
			return KeyID{Kind: KeyTokenFPE, Name: name}
		case suffix == "deterministic":
			return KeyID{Kind: KeyTokenDeterministic, Name: name}
		}
		return KeyID{raw: s}
	}
	for _, p := range keyPrefixes {
		name, ok := strings.CutPrefix(s, p.prefix)
		if !ok {
			continue
		}
		if name == "" && p.kind != KeyAudit { // every audit/ id is permanent
			return KeyID{raw: s}
		}
		if p.kind == KeyIndex || p.kind == KeyPseudonym {
			c, f, ok := strings.Cut(name, "/")
			if !ok || c == "" || f == "" || strings.Contains(f, "/") {
				return KeyID{raw: s}
			}
		}
		return KeyID{Kind: p.kind, Name: name}
	}
	return KeyID{raw: s}
}

// String is the key id's text form, as the store and the audit log hold it.
func (k KeyID) String() string {
	switch k.Kind {
	case KeyUnknown:
		return k.raw
	case KeyTokenValue:
		return "tokens/" + k.Name
	case KeyTokenFPE:
		return "tokens/" + k.Name + "/fpe"
	case KeyTokenDeterministic:
		return "tokens/" + k.Name + "/deterministic"
	case KeyTokenIndex:
		return "tokens/index"
	case KeyTokenOrder:
		return "tokens/order"
	case KeyRootCheck:
		return "coffer/root-check"
	}
	for _, p := range keyPrefixes {
		if p.kind == k.Kind {
			return p.prefix + k.Name
		}
	}
	return k.raw
}

// KeyPrefix is the text prefix of every id of kind (collection/, …), for a
// store query by prefix; "" for a kind without one name space.
func KeyPrefix(kind KeyKind) string {
	for _, p := range keyPrefixes {
		if p.kind == kind {
			return p.prefix
		}
	}
	return ""
}

// CollectionKey, SubjectKey, TokenValueKey, IndexKey and PseudonymKey
// name the keys of what they protect.
func CollectionKey(name string) KeyID { return KeyID{Kind: KeyCollection, Name: name} }

// SubjectKey names the key of one data subject's values.
func SubjectKey(id string) KeyID { return KeyID{Kind: KeySubject, Name: id} }

// TokenValueKey names the key that seals one token type's values.
func TokenValueKey(typ string) KeyID { return KeyID{Kind: KeyTokenValue, Name: typ} }

// RecordKey names the key of a record's values: its subject's when it
// has one, else its collection's.
func RecordKey(collection, subject string) KeyID {
	if subject != "" {
		return SubjectKey(subject)
	}
	return CollectionKey(collection)
}

// SealsRecords reports whether the key seals record values (collection
// and subject keys): a rotation is followed by a rewrap.
func (k KeyID) SealsRecords() bool { return k.Kind == KeyCollection || k.Kind == KeySubject }

// SealsValues reports whether the key seals stored values and nothing
// else (record values and token values): its old versions may be
// retired and destroyed once nothing is sealed under them.
func (k KeyID) SealsValues() bool { return k.SealsRecords() || k.Kind == KeyTokenValue }

// Retirable is SealsValues: only those keys' versions end this way.
func (k KeyID) Retirable() bool { return k.SealsValues() }

// Rotatable reports whether an operator may rotate the key: the keys of
// values, blind index and pseudonym keys, token FPE and deterministic
// keys, and the audit log's hmac and signing keys. Never the token index
// and order keys or the root check key (their MACs find rows), nor
// transit keys (they have their own API).
func (k KeyID) Rotatable() bool {
	switch k.Kind {
	case KeyCollection, KeySubject, KeyTokenValue, KeyTokenFPE, KeyTokenDeterministic, KeyIndex, KeyPseudonym:
		return true
	case KeyAudit:
		return k == AuditHMACKey || k == AuditSigningKey
	}
	return false
}

// Permanent reports whether every version of the key is kept for good
// (the audit log's keys: verifying it needs them).
func (k KeyID) Permanent() bool { return k.Kind == KeyAudit }

// AutoRotates reports whether a schedule may rotate the key, by age and
// by use count: collection and token value keys by both, subject keys by
// uses, the audit hmac and signing keys by age; nothing else.
func (k KeyID) AutoRotates() (byAge, byUses bool) {
	switch {
	case k == AuditHMACKey || k == AuditSigningKey:
		return true, false
	case k.Kind == KeyCollection || k.Kind == KeyTokenValue:
		return true, true
	case k.Kind == KeySubject:
		return false, true
	}
	return false, false
}

// Reindexed reports whether a rotation is followed by a reindex (blind
// index keys).
func (k KeyID) Reindexed() bool { return k.Kind == KeyIndex }
