package idempotency

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

// Header is the request header that carries a key.
const Header = "Idempotency-Key"

// MaxKeyLen is the longest key taken.
const MaxKeyLen = 255

// TTL is how long an answer is kept for replay.
const TTL = 24 * time.Hour

// KeyID is the keyring key the kept answers are sealed under.
const KeyID = "idempotency/answers"

// FingerprintKeyID is the keyring key requests are MACed under: a bare
// hash of a tokenize body would let whoever reads the table test guesses
// of the values in it.
const FingerprintKeyID = "idempotency/requests"

// fingerprintVersion starts every fingerprint (a bare SHA-256 of an
// earlier release is 32 bytes, and purged: store.PurgeIdempotencyKeys).
const fingerprintVersion = 1

// Store keeps the keys (store.DB).
type Store interface {
	ClaimIdempotencyKey(ctx context.Context, c coffer.IdempotencyKey) (coffer.IdempotencyKey, bool, error)
	CompleteIdempotencyKey(ctx context.Context, principal, key, owner string, status int, contentType string, body []byte) (bool, error)
	ReleaseIdempotencyKey(ctx context.Context, principal, key, owner string) error
}

// Sealer seals the kept answers and MACs the requests (the keyring).
type Sealer interface {
	Seal(ctx context.Context, keyID string, plaintext, aad []byte) ([]byte, error)
	Open(ctx context.Context, keyID string, env, aad []byte) ([]byte, error)
	MAC(ctx context.Context, keyID string, data []byte) (uint32, []byte, error)
}

// Decider asks the policy in force again the questions a request was
// allowed (policystore.Holder): a kept answer is replayed only when each
// is still allowed, now and from the retry's address.
type Decider interface {
	Redecide(p *coffer.Principal, ds []coffer.Decided, ip string) error
}

// Config configures a Keeper.
type Config struct {
	Store   Store
	Sealer  Sealer
	Decider Decider
	// Claim is how long a request holds its key before another node may
	// take it over (its node died before answering); at least the
	// request timeout. Default 1 minute.
	Claim time.Duration
	// Wait is how long a duplicate waits for the request holding its key
	// to answer before it is refused with 409. Default 5 s.
	Wait time.Duration
	// Instance is this process's node lease instance: a claim of a
	// process whose lease ran out (it died) is taken over at once.
	Instance string
	Now      func() time.Time
	Rand     io.Reader
}

// Keeper runs creates once per key.
type Keeper struct{ c Config }

// New returns a Keeper.
func New(c Config) *Keeper {
	if c.Claim <= 0 {
		c.Claim = time.Minute
	}
	if c.Wait <= 0 {
		c.Wait = 5 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	return &Keeper{c: c}
}

// ErrClaimLost: the claim on a key was taken over (its claim ran out, or
// its node's lease did) before the answer was kept.
var ErrClaimLost = errors.New("idempotency: the claim on the key was lost before the answer was kept")

// Answer is a kept answer.
type Answer struct {
	Status      int
	ContentType string
	Body        []byte
	// Note is what the request's audit event said it did (action,
	// resource, rule, targets, count) and the questions the policy
	// allowed it: a replay is audited as the same act, and decided again.
	Note coffer.AccessNote
}

// keptNote is the part of an AccessNote kept with an answer.
type keptNote struct {
	Action   string           `json:"a"`
	Resource string           `json:"r"`
	Rule     string           `json:"rule,omitempty"`
	Fields   []string         `json:"f,omitempty"`
	Count    int              `json:"c,omitempty"`
	Linkable int              `json:"l,omitempty"`
	Targets  []string         `json:"t,omitempty"`
	Decided  []coffer.Decided `json:"d"`
}

// Claim is a request's hold on its key: Finish keeps its answer, Abandon
// lets a retry run it again.
type Claim struct {
	k                     *Keeper
	principal, key, owner string
	authority             []byte
}

// authorityPrefix starts every kept answer's sealed plaintext, before the
// authority it was given under (see authority), the length of its kept
// note (4 bytes, big endian), the note (JSON) and the body.
const authorityPrefix = "\x00coffer-authority-v2\x00"

// authority digests what decided whether p may make its request: who it
// is, its generation (which moves with its roles, attributes, secret and
// disabling), the roles and attributes this token carries, whether it
// proved a second factor. A kept answer is replayed only to the same
// authority, and only when the policy in force still allows, now and from
// the retry's address, every question the request was allowed (Decider):
// a caller whose rights changed since (a role cut, a narrower token, a
// new policy, an address or an hour its rules refuse) gets none of it,
// even an answer it was once entitled to, such as a new client's secret.
func authority(p *coffer.Principal) []byte {
	h := sha256.New()
	fmt.Fprintf(h, "coffer idempotency authority v2\n%s\n%s\n%d\n%t\n", p.Kind, p.ID, p.Generation, p.MFA)
	roles := slices.Clone(p.Roles)
	slices.Sort(roles)
	for _, r := range roles {
		fmt.Fprintf(h, "role %d:%s\n", len(r), r)
	}
	for _, k := range slices.Sorted(maps.Keys(p.Attributes)) {
		v := p.Attributes[k]
		fmt.Fprintf(h, "attr %d:%s=%d:%s\n", len(k), k, len(v), v)
	}
	return h.Sum(nil)
}

// withheld is the refusal of a replay to a changed authority.
func withheld() error {
	return coffer.Errorf(coffer.EFORBIDDEN,
		"the answer kept for this %s is withheld: the caller's roles, attributes or second factor changed since it was given, or the policy no longer allows the request; it is not run again", Header)
}

// ValidKey reports whether key may be used: 1 to MaxKeyLen visible ASCII
// characters.
func ValidKey(key string) error {
	if key == "" || len(key) > MaxKeyLen {
		return coffer.Errorf(coffer.EMALFORMED, "the %s header must hold 1 to %d characters", Header, MaxKeyLen)
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return coffer.Errorf(coffer.EMALFORMED, "the %s header must hold visible ASCII characters only", Header)
		}
	}
	return nil
}

// Fingerprint identifies a request by a keyed MAC of its method, path
// and body (never a bare hash: the body may hold the values tokenized).
func (k *Keeper) Fingerprint(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	msg := make([]byte, 0, len(method)+len(path)+len(body)+32)
	msg = fmt.Appendf(msg, "%s\n%s\n%d\n", method, path, len(body))
	msg = append(msg, body...)
	_, m, err := k.c.Sealer.MAC(ctx, FingerprintKeyID, msg)
	if err != nil {
		return nil, fmt.Errorf("idempotency: fingerprint: %w", err)
	}
	return append([]byte{fingerprintVersion}, m...), nil
}

// Begin starts a request sent with key by principal. It returns either a
// Claim (run the request, then Finish or Abandon it) or the kept Answer
// of the first request with that key (replay it). It fails with a
// *coffer.Error: EINVALID when the key was used for another request,
// ECONFLICT when the request holding it has not answered within
// Config.Wait.
//
// The kept answer is replayed only to the authority it was given under
// (see authority); another one gets EFORBIDDEN, and nothing runs again.
func (k *Keeper) Begin(ctx context.Context, p *coffer.Principal, ip, key string, fingerprint []byte) (*Claim, *Answer, error) {
	principal := p.ID
	auth := authority(p)
	var b [16]byte
	if _, err := io.ReadFull(k.c.Rand, b[:]); err != nil {
		return nil, nil, fmt.Errorf("idempotency: claim id: %w", err)
	}
	owner := hex.EncodeToString(b[:])
	deadline := k.c.Now().Add(k.c.Wait)
	pause := 10 * time.Millisecond
	for {
		now := k.c.Now()
		cur, ok, err := k.c.Store.ClaimIdempotencyKey(ctx, coffer.IdempotencyKey{Principal: principal, Key: key,
			Fingerprint: fingerprint, Owner: owner, Instance: k.c.Instance, ClaimUntil: now.Add(k.c.Claim), CreatedAt: now, ExpiresAt: now.Add(TTL)})
		if err != nil {
			return nil, nil, err
		}
		if ok {
			return &Claim{k: k, principal: principal, key: key, owner: owner, authority: auth}, nil, nil
		}
		if string(cur.Fingerprint) != string(fingerprint) {
			return nil, nil, coffer.Errorf(coffer.EINVALID,
				"this %s was already used for another request (another path or body); use a new key for a new request", Header)
		}
		if cur.State == coffer.IdempotencyDone {
			plain, err := k.c.Sealer.Open(ctx, KeyID, cur.Body, aad(principal, key))
			if err != nil {
				return nil, nil, fmt.Errorf("idempotency: open kept answer: %w", err)
			}
			return k.replay(p, ip, auth, cur, plain)
		}
		// Another request with this key is under way: wait for its answer.
		if !k.c.Now().Before(deadline) {
			return nil, nil, &coffer.Error{Code: coffer.ECONFLICT, RetryAfterSeconds: 1,
				Message: "a request with this " + Header + " is still being carried out; retry it later for its answer"}
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, 200*time.Millisecond)
	}
}

// replay returns the kept answer plain (opened) when it was given to the
// authority auth and the policy still allows what it did; withheld
// otherwise. An answer kept before answers carried their authority and
// decisions is withheld too: fail closed.
func (k *Keeper) replay(p *coffer.Principal, ip string, auth []byte, cur coffer.IdempotencyKey, plain []byte) (*Claim, *Answer, error) {
	rest, ok := bytes.CutPrefix(plain, []byte(authorityPrefix))
	if !ok || len(rest) < sha256.Size+4 || !hmac.Equal(rest[:sha256.Size], auth) {
		return nil, nil, withheld()
	}
	rest = rest[sha256.Size:]
	n := binary.BigEndian.Uint32(rest)
	rest = rest[4:]
	if uint64(n) > uint64(len(rest)) {
		return nil, nil, withheld()
	}
	var kn keptNote
	if err := json.Unmarshal(rest[:n], &kn); err != nil || len(kn.Decided) == 0 || k.c.Decider == nil {
		return nil, nil, withheld()
	}
	if err := k.c.Decider.Redecide(p, kn.Decided, ip); err != nil {
		return nil, nil, withheld()
	}
	note := coffer.AccessNote{Action: kn.Action, Resource: kn.Resource, Rule: kn.Rule, Fields: kn.Fields, Count: kn.Count,
		Linkable: kn.Linkable, Targets: kn.Targets, Decided: kn.Decided}
	return nil, &Answer{Status: cur.Status, ContentType: cur.ContentType, Body: rest[n:], Note: note}, nil
}

// Finish keeps a's answer for the key's later retries, with what its
// note says it did and was allowed.
func (c *Claim) Finish(ctx context.Context, a Answer) error {
	kn, err := json.Marshal(keptNote{Action: a.Note.Action, Resource: a.Note.Resource, Rule: a.Note.Rule, Fields: a.Note.Fields,
		Count: a.Note.Count, Linkable: a.Note.Linkable, Targets: a.Note.Targets, Decided: a.Note.Decided})
	if err != nil {
		return fmt.Errorf("idempotency: keep note: %w", err)
	}
	plain := make([]byte, 0, len(authorityPrefix)+len(c.authority)+4+len(kn)+len(a.Body))
	plain = append(append(plain, authorityPrefix...), c.authority...)
	plain = binary.BigEndian.AppendUint32(plain, uint32(len(kn))) // #nosec G115 -- a note is far below 4 GiB
	plain = append(append(plain, kn...), a.Body...)
	sealed, err := c.k.c.Sealer.Seal(ctx, KeyID, plain, aad(c.principal, c.key))
	if err != nil {
		return fmt.Errorf("idempotency: seal answer: %w", err)
	}
	ok, err := c.k.c.Store.CompleteIdempotencyKey(ctx, c.principal, c.key, c.owner, a.Status, a.ContentType, sealed)
	if err != nil {
		return err
	}
	if !ok {
		return ErrClaimLost
	}
	return nil
}

// Abandon gives the key up: the request created nothing, and a retry runs
// it again.
func (c *Claim) Abandon(ctx context.Context) error {
	return c.k.c.Store.ReleaseIdempotencyKey(ctx, c.principal, c.key, c.owner)
}

func aad(principal, key string) []byte {
	return []byte("coffer idempotency answer\x00" + principal + "\x00" + key)
}
