package coffer

import (
	"errors"
	"time"
)

// Principal kinds.
const (
	KindClient   = "client"   // a service client (OAuth client credentials or mTLS)
	KindUser     = "user"     // a human user (password, optional TOTP)
	KindExternal = "external" // a token from a trusted external issuer
	// KindOperator is who runs an offline command (coffer keys …) on the
	// data directory or database itself: never a caller of the API, only
	// the principal of that command's audit events.
	KindOperator = "operator"
)

// Principal is an authenticated caller.
type Principal struct {
	ID         string            `json:"id"`
	Kind       string            `json:"kind"`
	Roles      []string          `json:"roles"`
	Attributes map[string]string `json:"attributes,omitempty"`
	// MFA is true when the principal proved a second factor for this token.
	MFA bool `json:"mfa"`
	// TokenID is the jti of the access token used, if any.
	TokenID string `json:"-"`
	// TokenExpiry is when that token expires.
	TokenExpiry time.Time `json:"-"`
	// AuthTime is when that token was issued (its iat): how fresh the
	// sign-in behind this request is.
	AuthTime time.Time `json:"-"`
	// Generation is the principal's generation (Client.Generation,
	// User.Generation) that the token was issued under; a token is
	// refused once the stored generation moved on. 0 for a principal
	// without one (an external issuer's).
	Generation int64 `json:"-"`
	// TokenKeyID is the kid of the key that signed the token, if any.
	TokenKeyID string `json:"-"`
}

// HasRole reports whether p has role r.
func (p *Principal) HasRole(r string) bool {
	for _, x := range p.Roles {
		if x == r {
			return true
		}
	}
	return false
}

// Field types of a collection schema.
const (
	TypeString     = "string"
	TypeEmail      = "email"
	TypePhone      = "phone"
	TypeCardNumber = "card_number"
	TypeSSN        = "ssn"
	TypeDate       = "date"
	TypeInteger    = "integer"
)

// Field is one field of a collection's schema.
type Field struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	Searchable bool   `json:"searchable"`
	// Mask names the masker used when a policy shows the field masked; empty
	// means the type's default.
	Mask string `json:"mask,omitempty"`
}

// Collection is a named schema of sensitive fields.
type Collection struct {
	Name   string  `json:"name"`
	Fields []Field `json:"fields"`
	// Retention, if non-zero, is how long records live before the purge job
	// removes them.
	Retention time.Duration `json:"-"`
	CreatedAt time.Time     `json:"created_at"`
}

// Field returns the schema field named name.
func (c *Collection) Field(name string) (Field, bool) {
	for _, f := range c.Fields {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

// Record is a stored record's metadata and, once decrypted, its values.
type Record struct {
	ID         string
	Collection string
	Owner      string
	Subject    string
	CreatedAt  time.Time
	UpdatedAt  time.Time
	ExpiresAt  *time.Time
	// Data holds plaintext values by field name. It exists only in memory
	// between decryption and the response; it is never logged.
	Data map[string]string
}

// DataKey is a versioned data key as stored: wrapped by the root key.
type DataKey struct {
	KeyID   string    // what the key protects, e.g. "collection/customers"
	Version uint32    // 1, 2, …; the highest active version encrypts
	Wrapped []byte    // the key wrapped under the root key; never the plain key
	State   string    // KeyActive, KeyRetired or KeyDestroyed
	Created time.Time // when the version was made
	// Uses counts the values sealed (AES-GCM encryptions, each with a
	// random nonce) under the version, as flushed by every node: each
	// node adds its count every few seconds, so it can lag a little.
	Uses uint64
	// RewrapUses counts the part of Uses that the rewrap after a rotation
	// made, resealing values moved from older versions (keyring Reseal);
	// at most Uses. A version whose uses are mostly its rewrap holds its
	// key's values: rotating it again would only reseal them again.
	RewrapUses uint64
}

// Data key states.
const (
	KeyActive    = "active"    // encrypts (if newest) and decrypts
	KeyRetired   = "retired"   // no longer decrypts; kept until destroyed
	KeyDestroyed = "destroyed" // key material erased (crypto-shredding)
)

// SealedRecord is a record as stored: metadata in the clear, each value
// sealed separately under a data key with its own AAD, and (since records
// carry a revision) the metadata and field set authenticated by Seal.
type SealedRecord struct {
	ID         string
	Collection string
	Owner      string
	Subject    string
	CreatedAt  time.Time
	UpdatedAt  time.Time
	ExpiresAt  *time.Time
	// KeyID names the data key the values are sealed under
	// ("collection/NAME" or "subject/ID").
	KeyID string
	// Values maps field name to its envelope (ciphertext with key version).
	Values map[string][]byte
	// Canary marks a decoy record: any read of it is a security event.
	Canary bool
	// Revision counts the record's writes: 1 when created, one more per
	// update. It is bound into every value's AAD, so a value from an
	// earlier revision does not open. 0 marks a record written before
	// records carried revisions (readable; upgraded on its next write or
	// by the rewrap job).
	Revision uint64
	// Seal authenticates the metadata above and the set of fields: an
	// envelope of no plaintext sealed under KeyID whose AAD is all of it
	// (see the vault). Empty exactly when Revision is 0.
	Seal []byte
}

// IndexEntry is one blind-index entry of a searchable field: a keyed MAC of
// the field's normalised value under an index key version.
type IndexEntry struct {
	Field   string
	Version uint32
	MAC     []byte
}

// IndexRef is one stored blind index entry of a record.
type IndexRef struct {
	RecordID string
	IndexEntry
}

// Client is a service client as stored. The secret is kept only as a hash.
type Client struct {
	ID         string
	Name       string
	SecretHash string
	Roles      []string
	Attributes map[string]string
	CreatedAt  time.Time
	Disabled   bool
	// Generation counts the changes that end the client's access tokens
	// (secret rotation, roles, attributes, disabling); it starts at 1.
	Generation int64
}

// User is a human user as stored.
type User struct {
	ID       string
	Username string
	// UsernameKey identifies the account: the username normalised and
	// case-folded (auth.Username). Empty for a user made before usernames
	// were normalised, until a node fills it in.
	UsernameKey  string
	PasswordHash string
	Roles        []string
	Attributes   map[string]string
	// TOTPSecret is the sealed TOTP secret (empty until enrolment starts).
	TOTPSecret []byte
	// TOTPConfirmed is true once the user proved a code: login then needs one.
	TOTPConfirmed bool
	// TOTPLastStep is the last accepted time step, so a code cannot be replayed.
	TOTPLastStep int64
	// RecoveryHashes are hashes of unused recovery codes.
	RecoveryHashes []string
	CreatedAt      time.Time
	Disabled       bool
	// Generation counts the changes that end the user's access tokens
	// (roles, attributes, disabling, an MFA reset); it starts at 1.
	Generation int64
}

// SigningKeyRecord is a JWT signing key as stored: the private key sealed
// under a data key.
type SigningKeyRecord struct {
	KID       string
	Sealed    []byte
	CreatedAt time.Time
	NotAfter  time.Time
	Active    bool
}

// SecurityEvent is an anomaly raised by a detector.
type SecurityEvent struct {
	ID        string         `json:"id"`
	Time      time.Time      `json:"time"`
	Kind      string         `json:"kind"`
	Severity  string         `json:"severity"`
	Principal string         `json:"principal"`
	Detail    map[string]any `json:"detail"`
}

// AccessNote is what one request did, filled in by the use case as it
// decides and acts, and written to the audit log before the answer leaves.
// It holds names and counts, never a value.
type AccessNote struct {
	Action   string
	Resource string
	// Decision is "allow" or "deny" once a policy decision was made.
	Decision string
	Rule     string
	Reason   string
	Fields   []string
	// Count is how many records or values were returned or written.
	Count int
	// Values is how many values were returned: every field of every
	// record read or searched (plain or masked), every value detokenized
	// or decrypted. The bulk read detector counts these.
	Values int
	// Linkable is how many of a tokenize request's items were tokenized
	// in a linkable mode (deterministic or format-preserving).
	Linkable int
	// ValueHMACs identify values (search terms, tokens) by keyed MAC.
	ValueHMACs []string
	// Missing is true when the request named something that does not exist
	// (for enumeration detection).
	Missing bool
	// Canary is true when a canary record or token was touched.
	Canary bool
	// Tampered lists the ids of records that failed their integrity check
	// (their stored data was changed outside Coffer): a security event.
	Tampered []string
	// Targets name, each by a path of targets.go, the things the request
	// touched: the record created, read, changed or deleted, the subject
	// erased, the key version made or used, the client or user changed.
	// Ids only: never a value, a token or a secret.
	Targets []string
	// Decided lists the questions the policy allowed for this request, so
	// that a replay of its kept answer (an Idempotency-Key) can ask them
	// again; kept only when KeepDecided is set (a request with an
	// Idempotency-Key). Never written to the audit log.
	Decided     []Decided
	KeepDecided bool
}

// Decided is one question the policy answered yes to: the action on the
// resource, with the record's attributes when there was one. Time and
// address are the request's and asked afresh on a replay.
type Decided struct {
	Action, Resource               string
	Owner, Subject, Collection, ID string
}

// Decide records an allowed question (see Decided).
func (n *AccessNote) Decide(d Decided) {
	if n != nil && n.KeepDecided {
		n.Decided = append(n.Decided, d)
	}
}

// Touch records things the request touched (see Targets).
func (n *AccessNote) Touch(targets ...string) {
	if n != nil {
		n.Targets = append(n.Targets, targets...)
	}
}

// Allow records an allowing decision.
func (n *AccessNote) Allow(rule string) {
	if n != nil {
		n.Decision, n.Rule, n.Reason = "allow", rule, ""
	}
}

// Deny records a denying decision.
func (n *AccessNote) Deny(reason string) {
	if n != nil {
		n.Decision, n.Reason = "deny", reason
	}
}

// Target records the action and resource of the request.
func (n *AccessNote) Target(action, resource string) {
	if n != nil {
		n.Action, n.Resource = action, resource
	}
}

// StoredToken is a token's row: looked up by a keyed MAC of the token, never
// by the token itself. Sealed holds the value for random and deterministic
// tokens and is empty for format-preserving ones (vaultless: the row only
// records the type, key version and options needed to reverse them).
type StoredToken struct {
	MAC       []byte
	Type      string
	Mode      string
	Version   uint32
	Sealed    []byte
	Canary    bool
	ExpiresAt *time.Time
	CreatedAt time.Time
	// FPEOptions are the options a format-preserving token was made with
	// (a bit set the token package defines; 0 for every other mode, and
	// for tokens made before options were recorded, which had none).
	FPEOptions uint8
}

// TransitKey is a transit key's metadata; its material lives only in the
// keyring under "transit/NAME".
type TransitKey struct {
	Name      string
	CreatedAt time.Time
	// MinDecryptionVersion is the oldest version that still decrypts.
	MinDecryptionVersion uint32
	// LatestVersion is the version that encrypts.
	LatestVersion uint32
	// Deletable must be set before Delete may destroy the key.
	Deletable bool
	// Exportable is always false: the material never leaves Coffer.
	Exportable bool
	// AutoRotatePeriod, if non-zero, rotates the key once its newest
	// version is that old.
	AutoRotatePeriod time.Duration
	// EncryptionsSinceRotate counts encryptions under LatestVersion as
	// flushed by the nodes.
	EncryptionsSinceRotate int64
	// Origin is where the key's first material came from: "" (made by
	// Coffer), TransitOriginBYOK or TransitOriginVault. Set at creation,
	// never changed.
	Origin string
	// VaultLatestVersion is, for a key imported from HashiCorp Vault, the
	// newest version brought from it: the versions up to it also open the
	// ciphertexts Vault made. 0 for every other key. Set at creation.
	VaultLatestVersion uint32
}

// Origins of a transit key (TransitKey.Origin).
const (
	// TransitOriginBYOK: imported wrapped for the BYOK wrapping key.
	TransitOriginBYOK = "byok"
	// TransitOriginVault: imported from HashiCorp Vault with its versions.
	TransitOriginVault = "vault"
)

// Suspension stops a principal's tokens from working until Until: a
// response action of the anomaly detectors, lifted by an admin.
type Suspension struct {
	Principal string
	Until     time.Time
	Reason    string
}

// Erased reports whether versions, every version of one key id, are all
// destroyed: the key id is crypto-shredded. One destroyed version beside
// live ones is only that version ended.
func Erased(versions []DataKey) bool {
	for _, v := range versions {
		if v.State != KeyDestroyed {
			return false
		}
	}
	return len(versions) > 0
}

// DueKeyQuery selects the data keys due for rotation or shredding by age
// or uses: which key ids the store's DueDataKeys looks at and when their
// current version is due.
type DueKeyQuery struct {
	// Prefix keeps the key ids that start with it ("collection/").
	Prefix string
	// After keeps the key ids ordered after it, to page; "" starts at
	// the first.
	After string
	// CreatedBefore makes a version due when it was created before it;
	// the zero time: age never makes a version due.
	CreatedBefore time.Time
	// UsesOver makes a version due when more than UsesOver values were
	// sealed under it (as flushed); 0: uses never make a version due.
	UsesOver uint64
	// Limit bounds the result; it must be at least 1.
	Limit int
}

// CountAdd is one increment of a counter shared by every node through the
// store: N (which may be negative, to give back) added to the counter of
// (Key, Window), whose total is summed from Since (zero: this window only).
// The detectors and the quotas count this way, in slices of a sliding
// window. Keys hold names and ids, never a value.
type CountAdd struct {
	Key    string
	Window time.Time
	N      int
	Since  time.Time
}

// Node is a member of the deployment as its row in the store says: the
// process (Instance, random per start) holding the lease on node id ID,
// renewed by its heartbeat until LeaseUntil.
type Node struct {
	ID            string    `json:"node"`
	Instance      string    `json:"-"`
	Host          string    `json:"host"`
	Version       string    `json:"version"`
	SchemaVersion int64     `json:"schema_version"`
	StartedAt     time.Time `json:"started_at"`
	HeartbeatAt   time.Time `json:"last_heartbeat"`
	LeaseUntil    time.Time `json:"lease_until"`
}

// Live reports whether n's lease runs at now.
func (n Node) Live(now time.Time) bool { return now.Before(n.LeaseUntil) }

// JobLease is a node's hold on a background job (rewrap, purge, reindex,
// automatic rotation): Holder (the node id) holds it until Until under
// fencing token Fence, which grows each time the lease changes hands. A
// write made under a lease is refused once its Fence is not the job's.
type JobLease struct {
	Job, Holder string
	Fence       int64
	Until       time.Time
}

// ErrLeaseLost: a write under a job lease that is no longer held under its
// fencing token (another node took the job, or the lease ran out). The
// store refuses such a write with it, and a job that sees it stops.
var ErrLeaseLost = errors.New("store: job lease lost")

// IdempotencyKey states.
const (
	IdempotencyPending = "pending"
	IdempotencyDone    = "done"
)

// IdempotencyKey is the stored outcome of a create sent with an
// Idempotency-Key header, per principal: Fingerprint identifies the
// request (method, path, body); a pending key is claimed by Owner (one
// request on one node) until ClaimUntil, or until the node Instance it runs
// on loses its lease; a done one holds the answer
// (Status, ContentType, Body, sealed) until ExpiresAt.
type IdempotencyKey struct {
	Principal, Key string
	Fingerprint    []byte
	State, Owner   string
	// Instance is the claiming process's node lease instance
	// (coffer.Node.Instance), "" when it holds none.
	Instance    string
	ClaimUntil  time.Time
	Status      int
	ContentType string
	Body        []byte
	CreatedAt   time.Time
	ExpiresAt   time.Time
}
