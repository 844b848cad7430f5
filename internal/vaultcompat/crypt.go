package vaultcompat

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/httpapi"
	"github.com/cofferhq/coffer/internal/transit"
)

// msgKeyNotFound is Vault's message for an operation under a key that
// does not exist.
const msgKeyNotFound = "encryption key not found"

// encryptResult is one of encrypt's and rewrap's batch_results, as Vault
// writes it (EncryptBatchResponseItem).
type encryptResult struct {
	Ciphertext string `json:"ciphertext,omitempty"`
	KeyVersion uint32 `json:"key_version,omitempty"`
	Error      string `json:"error,omitempty"`
	Reference  string `json:"reference"`
}

// decryptResult is one of decrypt's batch_results (DecryptBatchResponseItem).
type decryptResult struct {
	Plaintext transit.Plaintext `json:"plaintext"`
	Error     string            `json:"error,omitempty"`
	Reference string            `json:"reference"`
}

// macResult is one of hmac's and verify's batch_results
// (batchResponseHMACItem).
type macResult struct {
	HMAC      string `json:"hmac,omitempty"`
	Valid     bool   `json:"valid,omitempty"`
	Error     string `json:"error,omitempty"`
	Reference string `json:"reference"`
}

// items reads the items of an encrypt, decrypt, rewrap, hmac or verify:
// batch_input's, or the body itself as the one item. fields are the
// item fields read; each item's must be strings (key_version a number).
func items(p *params) (list []map[string]any, batch bool, err error) {
	list, batch, err = p.batch()
	if err != nil || batch {
		return list, batch, err
	}
	return []map[string]any{p.m}, false, nil
}

// itemString reads an item's string field.
func itemString(it map[string]any, key string) (string, error) { return asString(it[key], key) }

// unsupportedItem refuses an item's fields Coffer does not take.
func unsupportedItem(p *params, it map[string]any) error {
	p.read["nonce"] = true // used by Vault for convergent keys only, which Coffer has not
	p.read["reference"] = true
	if v, ok := it["associated_data"]; ok && v != "" {
		return invalid("associated_data is not supported: pass context, which Coffer binds as the ciphertext's associated data")
	}
	if b, _, err := p.boolean("convergent_encryption"); err != nil || b {
		if err != nil {
			return err
		}
		return invalid("convergent_encryption is not supported")
	}
	return nil
}

// wantVersion reads an item's key_version (0 when absent).
func wantVersion(it map[string]any) (uint32, error) {
	n, err := asInt(it["key_version"], "key_version")
	return uint32(n), err // #nosec G115 -- asInt bounds it to uint32
}

// latestOnly checks that a result made under got was asked for under
// want (0: the latest): Coffer encrypts under the latest version only.
func latestOnly(want, got uint32) string {
	if want == 0 || want == got {
		return ""
	}
	return fmt.Sprintf("key_version %d: Coffer encrypts under the key's latest version, %d, only", want, got)
}

// batchStatus is Vault's status for a batch with failed items: 400, or
// partial_failure_response_code when some items succeeded.
func batchStatus(p *params, failed, succeeded bool) (int, error) {
	code, err := p.integer("partial_failure_response_code")
	switch {
	case err != nil:
		return 0, err
	case !failed:
		return http.StatusOK, nil
	case succeeded && code >= 1 && code <= 599:
		return int(code), nil
	}
	return http.StatusBadRequest, nil
}

func (s *surface) encrypt(c *httpapi.Call, name string) (httpapi.Reply, error) {
	p, err := readParams(c.R)
	if err != nil {
		return httpapi.Reply{}, err
	}
	list, batch, err := items(p)
	if err != nil {
		return httpapi.Reply{}, err
	}
	if !batch && !p.has("plaintext") {
		return httpapi.Reply{}, invalid("missing plaintext to encrypt")
	}
	p.has("type") // the type of a key Vault would upsert; Coffer does not upsert
	in := make([]transit.BatchItem, len(list))
	want := make([]uint32, len(list))
	for i, it := range list {
		if err := unsupportedItem(p, it); err != nil {
			return httpapi.Reply{}, err
		}
		pt, err := itemString(it, "plaintext")
		if err != nil {
			return httpapi.Reply{}, err
		}
		ctx, err := itemString(it, "context")
		if err != nil {
			return httpapi.Reply{}, err
		}
		if want[i], err = wantVersion(it); err != nil {
			return httpapi.Reply{}, err
		}
		ref, _ := itemString(it, "reference")
		in[i] = transit.BatchItem{Item: transit.Item{Plaintext: transit.Plaintext(pt), Context: transit.Plaintext(ctx)}, Reference: ref}
	}
	p.read["plaintext"], p.read["context"], p.read["key_version"] = true, true, true
	out, err := s.t.EncryptBatch(c.R.Context(), caller(c), name, in)
	if err != nil {
		return httpapi.Reply{}, translate(err, msgKeyNotFound)
	}
	return s.cipherReply(c, p, batch, out, want)
}

// cipherReply answers encrypt's or rewrap's results.
func (s *surface) cipherReply(c *httpapi.Call, p *params, batch bool, out []transit.BatchCiphertext, want []uint32) (httpapi.Reply, error) {
	res := make([]encryptResult, len(out))
	failed, succeeded := false, false
	for i, o := range out {
		msg := o.Error
		if msg == "" {
			msg = latestOnly(want[i], o.KeyVersion)
		}
		if msg != "" {
			res[i] = encryptResult{Error: msg, Reference: o.Reference}
			failed = true
			continue
		}
		res[i] = encryptResult{Ciphertext: transit.VaultCiphertext(o.Ciphertext), KeyVersion: o.KeyVersion, Reference: o.Reference}
		succeeded = true
	}
	if !batch {
		if res[0].Error != "" {
			return httpapi.Reply{}, invalid(res[0].Error)
		}
		return ok(c, map[string]any{"ciphertext": res[0].Ciphertext, "key_version": res[0].KeyVersion}, p.warnings())
	}
	st, err := batchStatus(p, failed, succeeded)
	if err != nil {
		return httpapi.Reply{}, err
	}
	return ok(c, map[string]any{"batch_results": res}, p.warnings(), st)
}

// ciphertextItems reads decrypt's and rewrap's items.
func ciphertextItems(p *params) ([]transit.BatchCiphertextItem, []uint32, bool, error) {
	list, batch, err := items(p)
	if err != nil {
		return nil, nil, false, err
	}
	if !batch && !p.has("ciphertext") {
		return nil, nil, false, invalid("missing ciphertext to decrypt")
	}
	in := make([]transit.BatchCiphertextItem, len(list))
	want := make([]uint32, len(list))
	for i, it := range list {
		if err := unsupportedItem(p, it); err != nil {
			return nil, nil, false, err
		}
		ct, err := itemString(it, "ciphertext")
		if err != nil {
			return nil, nil, false, err
		}
		ctx, err := itemString(it, "context")
		if err != nil {
			return nil, nil, false, err
		}
		if want[i], err = wantVersion(it); err != nil {
			return nil, nil, false, err
		}
		ref, _ := itemString(it, "reference")
		in[i] = transit.BatchCiphertextItem{CiphertextItem: transit.CiphertextItem{Ciphertext: ct, Context: transit.Plaintext(ctx)}, Reference: ref}
	}
	p.read["ciphertext"], p.read["context"], p.read["key_version"] = true, true, true
	return in, want, batch, nil
}

func (s *surface) decrypt(c *httpapi.Call, name string) (httpapi.Reply, error) {
	p, err := readParams(c.R)
	if err != nil {
		return httpapi.Reply{}, err
	}
	in, _, batch, err := ciphertextItems(p)
	if err != nil {
		return httpapi.Reply{}, err
	}
	out, err := s.t.DecryptBatch(c.R.Context(), caller(c), name, in)
	if err != nil {
		return httpapi.Reply{}, translate(err, msgKeyNotFound)
	}
	res := make([]decryptResult, len(out))
	failed, succeeded := false, false
	for i, o := range out {
		res[i] = decryptResult{Error: o.Error, Reference: o.Reference}
		if o.Error != "" {
			failed = true
			continue
		}
		if o.Plaintext != nil {
			res[i].Plaintext = *o.Plaintext
		}
		succeeded = true
	}
	if !batch {
		if res[0].Error != "" {
			return httpapi.Reply{}, invalid(res[0].Error)
		}
		return ok(c, map[string]any{"plaintext": res[0].Plaintext}, p.warnings())
	}
	st, err := batchStatus(p, failed, succeeded)
	if err != nil {
		return httpapi.Reply{}, err
	}
	return ok(c, map[string]any{"batch_results": res}, p.warnings(), st)
}

func (s *surface) rewrap(c *httpapi.Call, name string) (httpapi.Reply, error) {
	p, err := readParams(c.R)
	if err != nil {
		return httpapi.Reply{}, err
	}
	in, want, batch, err := ciphertextItems(p)
	if err != nil {
		return httpapi.Reply{}, err
	}
	out, err := s.t.RewrapBatch(c.R.Context(), caller(c), name, in)
	if err != nil {
		return httpapi.Reply{}, translate(err, msgKeyNotFound)
	}
	return s.cipherReply(c, p, batch, out, want)
}

// datakey makes a random key, encrypts it under the key name and answers
// the ciphertext, and the key itself for kind "plaintext".
func (s *surface) datakey(c *httpapi.Call, kind, name string) (httpapi.Reply, error) {
	if kind != "plaintext" && kind != "wrapped" {
		return httpapi.Reply{}, invalid("Invalid path, must be 'plaintext' or 'wrapped'")
	}
	p, err := readParams(c.R)
	if err != nil {
		return httpapi.Reply{}, err
	}
	if err := unsupportedItem(p, p.m); err != nil {
		return httpapi.Reply{}, err
	}
	bits, err := p.integer("bits")
	if err != nil {
		return httpapi.Reply{}, err
	}
	if bits == 0 {
		bits = 256
	}
	if bits != 128 && bits != 256 && bits != 512 {
		return httpapi.Reply{}, invalid("invalid bit length")
	}
	ctx, err := p.str("context")
	if err != nil {
		return httpapi.Reply{}, err
	}
	want, err := wantVersion(p.m)
	p.read["key_version"] = true
	if err != nil {
		return httpapi.Reply{}, err
	}
	key := make([]byte, bits/8)
	if _, err := rand.Read(key); err != nil {
		return httpapi.Reply{}, fmt.Errorf("vaultcompat: datakey: %w", err)
	}
	pt := transit.Plaintext(base64.StdEncoding.EncodeToString(key))
	clear(key)
	out, err := s.t.EncryptBatch(c.R.Context(), caller(c), name, []transit.BatchItem{{Item: transit.Item{Plaintext: pt, Context: transit.Plaintext(ctx)}}})
	c.Note.Action = "datakey." + kind
	if err != nil {
		return httpapi.Reply{}, translate(err, msgKeyNotFound)
	}
	msg := out[0].Error
	if msg == "" {
		msg = latestOnly(want, out[0].KeyVersion)
	}
	if msg != "" {
		return httpapi.Reply{}, invalid(msg)
	}
	data := map[string]any{"ciphertext": transit.VaultCiphertext(out[0].Ciphertext), "key_version": out[0].KeyVersion}
	if kind == "plaintext" {
		data["plaintext"] = pt
	}
	return ok(c, data, p.warnings())
}

// algorithm is the hash an hmac or verify names, in its path or body.
func algorithm(p *params, fromPath string) (string, error) {
	body, err := p.str("algorithm")
	if err != nil {
		return "", err
	}
	if fromPath != "" {
		return fromPath, nil
	}
	return body, nil
}

func (s *surface) hmac(c *httpapi.Call, name, alg string) (httpapi.Reply, error) {
	p, err := readParams(c.R)
	if err != nil {
		return httpapi.Reply{}, err
	}
	if alg, err = algorithm(p, alg); err != nil {
		return httpapi.Reply{}, err
	}
	v, err := p.integer("key_version")
	if err != nil {
		return httpapi.Reply{}, err
	}
	list, batch, err := items(p)
	if err != nil {
		return httpapi.Reply{}, err
	}
	if !batch && !p.has("input") {
		return httpapi.Reply{}, invalid("missing input for HMAC")
	}
	in := make([]transit.Plaintext, len(list))
	refs := make([]string, len(list))
	for i, it := range list {
		s, err := itemString(it, "input")
		if err != nil {
			return httpapi.Reply{}, err
		}
		in[i] = transit.Plaintext(s)
		refs[i], _ = itemString(it, "reference")
	}
	p.read["input"], p.read["reference"] = true, true
	out, err := s.t.HMAC(c.R.Context(), caller(c), name, alg, uint32(v), in) // #nosec G115 -- asInt bounds it to uint32
	if err != nil {
		return httpapi.Reply{}, macError(err)
	}
	res := make([]macResult, len(out))
	for i, o := range out {
		res[i] = macResult{Error: o.Error, Reference: refs[i]}
		if o.Error == "" {
			res[i].HMAC = formatMAC(o.MAC)
		}
	}
	if !batch {
		if res[0].Error != "" {
			return httpapi.Reply{}, invalid(res[0].Error)
		}
		return ok(c, map[string]any{"hmac": res[0].HMAC}, p.warnings())
	}
	return ok(c, map[string]any{"batch_results": res}, p.warnings())
}

func (s *surface) verify(c *httpapi.Call, name, alg string) (httpapi.Reply, error) {
	p, err := readParams(c.R)
	if err != nil {
		return httpapi.Reply{}, err
	}
	if p.has("signature") {
		return httpapi.Reply{}, invalid("signature is not supported: Coffer's transit keys verify HMACs only")
	}
	if alg, err = algorithm(p, alg); err != nil {
		return httpapi.Reply{}, err
	}
	list, batch, err := items(p)
	if err != nil {
		return httpapi.Reply{}, err
	}
	if !batch && !p.has("hmac") {
		return httpapi.Reply{}, invalid("missing hmac")
	}
	// Every item goes to the engine, so that the call is decided and
	// audited whatever its items: one whose MAC does not parse is checked
	// as version 0, which nothing is valid under, and answered its error.
	checks := make([]transit.MACCheck, len(list))
	res := make([]macResult, len(list))
	for i, it := range list {
		res[i].Reference, _ = itemString(it, "reference")
		input, err := itemString(it, "input")
		if err != nil {
			return httpapi.Reply{}, err
		}
		mac, err := itemString(it, "hmac")
		if err != nil {
			return httpapi.Reply{}, err
		}
		m, msg := parseMAC(mac)
		res[i].Error = msg
		checks[i] = transit.MACCheck{Input: transit.Plaintext(input), MAC: m}
	}
	p.read["input"], p.read["hmac"], p.read["reference"] = true, true, true
	out, err := s.t.VerifyHMAC(c.R.Context(), caller(c), name, alg, checks)
	if err != nil {
		return httpapi.Reply{}, macError(err)
	}
	for i, o := range out {
		if res[i].Error == "" {
			res[i].Valid, res[i].Error = o.Valid, o.Error
		}
	}
	if !batch {
		if res[0].Error != "" {
			return httpapi.Reply{}, invalid(res[0].Error)
		}
		return ok(c, map[string]any{"valid": res[0].Valid}, p.warnings())
	}
	return ok(c, map[string]any{"batch_results": res}, p.warnings())
}

// macError is Vault's answer to a failed hmac or verify call.
func macError(err error) error {
	if coffer.ErrorMessage(err) == transit.MsgHMACAlgorithm {
		return invalid(transit.MsgHMACAlgorithm)
	}
	return translate(err, msgKeyNotFound)
}

// formatMAC writes a MAC as Vault does: vault:vN:BASE64.
func formatMAC(m transit.MAC) string {
	return "vault:v" + strconv.FormatUint(uint64(m.Version), 10) + ":" + base64.StdEncoding.EncodeToString(m.Sum)
}

// parseMAC reads a vault:vN:BASE64 MAC; the message says what is wrong
// with it, in Vault's words, never quoting it.
func parseMAC(s string) (transit.MAC, string) {
	if s == "" {
		return transit.MAC{}, "missing hmac"
	}
	rest, ok := strings.CutPrefix(s, "vault:")
	if !ok {
		return transit.MAC{}, "invalid HMAC to verify: no prefix"
	}
	parts := strings.Split(rest, ":")
	if len(parts) != 2 {
		return transit.MAC{}, "invalid HMAC: wrong number of fields"
	}
	digits, ok := strings.CutPrefix(parts[0], "v")
	v, err := strconv.ParseUint(digits, 10, 32)
	if !ok || err != nil || v == 0 {
		return transit.MAC{}, "invalid HMAC: version number could not be decoded"
	}
	sum, err := base64.StdEncoding.DecodeString(parts[1])
	if err != nil {
		return transit.MAC{}, "unable to decode verification HMAC as base64"
	}
	return transit.MAC{Version: uint32(v), Sum: sum}, ""
}

// parseDuration reads a duration as Vault's parseutil does: seconds
// ("3600"), or a Go duration that may also count days ("7d", "24h").
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 || n > int64(transit.MaxAutoRotatePeriod/time.Second) {
			return 0, fmt.Errorf("out of range")
		}
		return time.Duration(n) * time.Second, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(d, 10, 64)
		if err != nil || n < 0 || n > int64(transit.MaxAutoRotatePeriod/(24*time.Hour)) {
			return 0, fmt.Errorf("bad days")
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}
