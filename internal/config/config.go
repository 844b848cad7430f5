package config

import (
	"net/url"
	"time"
)

// FileName is the configuration file's name inside its directory.
const FileName = "coffer.yaml"

// Root key providers.
const (
	ProviderFile   = "file"   // the key in a file, mode 0600
	ProviderEnv    = "env"    // the key in an environment variable
	ProviderShamir = "shamir" // split into shares; serve starts sealed until enough are given
	ProviderPKCS11 = "pkcs11" // an AES key that never leaves a PKCS#11 token (HSM)
)

// Config is the server's configuration. Field tags give the YAML keys;
// `path:"true"` marks a path resolved against the configuration directory.
type Config struct {
	// DataDir holds the database, keys and TLS files (default: the
	// configuration directory).
	DataDir string `yaml:"data_dir,omitempty" path:"true"`
	// Listen is the HTTPS address (default 127.0.0.1:8443).
	Listen string `yaml:"listen"`
	// MetricsListen is the plain-HTTP address of /metrics (default
	// 127.0.0.1:9464); empty disables it.
	MetricsListen string `yaml:"metrics_listen"`
	// PublicURL is the URL clients use (default https://LISTEN).
	PublicURL string `yaml:"public_url,omitempty"`
	// DatabaseURL selects the store: empty for SQLite at DataDir/coffer.db,
	// postgres://… for PostgreSQL. It may hold a password: print Redacted.
	DatabaseURL string `yaml:"database_url,omitempty"`
	// DatabaseAppRole, on PostgreSQL, is the least-privilege role `coffer
	// migrate` creates and grants: SELECT/INSERT/UPDATE/DELETE on Coffer's
	// tables, only SELECT/INSERT on the audit tables. Serve connects as it.
	DatabaseAppRole string `yaml:"database_app_role,omitempty"`
	// DatabaseAllowSuperuser lets serve run as a PostgreSQL superuser
	// (refused by default: a superuser can rewrite the audit log).
	DatabaseAllowSuperuser bool `yaml:"database_allow_superuser"`

	RootKey  RootKey     `yaml:"root_key"`
	TLS      TLS         `yaml:"tls"`
	Auth     Auth        `yaml:"auth"`
	Limits   Limits      `yaml:"limits"`
	Timeouts Timeouts    `yaml:"timeouts"`
	Audit    Audit       `yaml:"audit"`
	Detect   Detect      `yaml:"detect"`
	Keys     KeyRotation `yaml:"keys"`
	Tokens   Tokens      `yaml:"tokens"`
	Transit  Transit     `yaml:"transit"`
	// Relay tokenizes and detokenizes fields of HTTP traffic on its way
	// to configured upstreams (docs/relay.md); off while Relay.Listen is
	// empty.
	Relay Relay `yaml:"relay,omitempty"`

	// TransitCompat serves the transit keys in the dialect of Vault's
	// transit engine under /v1/TransitCompatMount/ (default true; see
	// docs/vault-compat.md). false turns the surface off.
	TransitCompat bool `yaml:"transit_compat"`
	// TransitCompatMount is the path the Vault-compatible surface answers
	// under /v1/ (default "transit", Vault's own default mount).
	TransitCompatMount string `yaml:"transit_compat_mount"`
	// Console is the web console at /ui/ (docs/console.md).
	Console Console `yaml:"console"`

	// Dev marks a development instance (`coffer dev`).
	Dev bool `yaml:"dev"`
	// Node names this node in logs, audit events and leases. Unset, it is
	// the id kept in DataDir/node-id when that file was made on this host
	// at this path; otherwise the host name, which serve replaces with a
	// generated id that it keeps there (see docs/cluster.md).
	Node string `yaml:"node,omitempty"`
	// LogLevel is debug, info, warn or error (default info).
	LogLevel string `yaml:"log_level"`

	dir     string          // the configuration directory, absolute
	derived map[string]bool // keys whose value was derived, not given
}

// RootKey says where the root key (KEK) comes from.
type RootKey struct {
	// Provider is "file" (default), "env", "shamir" or "pkcs11".
	Provider string `yaml:"provider"`
	// File is the key file for the file provider (default DataDir/root.key).
	File string `yaml:"file,omitempty" path:"true"`
	// Env names the variable holding the key for the env provider
	// (default COFFER_ROOT_KEY_VALUE).
	Env string `yaml:"env"`
	// CheckFile, for the shamir provider, holds the check blob that says
	// how many shares unseal and verifies the key they make (default
	// DataDir/root-key.check). It is not secret, but must not be swapped.
	CheckFile string `yaml:"check_file,omitempty" path:"true"`
	// PKCS11 locates the root key on a PKCS#11 token for the pkcs11
	// provider. The PIN is never in the file: PINEnv names the variable.
	PKCS11 RootKeyPKCS11 `yaml:"pkcs11"`
	// UnsealShares, for the shamir provider, are root key shares an
	// offline command read from its standard input (--unseal-shares-stdin).
	// Never read from the file or the environment, never written out.
	UnsealShares []string `yaml:"-" json:"-"`
}

// RootKeyPKCS11 says where a PKCS#11 root key lives.
type RootKeyPKCS11 struct {
	// Module is the absolute path of the token's PKCS#11 library.
	Module string `yaml:"module,omitempty"`
	// TokenLabel names the token.
	TokenLabel string `yaml:"token_label,omitempty"`
	// KeyLabel is the CKA_LABEL of the AES-256 root key object.
	KeyLabel string `yaml:"key_label,omitempty"`
	// PINEnv names the environment variable holding the user PIN
	// (default COFFER_PKCS11_PIN).
	PINEnv string `yaml:"pin_env,omitempty"`
}

// TLS locates the server's certificate and Coffer's CA.
type TLS struct {
	CertFile  string `yaml:"cert_file,omitempty" path:"true"`   // default DataDir/tls/server.pem
	KeyFile   string `yaml:"key_file,omitempty" path:"true"`    // default DataDir/tls/server-key.pem
	CAFile    string `yaml:"ca_file,omitempty" path:"true"`     // default DataDir/tls/ca.pem
	CAKeyFile string `yaml:"ca_key_file,omitempty" path:"true"` // default DataDir/tls/ca-key.pem
	// ClientCerts enables client certificates issued by the CA (mTLS).
	ClientCerts bool `yaml:"client_certs"`
}

// Auth configures token issuing and login protection.
type Auth struct {
	// Issuer is the iss of access tokens. Unset, it is the deployment's,
	// kept in the database: the public_url of the first node that served
	// it, shared by every node (see docs/cluster.md).
	Issuer string `yaml:"issuer,omitempty"`
	// Audience is the aud of access tokens (default "coffer").
	Audience string `yaml:"audience"`
	// TokenTTL is the access token lifetime (default 15m, at most 24h).
	TokenTTL Duration `yaml:"token_ttl"`
	Lockout  Lockout  `yaml:"lockout"`
	// Hashing bounds the password hashing (argon2id, 64 MiB each) that
	// unauthenticated logins can start.
	Hashing Hashing `yaml:"hashing"`
	// MFAEnrolmentCodeTTL is how long a one-time MFA enrolment code issued
	// by an admin stays valid (default 72h).
	MFAEnrolmentCodeTTL Duration `yaml:"mfa_enrolment_code_ttl"`
	// ReauthMaxAge is the oldest access token accepted for operations that
	// need a fresh sign-in, such as resetting a user's MFA (default 5m).
	ReauthMaxAge Duration `yaml:"reauth_max_age"`
	// External lists trusted external OIDC issuers.
	External []ExternalIssuer `yaml:"external,omitempty"`
}

// Lockout locks an account out after MaxFailures failed attempts within
// Window, for a time that doubles from Base up to Max; a source address is
// locked the same way after AddressMaxFailures failures across accounts,
// and then only for accounts that are unknown or already failing (see
// SECURITY.md, "Lockout").
type Lockout struct {
	MaxFailures int      `yaml:"max_failures"` // failures of one account within Window before a lockout (default 5)
	Window      Duration `yaml:"window"`       // default 15m
	Base        Duration `yaml:"base"`         // first lockout (default 1m)
	Max         Duration `yaml:"max"`          // longest lockout (default 1h)
	// AddressMaxFailures is the spray budget of one source address: its
	// failures across all accounts within Window before it is locked
	// (default 100).
	AddressMaxFailures int `yaml:"address_max_failures"`
}

// Hashing bounds concurrent password verifications.
type Hashing struct {
	// MaxConcurrent is how many argon2id hashes run at once on a node
	// (0: one per 256 MiB of the Go memory limit when GOMEMLIMIT is set,
	// else twice the CPUs; at most 64).
	MaxConcurrent int `yaml:"max_concurrent"`
	// QueueTimeout is how long a login waits for a free slot before it is
	// answered 503 with Retry-After (default 2s).
	QueueTimeout Duration `yaml:"queue_timeout"`
}

// ExternalIssuer is an OIDC issuer whose tokens Coffer accepts.
type ExternalIssuer struct {
	// Issuer is the issuer's exact iss (an https URL).
	Issuer string `yaml:"issuer"`
	// Audience must be among a token's aud.
	Audience string `yaml:"audience"`
	// RolesClaim names the claim holding the external roles or groups
	// (default "roles"); "a.b" reaches a nested claim when no claim is
	// literally named "a.b".
	RolesClaim string `yaml:"roles_claim,omitempty"`
	// JWKSURL is the issuer's key set (https). Empty: discovered from
	// ISSUER/.well-known/openid-configuration.
	JWKSURL string `yaml:"jwks_url,omitempty"`
	// CAFile is an absolute path to PEM certificates trusted for the
	// issuer's HTTPS instead of the system roots.
	CAFile string `yaml:"ca_file,omitempty"`
	// RoleMap maps an external role or group to a Coffer role. External
	// roles not in the map are dropped, never passed through.
	RoleMap map[string]string `yaml:"role_map,omitempty"`
	// SubjectPrefix starts the principal id of every token from this issuer
	// (default "ext:ISSUER-HOST:"). It must contain a ':', which Coffer's own
	// client and user ids never do, and no issuer's prefix may start another's.
	SubjectPrefix string `yaml:"subject_prefix,omitempty"`
	// Algorithms lists the JWS algorithms accepted (default RS256, ES256,
	// EdDSA). Only asymmetric ones are allowed: never HS*, never none.
	Algorithms []string `yaml:"algorithms,omitempty"`
	// AttributeClaims lists string claims copied into the principal's
	// attributes (for example email); none by default.
	AttributeClaims []string `yaml:"attribute_claims,omitempty"`
	// MFAACRValues lists acr values that count as multi-factor, besides an
	// amr with mfa, otp or hwk.
	MFAACRValues []string `yaml:"mfa_acr_values,omitempty"`
	// TokenTypes lists the JWS typ header values accepted, compared without
	// case and with or without "application/" (default: at+jwt, the RFC
	// 9068 access-token type). Listing "JWT" also accepts tokens that do
	// not say they are access tokens, such as OpenID Connect ID tokens:
	// only do so for an issuer that cannot type its access tokens, and
	// give it an audience its ID tokens never carry.
	TokenTypes []string `yaml:"token_types,omitempty"`
	// AllowMissingJTI accepts tokens without a jti claim (refused by
	// default, since RFC 9068 requires one). Such a token is revoked by
	// the SHA-256 of the whole token instead of its jti.
	AllowMissingJTI bool `yaml:"allow_missing_jti,omitempty"`
}

// ExternalAlgorithms returns the JWS algorithms an external issuer may be
// configured to accept: asymmetric signatures only, never HS* or none.
func ExternalAlgorithms() []string {
	return []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
}

// DefaultExternalAlgorithms returns the algorithms accepted when an
// external issuer lists none.
func DefaultExternalAlgorithms() []string { return []string{"RS256", "ES256", "EdDSA"} }

// DefaultSubjectPrefix returns the default subject prefix of an issuer:
// "ext:HOST:" with the issuer URL's host (and port, if any).
func DefaultSubjectPrefix(issuer string) string {
	host := issuer
	if u, err := url.Parse(issuer); err == nil && u.Host != "" {
		host = u.Host
	}
	return "ext:" + host + ":"
}

// EffectiveSubjectPrefix returns x.SubjectPrefix or, when empty, the default.
func (x ExternalIssuer) EffectiveSubjectPrefix() string {
	if x.SubjectPrefix != "" {
		return x.SubjectPrefix
	}
	return DefaultSubjectPrefix(x.Issuer)
}

// Limits bounds requests.
type Limits struct {
	MaxBodyBytes int64 `yaml:"max_body_bytes"` // default 1 MiB
	// MaxBatchItems bounds the items of one transit encrypt, decrypt or
	// rewrap (items or batch_input) and one tokenize or detokenize
	// (default 10000; more is 413).
	MaxBatchItems int `yaml:"max_batch_items"`
	// RateLimit is each principal's sustained requests per second (a token
	// bucket; default 1000; 0 disables rate limiting).
	RateLimit float64 `yaml:"rate_limit"`
	// RateBurst is the bucket size (default 2000).
	RateBurst int `yaml:"rate_burst"`
	// TokenizePerHour is how many values one principal may tokenize, in
	// any mode, within any hour, counted across nodes; over it, tokenize
	// answers 429 with Retry-After (default 0: no quota).
	TokenizePerHour int `yaml:"tokenize_per_hour"`
	// TokenizeLinkablePerHour is how many values one principal may
	// tokenize in a linkable mode (deterministic or format-preserving)
	// within any hour: each such token answers "is this the value?" for a
	// guess, so low-entropy values (SSNs, card numbers with a known BIN)
	// fall to enough of them (default 10000; 0: no quota).
	TokenizeLinkablePerHour int `yaml:"tokenize_linkable_per_hour"`
	// Roles replaces the quotas above for the principals holding a role
	// (of several roles, the largest applies); a key left out or 0 keeps
	// the default.
	Roles map[string]RoleLimits `yaml:"roles,omitempty"`
}

// RoleLimits are one role's quotas (see Limits).
type RoleLimits struct {
	TokenizePerHour         int `yaml:"tokenize_per_hour,omitempty"`
	TokenizeLinkablePerHour int `yaml:"tokenize_linkable_per_hour,omitempty"`
}

// Timeouts of the HTTP server.
type Timeouts struct {
	ReadHeader Duration `yaml:"read_header"` // default 5s
	Read       Duration `yaml:"read"`        // default 30s
	Write      Duration `yaml:"write"`       // default 30s
	Idle       Duration `yaml:"idle"`        // default 120s
	Shutdown   Duration `yaml:"shutdown"`    // drain time on SIGTERM (default 30s)
}

// Audit configures the audit log's extra sinks and checkpoints. The chain
// itself always lives in the store.
type Audit struct {
	// File, if set, also appends every event as a JSON line.
	File string `yaml:"file,omitempty" path:"true"`
	// Stdout also writes every event to standard output (ECS JSON).
	Stdout bool `yaml:"stdout"`
	// CheckpointEvery signs a checkpoint after this many events (default
	// 1000; 0: by time only).
	CheckpointEvery int `yaml:"checkpoint_every"`
	// CheckpointInterval signs a checkpoint at least this often (default
	// 10m; 0: by count only).
	CheckpointInterval Duration `yaml:"checkpoint_interval"`
	// Witness, if set, also receives every signed checkpoint, somewhere
	// the database's attacker cannot rewrite: an https:// URL (each
	// checkpoint POSTed as JSON, signed with WitnessSecret; GET returns the
	// newest per node) or an absolute file path, best on another volume
	// (one JSON line per checkpoint). `coffer audit verify` compares its
	// newest checkpoints with the database. See docs/audit-witness.md.
	Witness string `yaml:"witness,omitempty"`
	// WitnessSecret signs each POST to an https witness (HMAC-SHA256 of
	// the body, X-Coffer-Signature, as security-event webhooks are).
	WitnessSecret string `yaml:"witness_secret,omitempty"`
	// WitnessCAFile, if set, holds the PEM certificates that an https
	// witness's certificate must chain to (default: the system's roots).
	WitnessCAFile string `yaml:"witness_ca_file,omitempty" path:"true"`
	// WitnessMaxLag is how long a signed checkpoint may wait for the
	// witness to take it before the node reports itself not ready
	// (/readyz) and raises the alarm (default 1m).
	WitnessMaxLag Duration `yaml:"witness_max_lag"`
	// Durability says when a request's audit event is durable:
	// AuditDurable ("durable", the default, also when left out) before the
	// request is answered; AuditInterval ("interval", opt-in) after: the
	// answer comes first and the event is appended within FlushInterval,
	// so events of answered requests are LOST if the process or host
	// crashes within the interval (or the append fails). `coffer doctor`
	// reports it (audit.not_durable). See docs/operations.md.
	Durability string `yaml:"durability,omitempty"`
	// FlushInterval bounds, with durability interval, how long an
	// answered request's event may wait for its append: what a crash may
	// lose (default 10ms, at most 1s).
	FlushInterval Duration `yaml:"flush_interval"`
	// Archive, if set, is the directory (best another volume, or a
	// mounted object store) that receives sealed segments of the audit
	// log: the events up to a signed checkpoint, compressed, with the
	// checkpoints and the previous segment's head (issue #24). Archived
	// segments older than RetainInDB are pruned from the database once
	// written, synced and read back verified. See docs/operations.md.
	Archive string `yaml:"archive,omitempty" path:"true"`
	// RetainInDB is how long audit events stay in the database before
	// their archived segment is pruned from it (default 168h; only with
	// Archive).
	RetainInDB Duration `yaml:"retain_in_db"`
	// ArchiveEvery is how often the background job archives and prunes
	// (default 1h; one node at a time in a cluster).
	ArchiveEvery Duration `yaml:"archive_every"`
	// ArchiveSegmentEvents bounds a segment's events (default 100000; a
	// segment closes at a signed checkpoint).
	ArchiveSegmentEvents int `yaml:"archive_segment_events"`
}

// Audit durability modes (Audit.Durability).
const (
	AuditDurable  = "durable"
	AuditInterval = "interval"
)

// Detect configures the anomaly detectors.
type Detect struct {
	Window          Duration `yaml:"window"`            // sliding window (default 1m), counted in twelfths
	BulkReadValues  int      `yaml:"bulk_read_values"`  // values read or detokenized by one principal per window (default 500)
	FailedAuthBurst int      `yaml:"failed_auth_burst"` // failed authentications per window (default 10)
	DeniedBurst     int      `yaml:"denied_burst"`      // denied requests per window (default 20)
	Enumeration     int      `yaml:"enumeration"`       // reads/searches of unknown ids per window (default 20)
	// BulkTokenizeValues: values tokenized (any mode) by one principal per
	// window (default 1000) before data.bulk_tokenize.
	BulkTokenizeValues int `yaml:"bulk_tokenize_values"`
	// BulkTokenizeLinkable: values tokenized deterministically or
	// format-preserving by one principal per window (default 200) before
	// data.bulk_tokenize.
	BulkTokenizeLinkable int       `yaml:"bulk_tokenize_linkable"`
	Webhooks             []Webhook `yaml:"webhooks,omitempty"`
	// SuspendOn lists security event kinds that also suspend the principal
	// (tokens refused until an admin lifts it or SuspendFor passes).
	SuspendOn  []string `yaml:"suspend_on,omitempty"`
	SuspendFor Duration `yaml:"suspend_for"` // default 1h
	// Hours maps a principal id or role ("*" for everyone else) to working
	// hours like "08:00-18:00 Europe/Berlin"; access outside them raises
	// data.unusual_hour.
	Hours map[string]string `yaml:"hours,omitempty"`
}

// KeyRotation configures the automatic rotation of keyring data keys: the keys of
// collections ("collection/NAME"), of token values ("tokens/TYPE"), of
// data subjects ("subject/ID") and of the audit log ("audit/hmac",
// "audit/signing"). One node at a time checks every RotateCheckInterval
// and rotates each key whose current version is due, as `coffer keys
// rotate` would (values are then rewrapped; the audit log goes on under
// the new version).
type KeyRotation struct {
	// RotateAfter makes a key due when its current version is older
	// (default 2160h, 90 days; 0: never by age). Subject keys are never
	// rotated by age: each seals a handful of values, and rotating every
	// one on a schedule would rewrap every subject's records for nothing.
	// Audit keys are rotated by age only: they seal no value.
	RotateAfter Duration `yaml:"rotate_after"`
	// RotateAfterUses makes a key due when its current version has sealed
	// more values (AES-GCM encryptions with random nonces; default 2^30
	// = 1073741824; 0: never by count; at most 2^32, the bound past which
	// nonce collisions become likely). The rewrap after a rotation seals
	// every value of the key again under the new version, and those seals
	// count: a key holding more than half this many values cannot be
	// brought well under it by rotating. Such a key is rotated by count
	// again only once more new values than rewrapped ones were sealed
	// under its version (never at every check), and each check logs a
	// warning naming it and counts it in the metric
	// coffer_key_rotation_too_many_values_total. Split its collection, or
	// raise this to well over twice the key's values (within 2^32).
	// Whatever this says, a version that sealed 2^32 - 2^28 values seals
	// no more (the hard stop, with a margin for other nodes' counts not
	// yet seen): with this above 0 it is rotated at once, with 0 every
	// write under it is refused (503) until it is rotated. The root key
	// counts its wraps the same way and stops there too; past this bound
	// each check warns that it must be rotated (coffer keys rotate-root).
	RotateAfterUses int64 `yaml:"rotate_after_uses"`
	// RotateCheckInterval is how often a node looks for due keys (default
	// 10m). Keep it short enough that a busy key cannot seal far past
	// RotateAfterUses between checks.
	RotateCheckInterval Duration `yaml:"rotate_check_interval"`
}

// Tokens configures the format-preserving card tokens made from now on.
// Each token records the options it was made with and is reversed with
// those, so changing them never changes what an existing token means; a
// value tokenized again under other options gets another token.
type Tokens struct {
	// CardKeepFirstSix keeps a card's first six digits (the issuer's IIN)
	// in its token as well as the last four (default false). The fewer
	// digits are enciphered, the fewer guesses recover a card from its
	// token by whoever may make linkable tokens (tokenize_linkable).
	CardKeepFirstSix bool `yaml:"card_keep_first_six"`
	// CardLuhnValid makes card tokens pass the Luhn check (default false:
	// they fail it, so that no token can be taken for a card number).
	CardLuhnValid bool `yaml:"card_luhn_valid"`
}

// Transit configures transit keys.
type Transit struct {
	BYOK BYOK `yaml:"byok"`
}

// BYOK configures bring-your-own-key imports of transit keys
// (POST /v1/keys/{name}/import): the RSA wrapping key they are wrapped for
// and the RSA-OAEP hashes accepted.
type BYOK struct {
	// WrappingKeyRotateAfter makes a new wrapping key once the current
	// one is this old (default 720h, 30 days; 0: never). A key made before
	// wrapping keys rotated is of unknown age: it is replaced at once.
	WrappingKeyRotateAfter Duration `yaml:"wrapping_key_rotate_after"`
	// WrappingKeyGrace is how long after a rotation the previous wrapping
	// key still unwraps imports already wrapped for it (default 1h, at
	// most 24h; 0: not at all); it is deleted after.
	WrappingKeyGrace Duration `yaml:"wrapping_key_grace"`
	// AllowSHA1 accepts hash_function SHA1 (RSA-OAEP with SHA-1) for
	// tooling that cannot do better (default false: such an import is a
	// 422 saying so).
	AllowSHA1 bool `yaml:"allow_sha1"`
}

// Relay configures the relay: an HTTPS reverse proxy in front of
// configured upstreams that tokenizes, detokenizes and masks listed fields
// of the bodies passing through, acting as one client (docs/relay.md).
type Relay struct {
	// Listen is the relay's HTTPS address (served with the server
	// certificate); the relay is off while it is empty.
	Listen string `yaml:"listen,omitempty"`
	// Client is the id of the client the relay acts as: its roles decide
	// what the relay may tokenize and detokenize, and every relayed call
	// is audited under it.
	Client string `yaml:"client,omitempty"`
	// UpstreamCAFile, if set, holds the PEM certificates that https
	// upstreams' certificates must chain to (default: the system's roots).
	// Upstream certificates are always verified.
	UpstreamCAFile string `yaml:"upstream_ca_file,omitempty" path:"true"`
	// UpstreamTimeout bounds the wait for an upstream's response headers
	// (0: 30s); past it the relay answers 504.
	UpstreamTimeout Duration `yaml:"upstream_timeout,omitempty"`
	// Routes are matched in order against a request's method and path;
	// an unmatched request is answered 404 and not forwarded. They reload
	// on SIGHUP.
	Routes []RelayRoute `yaml:"routes,omitempty"`
}

// RelayRoute is one relayed route.
type RelayRoute struct {
	// Name labels the route in audit events and metrics (unique;
	// letters, digits, '-', '_').
	Name string `yaml:"name"`
	// Match selects the requests of the route.
	Match RelayMatch `yaml:"match"`
	// Upstream is the scheme://host[:port] requests are sent to, with the
	// request's path and query kept (http or https; no path, user, query
	// or fragment).
	Upstream string `yaml:"upstream"`
	// Request is applied to the request's body (and query) before it is
	// forwarded, Response to the upstream's answer before it is returned.
	Request  RelaySection `yaml:"request,omitempty"`
	Response RelaySection `yaml:"response,omitempty"`
}

// RelayMatch selects requests by method and path.
type RelayMatch struct {
	// Method is an HTTP method (GET, POST, …) or "*" for any.
	Method string `yaml:"method"`
	// Path is an exact path ("/signup") or a prefix ending in "/*"
	// ("/api/*" matches /api/ and everything under it).
	Path string `yaml:"path"`
}

// RelaySection lists what happens to the fields of one body. A field is
// a dotted path with "[*]" for every array element (card.number,
// items[*].email) and means the same in JSON and in form bodies.
type RelaySection struct {
	Tokenize   []RelayField `yaml:"tokenize,omitempty"`
	Detokenize []RelayField `yaml:"detokenize,omitempty"`
	Mask       []RelayField `yaml:"mask,omitempty"`
}

// RelayField is one field of a section. Tokenize takes type and mode;
// detokenize takes neither (a token knows its type); mask takes masker.
type RelayField struct {
	Field  string `yaml:"field"`
	Type   string `yaml:"type,omitempty"`
	Mode   string `yaml:"mode,omitempty"`
	Masker string `yaml:"masker,omitempty"`
}

// Webhook receives security events; each POST is signed with Secret.
type Webhook struct {
	URL    string `yaml:"url"`
	Secret string `yaml:"secret"`
}

// Console configures the web console served at /ui/ on the API's listener.
type Console struct {
	// Disabled turns the console off (/ui/ then answers 404).
	Disabled bool `yaml:"disabled"`
	// IdleTimeout ends a console session unused this long (default 10m); a
	// session also ends when its access token does (auth.token_ttl).
	IdleTimeout Duration `yaml:"idle_timeout"`
}

// Defaults.
const (
	// DefaultTransitCompatMount is where the Vault-compatible transit
	// surface answers: /v1/transit/, Vault's default mount.
	DefaultTransitCompatMount = "transit"

	DefaultListen        = "127.0.0.1:8443"
	DefaultMetricsListen = "127.0.0.1:9464"
	DefaultAudience      = "coffer"
	DefaultRootKeyEnv    = "COFFER_ROOT_KEY_VALUE"
	DefaultPKCS11PINEnv  = "COFFER_PKCS11_PIN"
	DefaultLogLevel      = "info"
	// MaxTokenTTL bounds auth.token_ttl: access tokens are short-lived.
	MaxTokenTTL = 24 * time.Hour
	// DefaultRotateAfter is keys.rotate_after: 90 days.
	DefaultRotateAfter = 90 * 24 * time.Hour
	// DefaultRotateAfterUses is keys.rotate_after_uses: 2^30 encryptions,
	// a quarter of the 2^32 that AES-GCM with random nonces allows a key.
	DefaultRotateAfterUses = 1 << 30
	// MaxRotateAfterUses bounds keys.rotate_after_uses: 2^32.
	MaxRotateAfterUses = 1 << 32
	// DefaultRotateCheckInterval is keys.rotate_check_interval.
	DefaultRotateCheckInterval = 10 * time.Minute
	// DefaultTokenizeLinkablePerHour is limits.tokenize_linkable_per_hour.
	DefaultTokenizeLinkablePerHour = 10000
	// DefaultWrappingKeyRotateAfter is transit.byok.wrapping_key_rotate_after.
	DefaultWrappingKeyRotateAfter = 30 * 24 * time.Hour
	// DefaultWrappingKeyGrace is transit.byok.wrapping_key_grace.
	DefaultWrappingKeyGrace = time.Hour
	// MaxWrappingKeyGrace bounds transit.byok.wrapping_key_grace.
	MaxWrappingKeyGrace = 24 * time.Hour
)

// defaults returns a Config with every static default set; derived
// defaults are filled by finish.
func defaults(dir string) *Config {
	return &Config{
		Listen:        DefaultListen,
		MetricsListen: DefaultMetricsListen,
		RootKey:       RootKey{Provider: ProviderFile, Env: DefaultRootKeyEnv, PKCS11: RootKeyPKCS11{PINEnv: DefaultPKCS11PINEnv}},
		Auth: Auth{
			Audience: DefaultAudience,
			TokenTTL: Duration{15 * time.Minute},
			Lockout: Lockout{
				MaxFailures: 5,
				Window:      Duration{15 * time.Minute},
				Base:        Duration{time.Minute},
				Max:         Duration{time.Hour},

				AddressMaxFailures: 100,
			},
			Hashing:             Hashing{QueueTimeout: Duration{2 * time.Second}},
			MFAEnrolmentCodeTTL: Duration{72 * time.Hour},
			ReauthMaxAge:        Duration{5 * time.Minute},
		},
		Limits: Limits{
			MaxBodyBytes:  1 << 20,
			MaxBatchItems: 10000,
			RateLimit:     1000,
			RateBurst:     2000,

			TokenizeLinkablePerHour: DefaultTokenizeLinkablePerHour,
		},
		Timeouts: Timeouts{
			ReadHeader: Duration{5 * time.Second},
			Read:       Duration{30 * time.Second},
			Write:      Duration{30 * time.Second},
			Idle:       Duration{120 * time.Second},
			Shutdown:   Duration{30 * time.Second},
		},
		Audit: Audit{
			CheckpointEvery:      1000,
			CheckpointInterval:   Duration{10 * time.Minute},
			WitnessMaxLag:        Duration{time.Minute},
			FlushInterval:        Duration{10 * time.Millisecond},
			RetainInDB:           Duration{7 * 24 * time.Hour},
			ArchiveEvery:         Duration{time.Hour},
			ArchiveSegmentEvents: 100_000,
		},
		Detect: Detect{
			Window:          Duration{time.Minute},
			BulkReadValues:  500,
			FailedAuthBurst: 10,
			DeniedBurst:     20,
			Enumeration:     20,
			SuspendFor:      Duration{time.Hour},

			BulkTokenizeValues:   1000,
			BulkTokenizeLinkable: 200,
		},
		Keys: KeyRotation{
			RotateAfter:         Duration{DefaultRotateAfter},
			RotateAfterUses:     DefaultRotateAfterUses,
			RotateCheckInterval: Duration{DefaultRotateCheckInterval},
		},
		Transit: Transit{BYOK: BYOK{
			WrappingKeyRotateAfter: Duration{DefaultWrappingKeyRotateAfter},
			WrappingKeyGrace:       Duration{DefaultWrappingKeyGrace},
		}},
		TransitCompat:      true,
		TransitCompatMount: DefaultTransitCompatMount,
		LogLevel:           DefaultLogLevel,
		dir:                dir,
		derived:            map[string]bool{},
	}
}

// Dir returns the configuration directory the config was loaded from.
func (c *Config) Dir() string { return c.dir }

// Derived reports whether the setting key (such as "node" or
// "auth.issuer") was derived from other settings rather than given by the
// file, the environment or a flag.
func (c *Config) Derived(key string) bool { return c.derived[key] }

// Database kinds returned by Database.
const (
	DatabaseSQLite   = "sqlite"
	DatabasePostgres = "postgres"
)

// Database returns the store to open: DatabaseSQLite with the path of
// DataDir/coffer.db, or DatabasePostgres with DatabaseURL.
func (c *Config) Database() (kind, dsn string) {
	if c.DatabaseURL == "" {
		return DatabaseSQLite, joinPath(c.DataDir, "coffer.db")
	}
	return DatabasePostgres, c.DatabaseURL
}
