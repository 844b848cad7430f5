package vaultcompat

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/httpapi"
	"github.com/cofferhq/coffer/internal/transit"
)

// keyType is the one key type Coffer's transit keys are, in Vault's name.
const keyType = "aes256-gcm96"

// vaultKeyTypes are the other types Vault knows, refused by name.
var vaultKeyTypes = map[string]bool{
	"aes128-gcm96": true, "chacha20-poly1305": true, "ed25519": true, "ecdsa-p256": true, "ecdsa-p384": true,
	"ecdsa-p521": true, "rsa-2048": true, "rsa-3072": true, "rsa-4096": true, "hmac": true, "managed_key": true,
}

// keyData is Vault's description of a key (formatKeyPolicy) for info.
func keyData(info transit.KeyInfo) map[string]any {
	keys := map[string]int64{}
	for _, v := range info.Versions {
		// As Vault: the versions that still decrypt, from the minimum
		// decryption version up.
		if v.State != coffer.KeyDestroyed && v.Version >= info.MinDecryptionVersion {
			keys[strconv.FormatUint(uint64(v.Version), 10)] = v.CreatedAt.Unix()
		}
	}
	var period int64
	if info.AutoRotatePeriod != "" {
		if d, err := parseDuration(info.AutoRotatePeriod); err == nil {
			period = int64(d.Seconds())
		}
	}
	return map[string]any{
		"name":                   info.Name,
		"type":                   keyType,
		"derived":                false,
		"deletion_allowed":       info.Deletable,
		"min_available_version":  0,
		"min_decryption_version": info.MinDecryptionVersion,
		"min_encryption_version": 0,
		"latest_version":         info.LatestVersion,
		"exportable":             false,
		"allow_plaintext_backup": false,
		"supports_encryption":    true,
		"supports_decryption":    true,
		"supports_signing":       false,
		"supports_derivation":    false,
		"auto_rotate_period":     period,
		"imported_key":           info.Imported,
		"keys":                   keys,
	}
}

func (s *surface) listKeys(c *httpapi.Call) (httpapi.Reply, error) {
	names, err := s.t.List(c.R.Context(), caller(c))
	if err != nil {
		return httpapi.Reply{}, err
	}
	if len(names) == 0 {
		return httpapi.Reply{}, notFound(nil) // Vault's answer to an empty list
	}
	return ok(c, map[string]any{"keys": names}, nil)
}

func (s *surface) readKey(c *httpapi.Call, name string) (httpapi.Reply, error) {
	info, err := s.t.Get(c.R.Context(), caller(c), name)
	if coffer.ErrorCode(err) == coffer.ENOTFOUND {
		return httpapi.Reply{}, notFound(err)
	}
	if err != nil {
		return httpapi.Reply{}, err
	}
	return ok(c, keyData(info), nil)
}

// refuseKeyOptions refuses what would make a key other than Coffer's one
// kind, or make its material leave Coffer.
func refuseKeyOptions(p *params) error {
	for _, f := range []string{"derived", "convergent_encryption", "exportable", "allow_plaintext_backup"} {
		b, _, err := p.boolean(f)
		if err != nil {
			return err
		}
		if b {
			return invalid(fmt.Sprintf("%s is not supported: Coffer's transit keys are %s, never derived, convergent or exported", f, keyType))
		}
	}
	for _, f := range []string{"key_size", "managed_key_name", "managed_key_id"} {
		if p.has(f) {
			return invalid(fmt.Sprintf("%s is not supported: Coffer's transit keys are %s", f, keyType))
		}
	}
	return nil
}

func (s *surface) createKey(c *httpapi.Call, name string) (httpapi.Reply, error) {
	p, err := readParams(c.R)
	if err != nil {
		return httpapi.Reply{}, err
	}
	typ, err := p.str("type")
	if err != nil {
		return httpapi.Reply{}, err
	}
	switch {
	case typ == "" || typ == keyType:
	case vaultKeyTypes[typ]:
		return httpapi.Reply{}, invalid(fmt.Sprintf("key type %s is not supported: Coffer's transit keys are %s", truncate(typ), keyType))
	default:
		return httpapi.Reply{}, invalid(fmt.Sprintf("unknown key type %s", truncate(typ)))
	}
	if err := refuseKeyOptions(p); err != nil {
		return httpapi.Reply{}, err
	}
	period, err := rotatePeriod(p)
	if err != nil {
		return httpapi.Reply{}, err
	}
	spec := transit.KeySpec{}
	if period != nil {
		spec.AutoRotatePeriod = *period
	}
	info, err := s.t.Create(c.R.Context(), caller(c), name, spec)
	if coffer.ErrorCode(err) == coffer.ECONFLICT && c.Note.Decision == "allow" {
		// Vault answers a create of an existing key with the key and a
		// warning. The caller may administer the key; it sees the key only
		// if it may also read it, decided (not audited separately: this
		// event is the create's).
		scratch := coffer.AccessNote{}
		existing, gerr := s.t.Get(c.R.Context(), transit.Caller{Principal: c.Principal, IP: c.IP, Note: &scratch}, name)
		if gerr != nil {
			return httpapi.Reply{}, invalid(fmt.Sprintf("key %s already exists", name))
		}
		c.Note.Reason = "exists; answered its metadata, read allowed by " + scratch.Rule
		return ok(c, keyData(existing), append(p.warnings(), fmt.Sprintf("key %s already existed", name)))
	}
	if err != nil {
		return httpapi.Reply{}, err
	}
	return ok(c, keyData(info), p.warnings())
}

func (s *surface) rotateKey(c *httpapi.Call, name string) (httpapi.Reply, error) {
	p, err := readParams(c.R)
	if err != nil {
		return httpapi.Reply{}, err
	}
	if p.has("managed_key_name") || p.has("managed_key_id") {
		return httpapi.Reply{}, invalid("managed keys are not supported")
	}
	info, err := s.t.Rotate(c.R.Context(), caller(c), name)
	if err != nil {
		return httpapi.Reply{}, translate(err, "key not found")
	}
	return ok(c, keyData(info), p.warnings())
}

func (s *surface) configKey(c *httpapi.Call, name string) (httpapi.Reply, error) {
	p, err := readParams(c.R)
	if err != nil {
		return httpapi.Reply{}, err
	}
	var cfg transit.KeyConfig
	if p.has("min_decryption_version") {
		n, err := p.integer("min_decryption_version")
		if err != nil {
			return httpapi.Reply{}, err
		}
		if n > 0 { // 0 leaves it as it is, as in Vault
			v := uint32(n) // #nosec G115 -- asInt bounds it to uint32
			cfg.MinDecryptionVersion = &v
		}
	}
	if n, err := p.integer("min_encryption_version"); err != nil || n != 0 {
		if err != nil {
			return httpapi.Reply{}, err
		}
		return httpapi.Reply{}, invalid("min_encryption_version is not supported: Coffer encrypts under the latest version only")
	}
	if b, given, err := p.boolean("deletion_allowed"); err != nil {
		return httpapi.Reply{}, err
	} else if given {
		cfg.Deletable = &b
	}
	if err := refuseKeyOptions(p); err != nil {
		return httpapi.Reply{}, err
	}
	if cfg.AutoRotatePeriod, err = rotatePeriod(p); err != nil {
		return httpapi.Reply{}, err
	}
	info, err := s.t.Configure(c.R.Context(), caller(c), name, cfg)
	if err != nil {
		return httpapi.Reply{}, translate(err, fmt.Sprintf("no existing key named %s could be found", name))
	}
	return ok(c, keyData(info), p.warnings())
}

// rotatePeriod reads auto_rotate_period, a duration ("24h") or seconds,
// as Coffer's Go duration; nil when absent.
func rotatePeriod(p *params) (*string, error) {
	if !p.has("auto_rotate_period") {
		return nil, nil
	}
	raw, err := p.str("auto_rotate_period")
	if err != nil {
		return nil, err
	}
	d, err := parseDuration(raw)
	if err != nil {
		return nil, invalid("auto_rotate_period must be a duration (\"24h\") or a number of seconds")
	}
	out := "0"
	if d > 0 {
		out = d.String()
	}
	return &out, nil
}

func (s *surface) wrappingKey(c *httpapi.Call) (httpapi.Reply, error) {
	wk, err := s.t.WrappingKey(c.R.Context(), caller(c))
	if err != nil {
		return httpapi.Reply{}, err
	}
	return ok(c, map[string]any{"public_key": wk.PublicKey}, nil)
}

// importKey imports a key wrapped as Vault's BYOK flow wraps it, as a new
// key or (version set) as the next version of one.
func (s *surface) importKey(c *httpapi.Call, name string, version bool) (httpapi.Reply, error) {
	op := "import"
	if version {
		op = "import_version"
	}
	c.Note.Target("keys."+op, resource(name))
	p, err := readParams(c.R)
	if err != nil {
		return httpapi.Reply{}, err
	}
	var req transit.ImportRequest
	if req.Ciphertext, err = p.str("ciphertext"); err != nil {
		return httpapi.Reply{}, err
	}
	if req.HashFunction, err = p.str("hash_function"); err != nil {
		return httpapi.Reply{}, err
	}
	if !version {
		typ, err := p.str("type")
		if err != nil {
			return httpapi.Reply{}, err
		}
		if typ != "" && typ != keyType {
			return httpapi.Reply{}, invalid(fmt.Sprintf("key type %s is not supported: Coffer's transit keys are %s", truncate(typ), keyType))
		}
		if err := refuseKeyOptions(p); err != nil {
			return httpapi.Reply{}, err
		}
		p.has("allow_rotation") // Coffer's imported keys always rotate
	}
	var info transit.KeyInfo
	if version {
		info, err = s.t.ImportVersion(c.R.Context(), caller(c), name, req)
	} else {
		info, err = s.t.Import(c.R.Context(), caller(c), name, req)
	}
	if err != nil {
		return httpapi.Reply{}, translate(err, "key not found")
	}
	_ = info
	// Vault answers an import with no body: 204.
	return httpapi.Reply{Status: http.StatusNoContent}, nil
}
