package audit

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

// The compact stored form of an event (format 1), what the database keeps
// since migration 20 in place of the JSON body.
//
// A store row keeps, as columns, the fields it indexes or filters on: Node,
// Seq, Time (Unix microseconds), PrincipalID and Action, and Hash as 32 raw
// bytes. The body ([AppendBody]) keeps every other field, each once, and
// never a field the columns hold; ID is not kept at all (it is always
// EventID(Node, Seq), and an event whose ID is not is refused). Its bytes:
//
//	format      1 byte: FormatCompact in its low 3 bits (a later format
//	            gets another number), flags above: bodyPrev (PrevHash
//	            follows), bodyHexRequest (RequestID is lowercase hex, kept
//	            as its bytes; with bodyRequest12 too, they are 12 and no
//	            length is kept), bodyKeyV1 (the key version is 1)
//	key version uvarint, the effective version, unless bodyKeyV1
//	prev_hash   32 bytes, only with bodyPrev
//	request_id  string (with bodyHexRequest: uvarint n, n bytes)
//	principal_kind  a word (below)
//	roles       list
//	source_ip   a tag byte: 4 or 6 and the address's 4 or 16 bytes when
//	            it is an IP address that netip spells the same way, else 0
//	            and the string
//	resource    string
//	fields      list
//	decision    a word
//	rule, reason  strings
//	status      a byte: index+1 of a common HTTP status (statusWords), or 0
//	            and a zigzag varint
//	count       zigzag varint
//	value_hmacs list
//	            (strings are a uvarint length and the bytes, lists a
//	            uvarint count and the strings; a word is one byte, the
//	            index+1 of a known value: "client", "user", "external"
//	            for principal_kind, "allow", "deny" for decision; or 0
//	            and the string; "" is the string)
//	targets     uvarint count, then each target as a tag byte and its rest:
//	            tag bit 0 strips a leading Resource+"/" and then bit 2 a
//	            "records/" after it, bit 1 a trailing lowercase
//	            8-4-4-4-12 UUID, kept as its 16 bytes after the remaining
//	            string.
//
// PrevHash may be left out (AppendBody's omitPrev) when it is the Hash of
// the event stored just before, seq-1 of the same node: the reader takes it
// from that row (or from the checkpoint at seq-1 when that row was
// archived), so a batch of events stores one prev_hash, not one each.
//
// The encoding is canonical: AppendBody writes one form per event, and
// DecodeBody refuses any other (it re-encodes what it decoded and compares),
// so a stored event has exactly one body. The chain is unchanged by it: the
// hash still covers [Canonical] of the whole event, re-derived by Verify
// from the decoded fields, so every field hashed before is hashed still,
// and events stored as JSON before migration 20 verify as they always did.
const FormatCompact = 1

const (
	formatMask     = 0x07
	bodyPrev       = 1 << 3
	bodyHexRequest = 1 << 4
	bodyKeyV1      = 1 << 5
	bodyRequest12  = 1 << 6
	bodyFlags      = bodyPrev | bodyHexRequest | bodyKeyV1 | bodyRequest12

	// requestIDBytes is the length of the request ids Coffer makes (24
	// hex digits), kept without a length.
	requestIDBytes = 12

	targetInResource = 1 << 0
	targetUUID       = 1 << 1
	targetRecords    = 1 << 2
)

// errNotStorable says an event breaks an invariant every Writer event
// keeps, so the compact form cannot hold it exactly.
var errNotStorable = errors.New("audit: event cannot be stored compactly")

// AppendBody appends e's compact body (format FormatCompact, see above) to
// dst: every field but those kept as columns (Node, Seq, Time, PrincipalID,
// Action, Hash) and ID. With omitPrev, PrevHash is left out: the caller
// keeps it as the Hash of the event stored at e.Seq-1. It fails for an
// event whose ID is not EventID(Node, Seq) or whose PrevHash is not a
// 64-digit lowercase hex hash.
func AppendBody(dst []byte, e *Event, omitPrev bool) ([]byte, error) {
	if !isEventID(e.ID, e.Node, e.Seq) {
		return nil, fmt.Errorf("%w: id %q is not its node and seq", errNotStorable, e.ID)
	}
	prev, ok := decodeHash(e.PrevHash)
	if !ok {
		return nil, fmt.Errorf("%w: %w", errNotStorable, errBadPrevHash)
	}
	var flags byte
	if !omitPrev {
		flags |= bodyPrev
	}
	if isLowerHex(e.RequestID) {
		flags |= bodyHexRequest
		if len(e.RequestID) == 2*requestIDBytes {
			flags |= bodyRequest12
		}
	}
	v := EffectiveVersion(e.KeyVersion)
	if v == 1 {
		flags |= bodyKeyV1
	}
	dst = append(dst, FormatCompact|flags)
	if v != 1 {
		dst = binary.AppendUvarint(dst, uint64(v))
	}
	if !omitPrev {
		dst = append(dst, prev[:]...)
	}
	if flags&bodyHexRequest != 0 {
		if flags&bodyRequest12 == 0 {
			dst = binary.AppendUvarint(dst, uint64(len(e.RequestID)/2))
		}
		dst, _ = hex.AppendDecode(dst, []byte(e.RequestID)) // isLowerHex: it decodes
	} else {
		dst = appendVarString(dst, e.RequestID)
	}
	dst = appendWord(dst, e.PrincipalKind, kindWords[:])
	dst = appendVarStrings(dst, e.Roles)
	dst = appendIP(dst, e.SourceIP)
	dst = appendVarString(dst, e.Resource)
	dst = appendVarStrings(dst, e.Fields)
	dst = appendWord(dst, e.Decision, decisionWords[:])
	dst = appendVarString(dst, e.Rule)
	dst = appendVarString(dst, e.Reason)
	dst = appendStatus(dst, e.Status)
	dst = binary.AppendVarint(dst, int64(e.Count))
	dst = appendVarStrings(dst, e.ValueHMACs)
	dst = binary.AppendUvarint(dst, uint64(len(e.Targets)))
	for _, t := range e.Targets {
		dst = appendTarget(dst, t, e.Resource)
	}
	return dst, nil
}

// BodyHasPrev reports whether body, a compact body, holds its PrevHash.
func BodyHasPrev(body []byte) bool {
	return len(body) > 0 && body[0]&bodyPrev != 0
}

// DecodeBody sets e's body fields (every field but Node, Seq, Time,
// PrincipalID, Action and Hash, which the caller sets from the row's
// columns first) from body, and ID from Node and Seq. PrevHash is left as
// it is when the body does not hold it (BodyHasPrev): the caller sets it
// from the row before. It refuses a body in any form but the one
// AppendBody writes for the event decoded.
func DecodeBody(e *Event, body []byte) error {
	d := decoder{b: body}
	first := d.byte()
	if first&formatMask != FormatCompact {
		return errors.New("audit: unknown stored event format")
	}
	flags := first &^ formatMask
	if flags&^bodyFlags != 0 {
		return errors.New("audit: stored event: unknown flags")
	}
	v := uint64(1)
	if flags&bodyKeyV1 == 0 {
		v = d.uvarint()
	}
	if v > 0xffffffff {
		d.err = errors.New("key version out of range")
	}
	e.KeyVersion = uint32(v) // #nosec G115 -- checked above
	if flags&bodyPrev != 0 {
		e.PrevHash = hex.EncodeToString(d.bytes(32))
	}
	switch {
	case flags&bodyRequest12 != 0:
		e.RequestID = hex.EncodeToString(d.bytes(requestIDBytes))
	case flags&bodyHexRequest != 0:
		e.RequestID = hex.EncodeToString(d.bytes(d.length()))
	default:
		e.RequestID = d.string()
	}
	e.PrincipalKind = d.word(kindWords[:])
	e.Roles = d.strings()
	e.SourceIP = d.ip()
	e.Resource = d.string()
	e.Fields = d.strings()
	e.Decision = d.word(decisionWords[:])
	e.Rule = d.string()
	e.Reason = d.string()
	e.Status = d.status()
	e.Count = d.int()
	e.ValueHMACs = d.strings()
	if n := d.length(); n > 0 {
		e.Targets = make([]string, 0, n)
		for range n {
			e.Targets = append(e.Targets, d.target(e.Resource))
		}
	}
	if d.err == nil && len(d.b) > 0 {
		d.err = errors.New("trailing bytes")
	}
	if d.err != nil {
		return fmt.Errorf("audit: decode stored event: %w", d.err)
	}
	e.ID = EventID(e.Node, e.Seq)
	if e.PrevHash == "" {
		// Not in this body: canonical form is checked against a stand-in,
		// the omission itself being what the flags say.
		e.PrevHash = genesisStandIn
		defer func() { e.PrevHash = "" }()
	}
	var scratch [256]byte // a typical body re-encodes without an allocation
	again, err := AppendBody(scratch[:0], e, flags&bodyPrev == 0)
	if err != nil || string(again) != string(body) {
		return errors.New("audit: decode stored event: not in canonical form")
	}
	return nil
}

// genesisStandIn is a well-formed hash used only to re-encode a body that
// leaves its PrevHash out.
const genesisStandIn = "0000000000000000000000000000000000000000000000000000000000000000"

// AppendRecord appends a self-contained compact record of e to dst: Node,
// Seq, Time, PrincipalID, Action and Hash (the columns a store keeps) and
// then e's body with its PrevHash, as AppendBody writes it. It is the form
// for files that hold events outside the database (archived segments);
// DecodeRecord reads it back. Its bytes: node (uvarint length, bytes), seq
// (uvarint), time (Unix microseconds, zigzag varint), principal, action
// (strings), hash (32 bytes), body (uvarint length, bytes).
func AppendRecord(dst []byte, e *Event) ([]byte, error) {
	h, ok := decodeHash(e.Hash)
	if !ok {
		return nil, fmt.Errorf("%w: hash is not a 64-digit hex hash", errNotStorable)
	}
	dst = appendVarString(dst, e.Node)
	dst = binary.AppendUvarint(dst, e.Seq)
	dst = binary.AppendVarint(dst, e.Time.UnixMicro())
	dst = appendVarString(dst, e.PrincipalID)
	dst = appendVarString(dst, e.Action)
	dst = append(dst, h[:]...)
	start := len(dst)
	dst = append(dst, make([]byte, binary.MaxVarintLen64)...) // room for the length
	body, err := AppendBody(dst, e, false)
	if err != nil {
		return nil, err
	}
	n := len(body) - start - binary.MaxVarintLen64
	var l [binary.MaxVarintLen64]byte
	ln := binary.PutUvarint(l[:], uint64(n)) // #nosec G115 -- n is a length, never negative
	copy(body[start:], l[:ln])
	copy(body[start+ln:], body[start+binary.MaxVarintLen64:])
	return body[:start+ln+n], nil
}

// DecodeRecord decodes the record AppendRecord wrote at the start of b and
// returns the event and the bytes it took. It refuses a record in any other
// form than the one AppendRecord writes for the event decoded.
func DecodeRecord(b []byte) (Event, int, error) {
	d := decoder{b: b}
	var e Event
	e.Node = d.string()
	e.Seq = d.uvarint()
	us, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
	} else {
		d.b = d.b[n:]
	}
	e.Time = time.UnixMicro(us).UTC()
	e.PrincipalID = d.string()
	e.Action = d.string()
	e.Hash = hex.EncodeToString(d.bytes(32))
	body := d.bytes(d.length())
	if d.err != nil {
		return Event{}, 0, fmt.Errorf("audit: decode record: %w", d.err)
	}
	if !BodyHasPrev(body) {
		return Event{}, 0, errors.New("audit: decode record: no prev_hash")
	}
	if err := DecodeBody(&e, body); err != nil {
		return Event{}, 0, err
	}
	used := len(b) - len(d.b)
	again, err := AppendRecord(make([]byte, 0, used), &e)
	if err != nil || string(again) != string(b[:used]) {
		return Event{}, 0, errors.New("audit: decode record: not in canonical form")
	}
	return e, used, nil
}

func appendVarString(dst []byte, s string) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(s))), s...)
}

func appendVarStrings(dst []byte, ss []string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(ss)))
	for _, s := range ss {
		dst = appendVarString(dst, s)
	}
	return dst
}

// Known values of the fields kept as words, each its index+1.
var (
	kindWords     = [...]string{coffer.KindClient, coffer.KindUser, coffer.KindExternal}
	decisionWords = [...]string{DecisionAllow, DecisionDeny}
)

func appendWord(dst []byte, s string, words []string) []byte {
	for i, w := range words {
		if s == w {
			return append(dst, byte(i+1)) // #nosec G115 -- at most 3
		}
	}
	return appendVarString(append(dst, 0), s)
}

// statusWords are the HTTP statuses kept in one byte.
var statusWords = [...]int{200, 201, 204, 400, 401, 403, 404, 409, 413, 422, 429, 500, 503}

func appendStatus(dst []byte, status int) []byte {
	for i, w := range statusWords {
		if status == w {
			return append(dst, byte(i+1)) // #nosec G115 -- fewer than 256
		}
	}
	return binary.AppendVarint(append(dst, 0), int64(status))
}

func appendIP(dst []byte, s string) []byte {
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" && a.String() == s {
		if a.Is4() {
			b := a.As4()
			return append(append(dst, 4), b[:]...)
		}
		b := a.As16()
		return append(append(dst, 6), b[:]...)
	}
	return appendVarString(append(dst, 0), s)
}

func appendTarget(dst []byte, t, resource string) []byte {
	var tag byte
	if resource != "" && len(t) > len(resource) && t[len(resource)] == '/' && t[:len(resource)] == resource {
		tag |= targetInResource
		t = t[len(resource)+1:]
		if rest, ok := strings.CutPrefix(t, "records/"); ok {
			tag |= targetRecords
			t = rest
		}
	}
	var id [16]byte
	if len(t) >= 36 && parseUUID(t[len(t)-36:], &id) {
		tag |= targetUUID
		t = t[:len(t)-36]
	}
	dst = appendVarString(append(dst, tag), t)
	if tag&targetUUID != 0 {
		dst = append(dst, id[:]...)
	}
	return dst
}

// isLowerHex reports whether s is a non-empty, even-length string of
// lowercase hex digits (as Coffer's request ids are).
func isLowerHex(s string) bool {
	if len(s) == 0 || len(s)%2 != 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if _, ok := fromHex(s[i]); !ok {
			return false
		}
	}
	return true
}

// parseUUID parses a lowercase 8-4-4-4-12 UUID into id.
func parseUUID(s string, id *[16]byte) bool {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return false
	}
	j := 0
	for i := 0; i < 36; {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			i++
			continue
		}
		hi, ok1 := fromHex(s[i])
		lo, ok2 := fromHex(s[i+1])
		if !ok1 || !ok2 {
			return false
		}
		id[j] = hi<<4 | lo
		i, j = i+2, j+1
	}
	return true
}

func formatUUID(id []byte) string {
	var b [36]byte
	hex.Encode(b[0:8], id[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], id[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], id[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], id[8:10])
	b[23] = '-'
	hex.Encode(b[24:36], id[10:16])
	return string(b[:])
}

// decoder reads a compact body; the first error sticks and every later
// read returns zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errors.New("truncated or malformed")
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// length reads a uvarint length no larger than what is left to read (a
// list's count is bounded the same way: each element takes a byte at
// least).
func (d *decoder) length() int {
	v := d.uvarint()
	if v > uint64(len(d.b)) {
		d.fail()
		return 0
	}
	return int(v) // #nosec G115 -- at most len(d.b)
}

func (d *decoder) bytes(n int) []byte {
	if n > len(d.b) {
		d.fail()
		return nil
	}
	b := d.b[:n]
	d.b = d.b[n:]
	return b
}

func (d *decoder) string() string { return string(d.bytes(d.length())) }

func (d *decoder) strings() []string {
	n := d.length()
	if n == 0 {
		return nil
	}
	ss := make([]string, 0, n)
	for range n {
		ss = append(ss, d.string())
	}
	return ss
}

func (d *decoder) int() int {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	if int64(int(v)) != v {
		d.fail()
		return 0
	}
	return int(v)
}

func (d *decoder) word(words []string) string {
	tag := d.byte()
	switch {
	case tag == 0:
		return d.string()
	case int(tag) <= len(words):
		return words[tag-1]
	}
	d.fail()
	return ""
}

func (d *decoder) status() int {
	tag := d.byte()
	switch {
	case tag == 0:
		return d.int()
	case int(tag) <= len(statusWords):
		return statusWords[tag-1]
	}
	d.fail()
	return 0
}

func (d *decoder) ip() string {
	switch d.byte() {
	case 0:
		return d.string()
	case 4:
		if b := d.bytes(4); len(b) == 4 {
			return netip.AddrFrom4([4]byte(b)).String()
		}
	case 6:
		if b := d.bytes(16); len(b) == 16 {
			return netip.AddrFrom16([16]byte(b)).String()
		}
	}
	d.fail()
	return ""
}

func (d *decoder) target(resource string) string {
	tag := d.byte()
	if tag&^(targetInResource|targetUUID|targetRecords) != 0 || tag&(targetInResource|targetRecords) == targetRecords {
		d.fail()
		return ""
	}
	t := d.string()
	if tag&targetUUID != 0 {
		if id := d.bytes(16); len(id) == 16 {
			t += formatUUID(id)
		}
	}
	if tag&targetRecords != 0 {
		t = "records/" + t
	}
	if tag&targetInResource != 0 {
		t = resource + "/" + t
	}
	return t
}
