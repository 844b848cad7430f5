package transit

import (
	"context"
	"errors"
	"fmt"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/envelope"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
)

// aad binds a value to its transit key and its context.
func aad(name string, bound []byte) []byte {
	return envelope.AAD("transit", name, string(bound))
}

// decoded is one validated item.
type decoded struct {
	plaintext []byte // Encrypt only
	env       []byte // Decrypt and Rewrap only
	context   []byte
}

// clearAll zeroes every decoded plaintext.
func clearAll(items []decoded) {
	for i := range items {
		clear(items[i].plaintext)
	}
}

// decodeB64 decodes an item's base64 field of at most max bytes; it
// reports a problem naming the field, never its value.
func decodeB64(field string, i int, v Plaintext, max int) ([]byte, string, error) {
	if b64.DecodedLen(len(v)) > max+2 {
		return nil, "", coffer.Errorf(coffer.ETOOLARGE, "items[%d].%s: at most %d bytes", i, field, max)
	}
	b, err := b64.DecodeString(string(v))
	if err != nil {
		return nil, fmt.Sprintf("items[%d].%s must be standard base64", i, field), nil
	}
	if len(b) > max {
		clear(b)
		return nil, "", coffer.Errorf(coffer.ETOOLARGE, "items[%d].%s: at most %d bytes", i, field, max)
	}
	return b, "", nil
}

// decodeItems validates every item to encrypt before any is encrypted.
func (s *Service) decodeItems(items []Item) ([]decoded, error) {
	out := make([]decoded, len(items))
	var problems []string
	for i, it := range items {
		pt, p, err := decodeB64("plaintext", i, it.Plaintext, s.c.MaxPlaintextBytes)
		if err == nil && p == "" {
			out[i].plaintext = pt
			out[i].context, p, err = decodeB64("context", i, it.Context, s.c.MaxContextBytes)
		}
		if err != nil {
			clearAll(out)
			return nil, err
		}
		if p != "" {
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		clearAll(out)
		return nil, problemsError(problems)
	}
	return out, nil
}

// maxCiphertextLen bounds a ciphertext text before it is decoded.
func (s *Service) maxCiphertextLen() int {
	return len(ciphertextPrefix) + maxVersionDigits + 1 + b64.EncodedLen(s.c.MaxPlaintextBytes+envelope.Overhead)
}

// decodeCiphertexts validates every ciphertext before any is opened. A
// malformed one is a 422; one whose prefix and header versions differ
// was altered and gets the opaque error.
func (s *Service) decodeCiphertexts(items []CiphertextItem) ([]decoded, error) {
	out := make([]decoded, len(items))
	var problems []string
	altered := false
	for i, it := range items {
		if len(it.Ciphertext) > s.maxCiphertextLen() {
			return nil, coffer.Errorf(coffer.ETOOLARGE, "items[%d].ciphertext is too long", i)
		}
		_, env, err := ParseCiphertext(it.Ciphertext)
		switch {
		case errors.Is(err, ErrVersionMismatch):
			altered = true
		case err != nil:
			problems = append(problems, fmt.Sprintf("items[%d].ciphertext must be coffer:vN:BASE64 as encrypt returns it", i))
		}
		out[i].env = env
		c, p, err := decodeB64("context", i, it.Context, s.c.MaxContextBytes)
		if err != nil {
			return nil, err
		}
		if p != "" {
			problems = append(problems, p)
		}
		out[i].context = c
	}
	if len(problems) > 0 {
		return nil, problemsError(problems)
	}
	if altered {
		return nil, undecryptable()
	}
	return out, nil
}

// Encrypt encrypts a batch of values under the key's latest version
// (action encrypt), rotating the key first when a rotation is due. Every
// item is validated before any is encrypted; the answer holds one
// ciphertext per item, in order.
func (s *Service) Encrypt(ctx context.Context, c Caller, name string, items []Item) ([]Ciphertext, error) {
	if err := begin(c, "encrypt", name, len(items)); err != nil {
		return nil, err
	}
	if err := s.authorize(c, "encrypt", name); err != nil {
		return nil, err
	}
	if err := s.checkBatch(len(items)); err != nil {
		return nil, err
	}
	in, err := s.decodeItems(items)
	if err != nil {
		return nil, err
	}
	defer clearAll(in)
	k, err := s.load(ctx, c, name)
	if err != nil {
		return nil, err
	}
	if k, err = s.maybeRotate(ctx, k, len(in)); err != nil {
		return nil, err
	}
	sl := s.sealer(k)
	out := make([]Ciphertext, len(in))
	for i := range in {
		if out[i], err = sl.seal(ctx, in[i].plaintext, in[i].context); err != nil {
			s.count(ctx, name, i)
			return nil, err
		}
	}
	s.finishSeal(ctx, sl, len(in))
	return out, nil
}

// Decrypt decrypts a batch of ciphertexts of the key (action decrypt).
// Every item is validated before any is opened. A ciphertext that does not
// decrypt — altered, of another key, with another context, or of a version
// below the key's minimum decryption version — fails the whole call with
// the one opaque error (EMALFORMED, MsgUndecryptable).
func (s *Service) Decrypt(ctx context.Context, c Caller, name string, items []CiphertextItem) ([]Decrypted, error) {
	if err := begin(c, "decrypt", name, len(items)); err != nil {
		return nil, err
	}
	if err := s.authorize(c, "decrypt", name); err != nil {
		return nil, err
	}
	if err := s.checkBatch(len(items)); err != nil {
		return nil, err
	}
	in, err := s.decodeCiphertexts(items)
	if err != nil {
		return nil, err
	}
	k, err := s.load(ctx, c, name)
	if err != nil {
		return nil, err
	}
	out := make([]Decrypted, len(in))
	for i := range in {
		pt, err := s.open(ctx, k, in[i].env, in[i].context)
		if err != nil {
			return nil, err
		}
		out[i].Plaintext = Plaintext(b64.EncodeToString(pt))
		clear(pt)
	}
	if c.Note != nil {
		c.Note.Values = len(out)
	}
	return out, nil
}

// Rewrap moves a batch of ciphertexts of the key to its latest version
// (actions decrypt and encrypt), without returning any plaintext. A
// ciphertext that does not decrypt fails the call as in Decrypt.
func (s *Service) Rewrap(ctx context.Context, c Caller, name string, items []CiphertextItem) ([]Ciphertext, error) {
	if err := begin(c, "rewrap", name, len(items)); err != nil {
		return nil, err
	}
	if err := s.authorize(c, "decrypt", name); err != nil {
		return nil, err
	}
	if err := s.authorize(c, "encrypt", name); err != nil {
		return nil, err
	}
	if err := s.checkBatch(len(items)); err != nil {
		return nil, err
	}
	in, err := s.decodeCiphertexts(items)
	if err != nil {
		return nil, err
	}
	k, err := s.load(ctx, c, name)
	if err != nil {
		return nil, err
	}
	if k, err = s.maybeRotate(ctx, k, len(in)); err != nil {
		return nil, err
	}
	sl := s.sealer(k)
	out := make([]Ciphertext, len(in))
	for i := range in {
		pt, err := s.open(ctx, k, in[i].env, in[i].context)
		if err != nil {
			s.count(ctx, name, i)
			return nil, err
		}
		out[i], err = sl.seal(ctx, pt, in[i].context)
		clear(pt)
		if err != nil {
			s.count(ctx, name, i)
			return nil, err
		}
	}
	s.finishSeal(ctx, sl, len(in))
	return out, nil
}

// open opens one envelope of k. Every failure that a ciphertext can cause
// is the opaque error; only outages (store, root key) are other errors.
func (s *Service) open(ctx context.Context, k TransitKey, env, bound []byte) ([]byte, error) {
	v, err := envelope.KeyVersion(env)
	if err != nil || v < k.MinDecryptionVersion || v > k.LatestVersion {
		// Checked here, not left to the keyring: a version it does not
		// hold would make it reload from the store, once per item.
		return nil, undecryptable()
	}
	pt, err := s.c.Keys.Open(ctx, KeyID(k.Name), env, aad(k.Name, bound))
	switch {
	case err == nil:
		return pt, nil
	case errors.Is(err, envelope.ErrDecrypt), errors.Is(err, keyring.ErrKeyRetired), errors.Is(err, keyring.ErrKeyNotFound):
		return nil, undecryptable()
	case errors.Is(err, keyring.ErrKeyDestroyed):
		return nil, coffer.Errorf(coffer.ENOTFOUND, msgNotFound) // deleted meanwhile
	}
	return nil, fmt.Errorf("transit: open: %w", err)
}

// sealer seals a batch under one key.
type sealer struct {
	s *Service
	k TransitKey
}

func (s *Service) sealer(k TransitKey) *sealer { return &sealer{s: s, k: k} }

// seal seals one value under the version the store records as the key's
// latest, never a newer one the keyring may hold: a version encrypts only
// once the rotation or import that made it has recorded it, so a version
// whose recording failed, or whose import lost the race for a new name to
// another node's, never does. The minimum decryption version is at most
// the latest, so the ciphertext decrypts for as long as its version lives.
func (sl *sealer) seal(ctx context.Context, pt, bound []byte) (Ciphertext, error) {
	env, err := sl.s.c.Keys.SealVersion(ctx, KeyID(sl.k.Name), sl.k.LatestVersion, pt, aad(sl.k.Name, bound))
	switch {
	case errors.Is(err, keyring.ErrKeyDestroyed):
		return Ciphertext{}, coffer.Errorf(coffer.ENOTFOUND, msgNotFound) // deleted meanwhile
	case errors.Is(err, keyring.ErrKeyRetired), errors.Is(err, keyring.ErrVersionDestroyed):
		return Ciphertext{}, coffer.Errorf(coffer.ECONFLICT, "the transit key's latest version is retired; rotate the key")
	case err != nil:
		return Ciphertext{}, fmt.Errorf("transit: seal: %w", err)
	}
	text, err := FormatCiphertext(env)
	if err != nil {
		return Ciphertext{}, fmt.Errorf("transit: seal: %w", err)
	}
	return Ciphertext{Ciphertext: text, KeyVersion: sl.k.LatestVersion}, nil
}

// finishSeal counts a batch's encryptions.
func (s *Service) finishSeal(ctx context.Context, sl *sealer, n int) {
	s.count(ctx, sl.k.Name, n)
}
