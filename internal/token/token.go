package token

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/envelope"
	"github.com/cofferhq/coffer/internal/fieldtype"
	"github.com/cofferhq/coffer/internal/mask"
	"github.com/cofferhq/coffer/internal/policy"
	"github.com/cofferhq/coffer/internal/secret"
	"github.com/cofferhq/coffer/internal/token/fpe"
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
	// PutTokens writes rows with distinct MACs, all or nothing. A row
	// whose MAC is stored already is merged into the stored one: the
	// later expiry wins (no expiry beats any), a stored canary stays one,
	// and an expired row is replaced. A canary over a stored token that
	// is not one, and a stored row of another type, mode, version or
	// FPEOptions, are conflicts: then nothing is written and their MACs
	// are returned.
	PutTokens(ctx context.Context, ts []coffer.StoredToken) (conflicts [][]byte, err error)
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
	// FPE options for the card number tokens made from now on. Each token
	// records the options it was made with, and detokenize uses those:
	// changing these never changes what an existing token means.
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
type Caller = coffer.Caller

var (
	indexKeyID = coffer.TokenIndexKey.String() // never rotated: it finds rows
	orderKeyID = coffer.TokenOrderKey.String() // never rotated: with the index key it finds rows
)

const (
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
func ValueKey(keyID string) bool { return coffer.ParseKeyID(keyID).Kind == coffer.KeyTokenValue }

func valueKeyID(typ string) string { return coffer.TokenValueKey(typ).String() }
func detKeyID(typ string) string {
	return coffer.KeyID{Kind: coffer.KeyTokenDeterministic, Name: typ}.String()
}
func fpeKeyID(typ string) string { return coffer.KeyID{Kind: coffer.KeyTokenFPE, Name: typ}.String() }

// authorize decides action on tokens/TYPE for every type of types, and
// records the allowing rules (appended to rules, the ones already allowed
// in this request) in the note; the first type denied is a 403.
func (s *Service) authorize(c Caller, action string, types map[string]bool, rules *[]string) (map[string]policy.Decision, error) {
	p := s.c.Policies.Current()
	out := make(map[string]policy.Decision, len(types))
	now := s.c.Now()
	// In order, so that a request's first refusal does not depend on map
	// order.
	for _, typ := range slices.Sorted(maps.Keys(types)) {
		res := "tokens/" + typ
		d := p.Decide(policy.Input{Principal: c.Principal, Action: action, Resource: res, Time: now, IP: c.IP})
		if !d.Allowed {
			c.Note.Target(action, res)
			c.Note.Deny(d.Reason)
			return nil, coffer.Errorf(coffer.EFORBIDDEN, "not allowed to %s %s", action, res)
		}
		out[typ] = d
		*rules = append(*rules, d.Rule)
		c.Note.Decide(coffer.Decided{Action: action, Resource: res})
	}
	c.Note.Allow(strings.Join(*rules, ","))
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

// FPE options as a token row records them (coffer.StoredToken.FPEOptions).
const (
	optKeepFirstSix uint8 = 1 << iota
	optLuhnValid
)

// fpeOptions returns the options new format-preserving tokens of typ are
// made with, as a row records them.
func (s *Service) fpeOptions(typ string) uint8 {
	var o uint8
	if typ == coffer.TypeCardNumber {
		if s.c.CardKeepFirstSix {
			o |= optKeepFirstSix
		}
		if s.c.CardLuhnValid {
			o |= optLuhnValid
		}
	}
	return o
}

// options returns the fpe.Options a row's recorded options stand for.
func options(typ string, o uint8) fpe.Options {
	if typ != coffer.TypeCardNumber {
		return fpe.Options{}
	}
	return fpe.Options{KeepFirstSix: o&optKeepFirstSix != 0, LuhnValid: o&optLuhnValid != 0}
}

// Linkable reports whether mode makes linkable tokens: the same value
// always gives the same token, so whoever may make them can tokenize
// guesses and compare. They need the action tokenize_linkable.
func Linkable(mode string) bool { return mode == Deterministic || mode == FormatPreserving }

// action returns the policy action that tokenizing in mode needs.
func action(mode string) string {
	if Linkable(mode) {
		return policy.ActionTokenizeLinkable
	}
	return policy.ActionTokenize
}

func itemErr(i int, msg string) *coffer.Error {
	return coffer.Errorf(coffer.EINVALID, "items[%d]: %s", i, msg)
}

// Tokenize replaces each value with a token, in order. All items are
// validated and authorized before anything is stored: a bad item fails the
// whole batch. Random items need tokenize on tokens/TYPE, linkable ones
// (deterministic, format_preserving) tokenize_linkable, canaries also
// admin.
//
// A linkable token of a value tokenized before is the stored one: its
// settings are merged as Store.PutTokens says (the later expiry, a canary
// stays one); a canary over a token that is not one, and a token that
// already means something else, are a 409 naming the item.
func (s *Service) Tokenize(ctx context.Context, c Caller, items []Item) ([]string, error) {
	c.Note.Target("tokenize", "tokens")
	if len(items) == 0 {
		return nil, coffer.Errorf(coffer.EINVALID, "items must hold at least one item")
	}
	if len(items) > s.c.MaxItems {
		return nil, coffer.Errorf(coffer.ETOOLARGE, "at most %d items per request", s.c.MaxItems)
	}
	types := map[string]bool{}
	byAction := map[string]map[string]bool{}
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
		a := action(it.Mode)
		if byAction[a] == nil {
			byAction[a] = map[string]bool{}
		}
		byAction[a][it.Type] = true
	}
	if len(types) == 1 {
		for t := range types {
			c.Note.Resource = "tokens/" + t
		}
	}
	var rules []string
	for _, a := range []string{policy.ActionTokenize, policy.ActionTokenizeLinkable} {
		if byAction[a] == nil {
			continue
		}
		if _, err := s.authorize(c, a, byAction[a], &rules); err != nil {
			return nil, err
		}
	}
	canaryTypes := map[string]bool{}
	for _, it := range items {
		if it.Canary {
			canaryTypes[it.Type] = true
		}
	}
	if len(canaryTypes) > 0 {
		if _, err := s.authorize(c, policy.ActionAdmin, canaryTypes, &rules); err != nil {
			return nil, err
		}
	}
	now := s.c.Now().UTC()
	out := make([]string, len(items))
	rows := make([]coffer.StoredToken, 0, len(items))
	// item is the first item of each row; a linkable token made twice in
	// one batch is one row, merged as PutTokens merges.
	var item []int
	byMAC := map[string]int{}
	for i, it := range items {
		row, tok, err := s.token(ctx, i, it, now)
		if err != nil {
			return nil, err
		}
		out[i] = tok
		if j, ok := byMAC[string(row.MAC)]; ok {
			if err := mergeRow(&rows[j], row, i); err != nil {
				return nil, err
			}
			continue
		}
		byMAC[string(row.MAC)] = len(rows)
		rows = append(rows, row)
		item = append(item, i)
	}
	// The audit names each token as Detokenize does: under the audit-only
	// token value key, bound to the caller (never the token, nor its MAC,
	// its row's key in a database copy). Made before anything is stored.
	targets := make([]string, len(out))
	for i, tok := range out {
		vh, err := audit.ValueHMAC(ctx, s.c.Keys, audit.TokenValueKeyID, c.PrincipalID(), []byte(tok))
		if err != nil {
			return nil, fmt.Errorf("token: audit value: %w", err)
		}
		targets[i] = coffer.TokenTarget(items[i].Type, vh)
	}
	write, err := s.changing(ctx, rows)
	if err != nil {
		return nil, err
	}
	conflicts, err := s.c.Store.PutTokens(ctx, write)
	if err != nil {
		return nil, err
	}
	if len(conflicts) > 0 {
		return nil, s.conflict(ctx, rows, item, conflicts, now)
	}
	c.Note.Count = len(out)
	c.Note.Touch(targets...)
	return out, nil
}

// token makes item i's token and the row to store.
func (s *Service) token(ctx context.Context, i int, it Item, now time.Time) (coffer.StoredToken, string, error) {
	row := coffer.StoredToken{Type: it.Type, Mode: it.Mode, CreatedAt: now, Canary: it.Canary}
	stored, canon, err := fieldtype.NormalizeValue(it.Type, it.Value)
	if err != nil {
		return row, "", itemErr(i, "value is not a valid "+it.Type)
	}
	if it.TTL != "" {
		d, err := time.ParseDuration(it.TTL)
		if err != nil || d < time.Second || d > 100*365*24*time.Hour {
			return row, "", itemErr(i, "ttl must be a Go duration between 1s and 100 years")
		}
		e := now.Add(d)
		row.ExpiresAt = &e
	}
	var tok string
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
			row.FPEOptions = s.fpeOptions(it.Type)
			tok, err = t.Tokenize(it.Type, stored, options(it.Type, row.FPEOptions))
			if errors.Is(err, fpe.ErrDomainTooSmall) {
				return row, "", itemErr(i, "value is too short for a format-preserving token (FF1 needs a domain of at least 1,000,000)")
			}
			if errors.Is(err, fpe.ErrInvalidValue) || errors.Is(err, fpe.ErrUnsupportedType) {
				return row, "", itemErr(i, "value cannot be format-preserving tokenized as "+it.Type)
			}
			if err == nil && (strings.HasPrefix(tok, "tok_") || strings.HasPrefix(tok, "dtk_")) {
				// Detokenize would read it as a random or deterministic token.
				return row, "", coffer.Errorf(coffer.ECONFLICT, "items[%d]: the format-preserving token looks like a random or deterministic one; use another mode for this value", i)
			}
		}
	}
	if err != nil {
		return row, "", fmt.Errorf("token: tokenize: %w", err)
	}
	if it.Mode != Random {
		if row.MAC, err = s.tokenMAC(ctx, tok); err != nil {
			return row, "", err
		}
	}
	if it.Mode != FormatPreserving {
		row.Sealed, err = s.c.Keys.Seal(ctx, valueKeyID(it.Type), []byte(stored), tokenAAD(it.Type, row.MAC))
		if err != nil {
			return row, "", fmt.Errorf("token: seal: %w", err)
		}
	}
	return row, tok, nil
}

// mergeRow merges row, made for item i, into dst, a row of the same batch
// with the same MAC, as PutTokens merges with a stored row.
func mergeRow(dst *coffer.StoredToken, row coffer.StoredToken, i int) error {
	if dst.Type != row.Type || dst.Mode != row.Mode || dst.Version != row.Version || dst.FPEOptions != row.FPEOptions {
		return collision(i)
	}
	if dst.Canary != row.Canary {
		return coffer.Errorf(coffer.ECONFLICT, "items[%d]: the same value is tokenized as a canary and as a real token in one request", i)
	}
	switch {
	case dst.ExpiresAt == nil || row.ExpiresAt == nil:
		dst.ExpiresAt = nil
	case row.ExpiresAt.After(*dst.ExpiresAt):
		dst.ExpiresAt = row.ExpiresAt
	}
	return nil
}

// changing returns the rows of a batch that PutTokens must write. A
// linkable token (deterministic or format-preserving) of a value tokenized
// before has its row already; when merging the new row into it would
// leave it as it is (see unchanged), it is not written again. PutTokens
// would upsert it to the same content, but an upsert holds the row's lock
// until its commit: requests tokenizing one value at once (a card number
// seen again and again, through the relay) queued on that lock one commit
// after another. The rows are read without a lock, in one query; random
// tokens are new by construction and not looked up.
func (s *Service) changing(ctx context.Context, rows []coffer.StoredToken) ([]coffer.StoredToken, error) {
	var macs [][]byte
	for _, r := range rows {
		if r.Mode != Random {
			macs = append(macs, r.MAC)
		}
	}
	if len(macs) == 0 {
		return rows, nil
	}
	have, err := s.c.Store.Tokens(ctx, macs)
	if err != nil {
		return nil, err
	}
	if len(have) == 0 {
		return rows, nil
	}
	out := make([]coffer.StoredToken, 0, len(rows))
	for _, r := range rows {
		if h, ok := have[string(r.MAC)]; ok && unchanged(h, r) {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// unchanged reports whether PutTokens' merge of row into stored, the row
// stored under the same MAC, would leave stored as it is: the same type,
// mode, key version and options, not expired at row's creation, no canary
// over a real token (those two are conflicts, left to PutTokens to find),
// and no later expiry (none beats any). Times compare in microseconds, as
// the store keeps them.
func unchanged(stored, row coffer.StoredToken) bool {
	switch {
	case stored.Type != row.Type || stored.Mode != row.Mode || stored.Version != row.Version || stored.FPEOptions != row.FPEOptions:
		return false
	case stored.ExpiresAt != nil && stored.ExpiresAt.UnixMicro() <= row.CreatedAt.UnixMicro():
		return false // expired: replaced
	case row.Canary && !stored.Canary:
		return false
	case stored.ExpiresAt == nil:
		return true
	}
	return row.ExpiresAt != nil && row.ExpiresAt.UnixMicro() <= stored.ExpiresAt.UnixMicro()
}

func collision(i int) error {
	return coffer.Errorf(coffer.ECONFLICT, "items[%d]: the token collides with an existing token of another type, key version or format; use another mode for this value", i)
}

// conflict names the first item whose row PutTokens refused (rows[k] was
// made for items[item[k]]): a token that means something else, or a
// canary over a real token. No value is in it.
func (s *Service) conflict(ctx context.Context, rows []coffer.StoredToken, item []int, conflicts [][]byte, now time.Time) error {
	have, err := s.c.Store.Tokens(ctx, conflicts)
	if err != nil {
		return err
	}
	bad := map[string]bool{}
	for _, m := range conflicts {
		bad[string(m)] = true
	}
	for k, r := range rows {
		if !bad[string(r.MAC)] {
			continue
		}
		h, ok := have[string(r.MAC)]
		switch {
		case !ok || h.ExpiresAt != nil && !now.Before(*h.ExpiresAt):
			// Changed meanwhile (expired, or made by another request).
		case h.Type != r.Type || h.Mode != r.Mode || h.Version != r.Version || h.FPEOptions != r.FPEOptions:
			return collision(item[k])
		case r.Canary && !h.Canary:
			return coffer.Errorf(coffer.ECONFLICT, "items[%d]: a token of this value exists and is not a canary; plant canaries only for decoy values", item[k])
		}
		return coffer.Errorf(coffer.ECONFLICT, "items[%d]: the token of this value was changed by another request meanwhile; try again", item[k])
	}
	return errors.New("token: tokenize: the store reported conflicts for rows it was not given")
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
// token must exist, be unexpired and be of a type the caller may
// detokenize (and see, masked or plain).
//
// Its answer never tells a caller whether a token exists unless the
// caller could detokenize it: rights are checked before any lookup. A
// caller who may see no token type gets the same 403 whatever the tokens;
// a random or deterministic token names its type, which is checked before
// the lookup too (403); a format-preserving token does not, so one of a
// type the caller may not see is answered as an unknown one (404).
func (s *Service) Detokenize(ctx context.Context, c Caller, tokens []string) ([]string, error) {
	c.Note.Target("detokenize", "tokens")
	if len(tokens) == 0 {
		return nil, coffer.Errorf(coffer.EINVALID, "tokens must hold at least one token")
	}
	if len(tokens) > s.c.MaxItems {
		return nil, coffer.Errorf(coffer.ETOOLARGE, "at most %d tokens per request", s.c.MaxItems)
	}
	for i, tok := range tokens {
		if tok == "" || len(tok) > 512 {
			return nil, coffer.Errorf(coffer.EINVALID, "tokens[%d] is not a token", i)
		}
	}
	// Before any lookup: which types may the caller see?
	p := s.c.Policies.Current()
	now := s.c.Now()
	seen := make(map[string]policy.Decision, len(typeCodes))
	var denied string
	for _, typ := range slices.Sorted(maps.Keys(typeCodes)) {
		d := p.Decide(policy.Input{Principal: c.Principal, Action: policy.ActionDetokenize, Resource: "tokens/" + typ, Time: now, IP: c.IP})
		switch {
		case d.Allowed && d.View(typ) != policy.Deny:
			seen[typ] = d
		case denied == "" && !d.Allowed:
			denied = d.Reason
		case denied == "":
			denied = "field view of " + typ + " is deny"
		}
	}
	if len(seen) == 0 {
		c.Note.Deny(denied)
		return nil, coffer.Errorf(coffer.EFORBIDDEN, "not allowed to detokenize tokens")
	}
	for _, tok := range tokens {
		if t, ok := typeOf(tok); ok {
			if _, ok := seen[t]; !ok {
				return nil, s.refuse(c, t)
			}
		}
	}
	macs := make([][]byte, len(tokens))
	full := make([][]byte, len(tokens))
	for i, tok := range tokens {
		key, mac, err := s.storageKey(ctx, tok)
		if err != nil {
			return nil, err
		}
		macs[i], full[i] = key, mac
		// The audit names the token under an audit-only key, bound to the
		// caller: never the token's MAC, its row's key in a database copy.
		vh, err := audit.ValueHMAC(ctx, s.c.Keys, audit.TokenValueKeyID, c.PrincipalID(), []byte(tok))
		if err != nil {
			return nil, fmt.Errorf("token: audit value: %w", err)
		}
		c.Note.ValueHMACs = append(c.Note.ValueHMACs, vh)
	}
	rows, err := s.rows(ctx, tokens, macs, full)
	if err != nil {
		return nil, err
	}
	types := map[string]bool{}
	for i, tok := range tokens {
		r, ok := rows[string(macs[i])]
		if !ok || (r.ExpiresAt != nil && !now.Before(*r.ExpiresAt)) {
			c.Note.Missing = true
			return nil, unknown(i)
		}
		if t, ok := typeOf(tok); ok && t != r.Type {
			c.Note.Missing = true
			return nil, unknown(i)
		}
		if r.Canary {
			c.Note.Canary = true
		}
		if _, ok := seen[r.Type]; !ok {
			// Format-preserving, of a type the caller may not see:
			// answered as an unknown token, so that the answer does not
			// say it exists.
			_ = s.refuse(c, r.Type)
			return nil, unknown(i)
		}
		types[r.Type] = true
	}
	if len(types) == 1 {
		for t := range types {
			c.Note.Resource = "tokens/" + t
		}
	}
	var rules []string
	for _, typ := range slices.Sorted(maps.Keys(types)) {
		rules = append(rules, seen[typ].Rule)
	}
	c.Note.Allow(strings.Join(rules, ","))
	out := make([]string, len(tokens))
	for i, tok := range tokens {
		r := rows[string(macs[i])]
		var v string
		if r.Mode == FormatPreserving {
			t, _, err := s.tokenizer(ctx, r.Type, r.Version)
			if err != nil {
				return nil, err
			}
			if v, err = t.Detokenize(r.Type, tok, options(r.Type, r.FPEOptions)); err != nil {
				return nil, fmt.Errorf("token: detokenize: %w", err)
			}
		} else {
			pt, err := s.c.Keys.Open(ctx, valueKeyID(r.Type), r.Sealed, tokenAAD(r.Type, r.MAC))
			if err != nil {
				return nil, fmt.Errorf("token: open: %w", err)
			}
			v = string(pt)
		}
		if seen[r.Type].View(r.Type) == policy.Masked {
			v = s.c.Masker.Mask(mask.Default(r.Type), v)
		}
		out[i] = v
	}
	c.Note.Count, c.Note.Values = len(out), len(out)
	return out, nil
}

// refuse records in the note that the caller may not see tokens of typ,
// and returns the 403 to answer when the token itself names typ.
func (s *Service) refuse(c Caller, typ string) error {
	res := "tokens/" + typ
	c.Note.Target("detokenize", res)
	c.Note.Deny("no right to detokenize and see " + res)
	return coffer.Errorf(coffer.EFORBIDDEN, "not allowed to detokenize %s", res)
}

func unknown(i int) error {
	return coffer.Errorf(coffer.ENOTFOUND, "tokens[%d] is unknown or expired", i)
}
