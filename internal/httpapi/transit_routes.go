package httpapi

import (
	"context"
	"net/http"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/transit"
)

// TransitKeys manages transit keys for a caller; transit decides who may.
type TransitKeys interface {
	Create(ctx context.Context, c transit.Caller, name string, spec transit.KeySpec) (transit.KeyInfo, error)
	Get(ctx context.Context, c transit.Caller, name string) (transit.KeyInfo, error)
	Rotate(ctx context.Context, c transit.Caller, name string) (transit.KeyInfo, error)
	Configure(ctx context.Context, c transit.Caller, name string, cfg transit.KeyConfig) (transit.KeyInfo, error)
	Delete(ctx context.Context, c transit.Caller, name string) error
}

// TransitCrypto encrypts, decrypts and rewraps under transit keys.
type TransitCrypto interface {
	Encrypt(ctx context.Context, c transit.Caller, name string, items []transit.Item) ([]transit.Ciphertext, error)
	Decrypt(ctx context.Context, c transit.Caller, name string, items []transit.CiphertextItem) ([]transit.Decrypted, error)
	Rewrap(ctx context.Context, c transit.Caller, name string, items []transit.CiphertextItem) ([]transit.Ciphertext, error)
	EncryptBatch(ctx context.Context, c transit.Caller, name string, items []transit.BatchItem) ([]transit.BatchCiphertext, error)
	DecryptBatch(ctx context.Context, c transit.Caller, name string, items []transit.BatchCiphertextItem) ([]transit.BatchDecrypted, error)
	RewrapBatch(ctx context.Context, c transit.Caller, name string, items []transit.BatchCiphertextItem) ([]transit.BatchCiphertext, error)
}

// TransitImport brings key material in (BYOK, Vault's exported keys).
type TransitImport interface {
	WrappingKey(ctx context.Context, c transit.Caller) (transit.WrappingKey, error)
	Import(ctx context.Context, c transit.Caller, name string, req transit.ImportRequest) (transit.KeyInfo, error)
	ImportVersion(ctx context.Context, c transit.Caller, name string, req transit.ImportRequest) (transit.KeyInfo, error)
	ImportVault(ctx context.Context, c transit.Caller, name string, req transit.VaultImport) (transit.KeyInfo, error)
}

func (c *Call) transitCaller() transit.Caller {
	return transit.Caller{Principal: c.Principal, IP: c.IP, Note: &c.Note}
}

func (s *Server) transitRoutes() {
	s.handle("POST /v1/keys", idempotent, s.createKey)
	// The literal segment wins over {name}: no key may be called
	// wrapping_key (transit refuses the name).
	s.handle("GET /v1/keys/wrapping_key", 0, s.wrappingKey)
	s.handle("GET /v1/keys/{name}", 0, s.getKey)
	s.handle("DELETE /v1/keys/{name}", 0, s.deleteKey)
	s.handle("POST /v1/keys/{name}/config", 0, s.configureKey)
	s.handle("POST /v1/keys/{name}/rotate", 0, s.rotateKey)
	s.handle("POST /v1/keys/{name}/import", 0, s.importKey)
	s.handle("POST /v1/keys/{name}/import_version", 0, s.importKeyVersion)
	s.handle("POST /v1/keys/{name}/import_vault", 0, s.importVaultKey)
	s.handle("POST /v1/keys/{name}/encrypt", 0, s.encrypt)
	s.handle("POST /v1/keys/{name}/decrypt", 0, s.decrypt)
	s.handle("POST /v1/keys/{name}/rewrap", 0, s.rewrap)
}

func (s *Server) createKey(c *Call) (Reply, error) {
	c.Note.Target("keys.create", "keys")
	var req struct {
		Name string `json:"name"`
		transit.KeySpec
	}
	if err := decodeJSON(c.R, &req); err != nil {
		return Reply{}, err
	}
	info, err := s.c.TransitKeys.Create(c.R.Context(), c.transitCaller(), req.Name, req.KeySpec)
	if err != nil {
		return Reply{}, err
	}
	return Reply{Status: http.StatusCreated, Body: info}, nil
}

// wrappingKey answers the RSA public key that bring-your-own-key imports
// are wrapped for.
func (s *Server) wrappingKey(c *Call) (Reply, error) {
	wk, err := s.c.TransitImport.WrappingKey(c.R.Context(), c.transitCaller())
	if err != nil {
		return Reply{}, err
	}
	return Reply{Body: wk}, nil
}

// importKey creates a transit key from a key the caller wrapped for the
// wrapping key.
func (s *Server) importKey(c *Call) (Reply, error) {
	c.Note.Target("keys.import", "keys")
	var req transit.ImportRequest
	if err := decodeJSON(c.R, &req); err != nil {
		return Reply{}, err
	}
	info, err := s.c.TransitImport.Import(c.R.Context(), c.transitCaller(), c.R.PathValue("name"), req)
	if err != nil {
		return Reply{}, err
	}
	return Reply{Status: http.StatusCreated, Body: info}, nil
}

// importKeyVersion makes a key the caller wrapped for the wrapping key the
// next version of an existing transit key.
func (s *Server) importKeyVersion(c *Call) (Reply, error) {
	c.Note.Target("keys.import_version", "keys")
	var req transit.ImportRequest
	if err := decodeJSON(c.R, &req); err != nil {
		return Reply{}, err
	}
	info, err := s.c.TransitImport.ImportVersion(c.R.Context(), c.transitCaller(), c.R.PathValue("name"), req)
	if err != nil {
		return Reply{}, err
	}
	return Reply{Body: info}, nil
}

// importVaultKey creates a transit key from the versions of a Vault
// transit key, each wrapped for the wrapping key (coffer keys
// import-vault reads them from Vault).
func (s *Server) importVaultKey(c *Call) (Reply, error) {
	c.Note.Target("keys.import_vault", "keys")
	var req transit.VaultImport
	if err := decodeJSON(c.R, &req); err != nil {
		return Reply{}, err
	}
	info, err := s.c.TransitImport.ImportVault(c.R.Context(), c.transitCaller(), c.R.PathValue("name"), req)
	if err != nil {
		return Reply{}, err
	}
	return Reply{Status: http.StatusCreated, Body: info}, nil
}

func (s *Server) getKey(c *Call) (Reply, error) {
	info, err := s.c.TransitKeys.Get(c.R.Context(), c.transitCaller(), c.R.PathValue("name"))
	if err != nil {
		return Reply{}, err
	}
	return Reply{Body: info}, nil
}

func (s *Server) deleteKey(c *Call) (Reply, error) {
	if err := s.c.TransitKeys.Delete(c.R.Context(), c.transitCaller(), c.R.PathValue("name")); err != nil {
		return Reply{}, err
	}
	return Reply{Status: http.StatusNoContent}, nil
}

func (s *Server) configureKey(c *Call) (Reply, error) {
	c.Note.Target("keys.configure", "keys")
	var cfg transit.KeyConfig
	if err := decodeJSON(c.R, &cfg); err != nil {
		return Reply{}, err
	}
	info, err := s.c.TransitKeys.Configure(c.R.Context(), c.transitCaller(), c.R.PathValue("name"), cfg)
	if err != nil {
		return Reply{}, err
	}
	return Reply{Body: info}, nil
}

func (s *Server) rotateKey(c *Call) (Reply, error) {
	info, err := s.c.TransitKeys.Rotate(c.R.Context(), c.transitCaller(), c.R.PathValue("name"))
	if err != nil {
		return Reply{}, err
	}
	return Reply{Body: info}, nil
}

// The three forms of encrypt, decrypt and rewrap: one value (API.md's
// form), "items" (all or nothing: any bad item fails the request), or
// Vault's "batch_input" (each item succeeds or fails alone, answered as
// "batch_results").
func (s *Server) encrypt(c *Call) (Reply, error) {
	c.Note.Target("encrypt", "keys/"+c.R.PathValue("name"))
	var req struct {
		transit.Item
		Items      []transit.Item      `json:"items"`
		BatchInput []transit.BatchItem `json:"batch_input"`
	}
	if err := decodeJSON(c.R, &req); err != nil {
		return Reply{}, err
	}
	name := c.R.PathValue("name")
	if req.BatchInput != nil {
		if req.Items != nil || req.Item != (transit.Item{}) {
			return Reply{}, coffer.Errorf(coffer.EINVALID, "give one of plaintext, items or batch_input")
		}
		return batchReply(s.c.TransitCrypto.EncryptBatch(c.R.Context(), c.transitCaller(), name, req.BatchInput))
	}
	single := req.Items == nil
	items := req.Items
	if single {
		items = []transit.Item{req.Item}
	} else if req.Plaintext != "" {
		return Reply{}, coffer.Errorf(coffer.EINVALID, "give either plaintext or items, not both")
	}
	out, err := s.c.TransitCrypto.Encrypt(c.R.Context(), c.transitCaller(), name, items)
	if err != nil {
		return Reply{}, err
	}
	if single {
		return Reply{Body: out[0]}, nil
	}
	return Reply{Body: map[string]any{"items": out}}, nil
}

// batchReply answers a batch's results, or its error.
func batchReply[R any](out []R, err error) (Reply, error) {
	if err != nil {
		return Reply{}, err
	}
	return Reply{Body: map[string]any{"batch_results": out}}, nil
}

// ciphertextRequest is a decrypt or rewrap body in any of its three forms.
type ciphertextRequest struct {
	transit.CiphertextItem
	Items      []transit.CiphertextItem      `json:"items"`
	BatchInput []transit.BatchCiphertextItem `json:"batch_input"`
}

// ciphertextItems reads one ciphertext (API.md's form), a batch under
// "items" (single says which), or a batch_input (batch is non-nil).
func ciphertextItems(c *Call) (items []transit.CiphertextItem, single bool, batch []transit.BatchCiphertextItem, err error) {
	var req ciphertextRequest
	if err := decodeJSON(c.R, &req); err != nil {
		return nil, false, nil, err
	}
	if req.BatchInput != nil {
		if req.Items != nil || req.CiphertextItem != (transit.CiphertextItem{}) {
			return nil, false, nil, coffer.Errorf(coffer.EINVALID, "give one of ciphertext, items or batch_input")
		}
		return nil, false, req.BatchInput, nil
	}
	if req.Items == nil {
		return []transit.CiphertextItem{req.CiphertextItem}, true, nil, nil
	}
	if req.Ciphertext != "" {
		return nil, false, nil, coffer.Errorf(coffer.EINVALID, "give either ciphertext or items, not both")
	}
	return req.Items, false, nil, nil
}

func (s *Server) decrypt(c *Call) (Reply, error) {
	c.Note.Target("decrypt", "keys/"+c.R.PathValue("name"))
	items, single, batch, err := ciphertextItems(c)
	if err != nil {
		return Reply{}, err
	}
	name := c.R.PathValue("name")
	if batch != nil {
		return batchReply(s.c.TransitCrypto.DecryptBatch(c.R.Context(), c.transitCaller(), name, batch))
	}
	out, err := s.c.TransitCrypto.Decrypt(c.R.Context(), c.transitCaller(), name, items)
	if err != nil {
		return Reply{}, err
	}
	if single {
		return Reply{Body: out[0]}, nil
	}
	return Reply{Body: map[string]any{"items": out}}, nil
}

func (s *Server) rewrap(c *Call) (Reply, error) {
	c.Note.Target("rewrap", "keys/"+c.R.PathValue("name"))
	items, single, batch, err := ciphertextItems(c)
	if err != nil {
		return Reply{}, err
	}
	name := c.R.PathValue("name")
	if batch != nil {
		return batchReply(s.c.TransitCrypto.RewrapBatch(c.R.Context(), c.transitCaller(), name, batch))
	}
	out, err := s.c.TransitCrypto.Rewrap(c.R.Context(), c.transitCaller(), name, items)
	if err != nil {
		return Reply{}, err
	}
	if single {
		return Reply{Body: out[0]}, nil
	}
	return Reply{Body: map[string]any{"items": out}}, nil
}
