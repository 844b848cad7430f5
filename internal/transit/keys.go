package transit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
)

// KeySpec is the body of a create-key request (the name is in the path).
type KeySpec struct {
	// AutoRotatePeriod is a Go duration ("720h") between
	// MinAutoRotatePeriod and MaxAutoRotatePeriod, or empty or "0" for none.
	AutoRotatePeriod string `json:"auto_rotate_period,omitempty"`
	// Deletable lets Delete destroy the key.
	Deletable bool `json:"deletable,omitempty"`
}

// KeyConfig is the body of a configure-key request; nil fields keep their
// value.
type KeyConfig struct {
	// MinDecryptionVersion, between 1 and the latest version, is the oldest
	// version that still decrypts. Lowering it again lets older versions
	// decrypt again: no version is destroyed.
	MinDecryptionVersion *uint32 `json:"min_decryption_version,omitempty"`
	Deletable            *bool   `json:"deletable,omitempty"`
	// AutoRotatePeriod is as in KeySpec; "0" turns it off.
	AutoRotatePeriod *string `json:"auto_rotate_period,omitempty"`
}

// KeyInfo is a transit key's metadata as shown to callers: never material.
type KeyInfo struct {
	Name                 string    `json:"name"`
	CreatedAt            time.Time `json:"created_at"`
	LatestVersion        uint32    `json:"latest_version"`
	MinDecryptionVersion uint32    `json:"min_decryption_version"`
	Deletable            bool      `json:"deletable"`
	Exportable           bool      `json:"exportable"`
	AutoRotatePeriod     string    `json:"auto_rotate_period,omitempty"`
	// Imported is true for a key whose material was brought from outside
	// (ImportedFrom says how); its material still never leaves Coffer.
	Imported bool `json:"imported"`
	// ImportedFrom is "byok" (Import) or "vault" (ImportVault); empty for
	// a key Coffer made.
	ImportedFrom string `json:"imported_from,omitempty"`
	// VaultLatestVersion is, for a key imported from Vault, the newest
	// version brought from it: the versions up to it also decrypt the
	// vault:vN: ciphertexts Vault made.
	VaultLatestVersion uint32        `json:"vault_latest_version,omitempty"`
	Versions           []VersionInfo `json:"versions"`
}

// VersionInfo is one version of a transit key.
type VersionInfo struct {
	Version   uint32    `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	// State is coffer.KeyActive, KeyRetired or KeyDestroyed.
	State string `json:"state"`
}

// parsePeriod validates an auto_rotate_period.
func parsePeriod(s string) (time.Duration, error) {
	if s == "" || s == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < MinAutoRotatePeriod || d > MaxAutoRotatePeriod {
		return 0, coffer.Errorf(coffer.EINVALID, "auto_rotate_period must be a Go duration between 1h and 100 years, like \"720h\", or \"0\"")
	}
	return d, nil
}

// Create makes a transit key with version 1 (action admin). A key of that
// name, live or deleted, is a conflict.
func (s *Service) Create(ctx context.Context, c Caller, name string, spec KeySpec) (KeyInfo, error) {
	if err := s.admitNew(c, "create", name); err != nil {
		return KeyInfo{}, err
	}
	period, err := parsePeriod(spec.AutoRotatePeriod)
	if err != nil {
		return KeyInfo{}, err
	}
	k := TransitKey{Name: name, Deletable: spec.Deletable, AutoRotatePeriod: period}
	return c.touched(s.createKey(ctx, k, "create", func() (uint32, error) {
		// Rotate makes a version nothing has used, even if an earlier
		// attempt left versions behind (MinDecryptionVersion hides them).
		return s.c.Keys.Rotate(ctx, KeyID(name))
	}))
}

// admitNew checks that c may create the transit key name (action admin,
// audited as keys.OP) and that the name is not the reserved one.
func (s *Service) admitNew(c Caller, op, name string) error {
	if name == WrappingKeyName {
		_ = begin(c, "keys."+op, name, 0) // notes the call; the name is valid
		return coffer.Errorf(coffer.EINVALID, msgReservedName)
	}
	return s.admitAdmin(c, op, name)
}

// createKey stores the new transit key k, its first version made by
// first: the keyring first, then the row, so that a key visible in the
// store always has material. A key of that name, live or deleted, is a
// conflict; a *coffer.Error from first is returned as it is. op names
// the operation in other errors.
func (s *Service) createKey(ctx context.Context, k TransitKey, op string, first func() (uint32, error)) (KeyInfo, error) {
	// One creation of a name at a time on this node, so that racing
	// imports leave no versions behind. Across nodes the loser's version
	// stays, unrecorded: it never encrypts (see sealer.seal).
	ks := s.state(k.Name)
	ks.admin.Lock()
	defer ks.admin.Unlock()
	switch _, err := s.c.Store.TransitKey(ctx, k.Name); coffer.ErrorCode(err) {
	case "":
		return KeyInfo{}, coffer.Errorf(coffer.ECONFLICT, "transit key exists")
	case coffer.ENOTFOUND:
	default:
		return KeyInfo{}, fmt.Errorf("transit: %s key: %w", op, err)
	}
	v, err := first()
	var ce *coffer.Error
	switch {
	case errors.Is(err, keyring.ErrKeyDestroyed):
		return KeyInfo{}, coffer.Errorf(coffer.ECONFLICT, "a deleted transit key had this name; names are not reused")
	case errors.As(err, &ce):
		return KeyInfo{}, err
	case err != nil:
		return KeyInfo{}, fmt.Errorf("transit: %s key: %w", op, err)
	}
	// first made version v, or (an import from Vault, k.MinDecryptionVersion
	// set) the versions from k.MinDecryptionVersion to v.
	lo := v
	if k.MinDecryptionVersion != 0 && k.MinDecryptionVersion < v {
		lo = k.MinDecryptionVersion
	}
	k.CreatedAt, k.MinDecryptionVersion, k.LatestVersion = s.c.Now().UTC(), lo, v
	err = s.c.Store.CreateTransitKey(ctx, k)
	s.cache.forget(k.Name) // a miss cached meanwhile is no more; neither is another node's key
	if err != nil {
		if coffer.ErrorCode(err) == coffer.ECONFLICT {
			// Another node made the name first, with its own version: the
			// versions made here are not the key's, and must neither
			// encrypt (they never will: sealer.seal) nor decrypt once a
			// rotation records a version above them. An imported version
			// is material this caller holds.
			for n := lo; n <= v && n != 0; n++ {
				if derr := s.c.Keys.Disown(context.WithoutCancel(ctx), KeyID(k.Name), n); derr != nil {
					s.c.Log.WarnContext(ctx, "transit: retire the version of a refused creation",
						"key", k.Name, "version", n, "error", derr.Error())
				}
			}
			return KeyInfo{}, coffer.Errorf(coffer.ECONFLICT, "transit key exists")
		}
		return KeyInfo{}, fmt.Errorf("transit: %s key: %w", op, err)
	}
	return s.info(ctx, k)
}

// Get returns a key's metadata (action read).
func (s *Service) Get(ctx context.Context, c Caller, name string) (KeyInfo, error) {
	if err := begin(c, "read", name, 0); err != nil {
		return KeyInfo{}, err
	}
	if err := s.authorize(c, "read", name); err != nil {
		return KeyInfo{}, err
	}
	k, err := s.load(ctx, c, name)
	if err != nil {
		return KeyInfo{}, err
	}
	return s.info(ctx, k)
}

// Rotate makes a new version of the key the one that encrypts (action
// admin). Older versions still decrypt down to MinDecryptionVersion.
func (s *Service) Rotate(ctx context.Context, c Caller, name string) (KeyInfo, error) {
	if err := s.admitAdmin(c, "rotate", name); err != nil {
		return KeyInfo{}, err
	}
	if _, err := s.load(ctx, c, name); err != nil {
		return KeyInfo{}, err
	}
	k, err := s.rotate(ctx, name, 0, false)
	if err != nil {
		return KeyInfo{}, err
	}
	return c.touched(s.info(ctx, k))
}

// Configure changes a key's minimum decryption version, deletability and
// rotation period (action admin).
func (s *Service) Configure(ctx context.Context, c Caller, name string, cfg KeyConfig) (KeyInfo, error) {
	if err := s.admitAdmin(c, "configure", name); err != nil {
		return KeyInfo{}, err
	}
	ks := s.state(name)
	ks.admin.Lock()
	defer ks.admin.Unlock()
	k, err := s.load(ctx, c, name)
	if err != nil {
		s.forgetMissing(name, err)
		return KeyInfo{}, err
	}
	var problems []string
	if m := cfg.MinDecryptionVersion; m != nil {
		if *m < 1 || *m > k.LatestVersion {
			problems = append(problems, fmt.Sprintf("min_decryption_version must be between 1 and the latest version, %d", k.LatestVersion))
		} else {
			k.MinDecryptionVersion = *m
		}
	}
	if p := cfg.AutoRotatePeriod; p != nil {
		d, err := parsePeriod(*p)
		if err != nil {
			problems = append(problems, coffer.ErrorMessage(err))
		}
		k.AutoRotatePeriod = d
	}
	if len(problems) > 0 {
		return KeyInfo{}, &coffer.Error{Code: coffer.EINVALID, Message: strings.Join(problems, "; "), Problems: problems}
	}
	if cfg.Deletable != nil {
		k.Deletable = *cfg.Deletable
	}
	err = s.c.Store.ConfigureTransitKey(ctx, k)
	s.cache.forget(name) // before the answer: this node decrypts by the new settings at once
	if err != nil {
		return KeyInfo{}, fmt.Errorf("transit: configure key: %w", err)
	}
	c.Note.Touch(coffer.KeyTarget(name))
	return s.info(ctx, k)
}

// Delete destroys a key that was configured deletable (action admin):
// its material is crypto-shredded, so every ciphertext made under it is
// gone for good, and its name is not reused. A key that is not deletable
// is a conflict and stays as it was.
func (s *Service) Delete(ctx context.Context, c Caller, name string) error {
	if err := s.admitAdmin(c, "delete", name); err != nil {
		return err
	}
	ks := s.state(name)
	ks.admin.Lock()
	defer ks.admin.Unlock()
	k, err := s.load(ctx, c, name)
	if err != nil {
		s.forgetMissing(name, err)
		return err
	}
	if !k.Deletable {
		return coffer.Errorf(coffer.ECONFLICT, "transit key is not deletable; configure deletable first")
	}
	// Material first: a failure after it leaves a row whose Delete can be
	// repeated, never material without a row that could delete it.
	if err := s.c.Keys.Destroy(ctx, KeyID(name)); err != nil {
		return fmt.Errorf("transit: delete key: %w", err)
	}
	c.Note.Touch(coffer.KeyTarget(name))
	if err := s.c.Store.DeleteTransitKey(ctx, name); err != nil && coffer.ErrorCode(err) != coffer.ENOTFOUND {
		return fmt.Errorf("transit: delete key: %w", err)
	}
	s.forget(name)
	return nil
}

// rotate makes a new version of name's key and records it. With auto set
// it does nothing when the key's latest version is no longer seen (another
// call rotated it meanwhile).
func (s *Service) rotate(ctx context.Context, name string, seen uint32, auto bool) (TransitKey, error) {
	return s.addVersion(ctx, name, seen, auto, nil)
}

// addVersion is rotate, the new version made from material (zeroed by the
// keyring) when it is not nil.
func (s *Service) addVersion(ctx context.Context, name string, seen uint32, auto bool, material []byte) (TransitKey, error) {
	defer clear(material)
	ks := s.state(name)
	ks.admin.Lock()
	defer ks.admin.Unlock()
	k, err := s.c.Store.TransitKey(ctx, name)
	if coffer.ErrorCode(err) == coffer.ENOTFOUND {
		return TransitKey{}, coffer.Errorf(coffer.ENOTFOUND, msgNotFound)
	}
	if err != nil {
		return TransitKey{}, fmt.Errorf("transit: rotate key: %w", err)
	}
	if auto && k.LatestVersion != seen {
		return k, nil
	}
	var v uint32
	if material != nil {
		v, err = s.c.Keys.Import(ctx, KeyID(name), material)
	} else {
		v, err = s.c.Keys.Rotate(ctx, KeyID(name))
	}
	if errors.Is(err, keyring.ErrKeyDestroyed) {
		return TransitKey{}, coffer.Errorf(coffer.ENOTFOUND, msgNotFound)
	}
	if err != nil {
		return TransitKey{}, fmt.Errorf("transit: rotate key: %w", err)
	}
	k.LatestVersion = max(k.LatestVersion, v)
	k.EncryptionsSinceRotate = 0
	ks.pending.Store(0)
	err = s.c.Store.RecordTransitVersion(ctx, name, v)
	// Before the answer, recorded or not (a lost reply may have committed):
	// once a rotation is acknowledged, this node encrypts under the new
	// version; other nodes within a change notification's latency.
	s.cache.forget(name)
	if err != nil {
		// v encrypts only once recorded (see sealer.seal): unrecorded, it
		// is never used, and the next rotation goes past it.
		return TransitKey{}, fmt.Errorf("transit: rotate key: record version %d: %w", v, err)
	}
	return k, nil
}

// info shapes k and its versions for a caller.
func (s *Service) info(ctx context.Context, k TransitKey) (KeyInfo, error) {
	rows, err := s.c.Versions.DataKeys(ctx, KeyID(k.Name))
	if err != nil {
		return KeyInfo{}, fmt.Errorf("transit: list key versions: %w", err)
	}
	out := KeyInfo{
		Name: k.Name, CreatedAt: k.CreatedAt, LatestVersion: k.LatestVersion,
		MinDecryptionVersion: k.MinDecryptionVersion, Deletable: k.Deletable,
		Imported: k.Origin != "", ImportedFrom: k.Origin, VaultLatestVersion: k.VaultLatestVersion,
		Versions: make([]VersionInfo, 0, len(rows)),
	}
	if k.AutoRotatePeriod > 0 {
		out.AutoRotatePeriod = k.AutoRotatePeriod.String()
	}
	for _, r := range rows {
		out.Versions = append(out.Versions, VersionInfo{Version: r.Version, CreatedAt: r.Created, State: r.State})
	}
	slices.SortFunc(out.Versions, func(a, b VersionInfo) int { return int(int64(a.Version) - int64(b.Version)) })
	return out, nil
}
