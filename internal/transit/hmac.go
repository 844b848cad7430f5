package transit

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
)

// hmacKeyLabel is what the keyring's MAC key of a transit key version
// authenticates to make the version's HMAC key: the HMAC key is bound to
// its version and is neither the encryption key nor the MAC key itself.
const hmacKeyLabel = "coffer/transit/hmac-key/v1"

// hmacAlgorithms are the hashes HMAC and VerifyHMAC take, named as
// Vault's transit engine names them.
var hmacAlgorithms = map[string]func() hash.Hash{
	"sha2-224": sha256.New224,
	"sha2-256": sha256.New,
	"sha2-384": sha512.New384,
	"sha2-512": sha512.New,
	"sha3-224": func() hash.Hash { return sha3.New224() },
	"sha3-256": func() hash.Hash { return sha3.New256() },
	"sha3-384": func() hash.Hash { return sha3.New384() },
	"sha3-512": func() hash.Hash { return sha3.New512() },
}

// DefaultHMACAlgorithm is the hash of an HMAC that names none.
const DefaultHMACAlgorithm = "sha2-256"

// MsgHMACAlgorithm refuses an algorithm HMAC does not know.
const MsgHMACAlgorithm = "algorithm must be one of sha2-224, sha2-256, sha2-384, sha2-512, sha3-224, sha3-256, sha3-384, sha3-512"

// MAC is one HMAC and the key version that made it.
type MAC struct {
	Version uint32
	Sum     []byte
}

// MACResult is one item's outcome: the MAC made (HMAC) or whether the
// MAC given is valid (VerifyHMAC), or an Error naming the field, never a
// value.
type MACResult struct {
	MAC   MAC
	Valid bool
	Error string
}

// MACCheck is one input and the MAC to check it against.
type MACCheck struct {
	Input Plaintext
	MAC   MAC
}

// HMAC returns the HMAC of each base64 input under version v of the key
// (0: its latest version) with the named algorithm (action encrypt,
// noted as "hmac"). An input that is not base64 or is too long fails
// alone, as in EncryptBatch; the policy, the key, the algorithm, the
// version (it must be between the key's minimum decryption version and
// its latest) and the batch size fail the call.
func (s *Service) HMAC(ctx context.Context, c Caller, name, alg string, v uint32, inputs []Plaintext) ([]MACResult, error) {
	h, k, err := s.admitMAC(ctx, c, "encrypt", "hmac", name, alg, len(inputs))
	if err != nil {
		return nil, err
	}
	if v == 0 {
		v = k.LatestVersion
	}
	if v < k.MinDecryptionVersion || v > k.LatestVersion {
		return nil, coffer.Errorf(coffer.EINVALID, "key_version must be between the key's min_decryption_version, %d, and its latest version, %d",
			k.MinDecryptionVersion, k.LatestVersion)
	}
	mk, err := s.hmacKey(ctx, name, v)
	if err != nil {
		return nil, err
	}
	defer clear(mk)
	out := make([]MACResult, len(inputs))
	ok := 0
	for i, in := range inputs {
		b, _, p := decodeField("input", in, s.c.MaxPlaintextBytes)
		if p != "" {
			out[i].Error = p
			continue
		}
		m := hmac.New(h, mk)
		m.Write(b)
		clear(b)
		out[i].MAC = MAC{Version: v, Sum: m.Sum(nil)}
		ok++
	}
	if ok > 0 {
		c.Note.Touch(coffer.KeyVersionTarget(name, v))
	}
	noteBatch(c, len(inputs), ok)
	return out, nil
}

// VerifyHMAC checks each input against its MAC (action decrypt, noted as
// "hmac.verify"). A MAC of a version the key has not, or below its minimum
// decryption version, is not valid; an input that is not base64 fails
// alone. What fails the call is as in HMAC. MACs are compared in constant
// time.
func (s *Service) VerifyHMAC(ctx context.Context, c Caller, name, alg string, items []MACCheck) ([]MACResult, error) {
	h, k, err := s.admitMAC(ctx, c, "decrypt", "hmac.verify", name, alg, len(items))
	if err != nil {
		return nil, err
	}
	keys := map[uint32][]byte{}
	defer func() {
		for _, mk := range keys {
			clear(mk)
		}
	}()
	out := make([]MACResult, len(items))
	ok := 0
	for i, it := range items {
		b, _, p := decodeField("input", it.Input, s.c.MaxPlaintextBytes)
		if p != "" {
			out[i].Error = p
			continue
		}
		v := it.MAC.Version
		if v < k.MinDecryptionVersion || v > k.LatestVersion {
			clear(b)
			ok++ // answered: not valid
			continue
		}
		mk, seen := keys[v]
		if !seen {
			mk, err = s.hmacKey(ctx, name, v)
			if coffer.ErrorCode(err) == coffer.EMALFORMED {
				keys[v] = nil // retired or destroyed meanwhile: nothing is valid under it
			} else if err != nil {
				clear(b)
				return nil, err
			} else {
				keys[v] = mk
				c.Note.Touch(coffer.KeyVersionTarget(name, v))
			}
		}
		if mk != nil {
			m := hmac.New(h, mk)
			m.Write(b)
			out[i].Valid = hmac.Equal(m.Sum(nil), it.MAC.Sum)
		}
		clear(b)
		ok++
	}
	noteBatch(c, len(items), ok)
	return out, nil
}

// admitMAC begins an HMAC call: it authorizes action on the key, notes
// the call as op, checks the algorithm and the batch size, and loads the
// key.
func (s *Service) admitMAC(ctx context.Context, c Caller, action, op, name, alg string, n int) (func() hash.Hash, TransitKey, error) {
	if err := begin(c, action, name, n); err != nil {
		return nil, TransitKey{}, err
	}
	err := s.authorize(c, action, name)
	if c.Note != nil {
		c.Note.Action = op
	}
	if err != nil {
		return nil, TransitKey{}, err
	}
	if alg == "" {
		alg = DefaultHMACAlgorithm
	}
	h, ok := hmacAlgorithms[alg]
	if !ok {
		return nil, TransitKey{}, coffer.Errorf(coffer.EINVALID, MsgHMACAlgorithm)
	}
	if err := s.checkBatch(n, "batch_input"); err != nil {
		return nil, TransitKey{}, err
	}
	k, err := s.loadCached(ctx, c, name)
	if err != nil {
		return nil, TransitKey{}, err
	}
	return h, k, nil
}

// hmacKey returns the HMAC key of version v of the key name; the caller
// clears it. A version the keyring no longer opens is the opaque error.
func (s *Service) hmacKey(ctx context.Context, name string, v uint32) ([]byte, error) {
	mk, err := s.c.Keys.MACVersion(ctx, KeyID(name), v, []byte(hmacKeyLabel))
	switch {
	case err == nil:
		return mk, nil
	case errors.Is(err, keyring.ErrKeyRetired), errors.Is(err, keyring.ErrKeyNotFound), errors.Is(err, keyring.ErrVersionDestroyed):
		return nil, undecryptable()
	case errors.Is(err, keyring.ErrKeyDestroyed):
		return nil, coffer.Errorf(coffer.ENOTFOUND, msgNotFound)
	}
	return nil, fmt.Errorf("transit: hmac key: %w", err)
}

// List returns the names of the keys the caller may read (action read on
// each keys/NAME, noted as one read of "keys"). When keys exist and the
// caller may read none of them, it is refused (EFORBIDDEN).
func (s *Service) List(ctx context.Context, c Caller) ([]string, error) {
	c.Note.Target("read", "keys")
	names, err := s.c.Store.TransitKeyNames(ctx)
	if err != nil {
		return nil, fmt.Errorf("transit: list keys: %w", err)
	}
	out := make([]string, 0, len(names))
	for _, n := range names {
		err := s.c.Auth.Allowed(c.Principal, "read", Resource(n), c.IP, nil)
		switch coffer.ErrorCode(err) {
		case "":
			out = append(out, n)
		case coffer.EFORBIDDEN, coffer.ENOTFOUND:
		default:
			c.Note.Deny("policy unavailable")
			return nil, fmt.Errorf("transit: list keys: authorize: %w", err)
		}
	}
	if len(names) > 0 && len(out) == 0 {
		c.Note.Deny("no rule allows reading any key")
		return nil, coffer.Errorf(coffer.EFORBIDDEN, "not allowed to read any transit key")
	}
	if c.Note != nil {
		c.Note.Allow("")
		c.Note.Count = len(out)
		c.Note.Reason = fmt.Sprintf("%d of %d keys readable", len(out), len(names))
	}
	return out, nil
}
