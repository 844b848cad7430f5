package client

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// getRaw GETs path and returns the body and its content type.
func (c *Client) getRaw(ctx context.Context, hc *http.Client, path string) ([]byte, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, "", fmt.Errorf("client: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("client: GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, "", fmt.Errorf("client: read answer: %w", err)
	}
	if resp.StatusCode >= 400 {
		return nil, "", problem(resp.StatusCode, b)
	}
	return b, resp.Header.Get("Content-Type"), nil
}

// ListCollections lists the collections the caller may know of.
func (c *Client) ListCollections(ctx context.Context) ([]Collection, error) {
	var out struct {
		Collections []Collection `json:"collections"`
	}
	if err := c.do(ctx, c.hc, http.MethodGet, "/v1/collections", nil, &out); err != nil {
		return nil, err
	}
	return out.Collections, nil
}

// Erasure is the answer to a data subject's erasure.
type Erasure struct {
	SubjectErased  bool `json:"subject_erased"`
	RecordsDeleted int  `json:"records_deleted"`
}

// EraseSubjectCount is EraseSubject that also answers how many records went.
func (c *Client) EraseSubjectCount(ctx context.Context, subject string) (*Erasure, error) {
	var out Erasure
	if err := c.do(ctx, c.hc, http.MethodDelete, "/v1/subjects/"+esc(subject), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// PolicyPrincipal is the principal a PolicyCheck asks about.
type PolicyPrincipal struct {
	ID         string            `json:"id,omitempty"`
	Kind       string            `json:"kind,omitempty"`
	Roles      []string          `json:"roles,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
	MFA        bool              `json:"mfa,omitempty"`
}

// PolicyCheck asks what the policy in force decides, without acting.
type PolicyCheck struct {
	Principal PolicyPrincipal `json:"principal"`
	Action    string          `json:"action"`
	Resource  string          `json:"resource"`
	Owner     string          `json:"owner,omitempty"`
	ID        string          `json:"id,omitempty"`
	IP        string          `json:"ip,omitempty"`
	Fields    []string        `json:"fields,omitempty"`
}

// Decision is the policy's answer to a PolicyCheck.
type Decision struct {
	Allowed bool              `json:"allowed"`
	Rule    string            `json:"rule"`
	Reason  string            `json:"reason"`
	Fields  map[string]string `json:"fields,omitempty"`
}

// CheckPolicy explains a decision of the policy in force.
func (c *Client) CheckPolicy(ctx context.Context, q PolicyCheck) (*Decision, error) {
	var out Decision
	if err := c.do(ctx, c.hc, http.MethodPost, "/v1/policy/check", q, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Finding is where inspect found sensitive data (never what).
type Finding struct {
	Type       string  `json:"type"`
	Start      int     `json:"start"`
	End        int     `json:"end"`
	Confidence float64 `json:"confidence"`
}

// Inspect finds sensitive data in free text.
func (c *Client) Inspect(ctx context.Context, text string) ([]Finding, error) {
	var out struct {
		Findings []Finding `json:"findings"`
	}
	if err := c.do(ctx, c.hc, http.MethodPost, "/v1/inspect", map[string]string{"text": text}, &out); err != nil {
		return nil, err
	}
	return out.Findings, nil
}

// Redact redacts sensitive data in free text; mode is "mask" (default) or
// "placeholder".
func (c *Client) Redact(ctx context.Context, text, mode string) (string, error) {
	in := map[string]string{"text": text}
	if mode != "" {
		in["mode"] = mode
	}
	var out struct {
		Text string `json:"text"`
	}
	if err := c.do(ctx, c.hc, http.MethodPost, "/v1/redact", in, &out); err != nil {
		return "", err
	}
	return out.Text, nil
}

// KeyVersion is one version of a transit key.
type KeyVersion struct {
	Version   uint32    `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	State     string    `json:"state"`
}

// Key is a transit key's metadata (never its material).
type Key struct {
	Name                 string    `json:"name"`
	CreatedAt            time.Time `json:"created_at"`
	LatestVersion        uint32    `json:"latest_version"`
	MinDecryptionVersion uint32    `json:"min_decryption_version"`
	Deletable            bool      `json:"deletable"`
	Exportable           bool      `json:"exportable"`
	AutoRotatePeriod     string    `json:"auto_rotate_period,omitempty"`
	// Imported is true for a key whose material was brought from outside;
	// ImportedFrom is "byok" (ImportKey) or "vault" (ImportVaultKey).
	Imported     bool   `json:"imported"`
	ImportedFrom string `json:"imported_from,omitempty"`
	// VaultLatestVersion is, for a key imported from Vault, the newest
	// version brought from it: the versions up to it also decrypt the
	// ciphertexts Vault made.
	VaultLatestVersion uint32       `json:"vault_latest_version,omitempty"`
	Versions           []KeyVersion `json:"versions"`
}

// KeySpec is how to make a transit key.
type KeySpec struct {
	Deletable        bool   `json:"deletable,omitempty"`
	AutoRotatePeriod string `json:"auto_rotate_period,omitempty"`
}

// CreateKey creates a transit key.
func (c *Client) CreateKey(ctx context.Context, name string, spec KeySpec) (*Key, error) {
	in := map[string]any{"name": name}
	if spec.Deletable {
		in["deletable"] = true
	}
	if spec.AutoRotatePeriod != "" {
		in["auto_rotate_period"] = spec.AutoRotatePeriod
	}
	return c.key(ctx, http.MethodPost, "/v1/keys", in)
}

func (c *Client) key(ctx context.Context, method, path string, in any) (*Key, error) {
	var out Key
	if err := c.do(ctx, c.hc, method, path, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetKey returns a transit key's metadata.
func (c *Client) GetKey(ctx context.Context, name string) (*Key, error) {
	return c.key(ctx, http.MethodGet, "/v1/keys/"+esc(name), nil)
}

// DeleteKey destroys a transit key marked deletable.
func (c *Client) DeleteKey(ctx context.Context, name string) error {
	return c.do(ctx, c.hc, http.MethodDelete, "/v1/keys/"+esc(name), nil, nil)
}

// KeyConfig changes a transit key's settings; nil fields keep their value.
type KeyConfig struct {
	MinDecryptionVersion *uint32 `json:"min_decryption_version,omitempty"`
	Deletable            *bool   `json:"deletable,omitempty"`
	AutoRotatePeriod     *string `json:"auto_rotate_period,omitempty"`
}

// ConfigureKey changes a transit key's settings.
func (c *Client) ConfigureKey(ctx context.Context, name string, cfg KeyConfig) (*Key, error) {
	return c.key(ctx, http.MethodPost, "/v1/keys/"+esc(name)+"/config", cfg)
}

// RotateKey makes a new version of a transit key the one that encrypts.
func (c *Client) RotateKey(ctx context.Context, name string) (*Key, error) {
	return c.key(ctx, http.MethodPost, "/v1/keys/"+esc(name)+"/rotate", nil)
}

// WrappingKey is the RSA public key bring-your-own-key imports are wrapped for.
type WrappingKey struct {
	PublicKey string     `json:"public_key"`
	Version   uint32     `json:"version"`
	CreatedAt *time.Time `json:"created_at,omitempty"`
}

// WrappingKey returns the current BYOK wrapping key.
func (c *Client) WrappingKey(ctx context.Context) (*WrappingKey, error) {
	var out WrappingKey
	if err := c.do(ctx, c.hc, http.MethodGet, "/v1/keys/wrapping_key", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ImportKey creates a transit key from a key wrapped for the wrapping key
// (ciphertext as the server documents; hashFunction "" for SHA256).
func (c *Client) ImportKey(ctx context.Context, name string, ciphertext []byte, hashFunction string) (*Key, error) {
	return c.key(ctx, http.MethodPost, "/v1/keys/"+esc(name)+"/import", importBody(ciphertext, hashFunction))
}

// ImportKeyVersion makes a wrapped key the next version of a transit key.
func (c *Client) ImportKeyVersion(ctx context.Context, name string, ciphertext []byte, hashFunction string) (*Key, error) {
	return c.key(ctx, http.MethodPost, "/v1/keys/"+esc(name)+"/import_version", importBody(ciphertext, hashFunction))
}

// VaultImport is the versions of a HashiCorp Vault transit key to import
// (ImportVaultKey).
type VaultImport struct {
	// Versions are consecutive, from Vault's min_decryption_version to its
	// latest version; each key is wrapped with WrapKey.
	Versions []VaultKeyVersion `json:"versions"`
	// HashFunction is the RSA-OAEP hash of the wraps ("" for SHA256).
	HashFunction string `json:"hash_function,omitempty"`
	// AutoRotatePeriod is a Go duration, or "" for none.
	AutoRotatePeriod string `json:"auto_rotate_period,omitempty"`
}

// VaultKeyVersion is one version of a Vault transit key, its key wrapped
// for the wrapping key.
type VaultKeyVersion struct {
	Version    uint32 `json:"version"`
	Ciphertext []byte `json:"ciphertext"`
}

// ImportVaultKey creates a transit key from the versions of a Vault
// transit key, which keep their numbers: every ciphertext Vault made under
// them decrypts in Coffer.
func (c *Client) ImportVaultKey(ctx context.Context, name string, in VaultImport) (*Key, error) {
	return c.key(ctx, http.MethodPost, "/v1/keys/"+esc(name)+"/import_vault", in)
}

func importBody(ciphertext []byte, hashFunction string) map[string]string {
	in := map[string]string{"ciphertext": base64.StdEncoding.EncodeToString(ciphertext)}
	if hashFunction != "" {
		in["hash_function"] = hashFunction
	}
	return in
}

// Encrypt seals plaintext under a transit key's latest version; context,
// if not nil, must be given again to decrypt.
func (c *Client) Encrypt(ctx context.Context, key string, plaintext, context []byte) (string, error) {
	in := map[string]string{"plaintext": base64.StdEncoding.EncodeToString(plaintext)}
	if context != nil {
		in["context"] = base64.StdEncoding.EncodeToString(context)
	}
	var out struct {
		Ciphertext string `json:"ciphertext"`
	}
	if err := c.do(ctx, c.hc, http.MethodPost, "/v1/keys/"+esc(key)+"/encrypt", in, &out); err != nil {
		return "", err
	}
	return out.Ciphertext, nil
}

// Decrypt opens a ciphertext Encrypt made.
func (c *Client) Decrypt(ctx context.Context, key, ciphertext string, context []byte) ([]byte, error) {
	var out struct {
		Plaintext string `json:"plaintext"`
	}
	if err := c.do(ctx, c.hc, http.MethodPost, "/v1/keys/"+esc(key)+"/decrypt", cipherBody(ciphertext, context), &out); err != nil {
		return nil, err
	}
	b, err := base64.StdEncoding.DecodeString(out.Plaintext)
	if err != nil {
		return nil, fmt.Errorf("client: decode plaintext: %w", err)
	}
	return b, nil
}

// Rewrap moves a ciphertext to the key's latest version without answering
// the plaintext.
func (c *Client) Rewrap(ctx context.Context, key, ciphertext string, context []byte) (string, error) {
	var out struct {
		Ciphertext string `json:"ciphertext"`
	}
	if err := c.do(ctx, c.hc, http.MethodPost, "/v1/keys/"+esc(key)+"/rewrap", cipherBody(ciphertext, context), &out); err != nil {
		return "", err
	}
	return out.Ciphertext, nil
}

func cipherBody(ciphertext string, context []byte) map[string]string {
	in := map[string]string{"ciphertext": ciphertext}
	if context != nil {
		in["context"] = base64.StdEncoding.EncodeToString(context)
	}
	return in
}

// BatchResult is one item of a Vault-style batch: a result or its error.
type BatchResult struct {
	Ciphertext string `json:"ciphertext,omitempty"`
	Plaintext  []byte `json:"-"`
	KeyVersion uint32 `json:"key_version,omitempty"`
	Reference  string `json:"reference,omitempty"`
	Error      string `json:"error,omitempty"`
}

// BatchItem is one item of a batch: Plaintext for encrypt, Ciphertext for
// decrypt and rewrap.
type BatchItem struct {
	Plaintext  []byte
	Ciphertext string
	Context    []byte
	Reference  string
}

// EncryptBatch encrypts each item (Vault-style batch_input): each item
// succeeds or carries its own error.
func (c *Client) EncryptBatch(ctx context.Context, key string, items []BatchItem) ([]BatchResult, error) {
	return c.batch(ctx, key, "encrypt", items)
}

// DecryptBatch decrypts each item; see EncryptBatch.
func (c *Client) DecryptBatch(ctx context.Context, key string, items []BatchItem) ([]BatchResult, error) {
	return c.batch(ctx, key, "decrypt", items)
}

// RewrapBatch rewraps each item; see EncryptBatch.
func (c *Client) RewrapBatch(ctx context.Context, key string, items []BatchItem) ([]BatchResult, error) {
	return c.batch(ctx, key, "rewrap", items)
}

func (c *Client) batch(ctx context.Context, key, op string, items []BatchItem) ([]BatchResult, error) {
	in := make([]map[string]string, len(items))
	for i, it := range items {
		m := map[string]string{}
		if op == "encrypt" {
			m["plaintext"] = base64.StdEncoding.EncodeToString(it.Plaintext)
		} else {
			m["ciphertext"] = it.Ciphertext
		}
		if it.Context != nil {
			m["context"] = base64.StdEncoding.EncodeToString(it.Context)
		}
		if it.Reference != "" {
			m["reference"] = it.Reference
		}
		in[i] = m
	}
	var out struct {
		Results []struct {
			BatchResult
			Plaintext string `json:"plaintext"`
		} `json:"batch_results"`
	}
	if err := c.do(ctx, c.hc, http.MethodPost, "/v1/keys/"+esc(key)+"/"+op, map[string]any{"batch_input": in}, &out); err != nil {
		return nil, err
	}
	res := make([]BatchResult, len(out.Results))
	for i, r := range out.Results {
		res[i] = r.BatchResult
		if r.Plaintext != "" {
			b, err := base64.StdEncoding.DecodeString(r.Plaintext)
			if err != nil {
				return nil, fmt.Errorf("client: decode plaintext %d: %w", i, err)
			}
			res[i].Plaintext = b
		}
	}
	return res, nil
}

// KeyRotation is the answer to a rotation of one of Coffer's own keys.
type KeyRotation struct {
	KeyID            string `json:"key_id"`
	Version          uint32 `json:"version,omitempty"`
	RewrapScheduled  bool   `json:"rewrap_scheduled"`
	ReindexScheduled bool   `json:"reindex_scheduled,omitempty"`
}

// RotateCofferKey rotates one of Coffer's own keys (collection/NAME,
// subject/ID, index/C/F, tokens/TYPE, audit/hmac, jwt/signing…).
func (c *Client) RotateCofferKey(ctx context.Context, keyID string) (*KeyRotation, error) {
	var out KeyRotation
	if err := c.do(ctx, c.hc, http.MethodPost, "/v1/admin/keys/rotate", map[string]string{"key_id": keyID}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// KeyVersionChange is a key version's new state.
type KeyVersionChange struct {
	KeyID   string `json:"key_id"`
	Version uint32 `json:"version"`
	State   string `json:"state"`
}

// RetireKeyVersion stops an old version of one of Coffer's keys decrypting.
func (c *Client) RetireKeyVersion(ctx context.Context, keyID string, version uint32) (*KeyVersionChange, error) {
	return c.keyVersion(ctx, "retire", keyID, version)
}

// UnretireKeyVersion undoes RetireKeyVersion.
func (c *Client) UnretireKeyVersion(ctx context.Context, keyID string, version uint32) (*KeyVersionChange, error) {
	return c.keyVersion(ctx, "unretire", keyID, version)
}

// DestroyKeyVersion erases a retired version's key for good.
func (c *Client) DestroyKeyVersion(ctx context.Context, keyID string, version uint32) (*KeyVersionChange, error) {
	return c.keyVersion(ctx, "destroy", keyID, version)
}

func (c *Client) keyVersion(ctx context.Context, op, keyID string, version uint32) (*KeyVersionChange, error) {
	var out KeyVersionChange
	in := map[string]any{"key_id": keyID, "version": version}
	if err := c.do(ctx, c.hc, http.MethodPost, "/v1/admin/keys/"+op, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AuditEvent is one audited request.
type AuditEvent struct {
	ID            string    `json:"id"`
	Seq           uint64    `json:"seq"`
	Node          string    `json:"node"`
	Time          time.Time `json:"time"`
	RequestID     string    `json:"request_id"`
	Principal     string    `json:"principal"`
	PrincipalKind string    `json:"principal_kind"`
	Roles         []string  `json:"roles"`
	SourceIP      string    `json:"source_ip"`
	Action        string    `json:"action"`
	Resource      string    `json:"resource"`
	Fields        []string  `json:"fields"`
	Decision      string    `json:"decision"`
	Rule          string    `json:"rule"`
	Reason        string    `json:"reason"`
	Status        int       `json:"status"`
	Count         int       `json:"count"`
	ValueHMACs    []string  `json:"value_hmacs"`
	Targets       []string  `json:"targets"`
	KeyVersion    uint32    `json:"key_version"`
	PrevHash      string    `json:"prev_hash"`
	Hash          string    `json:"hash"`
}

// AuditFilter selects audit events; zero fields select all.
type AuditFilter struct {
	Limit     int
	Principal string
	Action    string
	Since     time.Time
	// After is the Next cursor of a previous page.
	After string
}

// AuditPage is one page of audit events; Next, when not empty, is the
// cursor of the next page.
type AuditPage struct {
	Events []AuditEvent `json:"events"`
	Next   string       `json:"next,omitempty"`
	// ArchivedSegments names the sealed segments, pruned from the
	// database into the audit archive, that the requested range reaches
	// into (empty when it lies wholly in the database).
	ArchivedSegments []string `json:"archived_segments,omitempty"`
}

// AuditEvents returns a page of audit events, oldest first.
func (c *Client) AuditEvents(ctx context.Context, f AuditFilter) (*AuditPage, error) {
	q := url.Values{}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	if f.Principal != "" {
		q.Set("principal", f.Principal)
	}
	if f.Action != "" {
		q.Set("action", f.Action)
	}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
	}
	if f.After != "" {
		q.Set("after", f.After)
	}
	path := "/v1/audit/events"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out AuditPage
	if err := c.do(ctx, c.hc, http.MethodGet, path, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SecurityEvent is an anomaly a detector raised.
type SecurityEvent struct {
	ID        string         `json:"id"`
	Time      time.Time      `json:"time"`
	Kind      string         `json:"kind"`
	Severity  string         `json:"severity"`
	Principal string         `json:"principal"`
	Detail    map[string]any `json:"detail"`
}

// SecurityEvents returns security events since a time (zero: all) of a
// kind ("": all).
func (c *Client) SecurityEvents(ctx context.Context, since time.Time, kind string) ([]SecurityEvent, error) {
	q := url.Values{}
	if !since.IsZero() {
		q.Set("since", since.UTC().Format(time.RFC3339Nano))
	}
	if kind != "" {
		q.Set("kind", kind)
	}
	path := "/v1/security/events"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out struct {
		Events []SecurityEvent `json:"events"`
	}
	if err := c.do(ctx, c.hc, http.MethodGet, path, nil, &out); err != nil {
		return nil, err
	}
	return out.Events, nil
}

// LiftSuspension lifts a principal's suspension.
func (c *Client) LiftSuspension(ctx context.Context, principal string) error {
	return c.do(ctx, c.hc, http.MethodDelete, "/v1/security/suspensions/"+esc(principal), nil, nil)
}

// UnsealStatus is a sealed server's progress.
type UnsealStatus struct {
	Sealed    bool `json:"sealed"`
	Progress  int  `json:"progress"`
	Threshold int  `json:"threshold"`
}

// SealStatus returns a sealed server's unseal progress (no token needed).
func (c *Client) SealStatus(ctx context.Context) (*UnsealStatus, error) {
	var out UnsealStatus
	if err := c.do(ctx, c.raw, http.MethodGet, "/v1/sys/seal-status", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Unseal gives a sealed server one root key share.
func (c *Client) Unseal(ctx context.Context, share string) (*UnsealStatus, error) {
	var out UnsealStatus
	if err := c.do(ctx, c.raw, http.MethodPost, "/v1/sys/unseal", map[string]string{"share": share}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UnsealReset drops every share a sealed server holds (with the reset
// token from its data directory).
func (c *Client) UnsealReset(ctx context.Context, resetToken string) (*UnsealStatus, error) {
	var out UnsealStatus
	if err := c.do(ctx, c.raw, http.MethodPost, "/v1/sys/unseal/reset", map[string]string{"reset_token": resetToken}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
