package token

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/envelope"
	"github.com/cofferhq/coffer/internal/mask"
	"github.com/cofferhq/coffer/internal/policy"
	"github.com/cofferhq/coffer/internal/secret"
	"github.com/cofferhq/coffer/internal/token/fpe"
	"github.com/cofferhq/coffer/internal/vault"
)

// Modes.
const (
	Random           = "random"
	Deterministic    = "deterministic"
	FormatPreserving = "format_preserving"
)

// typeCodes names each token type inside random and deterministic tokens.
var typeCodes = map[string]string{
	coffer.TypeCardNumber: "cc", coffer.TypeSSN: "ssn", coffer.TypeEmail: "em",
	coffer.TypePhone: "ph", coffer.TypeString: "str",
}

var codeTypes = func() map[string]string {
	m := map[string]string{}
	for t, c := range typeCodes {
		m[c] = t
	}
	return m
}()

// Store keeps token rows.
type Store interface {
	PutTokens(ctx context.Context, ts []coffer.StoredToken) error
	Tokens(ctx context.Context, macs [][]byte) (map[string]coffer.StoredToken, error)
}

// Keys seals values and MACs under named, versioned keys.
type Keys interface {
	Seal(ctx context.Context, keyID string, plaintext, aad []byte) ([]byte, error)
	Open(ctx context.Context, keyID string, env, aad []byte) ([]byte, error)
	MAC(ctx context.Context, keyID string, data []byte) (uint32, []byte, error)
	MACVersion(ctx context.Context, keyID string, version uint32, data []byte) ([]byte, error)
	Key(ctx context.Context, keyID string) (uint32, secret.Key, error)
	KeyVersion(ctx context.Context, keyID string, version uint32) (secret.Key, error)
}

// Policies gives the policy in force.
type Policies interface{ Current() *policy.Policy }

// Config holds the service's dependencies.
type Config struct {
	Store    Store
	Keys     Keys
	Policies Policies
	Masker   *mask.Masker
	Rand     io.Reader
	Now      func() time.Time
	// MaxItems bounds a batch (default 10,000).
	MaxItems int
	// FPE options for card numbers.
	CardKeepFirstSix bool
	CardLuhnValid    bool
}

// Service tokenizes and detokenizes.
type Service struct {
	c   Config
	mu  sync.RWMutex
	fpe map[string]*fpe.Tokenizer // by key id + version
	// order enciphers random tokens (see randomToken); seq is the last
	// order prefix this process gave out.
	order cipher.Block
	seq   atomic.Uint64
}

// New returns a Service.
func New(c Config) *Service {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxItems <= 0 {
		c.MaxItems = 10000
	}
	return &Service{c: c, fpe: map[string]*fpe.Tokenizer{}}
}

// Item is one value to tokenize.
type Item struct {
	Value string `json:"value"`
	Type  string `json:"type"`
	Mode  string `json:"mode,omitempty"`
	// TTL, if set, makes the token expire (Go duration, e.g. "24h").
	TTL string `json:"ttl,omitempty"`
	// Canary plants a decoy token: any detokenize of it raises data.canary.
	// Planting one needs admin on tokens/TYPE.
	Canary bool `json:"canary,omitempty"`
}

// Caller is who asks and the note to fill for the audit.
type Caller = vault.Caller

const (
	indexKeyID = "tokens/index" // never rotated: it finds rows
	orderKeyID = "tokens/order" // never rotated: with the index key it finds rows
	// keyMACLen is how much of the index MAC a random token's storage key
	// keeps after its 8-byte order prefix (32 bytes in all, like the others).
	keyMACLen = 24
)

// FixedKey reports whether keyID is one of the token keys that are never
// rotated, retired or destroyed: the index and order keys find the rows.
func FixedKey(keyID string) bool { return keyID == indexKeyID || keyID == orderKeyID }

// ValueKey reports whether keyID is the key that seals the values of one
// token type ("tokens/TYPE"), as opposed to its deterministic or
// format-preserving keys and the fixed keys.
func ValueKey(keyID string) bool {
	typ, ok := strings.CutPrefix(keyID, "tokens/")
	return ok && typ != "" && !strings.Contains(typ, "/") && !FixedKey(keyID)
}

func valueKeyID(typ string) string { return "tokens/" + typ }
func detKeyID(typ string) string   { return "tokens/" + typ + "/deterministic" }
func fpeKeyID(typ string) string   { return "tokens/" + typ + "/fpe" }

func (s *Service) authorize(c Caller, action string, types map[string]bool) (map[string]policy.Decision, error) {
	p := s.c.Policies.Current()
	out := make(map[string]policy.Decision, len(types))
	now := s.c.Now()
	var rules []string
	for typ := range types {
		res := "tokens/" + typ
		d := p.Decide(policy.Input{Principal: c.Principal, Action: action, Resource: res, Time: now, IP: c.IP})
		if !d.Allowed {
			c.Note.Target(action, res)
			c.Note.Deny(d.Reason)
			return nil, coffer.Errorf(coffer.EFORBIDDEN, "not allowed to %s %s", action, res)
		}
		out[typ] = d
		rules = append(rules, d.Rule)
	}
	c.Note.Allow(strings.Join(rules, ","))
	return out, nil
}

func (s *Service) tokenizer(ctx context.Context, typ string, version uint32) (*fpe.Tokenizer, uint32, error) {
	var (
		k   secret.Key
		err error
	)
	if version == 0 {
		version, k, err = s.c.Keys.Key(ctx, fpeKeyID(typ))
	} else {
		ck := fpeKeyID(typ) + "#" + strconv.FormatUint(uint64(version), 10)
		s.mu.RLock()
		t := s.fpe[ck]
		s.mu.RUnlock()
		if t != nil {
			return t, version, nil
		}
		k, err = s.c.Keys.KeyVersion(ctx, fpeKeyID(typ), version)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("token: FPE key: %w", err)
	}
	ck := fpeKeyID(typ) + "#" + strconv.FormatUint(uint64(version), 10)
	s.mu.RLock()
	t := s.fpe[ck]
	s.mu.RUnlock()
	if t != nil {
		return t, version, nil
	}
	t, err = fpe.New(k.Bytes())
	if err != nil {
		return nil, 0, fmt.Errorf("token: FPE key: %w", err)
	}
	s.mu.Lock()
	s.fpe[ck] = t
	s.mu.Unlock()
	return t, version, nil
}

func (s *Service) fpeOptions(typ string) fpe.Options {
	if typ == coffer.TypeCardNumber {
		return fpe.Options{KeepFirstSix: s.c.CardKeepFirstSix, LuhnValid: s.c.CardLuhnValid}
	}
	return fpe.Options{}
}

func itemErr(i int, msg string) *coffer.Error {
	return coffer.Errorf(coffer.EINVALID, "items[%d]: %s", i, msg)
}

// Tokenize replaces each value with a token, in order. All items are
// validated and authorized before anything is stored: a bad item fails the
// whole batch.
func (s *Service) Tokenize(ctx context.Context, c Caller, items []Item) ([]string, error) {
	c.Note.Target("tokenize", "tokens")
	if len(items) == 0 {
		return nil, coffer.Errorf(coffer.EINVALID, "items must hold at least one item")
	}
	if len(items) > s.c.MaxItems {
		return nil, coffer.Errorf(coffer.ETOOLARGE, "at most %d items per request", s.c.MaxItems)
	}
	types := map[string]bool{}
	for i := range items {
		it := &items[i]
		if it.Mode == "" {
			it.Mode = Random
		}
		if _, ok := typeCodes[it.Type]; !ok {
			return nil, itemErr(i, "type must be one of card_number ssn email phone string")
		}
		if it.Mode != Random && it.Mode != Deterministic && it.Mode != FormatPreserving {
			return nil, itemErr(i, "mode must be random, deterministic or format_preserving")
		}
		types[it.Type] = true
	}
	if len(types) == 1 {
		for t := range types {
			c.Note.Resource = "tokens/" + t
		}
	}
	if _, err := s.authorize(c, "tokenize", types); err != nil {
		return nil, err
	}
	canaryTypes := map[string]bool{}
	for _, it := range items {
		if it.Canary {
			canaryTypes[it.Type] = true
		}
	}
	if len(canaryTypes) > 0 {
		if _, err := s.authorize(c, "admin", canaryTypes); err != nil {
			return nil, err
		}
	}
	now := s.c.Now().UTC()
	out := make([]string, len(items))
	rows := make([]coffer.StoredToken, 0, len(items))
	for i, it := range items {
		stored, canon, err := vault.NormalizeValue(it.Type, it.Value)
		if err != nil {
			return nil, itemErr(i, "value is not a valid "+it.Type)
		}
		var exp *time.Time
		if it.TTL != "" {
			d, err := time.ParseDuration(it.TTL)
			if err != nil || d < time.Second || d > 100*365*24*time.Hour {
				return nil, itemErr(i, "ttl must be a Go duration between 1s and 100 years")
			}
			e := now.Add(d)
			exp = &e
		}
		var (
			tok string
			row = coffer.StoredToken{Type: it.Type, Mode: it.Mode, CreatedAt: now, ExpiresAt: exp, Canary: it.Canary}
		)
		switch it.Mode {
		case Random:
			tok, row.MAC, err = s.randomToken(ctx, it.Type)
		case Deterministic:
			var v uint32
			var mac []byte
			v, mac, err = s.c.Keys.MAC(ctx, detKeyID(it.Type), []byte(canon))
			if err == nil {
				tok = "dtk_" + typeCodes[it.Type] + "_v" + strconv.FormatUint(uint64(v), 10) + "_" + base62(mac[:16])
				row.Version = v
			}
		case FormatPreserving:
			var t *fpe.Tokenizer
			t, row.Version, err = s.tokenizer(ctx, it.Type, 0)
			if err == nil {
				tok, err = t.Tokenize(it.Type, stored, s.fpeOptions(it.Type))
				if errors.Is(err, fpe.ErrDomainTooSmall) {
					return nil, itemErr(i, "value is too short for a format-preserving token (FF1 needs a domain of at least 1,000,000)")
				}
				if errors.Is(err, fpe.ErrInvalidValue) || errors.Is(err, fpe.ErrUnsupportedType) {
					return nil, itemErr(i, "value cannot be format-preserving tokenized as "+it.Type)
				}
				if err == nil && (strings.HasPrefix(tok, "tok_") || strings.HasPrefix(tok, "dtk_")) {
					// Detokenize would read it as a random or deterministic token.
					return nil, coffer.Errorf(coffer.ECONFLICT, "items[%d]: the format-preserving token looks like a random or deterministic one; use another mode for this value", i)
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("token: tokenize: %w", err)
		}
		if it.Mode != Random {
			if row.MAC, err = s.tokenMAC(ctx, tok); err != nil {
				return nil, err
			}
		}
		if it.Mode != FormatPreserving {
			row.Sealed, err = s.c.Keys.Seal(ctx, valueKeyID(it.Type), []byte(stored), tokenAAD(it.Type, row.MAC))
			if err != nil {
				return nil, fmt.Errorf("token: seal: %w", err)
			}
		}
		rows = append(rows, row)
		out[i] = tok
	}
	if err := s.checkCollisions(ctx, rows); err != nil {
		return nil, err
	}
	if err := s.c.Store.PutTokens(ctx, rows); err != nil {
		return nil, err
	}
	c.Note.Count = len(out)
	return out, nil
}

// checkCollisions refuses a format-preserving token that another type or
// key version already produced (possible only across versions or types;
// vanishingly rare), so detokenize can never be ambiguous.
func (s *Service) checkCollisions(ctx context.Context, rows []coffer.StoredToken) error {
	var macs [][]byte
	for _, r := range rows {
		if r.Mode == FormatPreserving {
			macs = append(macs, r.MAC)
		}
	}
	if len(macs) == 0 {
		return nil
	}
	have, err := s.c.Store.Tokens(ctx, macs)
	if err != nil {
		return err
	}
	for _, r := range rows {
		if h, ok := have[string(r.MAC)]; ok && (h.Type != r.Type || h.Version != r.Version || h.Mode != r.Mode) {
			return coffer.Errorf(coffer.ECONFLICT, "a format-preserving token collides with an existing token; use another mode for this value")
		}
	}
	return nil
}

func tokenAAD(typ string, mac []byte) []byte {
	return envelope.AAD("token", typ, string(mac))
}

func (s *Service) tokenMAC(ctx context.Context, tok string) ([]byte, error) {
	_, mac, err := s.c.Keys.MAC(ctx, indexKeyID, []byte(tok))
	if err != nil {
		return nil, fmt.Errorf("token: index MAC: %w", err)
	}
	return mac, nil
}

// randomToken returns a new random token and the key its row is stored
// under. The token is the AES encipherment, under the order key, of an
// 8-byte prefix that grows with every token this process makes (time in
// µs, then a counter) and 8 random bytes: to anyone without the key it is
// 128 uniformly random bits that reveal neither when it was made nor which
// tokens were made together. Its row's key is that prefix followed by the
// index MAC of the token, so the rows of a batch are written side by side
// at the end of the table instead of one B-tree page each (a batch of
// 1,000 random keys dirtied about 1,000 pages).
func (s *Service) randomToken(ctx context.Context, typ string) (string, []byte, error) {
	blk, err := s.orderCipher(ctx)
	if err != nil {
		return "", nil, err
	}
	var p [16]byte
	binary.BigEndian.PutUint64(p[:8], s.nextSeq())
	if _, err := io.ReadFull(s.c.Rand, p[8:]); err != nil {
		return "", nil, fmt.Errorf("token: random: %w", err)
	}
	var b [16]byte
	blk.Encrypt(b[:], p[:])
	tok := "tok_" + typeCodes[typ] + "_" + base62(b[:])
	mac, err := s.tokenMAC(ctx, tok)
	if err != nil {
		return "", nil, err
	}
	return tok, append(p[:8:8], mac[:keyMACLen]...), nil
}

// nextSeq returns an order prefix greater than every one before it.
func (s *Service) nextSeq() uint64 {
	now := uint64(max(s.c.Now().UnixMicro(), 0)) << 8 // #nosec G115 -- clamped at 0; µs since 1970 << 8 fits until the year 4200
	for {
		last := s.seq.Load()
		next := max(now, last+1)
		if s.seq.CompareAndSwap(last, next) {
			return next
		}
	}
}

func (s *Service) orderCipher(ctx context.Context) (cipher.Block, error) {
	s.mu.RLock()
	blk := s.order
	s.mu.RUnlock()
	if blk != nil {
		return blk, nil
	}
	_, k, err := s.c.Keys.Key(ctx, orderKeyID)
	if err != nil {
		return nil, fmt.Errorf("token: order key: %w", err)
	}
	raw := k.Bytes() // a copy: the cipher keeps its own schedule
	blk, err = aes.NewCipher(raw)
	clear(raw)
	if err != nil {
		return nil, fmt.Errorf("token: order key: %w", err)
	}
	s.mu.Lock()
	s.order = blk
	s.mu.Unlock()
	return blk, nil
}

// rows looks up the rows of tokens, keyed by their storage keys macs, and
// sets macs[i] to the key a row was found under. A token that reads as a
// random one but was issued before random tokens were enciphered (by
// Coffer's first release), or a format-preserving token of that time that
// happens to begin with "tok_", is stored under its whole index MAC,
// full[i]: those are looked up in a second query, only for the tokens the
// first did not find, so current tokens cost nothing more.
func (s *Service) rows(ctx context.Context, tokens []string, macs, full [][]byte) (map[string]coffer.StoredToken, error) {
	rows, err := s.c.Store.Tokens(ctx, macs)
	if err != nil {
		return nil, err
	}
	var legacy [][]byte
	for i, tok := range tokens {
		if _, ok := rows[string(macs[i])]; !ok && strings.HasPrefix(tok, "tok_") {
			legacy = append(legacy, full[i])
		}
	}
	if len(legacy) == 0 {
		return rows, nil
	}
	old, err := s.c.Store.Tokens(ctx, legacy)
	if err != nil {
		return nil, err
	}
	for i, tok := range tokens {
		if _, ok := rows[string(macs[i])]; ok || !strings.HasPrefix(tok, "tok_") {
			continue
		}
		if r, ok := old[string(full[i])]; ok {
			rows[string(full[i])] = r
			macs[i] = full[i]
		}
	}
	return rows, nil
}

// storageKey returns the key tok's row would be stored under, and the index
// MAC of tok (whose head the audit records). A random token whose text does
// not decode gets a key no row has.
func (s *Service) storageKey(ctx context.Context, tok string) (key, mac []byte, err error) {
	if mac, err = s.tokenMAC(ctx, tok); err != nil {
		return nil, nil, err
	}
	body, ok := strings.CutPrefix(tok, "tok_")
	if !ok {
		return mac, mac, nil
	}
	_, enc, _ := strings.Cut(body, "_")
	b, ok := unbase62(enc)
	if !ok {
		return []byte{}, mac, nil
	}
	blk, err := s.orderCipher(ctx)
	if err != nil {
		return nil, nil, err
	}
	var p [16]byte
	blk.Decrypt(p[:], b[:])
	return append(p[:8:8], mac[:keyMACLen]...), mac, nil
}

const alphabet62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// base62 encodes b, 16 bytes, as a fixed-width base62 string (22 chars).
func base62(b []byte) string {
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:16])
	var out [22]byte
	for i := len(out) - 1; i >= 0; i-- {
		var r uint64
		hi, r = bits.Div64(0, hi, 62)
		lo, r = bits.Div64(r, lo, 62)
		out[i] = alphabet62[r]
	}
	return string(out[:])
}

// unbase62 decodes what base62 encoded from 16 bytes.
func unbase62(s string) ([16]byte, bool) {
	var out [16]byte
	if len(s) != 22 {
		return out, false
	}
	var hi, lo uint64
	for i := 0; i < len(s); i++ {
		d := strings.IndexByte(alphabet62, s[i])
		if d < 0 {
			return out, false
		}
		// (hi, lo) = (hi, lo)·62 + d, refusing anything past 2^128.
		h1, l1 := bits.Mul64(lo, 62)
		h0, h0lo := bits.Mul64(hi, 62)
		if h0 != 0 {
			return out, false
		}
		var c uint64
		lo, c = bits.Add64(l1, uint64(d), 0)
		hi, c = bits.Add64(h0lo, h1, c)
		if c != 0 {
			return out, false
		}
	}
	binary.BigEndian.PutUint64(out[:8], hi)
	binary.BigEndian.PutUint64(out[8:], lo)
	return out, true
}

// typeOf returns the type named in a random or deterministic token's
// prefix, or "" for a format-preserving token.
func typeOf(tok string) (string, bool) {
	p, rest, ok := strings.Cut(tok, "_")
	if !ok || (p != "tok" && p != "dtk") {
		return "", false
	}
	code, _, ok := strings.Cut(rest, "_")
	if !ok {
		return "", false
	}
	t, ok := codeTypes[code]
	return t, ok
}

// Detokenize returns the values of tokens, in order, all or nothing: every
// token must exist, be unexpired and be of a type the caller may detokenize.
func (s *Service) Detokenize(ctx context.Context, c Caller, tokens []string) ([]string, error) {
	c.Note.Target("detokenize", "tokens")
	if len(tokens) == 0 {
		return nil, coffer.Errorf(coffer.EINVALID, "tokens must hold at least one token")
	}
	if len(tokens) > s.c.MaxItems {
		return nil, coffer.Errorf(coffer.ETOOLARGE, "at most %d tokens per request", s.c.MaxItems)
	}
	macs := make([][]byte, len(tokens))
	full := make([][]byte, len(tokens))
	for i, tok := range tokens {
		if tok == "" || len(tok) > 512 {
			return nil, coffer.Errorf(coffer.EINVALID, "tokens[%d] is not a token", i)
		}
		key, mac, err := s.storageKey(ctx, tok)
		if err != nil {
			return nil, err
		}
		macs[i], full[i] = key, mac
		c.Note.ValueHMACs = append(c.Note.ValueHMACs, base64.RawURLEncoding.EncodeToString(mac[:12]))
	}
	rows, err := s.rows(ctx, tokens, macs, full)
	if err != nil {
		return nil, err
	}
	now := s.c.Now()
	types := map[string]bool{}
	for i, tok := range tokens {
		r, ok := rows[string(macs[i])]
		if !ok || (r.ExpiresAt != nil && !now.Before(*r.ExpiresAt)) {
			c.Note.Missing = true
			return nil, coffer.Errorf(coffer.ENOTFOUND, "tokens[%d] is unknown or expired", i)
		}
		if t, ok := typeOf(tok); ok && t != r.Type {
			c.Note.Missing = true
			return nil, coffer.Errorf(coffer.ENOTFOUND, "tokens[%d] is unknown or expired", i)
		}
		if r.Canary {
			c.Note.Canary = true
		}
		types[r.Type] = true
	}
	if len(types) == 1 {
		for t := range types {
			c.Note.Resource = "tokens/" + t
		}
	}
	ds, err := s.authorize(c, "detokenize", types)
	if err != nil {
		return nil, err
	}
	for typ := range types {
		if ds[typ].View(typ) == policy.Deny {
			c.Note.Deny("field view of " + typ + " is deny")
			return nil, coffer.Errorf(coffer.EFORBIDDEN, "not allowed to see values of tokens/%s", typ)
		}
	}
	out := make([]string, len(tokens))
	for i, tok := range tokens {
		r := rows[string(macs[i])]
		var v string
		if r.Mode == FormatPreserving {
			t, _, err := s.tokenizer(ctx, r.Type, r.Version)
			if err != nil {
				return nil, err
			}
			if v, err = t.Detokenize(r.Type, tok, s.fpeOptions(r.Type)); err != nil {
				return nil, fmt.Errorf("token: detokenize: %w", err)
			}
		} else {
			pt, err := s.c.Keys.Open(ctx, valueKeyID(r.Type), r.Sealed, tokenAAD(r.Type, r.MAC))
			if err != nil {
				return nil, fmt.Errorf("token: open: %w", err)
			}
			v = string(pt)
		}
		if ds[r.Type].View(r.Type) == policy.Masked {
			v = s.c.Masker.Mask(mask.Default(r.Type), v)
		}
		out[i] = v
	}
	c.Note.Count, c.Note.Values = len(out), len(out)
	return out, nil
}
