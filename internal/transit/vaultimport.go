package transit

import (
	"context"
	"errors"
	"fmt"
	"hash"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
)

// MaxVaultVersions bounds the versions of one import from Vault: each is
// an RSA-4096 decryption, and the request must fit the server's body limit.
const MaxVaultVersions = 500

// VaultImport is the body of an import from HashiCorp Vault
// (POST /v1/keys/{name}/import_vault): the versions of a Vault transit key
// as Vault's export lists them, each wrapped for the deployment's wrapping
// key as in Import. `coffer keys import-vault` reads them from Vault and
// wraps them; Coffer never talks to Vault and never sees a Vault token.
type VaultImport struct {
	// Versions are the key's versions, consecutive, from Vault's
	// min_decryption_version (which becomes the key's) to its latest
	// version (which encrypts from now on).
	Versions []VaultVersion `json:"versions"`
	// HashFunction is the RSA-OAEP hash of every version's wrap, as in
	// ImportRequest.
	HashFunction string `json:"hash_function,omitempty"`
	// AutoRotatePeriod is as in KeySpec (Vault's, carried over).
	AutoRotatePeriod string `json:"auto_rotate_period,omitempty"`
}

// VaultVersion is one version of a key being imported from Vault.
type VaultVersion struct {
	// Version is its number in Vault, kept in Coffer so that Vault's
	// vault:vN: ciphertexts name it.
	Version uint32 `json:"version"`
	// Ciphertext is the version's 32-byte key wrapped as in
	// ImportRequest.Ciphertext.
	Ciphertext string `json:"ciphertext"`
}

// ImportVault creates the transit key name from the versions of a Vault
// transit key (action admin on keys/NAME, audited as keys.import_vault
// with a target per version and the count; never material). Each version
// keeps its number and is sealed under the root key like any version;
// the latest encrypts, the first is the minimum decryption version, and
// every vault:vN: ciphertext Vault made under one of them decrypts, on
// Coffer's API and on the Vault-compatible surface. The key is marked
// imported from Vault and is, as every key, never exportable.
//
// A key of that name is a conflict, as is a name whose earlier versions
// (a deleted key, an interrupted import) sit at or above the first
// version: imported versions keep their numbers. Versions that are not
// consecutive, more than MaxVaultVersions, or that do not unwrap to 32
// bytes are refused before any is stored.
func (s *Service) ImportVault(ctx context.Context, c Caller, name string, req VaultImport) (KeyInfo, error) {
	if err := s.admitNew(c, "import_vault", name); err != nil {
		return KeyInfo{}, err
	}
	h, lo, hi, err := s.checkVaultImport(req)
	if err != nil {
		return KeyInfo{}, err
	}
	period, err := parsePeriod(req.AutoRotatePeriod)
	if err != nil {
		return KeyInfo{}, err
	}
	k := TransitKey{Name: name, AutoRotatePeriod: period, Origin: coffer.TransitOriginVault,
		VaultLatestVersion: hi, MinDecryptionVersion: lo}
	info, err := s.createKey(ctx, k, "import from Vault", func() (uint32, error) {
		materials, err := s.unwrapAll(ctx, h, req.Versions)
		defer func() {
			for _, m := range materials {
				clear(m)
			}
		}()
		if err != nil {
			return 0, err
		}
		for i, m := range materials {
			n := lo + uint32(i) // #nosec G115 -- at most MaxVaultVersions
			err := s.c.Keys.ImportAt(ctx, KeyID(name), n, m)
			if errors.Is(err, keyring.ErrVersionTaken) {
				return 0, coffer.Errorf(coffer.ECONFLICT,
					"versions of an earlier key of this name remain at or above version %d; import under another name", lo)
			}
			if err != nil {
				return 0, err
			}
		}
		return hi, nil
	})
	if err != nil {
		return KeyInfo{}, err
	}
	for n := lo; n <= hi; n++ {
		c.Note.Touch(coffer.KeyVersionTarget(name, n))
	}
	if c.Note != nil {
		c.Note.Count = int(hi - lo + 1)
		c.Note.Reason = fmt.Sprintf("imported from Vault: versions %d to %d", lo, hi)
	}
	return info, nil
}

// checkVaultImport checks an import from Vault and returns its hash
// function and first and last versions.
func (s *Service) checkVaultImport(req VaultImport) (h func() hash.Hash, lo, hi uint32, err error) {
	n := len(req.Versions)
	switch {
	case n == 0:
		return nil, 0, 0, coffer.Errorf(coffer.EINVALID, "versions: at least one version is required")
	case n > MaxVaultVersions:
		return nil, 0, 0, coffer.Errorf(coffer.ETOOLARGE, "versions: at most %d per import", MaxVaultVersions)
	}
	lo = req.Versions[0].Version
	if lo == 0 || uint64(lo)+uint64(n)-1 > uint64(^uint32(0)) {
		return nil, 0, 0, coffer.Errorf(coffer.EINVALID, "versions[0].version must be 1 or more")
	}
	for i, v := range req.Versions {
		if v.Version != lo+uint32(i) { // #nosec G115 -- n is bounded above
			return nil, 0, 0, coffer.Errorf(coffer.EINVALID,
				"versions must be consecutive, from Vault's min_decryption_version to its latest version; versions[%d] is not", i)
		}
	}
	if h, _, err = s.checkImport(ImportRequest{Ciphertext: req.Versions[0].Ciphertext, HashFunction: req.HashFunction}); err != nil {
		return nil, 0, 0, err
	}
	return h, lo, lo + uint32(n-1), nil // #nosec G115 -- n is bounded above
}

// unwrapAll unwraps every version's key; the caller zeroes what it
// returns, also on error.
func (s *Service) unwrapAll(ctx context.Context, h func() hash.Hash, versions []VaultVersion) ([][]byte, error) {
	out := make([][]byte, 0, len(versions))
	for i, v := range versions {
		_, ct, err := s.checkImport(ImportRequest{Ciphertext: v.Ciphertext})
		if err != nil {
			return out, coffer.Errorf(coffer.EINVALID, "versions[%d].%s", i, coffer.ErrorMessage(err))
		}
		m, err := s.unwrap(ctx, h, ct)
		if err != nil {
			if coffer.ErrorCode(err) == coffer.EINVALID {
				return out, coffer.Errorf(coffer.EINVALID, "versions[%d]: %s", i, coffer.ErrorMessage(err))
			}
			return out, err
		}
		out = append(out, m)
	}
	return out, nil
}
