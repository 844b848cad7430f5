package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/json/jsontext"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

// Decisions an event may carry.
const (
	DecisionAllow = "allow"
	DecisionDeny  = "deny"
)

// Event is one audited action. It holds names, ids, counts and keyed
// HMACs, never a submitted value (see the package documentation).
//
// The Writer assigns ID, Seq, Node, Time, PrevHash and Hash; the caller fills
// in the rest. Its JSON form (MarshalJSON) also carries "principal", a copy
// of PrincipalID, as the API requires.
type Event struct {
	ID            string    `json:"id"`             // Node + ":" + Seq
	Seq           uint64    `json:"seq"`            // position in the node's chain, from 1
	Node          string    `json:"node"`           // the writing node
	Time          time.Time `json:"time"`           // UTC, microsecond precision
	RequestID     string    `json:"request_id"`     // the HTTP request id
	PrincipalID   string    `json:"principal_id"`   // who; "" when unauthenticated
	PrincipalKind string    `json:"principal_kind"` // coffer.KindClient, KindUser, KindExternal
	Roles         []string  `json:"roles"`          // the principal's roles
	SourceIP      string    `json:"source_ip"`      // the caller's address
	Action        string    `json:"action"`         // read, create, tokenize, …
	Resource      string    `json:"resource"`       // collections/NAME, tokens/TYPE, …
	Fields        []string  `json:"fields"`         // names of the fields touched, never values
	Decision      string    `json:"decision"`       // DecisionAllow, DecisionDeny or "" (no decision made)
	Rule          string    `json:"rule"`           // the rule that allowed
	Reason        string    `json:"reason"`         // why it was denied or failed
	Status        int       `json:"status"`         // HTTP status of the answer
	Count         int       `json:"count"`          // records or values returned or written
	ValueHMACs    []string  `json:"value_hmacs"`    // keyed HMACs identifying values; never a value
	PrevHash      string    `json:"prev_hash"`      // hex Hash of the previous event, or Genesis(Node)
	Hash          string    `json:"hash"`           // hex HMAC-SHA256 over PrevHash and Canonical
	// KeyVersion is the version of the audit HMAC key that chained the
	// event. 0, as in events written before audit keys could rotate, means
	// version 1 (see EffectiveVersion); its JSON form is always the
	// effective version.
	KeyVersion uint32 `json:"key_version"`
	// Targets names, by path, each thing the action touched:
	// collections/C/records/ID, subjects/S, keys/NAME/versions/N,
	// clients/ID, users/ID, tokens/TYPE/ID, … — ids, never a value, a
	// token or a secret. At most MaxTargets (Count says how many there
	// were when more). Events written before targets existed have none.
	Targets []string `json:"targets"`
}

// MaxTargets is the most targets an event keeps; the Writer cuts a longer
// list (the event's Count still says how many things were touched).
const MaxTargets = 10000

// Checkpoint is a signed statement that a node's chain had, at Seq, the
// event whose hash is Hash. Signature is Ed25519 over CheckpointMessage.
// It is the domain's type, which the store keeps as it is.
type Checkpoint = coffer.AuditCheckpoint

// EffectiveVersion returns the key version a recorded KeyVersion stands
// for: v itself, or 1 for 0 (a log written before audit keys could rotate
// records none, and had only version 1).
func EffectiveVersion(v uint32) uint32 { return coffer.AuditKeyVersion(v) }

// EventID returns the ID of event seq of node.
func EventID(node string, seq uint64) string {
	return node + ":" + strconv.FormatUint(seq, 10)
}

// Genesis returns the PrevHash of node's first event: the hex SHA-256 of a
// fixed label and the node name. It is public and needs no key.
func Genesis(node string) string {
	h := sha256.New()
	h.Write([]byte("coffer-audit-genesis-v1\x00"))
	h.Write([]byte(node))
	return hex.EncodeToString(h.Sum(nil))
}

const (
	canonicalLabel   = "coffer-audit-event-v1\x00"
	canonicalLabelV2 = "coffer-audit-event-v2\x00"
)

// Canonical appends to dst the canonical encoding of every field of e except
// Hash, and returns the extended slice.
//
// An event without Targets (every event written before they existed) is
// encoded in form 1: a fixed label, then
// the fields in declaration order: strings as a 4-byte big-endian length and
// the bytes, Seq as 8 bytes big-endian, Time as its Unix microseconds,
// Status and Count as 8-byte two's-complement integers, and string slices as
// a 4-byte count followed by each string. A nil and an empty slice encode
// the same. KeyVersion is appended, as 4 bytes big-endian, only when it is
// above 1: events chained under version 1 (and every event written before
// audit keys could rotate, which records none) keep the encoding and hashes
// they always had, and an event of a later version binds its version into
// its hash like every other field. (A changed label also selects another
// key, which fails on its own; binding makes the label covered whatever
// the keys. Relabelling an event to an older, perhaps leaked, version and
// rehashing it under that key is caught elsewhere: Verify refuses a chain
// whose versions go down, and the signed checkpoints hold.) It is injective: two events with different fields
// (taking KeyVersion 0 and 1 as the same) never share an encoding: every
// field before KeyVersion is self-delimiting, so the length tells whether
// a version follows.
//
// An event with Targets is encoded in form 2: another label, the same
// fields up to PrevHash, then the effective KeyVersion (always, 4 bytes
// big-endian) and Targets as a list. The label tells the forms apart, and
// each form is injective on its own; removing an event's targets, or
// adding some, changes its form and so its hash.
//
// Every string and list of e must be shorter than 2^32 (those
// [Writer.Log] chains hold at most [MaxStringBytes]); Canonical panics on a
// longer one rather than encode it ambiguously.
func Canonical(dst []byte, e *Event) []byte {
	if len(e.Targets) > 0 {
		dst = appendFields(append(dst, canonicalLabelV2...), e)
		dst = binary.BigEndian.AppendUint32(dst, EffectiveVersion(e.KeyVersion))
		return appendStrings(dst, e.Targets)
	}
	dst = appendFields(append(dst, canonicalLabel...), e)
	if e.KeyVersion > 1 {
		dst = binary.BigEndian.AppendUint32(dst, e.KeyVersion)
	}
	return dst
}

// appendFields appends the fields both forms of Canonical encode alike,
// ID to PrevHash.
func appendFields(dst []byte, e *Event) []byte {
	dst = appendString(dst, e.ID)
	dst = binary.BigEndian.AppendUint64(dst, e.Seq)
	dst = appendString(dst, e.Node)
	dst = binary.BigEndian.AppendUint64(dst, uint64(e.Time.UnixMicro()))
	dst = appendString(dst, e.RequestID)
	dst = appendString(dst, e.PrincipalID)
	dst = appendString(dst, e.PrincipalKind)
	dst = appendStrings(dst, e.Roles)
	dst = appendString(dst, e.SourceIP)
	dst = appendString(dst, e.Action)
	dst = appendString(dst, e.Resource)
	dst = appendStrings(dst, e.Fields)
	dst = appendString(dst, e.Decision)
	dst = appendString(dst, e.Rule)
	dst = appendString(dst, e.Reason)
	dst = binary.BigEndian.AppendUint64(dst, uint64(int64(e.Status))) // #nosec G115 -- two's-complement reinterpretation (documented above), no bits lost
	dst = binary.BigEndian.AppendUint64(dst, uint64(int64(e.Count)))  // #nosec G115 -- two's-complement reinterpretation (documented above), no bits lost
	dst = appendStrings(dst, e.ValueHMACs)
	return appendString(dst, e.PrevHash)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint32(dst, canonicalLen(len(s)))
	return append(dst, s...)
}

func appendStrings(dst []byte, ss []string) []byte {
	dst = binary.BigEndian.AppendUint32(dst, canonicalLen(len(ss)))
	for _, s := range ss {
		dst = appendString(dst, s)
	}
	return dst
}

// canonicalLen returns n as the 4-byte length of the canonical encoding. It
// panics when n does not fit: Canonical's precondition, which sumRaw
// checks (with fitsCanonical) before it encodes an event read from outside.
func canonicalLen(n int) uint32 {
	if n < 0 || int64(n) > math.MaxUint32 {
		panic("audit: Canonical: a string or list of 2^32 or more")
	}
	return uint32(n)
}

// fitsCanonical reports whether every string and list of e is short enough
// for Canonical.
func fitsCanonical(e *Event) bool {
	fits := func(n int) bool { return int64(n) <= math.MaxUint32 }
	for _, s := range [...]string{e.ID, e.Node, e.RequestID, e.PrincipalID, e.PrincipalKind,
		e.SourceIP, e.Action, e.Resource, e.Decision, e.Rule, e.Reason, e.PrevHash} {
		if !fits(len(s)) {
			return false
		}
	}
	for _, ss := range [...][]string{e.Roles, e.Fields, e.ValueHMACs, e.Targets} {
		if !fits(len(ss)) {
			return false
		}
		for _, s := range ss {
			if !fits(len(s)) {
				return false
			}
		}
	}
	return true
}

// errBadPrevHash is returned by the chainer when PrevHash is not 32 bytes
// of lowercase hex.
var errBadPrevHash = errors.New("prev_hash is not a 64-digit hex hash")

// errTooLong is returned by the chainer for an event with a string or list
// of 2^32 or more, which Canonical cannot encode.
var errTooLong = errors.New("event has a string or list of 2^32 or more")

// chainer computes event hashes with one reusable HMAC and buffer. It is not
// safe for concurrent use.
type chainer struct {
	mac  hash.Hash
	buf  []byte
	sum  []byte
	prev [sha256.Size]byte // here, not on the stack: hash.Hash.Write makes it escape
}

func newChainer(key []byte) *chainer {
	return &chainer{mac: hmac.New(sha256.New, key), buf: make([]byte, 0, 512), sum: make([]byte, 0, sha256.Size)}
}

// sumRaw returns the raw HMAC of e, valid until the next call.
func (c *chainer) sumRaw(e *Event) ([]byte, error) {
	var ok bool
	if c.prev, ok = decodeHash(e.PrevHash); !ok {
		return nil, errBadPrevHash
	}
	if !fitsCanonical(e) {
		return nil, errTooLong
	}
	c.buf = Canonical(c.buf[:0], e)
	c.mac.Reset()
	c.mac.Write(c.prev[:])
	c.mac.Write(c.buf)
	c.sum = c.mac.Sum(c.sum[:0])
	return c.sum, nil
}

// decodeHash decodes a hash in its only accepted form, 64 lowercase hex
// digits (uppercase would decode to the same bytes, but the chain links by
// string). It does not allocate.
func decodeHash(s string) (h [sha256.Size]byte, ok bool) {
	if len(s) != 2*sha256.Size {
		return h, false
	}
	for i := range h {
		hi, ok1 := fromHex(s[2*i])
		lo, ok2 := fromHex(s[2*i+1])
		if !ok1 || !ok2 {
			return h, false
		}
		h[i] = hi<<4 | lo
	}
	return h, true
}

func fromHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// hash returns the hex Hash of e.
func (c *chainer) hash(e *Event) (string, error) {
	raw, err := c.sumRaw(e)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(raw), nil
}

// check reports whether e.Hash is the right hash of e, in constant time.
func (c *chainer) check(e *Event) (bool, error) {
	raw, err := c.sumRaw(e)
	if err != nil {
		return false, err
	}
	got, ok := decodeHash(e.Hash)
	return ok && hmac.Equal(raw, got[:]), nil
}

// ComputeHash returns the hex Hash of e under key, the version of the audit
// HMAC key that e.KeyVersion names: what the Writer stores in e.Hash.
// e.PrevHash must be a 64-digit lowercase hex hash.
func ComputeHash(key []byte, e *Event) (string, error) {
	return newChainer(key).hash(e)
}

const checkpointLabel = "coffer-audit-checkpoint-v1\x00"

// CheckpointMessage returns the bytes a checkpoint's Signature signs: a fixed
// label, the node (length-prefixed), Seq, the hash (length-prefixed), the
// time in Unix microseconds and, only when KeyVersion is above 1, the
// version as 4 bytes big-endian (so checkpoints of version 1, and those
// written before audit keys could rotate, sign what they always signed).
func CheckpointMessage(c *Checkpoint) []byte {
	b := make([]byte, 0, len(checkpointLabel)+len(c.Node)+len(c.Hash)+28)
	b = append(b, checkpointLabel...)
	b = appendString(b, c.Node)
	b = binary.BigEndian.AppendUint64(b, c.Seq)
	b = appendString(b, c.Hash)
	b = binary.BigEndian.AppendUint64(b, uint64(c.Time.UnixMicro()))
	if c.KeyVersion > 1 {
		b = binary.BigEndian.AppendUint32(b, c.KeyVersion)
	}
	return b
}

// SignCheckpoint sets c.Signature with key, the version of the audit
// signing key that c.KeyVersion names.
func SignCheckpoint(key ed25519.PrivateKey, c *Checkpoint) {
	c.Signature = ed25519.Sign(key, CheckpointMessage(c))
}

// VerifyCheckpoint reports whether c.Signature is a valid signature of c by
// pub.
func VerifyCheckpoint(pub ed25519.PublicKey, c *Checkpoint) bool {
	if len(pub) != ed25519.PublicKeySize {
		return false
	}
	return ed25519.Verify(pub, CheckpointMessage(c), c.Signature)
}

// eventJSON has Event's fields without its methods.
type eventJSON Event

// MarshalJSON encodes e with snake_case fields, empty lists as [],
// key_version as the effective version (1 for 0), and an extra "principal"
// field equal to principal_id. It writes the fields by
// hand, in declaration order: every event is encoded inside the audit's
// serial commit path, where reflection cost an eighth of the append.
func (e Event) MarshalJSON() ([]byte, error) {
	return e.AppendJSON(make([]byte, 0, 512))
}

// AppendJSON appends MarshalJSON's encoding of e to dst.
func (e *Event) AppendJSON(dst []byte) ([]byte, error) {
	var err error
	str := func(name, v string) {
		dst = append(dst, name...)
		var qerr error
		if dst, qerr = jsontext.AppendQuote(dst, v); qerr != nil && err == nil {
			err = fmt.Errorf("audit: encode event: %w", qerr)
		}
	}
	list := func(name string, vs []string) {
		dst = append(dst, name...)
		dst = append(dst, '[')
		for i, v := range vs {
			if i > 0 {
				dst = append(dst, ',')
			}
			var qerr error
			if dst, qerr = jsontext.AppendQuote(dst, v); qerr != nil && err == nil {
				err = fmt.Errorf("audit: encode event: %w", qerr)
			}
		}
		dst = append(dst, ']')
	}
	if y := e.Time.Year(); y < 0 || y > 9999 {
		return nil, errors.New("audit: encode event: time outside years 0 to 9999")
	}
	str(`{"id":`, e.ID)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, e.Seq, 10)
	str(`,"node":`, e.Node)
	dst = append(dst, `,"time":"`...)
	dst = e.Time.AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, '"')
	str(`,"request_id":`, e.RequestID)
	str(`,"principal_id":`, e.PrincipalID)
	str(`,"principal_kind":`, e.PrincipalKind)
	list(`,"roles":`, e.Roles)
	str(`,"source_ip":`, e.SourceIP)
	str(`,"action":`, e.Action)
	str(`,"resource":`, e.Resource)
	list(`,"fields":`, e.Fields)
	str(`,"decision":`, e.Decision)
	str(`,"rule":`, e.Rule)
	str(`,"reason":`, e.Reason)
	dst = append(dst, `,"status":`...)
	dst = strconv.AppendInt(dst, int64(e.Status), 10)
	dst = append(dst, `,"count":`...)
	dst = strconv.AppendInt(dst, int64(e.Count), 10)
	list(`,"value_hmacs":`, e.ValueHMACs)
	str(`,"prev_hash":`, e.PrevHash)
	str(`,"hash":`, e.Hash)
	dst = append(dst, `,"key_version":`...)
	dst = strconv.AppendUint(dst, uint64(EffectiveVersion(e.KeyVersion)), 10)
	list(`,"targets":`, e.Targets)
	str(`,"principal":`, e.PrincipalID)
	dst = append(dst, '}')
	if err != nil {
		return nil, err
	}
	return dst, nil
}

// UnmarshalJSON decodes what MarshalJSON encodes. It refuses unknown fields
// and a "principal" that differs from "principal_id", so that a stored body
// cannot say more, or other, than its chained fields.
func (e *Event) UnmarshalJSON(data []byte) error {
	var v struct {
		eventJSON
		Principal *string `json:"principal"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("audit: decode event: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("audit: decode event: trailing data")
	}
	if v.Principal != nil {
		if v.PrincipalID == "" {
			v.PrincipalID = *v.Principal
		} else if *v.Principal != v.PrincipalID {
			return errors.New("audit: decode event: principal and principal_id differ")
		}
	}
	*e = Event(v.eventJSON)
	return nil
}
