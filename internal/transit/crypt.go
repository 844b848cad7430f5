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

// decoded is one item, decoded, or the problem that makes it unusable.
type decoded struct {
	plaintext []byte // Encrypt only
	env       []byte // Decrypt and Rewrap only
	// foreign is, for a vault:vN: ciphertext of a key imported from
	// Vault, what Vault may have sealed (nonce ‖ GCM) under version
	// foreignV: tried when env is nil or does not open.
	foreign  []byte
	foreignV uint32
	context  []byte
	// problem says why the item cannot be used, naming the field and
	// never its value ("plaintext must be standard base64"); "" when it
	// can. kind is its code: EINVALID, ETOOLARGE, or EMALFORMED for a
	// ciphertext that was altered (problem is then MsgUndecryptable).
	problem, kind string
}

// fail marks the item unusable.
func (d *decoded) fail(kind, problem string) {
	clear(d.plaintext)
	d.plaintext, d.env, d.foreign, d.context = nil, nil, nil, nil
	d.kind, d.problem = kind, problem
}

// clearAll zeroes every decoded plaintext.
func clearAll(items []decoded) {
	for i := range items {
		clear(items[i].plaintext)
	}
}

// usable counts the items without a problem.
func usable(items []decoded) int {
	n := 0
	for i := range items {
		if items[i].problem == "" {
			n++
		}
	}
	return n
}

// decodeField decodes an item's base64 field of at most max bytes; a
// problem names the field, never its value.
func decodeField(field string, v Plaintext, max int) (b []byte, kind, problem string) {
	if b64.DecodedLen(len(v)) > max+2 {
		return nil, coffer.ETOOLARGE, fmt.Sprintf("%s: at most %d bytes", field, max)
	}
	b, err := b64.DecodeString(string(v))
	if err != nil {
		return nil, coffer.EINVALID, field + " must be standard base64"
	}
	if len(b) > max {
		clear(b)
		return nil, coffer.ETOOLARGE, fmt.Sprintf("%s: at most %d bytes", field, max)
	}
	return b, "", ""
}

// decodeItems decodes every item to encrypt; an item that cannot be used
// carries its problem.
func (s *Service) decodeItems(items []Item) []decoded {
	out := make([]decoded, len(items))
	for i, it := range items {
		d := &out[i]
		var kind, p string
		if d.plaintext, kind, p = decodeField("plaintext", it.Plaintext, s.c.MaxPlaintextBytes); p == "" {
			d.context, kind, p = decodeField("context", it.Context, s.c.MaxContextBytes)
		}
		if p != "" {
			d.fail(kind, p)
		}
	}
	return out
}

// maxCiphertextLen bounds a ciphertext text before it is decoded.
func (s *Service) maxCiphertextLen() int {
	return len(ciphertextPrefix) + maxVersionDigits + 1 + b64.EncodedLen(s.c.MaxPlaintextBytes+envelope.Overhead)
}

// decodeCiphertexts decodes every ciphertext to open of the key name. A
// malformed one carries its problem; one whose prefix and header versions
// differ was altered and carries the opaque one. For a key imported from
// Vault, a vault:vN: ciphertext of one of the versions brought from Vault
// may also be one Vault made (ParseVaultNative): it is kept to be tried
// that way too.
func (s *Service) decodeCiphertexts(ctx context.Context, name string, items []CiphertextItem) []decoded {
	out := make([]decoded, len(items))
	vaultUpTo := s.vaultVersions(ctx, name)
	for i, it := range items {
		d := &out[i]
		if len(it.Ciphertext) > s.maxCiphertextLen() {
			d.fail(coffer.ETOOLARGE, "ciphertext is too long")
			continue
		}
		_, env, err := ParseCiphertext(it.Ciphertext)
		var foreign []byte
		var foreignV uint32
		// An envelope's text is kept as Vault's too (openForeign checks
		// the version against the loaded key); a text that is no envelope
		// is Vault's alone, for a version brought from Vault, which costs
		// one read of the key here (and none on the hot path).
		if v, sealed, ok := ParseVaultNative(it.Ciphertext); ok && (err == nil || v <= vaultUpTo()) {
			foreign, foreignV, err = sealed, v, nil // env is nil when err was not
		}
		switch {
		case errors.Is(err, ErrVersionMismatch):
			d.fail(coffer.EMALFORMED, MsgUndecryptable)
		case err != nil:
			d.fail(coffer.EINVALID, "ciphertext must be coffer:vN:BASE64 as encrypt returns it")
		}
		c, kind, p := decodeField("context", it.Context, s.c.MaxContextBytes)
		switch {
		case p != "" && (d.problem == "" || d.kind == coffer.EMALFORMED || kind == coffer.ETOOLARGE):
			d.fail(kind, p)
		case d.problem == "":
			d.env, d.context, d.foreign, d.foreignV = env, c, foreign, foreignV
		}
	}
	return out
}

// vaultVersions returns a function that tells, reading the store once and
// only when asked, the newest version of the key name brought from Vault
// (0 for any other key, and when the key cannot be read: the call fails
// on it later).
func (s *Service) vaultVersions(ctx context.Context, name string) func() uint32 {
	read, up := false, uint32(0)
	return func() uint32 {
		if !read {
			read = true
			if k, err := s.loadCached(ctx, Caller{}, name); err == nil {
				up = k.VaultLatestVersion
			}
		}
		return up
	}
}

// allOrNothing is the verdict on a batch that must succeed whole: the
// first item over a size limit (413), else every malformed item (422),
// else, if any ciphertext was altered, the opaque error.
func allOrNothing(items []decoded) error {
	var problems []string
	altered := false
	for i, d := range items {
		switch d.kind {
		case coffer.ETOOLARGE:
			return coffer.Errorf(coffer.ETOOLARGE, "items[%d].%s", i, d.problem)
		case coffer.EINVALID:
			problems = append(problems, fmt.Sprintf("items[%d].%s", i, d.problem))
		case coffer.EMALFORMED:
			altered = true
		}
	}
	if len(problems) > 0 {
		return problemsError(problems)
	}
	if altered {
		return undecryptable()
	}
	return nil
}

// itemFailure is how a call takes an item that fails to open: an
// all-or-nothing call returns err (the opaque error) and stops; a batch
// records it as the item's error and returns nil to go on.
type itemFailure func(i int, err error) error

// failWhole is the itemFailure of the all-or-nothing calls.
func failWhole(_ int, err error) error { return err }

// sealEach seals every usable item of in under the key's latest version,
// rotating the key first when a rotation is due, and hands put each
// ciphertext. It returns how many it sealed.
func (s *Service) sealEach(ctx context.Context, c Caller, name string, in []decoded, put func(int, Ciphertext)) (int, error) {
	k, err := s.loadCached(ctx, c, name)
	if err != nil {
		return 0, err
	}
	n := usable(in)
	if n == 0 {
		return 0, nil
	}
	if k, err = s.maybeRotate(ctx, k, n); err != nil {
		return 0, err
	}
	sl := s.sealer(k)
	sealed := 0
	finish := func(err error) (int, error) {
		s.count(ctx, name, sealed)
		if sealed > 0 {
			c.Note.Touch(coffer.KeyVersionTarget(name, k.LatestVersion))
		}
		return sealed, err
	}
	for i := range in {
		if in[i].problem != "" {
			continue
		}
		ct, err := sl.seal(ctx, in[i].plaintext, in[i].context)
		if err != nil {
			return finish(err)
		}
		put(i, ct)
		sealed++
	}
	return finish(nil)
}

// openEach opens every usable item of in and hands put each plaintext,
// which put must not keep: it is zeroed once put returns. An item that
// does not decrypt goes to failed; with reseal set, every plaintext is
// sealed again under the key's latest version (rotating it first when
// due) and put gets the ciphertext instead. It returns how many items
// it completed, and notes each key version it opened or sealed under as a
// target of c's call.
func (s *Service) openEach(ctx context.Context, c Caller, name string, in []decoded, failed itemFailure, reseal bool,
	put func(i int, pt []byte, ct Ciphertext)) (int, error) {
	k, err := s.loadCached(ctx, c, name)
	if err != nil {
		return 0, err
	}
	if usable(in) == 0 {
		return 0, nil
	}
	var sl *sealer
	if reseal {
		if k, err = s.maybeRotate(ctx, k, usable(in)); err != nil {
			return 0, err
		}
		sl = s.sealer(k)
	}
	done := 0
	opened := map[uint32]bool{}
	finish := func(err error) (int, error) {
		if reseal {
			s.count(ctx, name, done)
			if done > 0 {
				c.Note.Touch(coffer.KeyVersionTarget(name, k.LatestVersion))
			}
		}
		return done, err
	}
	for i := range in {
		if in[i].problem != "" {
			continue
		}
		pt, v, err := s.openItem(ctx, k, &in[i])
		if coffer.ErrorCode(err) == coffer.EMALFORMED { // the opaque error
			if err = failed(i, err); err != nil {
				return finish(err)
			}
			continue
		}
		if err != nil {
			return finish(err)
		}
		if !opened[v] {
			opened[v] = true
			c.Note.Touch(coffer.KeyVersionTarget(name, v))
		}
		var ct Ciphertext
		if reseal {
			ct, err = sl.seal(ctx, pt, in[i].context)
		}
		if err == nil {
			put(i, pt, ct)
		}
		clear(pt)
		if err != nil {
			return finish(err)
		}
		done++
	}
	return finish(nil)
}

// Encrypt encrypts a batch of values under the key's latest version
// (action encrypt), rotating the key first when a rotation is due. Every
// item is validated before any is encrypted; the answer holds one
// ciphertext per item, in order.
func (s *Service) Encrypt(ctx context.Context, c Caller, name string, items []Item) ([]Ciphertext, error) {
	if err := s.admit(c, "encrypt", name, len(items), "items"); err != nil {
		return nil, err
	}
	in := s.decodeItems(items)
	defer clearAll(in)
	if err := allOrNothing(in); err != nil {
		return nil, err
	}
	out := make([]Ciphertext, len(in))
	if _, err := s.sealEach(ctx, c, name, in, func(i int, ct Ciphertext) { out[i] = ct }); err != nil {
		return nil, err
	}
	return out, nil
}

// Decrypt decrypts a batch of ciphertexts of the key (action decrypt).
// Every item is validated before any is opened. A ciphertext that does not
// decrypt — altered, of another key, with another context, or of a version
// below the key's minimum decryption version — fails the whole call with
// the one opaque error (EMALFORMED, MsgUndecryptable).
func (s *Service) Decrypt(ctx context.Context, c Caller, name string, items []CiphertextItem) ([]Decrypted, error) {
	if err := s.admit(c, "decrypt", name, len(items), "items"); err != nil {
		return nil, err
	}
	in := s.decodeCiphertexts(ctx, name, items)
	if err := allOrNothing(in); err != nil {
		return nil, err
	}
	out := make([]Decrypted, len(in))
	_, err := s.openEach(ctx, c, name, in, failWhole, false, func(i int, pt []byte, _ Ciphertext) {
		out[i].Plaintext = Plaintext(b64.EncodeToString(pt))
	})
	if err != nil {
		return nil, err
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
	if err := s.admit(c, "rewrap", name, len(items), "items"); err != nil {
		return nil, err
	}
	in := s.decodeCiphertexts(ctx, name, items)
	if err := allOrNothing(in); err != nil {
		return nil, err
	}
	out := make([]Ciphertext, len(in))
	_, err := s.openEach(ctx, c, name, in, failWhole, true, func(i int, _ []byte, ct Ciphertext) { out[i] = ct })
	if err != nil {
		return nil, err
	}
	return out, nil
}

// admit begins an encrypt, decrypt or rewrap call of n items (field
// names them in a refusal), authorizes it — rewrap needs both decrypt
// and encrypt — and checks the batch size.
func (s *Service) admit(c Caller, action, name string, n int, field string) error {
	if err := begin(c, action, name, n); err != nil {
		return err
	}
	for _, a := range []string{"decrypt", "encrypt"} {
		if action == a || action == "rewrap" {
			if err := s.authorize(c, a, name); err != nil {
				return err
			}
		}
	}
	return s.checkBatch(n, field)
}

// openItem opens one decoded ciphertext of k and returns its plaintext
// and key version: its envelope, or else (a key imported from Vault) what
// Vault sealed. Errors are those of open.
func (s *Service) openItem(ctx context.Context, k TransitKey, d *decoded) ([]byte, uint32, error) {
	if d.env != nil {
		pt, err := s.open(ctx, k, d.env, d.context)
		if err == nil {
			v, _ := envelope.KeyVersion(d.env)
			return pt, v, nil
		}
		if d.foreign == nil || coffer.ErrorCode(err) != coffer.EMALFORMED {
			return nil, 0, err
		}
	}
	if d.foreign == nil {
		return nil, 0, undecryptable()
	}
	pt, err := s.openForeign(ctx, k, d.foreignV, d.foreign)
	return pt, d.foreignV, err
}

// openForeign opens what Vault sealed under version v of k, a version
// brought from Vault. The context is not used: Vault binds none to the
// ciphertexts of a key that is not derived, and only such keys are
// imported. Errors are those of open.
func (s *Service) openForeign(ctx context.Context, k TransitKey, v uint32, sealed []byte) ([]byte, error) {
	if v < k.MinDecryptionVersion || v > k.LatestVersion || v > k.VaultLatestVersion {
		return nil, undecryptable()
	}
	pt, err := s.c.Keys.OpenForeign(ctx, KeyID(k.Name), v, sealed)
	return openResult(pt, err)
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
	return openResult(s.c.Keys.Open(ctx, KeyID(k.Name), env, aad(k.Name, bound)))
}

// openResult maps the keyring's answer to an open: every failure a
// ciphertext can cause is the opaque error.
func openResult(pt []byte, err error) ([]byte, error) {
	switch {
	case err == nil:
		return pt, nil
	case errors.Is(err, envelope.ErrDecrypt), errors.Is(err, keyring.ErrKeyRetired), errors.Is(err, keyring.ErrKeyNotFound),
		errors.Is(err, keyring.ErrVersionDestroyed):
		// A version destroyed behind the key's back (its minimum
		// decryption version says it decrypts) opens nothing: the same
		// opaque answer as any other ciphertext that does not decrypt.
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
