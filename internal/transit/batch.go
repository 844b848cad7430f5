package transit

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/cofferhq/coffer/internal/coffer"
)

// BatchItem is one value of a Vault-style batch_input to encrypt: an Item
// and an optional Reference, which its result repeats so a caller can match
// them.
type BatchItem struct {
	Item
	Reference string `json:"reference,omitempty"`
}

// BatchCiphertextItem is one ciphertext of a Vault-style batch_input to
// decrypt or rewrap, with an optional Reference as in BatchItem.
type BatchCiphertextItem struct {
	CiphertextItem
	Reference string `json:"reference,omitempty"`
}

// BatchStatus is what every batch result carries besides its value: Error,
// why the item failed (naming a field, never a value; "" when it did not),
// and the item's Reference.
type BatchStatus struct {
	Error     string `json:"error,omitempty"`
	Reference string `json:"reference,omitempty"`
}

// BatchCiphertext is one result of EncryptBatch or RewrapBatch: the
// ciphertext and the key version that made it, or an Error.
type BatchCiphertext struct {
	Ciphertext string `json:"ciphertext,omitempty"`
	KeyVersion uint32 `json:"key_version,omitempty"`
	BatchStatus
}

// BatchDecrypted is one result of DecryptBatch: the plaintext in standard
// base64 (set, though perhaps empty, for an item that decrypted), or an
// Error.
type BatchDecrypted struct {
	Plaintext *Plaintext `json:"plaintext,omitempty"`
	BatchStatus
}

// LogValue implements slog.LogValuer: a JSON log handler would otherwise
// marshal the value.
func (r BatchDecrypted) LogValue() slog.Value {
	return slog.GroupValue(slog.String("plaintext", redacted), slog.String("error", r.Error))
}

// EncryptBatch encrypts a Vault-style batch under the key's latest version
// (action encrypt), rotating the key first when a rotation is due. Unlike
// Encrypt, an item that cannot be encrypted (not base64, over a size limit)
// fails alone: its result holds the Error and the others are encrypted.
// What fails the call is what no item could escape: the policy, a missing
// key, the batch size (an empty batch_input is EINVALID, one over MaxBatch
// ETOOLARGE), an outage. The note counts the items encrypted and says how
// many of how many failed.
func (s *Service) EncryptBatch(ctx context.Context, c Caller, name string, items []BatchItem) ([]BatchCiphertext, error) {
	if err := s.admit(c, "encrypt", name, len(items), "batch_input"); err != nil {
		return nil, err
	}
	plain := make([]Item, len(items))
	for i := range items {
		plain[i] = items[i].Item
	}
	in := s.decodeItems(plain)
	defer clearAll(in)
	out := make([]BatchCiphertext, len(in))
	n, err := s.sealEach(ctx, c, name, in, func(i int, ct Ciphertext) {
		out[i].Ciphertext, out[i].KeyVersion = ct.Ciphertext, ct.KeyVersion
	})
	if err != nil {
		return nil, err
	}
	noteBatch(c, len(in), n)
	for i := range out {
		out[i].BatchStatus = BatchStatus{Error: in[i].problem, Reference: items[i].Reference}
	}
	return out, nil
}

// DecryptBatch decrypts a Vault-style batch of the key's ciphertexts
// (action decrypt). An item that does not decrypt fails alone: a malformed
// ciphertext or context gets a message naming the field, and every
// ciphertext that parses but does not open — altered, of another key, with
// another context, of a version the key does not have or below its
// minimum decryption version — gets the one opaque MsgUndecryptable. What
// fails the call is as in EncryptBatch.
func (s *Service) DecryptBatch(ctx context.Context, c Caller, name string, items []BatchCiphertextItem) ([]BatchDecrypted, error) {
	out := make([]BatchDecrypted, len(items))
	sts, err := s.openBatch(ctx, c, "decrypt", name, items, func(i int, pt []byte, _ Ciphertext) {
		p := Plaintext(b64.EncodeToString(pt))
		out[i].Plaintext = &p
	})
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i].BatchStatus = sts[i]
	}
	return out, nil
}

// RewrapBatch moves a Vault-style batch of the key's ciphertexts to its
// latest version (actions decrypt and encrypt), without returning any
// plaintext; an item that does not decrypt fails alone, as in
// DecryptBatch.
func (s *Service) RewrapBatch(ctx context.Context, c Caller, name string, items []BatchCiphertextItem) ([]BatchCiphertext, error) {
	out := make([]BatchCiphertext, len(items))
	sts, err := s.openBatch(ctx, c, "rewrap", name, items, func(i int, _ []byte, ct Ciphertext) {
		out[i].Ciphertext, out[i].KeyVersion = ct.Ciphertext, ct.KeyVersion
	})
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i].BatchStatus = sts[i]
	}
	return out, nil
}

// openBatch runs a decrypt or rewrap (action) batch: it hands put each
// item that opened (as openEach does, resealing for a rewrap), notes the
// outcome, and returns every item's status.
func (s *Service) openBatch(ctx context.Context, c Caller, action, name string, items []BatchCiphertextItem,
	put func(i int, pt []byte, ct Ciphertext)) ([]BatchStatus, error) {
	if err := s.admit(c, action, name, len(items), "batch_input"); err != nil {
		return nil, err
	}
	plain := make([]CiphertextItem, len(items))
	for i := range items {
		plain[i] = items[i].CiphertextItem
	}
	in := s.decodeCiphertexts(ctx, name, plain)
	n, err := s.openEach(ctx, c, name, in, failItem(in), action == "rewrap", put)
	if err != nil {
		return nil, err
	}
	noteBatch(c, len(in), n)
	if c.Note != nil && action == "decrypt" {
		c.Note.Values = n // the values answered, for the bulk read detector
	}
	sts := make([]BatchStatus, len(in))
	for i := range in {
		sts[i] = BatchStatus{Error: in[i].problem, Reference: items[i].Reference}
	}
	return sts, nil
}

// failItem is the itemFailure of a batch: the item gets the error's
// client-facing message (the opaque one) and the batch goes on.
func failItem(in []decoded) itemFailure {
	return func(i int, err error) error {
		in[i].fail(coffer.ErrorCode(err), coffer.ErrorMessage(err))
		return nil
	}
}

// noteBatch records a batch's outcome for the audit log: Count is the
// items that succeeded (values returned or written), and Reason says how
// many of how many failed. Neither holds a value. A decrypt also notes the
// values it answered (Values).
func noteBatch(c Caller, total, ok int) {
	if c.Note == nil {
		return
	}
	c.Note.Count = ok
	c.Note.Reason = fmt.Sprintf("batch of %d: %d ok, %d failed", total, ok, total-ok)
}
