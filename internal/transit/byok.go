package transit

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" // #nosec G505 -- SHA-1 only as the RSA-OAEP hash some BYOK tooling uses, never for a signature
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"time"

	"github.com/tink-crypto/tink-go/v2/kwp/subtle"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/envelope"
)

// Bring-your-own-key import follows the well-known Vault transit scheme, so
// that existing tooling works: the caller fetches the deployment's RSA-4096
// wrapping key, makes a fresh 32-byte AES key, and sends
//
//	RSA-OAEP(wrapping key, hash, empty label, AES key) ‖ KWP(AES key, target key)
//
// KWP being AES key wrap with padding (RFC 5649). The target key becomes a
// keyring version like any other: wrapped under the root key, never
// exportable.

// WrappingKeyName is the path segment of the wrapping key
// (GET /v1/keys/wrapping_key); no transit key may have that name.
const WrappingKeyName = "wrapping_key"

// Client-facing messages of an import.
const (
	// MsgNotAKey is the one message of every import ciphertext that does not
	// unwrap, whether RSA-OAEP or the key wrap failed: nothing more is said.
	MsgNotAKey      = "the ciphertext does not unwrap to a key"
	msgImportSize   = "the imported key must be 32 bytes (an AES-256-GCM key)"
	msgReservedName = "the key name wrapping_key is reserved"
)

const (
	// wrappingKeyBits is the size of the RSA wrapping key.
	wrappingKeyBits = 4096
	// wrappingKeyID is the keyring key id that seals the wrapping key's
	// private key. Transit key ids are "transit/NAME", so none is this one.
	wrappingKeyID = "transit-byok/wrapping-key"
	// wrappingKeyMeta is the metadata key that held the sealed private key
	// of the first wrapping key before wrapping keys rotated: version 1,
	// of unknown age.
	wrappingKeyMeta = "transit.byok.wrapping_key"
	// ephemeralKeySize is the AES key the caller wraps its key with.
	ephemeralKeySize = 32
	// importKeySize is the only size a transit key may have.
	importKeySize = 32
	// wrappingRecheck is how often a node looks for a wrapping key another
	// node made.
	wrappingRecheck = 30 * time.Second
)

// wrappingKeyMetaV is the metadata key of wrapping key version n:
// "CREATED_UNIX_MICROS.BASE64_ENVELOPE".
func wrappingKeyMetaV(n uint32) string {
	return wrappingKeyMeta + ".v" + strconv.FormatUint(uint64(n), 10)
}

// wrappingKeyAAD binds the sealed private key to its place: the legacy
// key (version 0 here) to the name alone, every versioned one to its
// version and creation time too, so that no sealed key can stand in for
// another or be made to look younger.
func wrappingKeyAAD(n uint32, created int64) []byte {
	if n == 0 {
		return envelope.AAD("transit", WrappingKeyName, "rsa-4096-pkcs8")
	}
	return envelope.AAD("transit", WrappingKeyName, "rsa-4096-pkcs8",
		strconv.FormatUint(uint64(n), 10), strconv.FormatInt(created, 10))
}

// Meta keeps small metadata values; the store implements it.
type Meta interface {
	// Meta returns the value of key, or a *coffer.Error with ENOTFOUND.
	Meta(ctx context.Context, key string) (string, error)
	// AddMeta sets key to value only if it has none, and returns the value
	// it holds afterwards.
	AddMeta(ctx context.Context, key, value string) (string, error)
	// DeleteMeta removes key; one that is not set is no error.
	DeleteMeta(ctx context.Context, key string) error
}

// WrappingKey is the answer of GET /v1/keys/wrapping_key.
type WrappingKey struct {
	// PublicKey is the RSA-4096 public key, PEM of a SubjectPublicKeyInfo.
	PublicKey string `json:"public_key"`
	// Version numbers the wrapping keys of the deployment, from 1.
	Version uint32 `json:"version"`
	// CreatedAt is when it was made; absent for a key made before
	// wrapping keys rotated.
	CreatedAt *time.Time `json:"created_at,omitempty"`
}

// ImportRequest is the body of an import.
type ImportRequest struct {
	// Ciphertext is base64 of RSA-OAEP(AES key) ‖ KWP(AES key, target key).
	Ciphertext string `json:"ciphertext"`
	// HashFunction is the RSA-OAEP hash: SHA256 (the default), SHA384,
	// SHA512, or SHA1 where Config.AllowSHA1 allows it.
	HashFunction string `json:"hash_function,omitempty"`
}

// wrapping is one loaded wrapping key.
type wrapping struct {
	version uint32
	created time.Time // zero for the key of unknown age
	priv    *rsa.PrivateKey
	pem     string
}

// byokKeys is the cached state of the wrapping keys: the one in use, and
// the one before while its grace lasts.
type byokKeys struct {
	cur, prev *wrapping
	checked   time.Time
}

// WrappingKey returns the deployment's wrapping key (action admin on
// keys/wrapping_key, as creating a key), making it on first use and a new
// one when it is older than Config.WrappingKeyRotateAfter.
func (s *Service) WrappingKey(ctx context.Context, c Caller) (WrappingKey, error) {
	if err := s.admitAdmin(c, "wrapping_key", WrappingKeyName); err != nil {
		return WrappingKey{}, err
	}
	w, _, err := s.wrappingKeys(ctx)
	if err != nil {
		return WrappingKey{}, err
	}
	out := WrappingKey{PublicKey: w.pem, Version: w.version}
	if !w.created.IsZero() {
		t := w.created
		out.CreatedAt = &t
	}
	return out, nil
}

// wrappingKeys returns the wrapping key in use and, while its grace lasts
// (Config.WrappingKeyGrace after the current one was made), the one before
// it (nil otherwise). It makes the first key, and the next one once the
// current is due (Config.WrappingKeyRotateAfter); nodes that do so at once
// all end with the one stored first. A previous key past its grace is
// deleted from the store.
func (s *Service) wrappingKeys(ctx context.Context) (cur, prev *wrapping, err error) {
	s.byokMu.Lock()
	defer s.byokMu.Unlock()
	now := s.c.Now()
	st := &s.byok
	if st.cur != nil && now.Sub(st.checked) < wrappingRecheck && !s.wrappingDue(st.cur, now) {
		return st.cur, s.inGrace(st, now), nil
	}
	if s.c.Meta == nil {
		return nil, nil, errors.New("transit: wrapping key: no metadata store configured")
	}
	n := uint32(1)
	if st.cur != nil {
		n = st.cur.version
	}
	// The newest version any node made.
	for {
		_, err := s.c.Meta.Meta(ctx, wrappingKeyMetaV(n+1))
		if coffer.ErrorCode(err) == coffer.ENOTFOUND {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("transit: wrapping key: %w", err)
		}
		n++
	}
	w := st.cur
	if w == nil || w.version != n {
		w, err = s.loadWrapping(ctx, n)
		if coffer.ErrorCode(err) == coffer.ENOTFOUND && n == 1 {
			w, err = s.newWrappingKey(ctx, 1)
		}
		if err != nil {
			return nil, nil, err
		}
	}
	if s.wrappingDue(w, now) {
		next, err := s.newWrappingKey(ctx, w.version+1)
		if err != nil {
			return nil, nil, err
		}
		if w.version > 1 {
			// Two back: past its grace, as its successor is due.
			s.dropWrapping(ctx, w.version-1)
		}
		st.prev, w = w, next
	}
	if st.prev == nil || st.prev.version != w.version-1 {
		st.prev = nil
		if w.version > 1 && now.Before(w.created.Add(s.c.WrappingKeyGrace)) {
			if p, err := s.loadWrapping(ctx, w.version-1); err == nil {
				st.prev = p
			} else if coffer.ErrorCode(err) != coffer.ENOTFOUND {
				return nil, nil, err
			}
		}
	}
	st.cur, st.checked = w, now
	if st.prev != nil && s.inGrace(st, now) == nil {
		s.dropWrapping(ctx, st.prev.version)
		st.prev = nil
	}
	return st.cur, s.inGrace(st, now), nil
}

// wrappingDue reports whether w should be replaced: rotation is on and w
// is older than WrappingKeyRotateAfter (a key of unknown age is).
func (s *Service) wrappingDue(w *wrapping, now time.Time) bool {
	return s.c.WrappingKeyRotateAfter > 0 && (w.created.IsZero() || now.Sub(w.created) >= s.c.WrappingKeyRotateAfter)
}

// inGrace returns st.prev while it still unwraps imports, nil after.
func (s *Service) inGrace(st *byokKeys, now time.Time) *wrapping {
	if st.prev == nil || !now.Before(st.cur.created.Add(s.c.WrappingKeyGrace)) {
		return nil
	}
	return st.prev
}

// dropWrapping deletes wrapping key version n from the store, best
// effort: a key left there is never used again, as it is past its grace.
func (s *Service) dropWrapping(ctx context.Context, n uint32) {
	keys := []string{wrappingKeyMetaV(n)}
	if n == 1 {
		keys = append(keys, wrappingKeyMeta)
	}
	for _, k := range keys {
		if err := s.c.Meta.DeleteMeta(ctx, k); err != nil {
			s.c.Log.Warn("an old import wrapping key could not be deleted; it is not used", "version", n, "error", err)
		}
	}
}

// newWrappingKey makes an RSA key, seals it and stores it as version n
// unless another node stored one first; it returns the one stored.
func (s *Service) newWrappingKey(ctx context.Context, n uint32) (*wrapping, error) {
	bits := s.c.wrappingBits
	if bits == 0 {
		bits = wrappingKeyBits
	}
	priv, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return nil, fmt.Errorf("transit: make wrapping key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("transit: make wrapping key: %w", err)
	}
	defer clear(der)
	created := s.c.Now().UTC().UnixMicro()
	env, err := s.c.Keys.Seal(ctx, wrappingKeyID, der, wrappingKeyAAD(n, created))
	if err != nil {
		return nil, fmt.Errorf("transit: seal wrapping key: %w", err)
	}
	stored, err := s.c.Meta.AddMeta(ctx, wrappingKeyMetaV(n), strconv.FormatInt(created, 10)+"."+base64.StdEncoding.EncodeToString(env))
	if err != nil {
		return nil, fmt.Errorf("transit: store wrapping key: %w", err)
	}
	if n > 1 {
		s.c.Log.Info("import wrapping key rotated", "version", n)
	}
	return s.openWrapping(ctx, n, stored, false)
}

// loadWrapping reads and unseals wrapping key version n (version 1 also
// under its name from before wrapping keys rotated); ENOTFOUND if there
// is none.
func (s *Service) loadWrapping(ctx context.Context, n uint32) (*wrapping, error) {
	stored, err := s.c.Meta.Meta(ctx, wrappingKeyMetaV(n))
	if coffer.ErrorCode(err) == coffer.ENOTFOUND && n == 1 {
		if stored, err = s.c.Meta.Meta(ctx, wrappingKeyMeta); err == nil {
			return s.openWrapping(ctx, 1, stored, true)
		}
	}
	if err != nil {
		if coffer.ErrorCode(err) == coffer.ENOTFOUND {
			return nil, err
		}
		return nil, fmt.Errorf("transit: wrapping key: %w", err)
	}
	return s.openWrapping(ctx, n, stored, false)
}

// openWrapping unseals a stored wrapping key: legacy, the envelope alone;
// otherwise "CREATED.ENVELOPE".
func (s *Service) openWrapping(ctx context.Context, n uint32, stored string, legacy bool) (*wrapping, error) {
	w := &wrapping{version: n}
	sealed, aad := stored, wrappingKeyAAD(0, 0)
	if !legacy {
		c, rest, ok := strings.Cut(stored, ".")
		created, err := strconv.ParseInt(c, 10, 64)
		if !ok || err != nil {
			return nil, errors.New("transit: stored wrapping key is malformed")
		}
		sealed, aad, w.created = rest, wrappingKeyAAD(n, created), time.UnixMicro(created).UTC()
	}
	env, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil {
		return nil, fmt.Errorf("transit: stored wrapping key is not base64: %w", err)
	}
	der, err := s.c.Keys.Open(ctx, wrappingKeyID, env, aad)
	if err != nil {
		return nil, fmt.Errorf("transit: open wrapping key: %w", err)
	}
	defer clear(der)
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("transit: parse wrapping key: %w", err)
	}
	priv, ok := k.(*rsa.PrivateKey)
	if !ok || s.c.wrappingBits == 0 && priv.N.BitLen() != wrappingKeyBits {
		return nil, errors.New("transit: stored wrapping key is not an RSA-4096 key")
	}
	pub, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("transit: wrapping key: %w", err)
	}
	w.priv, w.pem = priv, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
	return w, nil
}

// MsgSHA1Refused is the answer to an import that names SHA1 while
// Config.AllowSHA1 is off.
const MsgSHA1Refused = "hash_function SHA1 is refused: wrap with SHA256 (RSA-OAEP with SHA-1 is accepted only where transit.byok.allow_sha1 is set)"

// oaepHash returns the RSA-OAEP hash a hash_function names; SHA1 only
// with allowSHA1.
func oaepHash(name string, allowSHA1 bool) (func() hash.Hash, error) {
	switch strings.ToUpper(name) {
	case "", "SHA256", "SHA2-256":
		return sha256.New, nil
	case "SHA1":
		if !allowSHA1 {
			return nil, coffer.Errorf(coffer.EINVALID, MsgSHA1Refused)
		}
		return sha1.New, nil
	case "SHA384", "SHA2-384":
		return sha512.New384, nil
	case "SHA512", "SHA2-512":
		return sha512.New, nil
	}
	return nil, coffer.Errorf(coffer.EINVALID, "hash_function must be SHA1, SHA256, SHA384 or SHA512")
}

// errNotAKey is every unwrap failure; it carries no detail.
var errNotAKey = errors.New("transit: import ciphertext does not unwrap")

// unwrapImport returns the key an import ciphertext carries:
// RSA-OAEP(priv, h, empty label) of a 32-byte AES key, then KWP of the key
// under it. Every failure is errNotAKey. When RSA-OAEP fails the key wrap
// is still attempted under a random key, so both failures take about the
// same work. The caller zeroes the result.
func unwrapImport(priv *rsa.PrivateKey, h func() hash.Hash, ct []byte) ([]byte, error) {
	n := priv.Size()
	if len(ct) <= n {
		return nil, errNotAKey
	}
	aesKey, oaepErr := rsa.DecryptOAEP(h(), nil, priv, ct[:n], nil)
	if oaepErr != nil || len(aesKey) != ephemeralKeySize {
		clear(aesKey)
		aesKey = make([]byte, ephemeralKeySize)
		if _, err := rand.Read(aesKey); err != nil {
			return nil, errNotAKey
		}
		oaepErr = errNotAKey
	}
	defer clear(aesKey)
	key, err := unwrapKWP(aesKey, ct[n:])
	if oaepErr != nil || err != nil {
		clear(key)
		return nil, errNotAKey
	}
	return key, nil
}

// unwrapKWP undoes AES key wrap with padding (RFC 5649) of wrapped under
// kek (AES-128 or AES-256), with Tink's implementation.
func unwrapKWP(kek, wrapped []byte) ([]byte, error) {
	w, err := subtle.NewKWP(kek)
	if err != nil {
		return nil, fmt.Errorf("transit: key wrap: %w", err)
	}
	out, err := w.Unwrap(wrapped)
	if err != nil {
		return nil, fmt.Errorf("transit: key unwrap: %w", err)
	}
	return out, nil
}

// Import creates the transit key name with the key the caller brought as
// its first version (action admin, as Create). A key of that name, live or
// deleted, is a conflict; a ciphertext that does not unwrap is one generic
// 422 (MsgNotAKey), and a key that is not 32 bytes another.
func (s *Service) Import(ctx context.Context, c Caller, name string, req ImportRequest) (KeyInfo, error) {
	if err := s.admitNew(c, "import", name); err != nil {
		return KeyInfo{}, err
	}
	h, ct, err := s.checkImport(req)
	if err != nil {
		return KeyInfo{}, err
	}
	return c.touched(s.createKey(ctx, TransitKey{Name: name, Origin: coffer.TransitOriginBYOK}, "import", func() (uint32, error) {
		material, err := s.unwrap(ctx, h, ct)
		if err != nil {
			return 0, err
		}
		defer clear(material)
		return s.c.Keys.Import(ctx, KeyID(name), material)
	}))
}

// ImportVersion makes the key the caller brought the next version of the
// existing transit key name, the one that encrypts from now on (action
// admin, as Rotate). Older versions still decrypt down to
// MinDecryptionVersion. Refusals are those of Import; a key that does not
// exist is ENOTFOUND.
func (s *Service) ImportVersion(ctx context.Context, c Caller, name string, req ImportRequest) (KeyInfo, error) {
	if err := s.admitAdmin(c, "import_version", name); err != nil {
		return KeyInfo{}, err
	}
	h, ct, err := s.checkImport(req)
	if err != nil {
		return KeyInfo{}, err
	}
	if _, err := s.load(ctx, c, name); err != nil {
		return KeyInfo{}, err
	}
	material, err := s.unwrap(ctx, h, ct)
	if err != nil {
		return KeyInfo{}, err
	}
	k, err := s.addVersion(ctx, name, 0, false, material)
	if err != nil {
		return KeyInfo{}, err
	}
	return c.touched(s.info(ctx, k))
}

// checkImport reads an import request's hash function and ciphertext.
func (s *Service) checkImport(req ImportRequest) (func() hash.Hash, []byte, error) {
	h, err := oaepHash(req.HashFunction, s.c.AllowSHA1)
	if err != nil {
		return nil, nil, err
	}
	ct, err := base64.StdEncoding.DecodeString(req.Ciphertext)
	if err != nil || len(ct) == 0 {
		return nil, nil, coffer.Errorf(coffer.EINVALID, "ciphertext must be standard base64 of the wrapped key")
	}
	return h, ct, nil
}

// unwrap returns the 32-byte key an import ciphertext carries, or the
// client error to answer. The caller zeroes it.
//
// While the previous wrapping key is in its grace, both keys are tried,
// always both, so that the answer takes the same work whichever unwraps.
func (s *Service) unwrap(ctx context.Context, h func() hash.Hash, ct []byte) ([]byte, error) {
	cur, prev, err := s.wrappingKeys(ctx)
	if err != nil {
		return nil, err
	}
	material, err := unwrapImport(cur.priv, h, ct)
	if prev != nil {
		old, oldErr := unwrapImport(prev.priv, h, ct)
		if err != nil {
			material, err = old, oldErr
		} else {
			clear(old)
		}
	}
	if err != nil {
		return nil, coffer.Errorf(coffer.EINVALID, MsgNotAKey)
	}
	if len(material) != importKeySize {
		clear(material)
		return nil, coffer.Errorf(coffer.EINVALID, msgImportSize)
	}
	return material, nil
}
