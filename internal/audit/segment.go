package audit

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// SegmentFormat is the version of the sealed segment file format that
// EncodeSegment writes and DecodeSegment reads.
const SegmentFormat = 1

// segmentMagic opens every segment file's uncompressed stream.
const segmentMagic = "coffer-audit-segment\n"

// Record kinds inside a segment file.
const (
	segHeader     = 'H'
	segEvent      = 'E'
	segCheckpoint = 'C'
	segEnd        = 'Z'
)

// MaxSegmentRecordBytes bounds one record of a segment file (an event, a
// checkpoint or the header): a longer one is refused as corrupt, so that
// a forged length cannot make a reader allocate without bound.
const MaxSegmentRecordBytes = 4 << 20

// Event encodings a segment's header may name. The encoding is the audit
// log's own, never a third one: "record" is AppendRecord (the compact,
// canonical, self-contained form), read back with DecodeRecord; "json"
// (Event.AppendJSON, read with DecodeStored) is still read.
const (
	SegmentEncodingRecord = "record"
	SegmentEncodingJSON   = "json"
)

// segmentEncoding is the encoding EncodeSegment writes.
const segmentEncoding = SegmentEncodingRecord

// segmentEncodeEvent appends e in the segment's event encoding.
func segmentEncodeEvent(dst []byte, e *Event) ([]byte, error) { return AppendRecord(dst, e) }

// segmentDecodeEvent decodes an event written in encoding enc.
func segmentDecodeEvent(enc string, seq uint64, node string, b []byte) (Event, error) {
	switch enc {
	case SegmentEncodingRecord:
		e, n, err := DecodeRecord(b)
		if err == nil && n != len(b) {
			err = errors.New("trailing bytes after the record")
		}
		if err != nil {
			return Event{}, &CorruptEventError{Node: node, Seq: seq, Err: err}
		}
		return e, nil
	case SegmentEncodingJSON:
		return DecodeStored(node, seq, b)
	}
	return Event{}, fmt.Errorf("unknown event encoding %q", enc)
}

// SegmentHeader describes a sealed segment: a run of one node's chain,
// from FirstSeq to LastSeq, closed by a signed checkpoint at LastSeq.
type SegmentHeader struct {
	Format     int    `json:"format"`
	Deployment string `json:"deployment"` // the deployment's id (audit.deployment_id)
	Node       string `json:"node"`       // the chain's node
	FirstSeq   uint64 `json:"first_seq"`
	LastSeq    uint64 `json:"last_seq"`
	// PrevHash is the hash of the event before FirstSeq: the previous
	// segment's head, or Genesis(Node) for the first.
	PrevHash string `json:"prev_hash"`
	// HeadHash is the hash of the event at LastSeq, which the closing
	// checkpoint signs.
	HeadHash      string    `json:"head_hash"`
	Events        int       `json:"events"`
	Checkpoints   int       `json:"checkpoints"`
	FirstTime     time.Time `json:"first_time"`
	LastTime      time.Time `json:"last_time"`
	EventEncoding string    `json:"event_encoding"`
	Sealed        time.Time `json:"sealed"` // when the file was written
}

// ID returns the segment's id.
func (h *SegmentHeader) ID() string { return SegmentID(h.Node, h.FirstSeq, h.LastSeq) }

// Segment is a sealed segment: its header, its events in seq order and the
// checkpoints signed over them, the last of which (the closing one) is at
// LastSeq.
type Segment struct {
	Header      SegmentHeader
	Events      []Event
	Checkpoints []Checkpoint
}

// SegmentID names the segment of node's chain from first to last:
// "NODE:FIRST-LAST".
func SegmentID(node string, first, last uint64) string {
	return node + ":" + strconv.FormatUint(first, 10) + "-" + strconv.FormatUint(last, 10)
}

// ParseSegmentID splits a SegmentID (the node may itself hold ':').
func ParseSegmentID(id string) (node string, first, last uint64, err error) {
	i := strings.LastIndexByte(id, ':')
	if i <= 0 {
		return "", 0, 0, fmt.Errorf("audit: segment id %q: no node", id)
	}
	a, b, ok := strings.Cut(id[i+1:], "-")
	if !ok {
		return "", 0, 0, fmt.Errorf("audit: segment id %q: no range", id)
	}
	if first, err = strconv.ParseUint(a, 10, 64); err == nil {
		last, err = strconv.ParseUint(b, 10, 64)
	}
	if err != nil || first == 0 || last < first {
		return "", 0, 0, fmt.Errorf("audit: segment id %q: bad range", id)
	}
	return id[:i], first, last, nil
}

// EncodeSegment returns s as a segment file: gzip over a fixed magic line,
// then length-prefixed records (the header as JSON, each event in the
// store's encoding, each checkpoint as JSON, and an end record repeating
// the counts). It checks that s is well formed: events contiguous from
// FirstSeq to LastSeq and the last checkpoint at LastSeq.
func EncodeSegment(s *Segment) ([]byte, error) {
	h := s.Header
	h.Format, h.EventEncoding = SegmentFormat, segmentEncoding
	h.Events, h.Checkpoints = len(s.Events), len(s.Checkpoints)
	if err := checkSegmentShape(&h, s); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	bw := bufio.NewWriterSize(zw, 64<<10)
	var scratch []byte
	put := func(kind byte, payload []byte) {
		scratch = append(scratch[:0], kind)
		scratch = binary.AppendUvarint(scratch, uint64(len(payload)))
		// A bufio.Writer keeps its first error and returns it from Flush,
		// which is checked below.
		_, _ = bw.Write(scratch)
		_, _ = bw.Write(payload)
	}
	_, _ = bw.WriteString(segmentMagic)
	hb, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("audit: encode segment header: %w", err)
	}
	put(segHeader, hb)
	var eb []byte
	for i := range s.Events {
		if eb, err = segmentEncodeEvent(eb[:0], &s.Events[i]); err != nil {
			return nil, err
		}
		put(segEvent, eb)
	}
	for _, cp := range s.Checkpoints {
		cb, err := json.Marshal(cp)
		if err != nil {
			return nil, fmt.Errorf("audit: encode segment checkpoint: %w", err)
		}
		put(segCheckpoint, cb)
	}
	put(segEnd, []byte(strconv.Itoa(h.Events)+" "+strconv.Itoa(h.Checkpoints)))
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// checkSegmentShape checks what a segment must be whatever its hashes.
func checkSegmentShape(h *SegmentHeader, s *Segment) error {
	switch {
	case h.Node == "" || h.FirstSeq == 0 || h.LastSeq < h.FirstSeq:
		return errors.New("audit: segment: bad node or range")
	case uint64(len(s.Events)) != h.LastSeq-h.FirstSeq+1:
		return fmt.Errorf("audit: segment %s: %d events for %d seqs", h.ID(), len(s.Events), h.LastSeq-h.FirstSeq+1)
	case len(s.Checkpoints) == 0 || s.Checkpoints[len(s.Checkpoints)-1].Seq != h.LastSeq:
		return fmt.Errorf("audit: segment %s: not closed by a checkpoint at its last seq", h.ID())
	}
	for i := range s.Events {
		if s.Events[i].Seq != h.FirstSeq+uint64(i) || s.Events[i].Node != h.Node {
			return fmt.Errorf("audit: segment %s: event %d out of place", h.ID(), i)
		}
	}
	return nil
}

// SegmentError says a segment file is not a well-formed segment: cut
// short, not gzip, a record that does not decode, counts that disagree.
type SegmentError struct {
	Reason string
	Err    error
}

// Error implements error.
func (e *SegmentError) Error() string {
	if e.Err != nil {
		return "audit: segment file " + e.Reason + ": " + e.Err.Error()
	}
	return "audit: segment file " + e.Reason
}

// Unwrap returns the cause.
func (e *SegmentError) Unwrap() error { return e.Err }

// DecodeSegment reads a segment file whole: a truncated, edited or
// foreign file is a *SegmentError. It checks the file's form only (its
// records, its counts and its range); VerifySegment checks its hashes and
// signatures.
func DecodeSegment(data []byte) (*Segment, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, &SegmentError{Reason: "is not gzip", Err: err}
	}
	r := bufio.NewReaderSize(zr, 64<<10)
	magic := make([]byte, len(segmentMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != segmentMagic {
		return nil, &SegmentError{Reason: "does not start as a segment", Err: err}
	}
	var (
		s      Segment
		gotHdr bool
		ended  bool
		buf    []byte
	)
	for !ended {
		kind, err := r.ReadByte()
		if err != nil {
			return nil, &SegmentError{Reason: "is cut short (no end record)", Err: err}
		}
		n, err := binary.ReadUvarint(r)
		if err != nil || n > MaxSegmentRecordBytes {
			return nil, &SegmentError{Reason: "has a bad record length", Err: err}
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, &SegmentError{Reason: "is cut short", Err: err}
		}
		if !gotHdr && kind != segHeader {
			return nil, &SegmentError{Reason: "has no header"}
		}
		switch kind {
		case segHeader:
			if gotHdr {
				return nil, &SegmentError{Reason: "has two headers"}
			}
			dec := json.NewDecoder(bytes.NewReader(buf))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&s.Header); err != nil {
				return nil, &SegmentError{Reason: "has a header that does not decode", Err: err}
			}
			if s.Header.Format != SegmentFormat {
				return nil, &SegmentError{Reason: fmt.Sprintf("has format %d, not %d", s.Header.Format, SegmentFormat)}
			}
			gotHdr = true
		case segEvent:
			seq := s.Header.FirstSeq + uint64(len(s.Events))
			e, err := segmentDecodeEvent(s.Header.EventEncoding, seq, s.Header.Node, buf)
			if err != nil {
				return nil, &SegmentError{Reason: fmt.Sprintf("has an event that does not decode at %s", EventID(s.Header.Node, seq)), Err: err}
			}
			s.Events = append(s.Events, e)
		case segCheckpoint:
			var cp Checkpoint
			if err := json.Unmarshal(buf, &cp); err != nil {
				return nil, &SegmentError{Reason: "has a checkpoint that does not decode", Err: err}
			}
			s.Checkpoints = append(s.Checkpoints, cp)
		case segEnd:
			if string(buf) != strconv.Itoa(len(s.Events))+" "+strconv.Itoa(len(s.Checkpoints)) {
				return nil, &SegmentError{Reason: "has an end record that disagrees with its records"}
			}
			ended = true
		default:
			return nil, &SegmentError{Reason: fmt.Sprintf("has an unknown record kind %q", kind)}
		}
	}
	switch _, err := r.ReadByte(); {
	case err == nil:
		return nil, &SegmentError{Reason: "has data after its end record"}
	case !errors.Is(err, io.EOF):
		return nil, &SegmentError{Reason: "is corrupt or cut short", Err: err}
	}
	if err := zr.Close(); err != nil {
		return nil, &SegmentError{Reason: "is corrupt", Err: err}
	}
	if s.Header.Events != len(s.Events) || s.Header.Checkpoints != len(s.Checkpoints) {
		return nil, &SegmentError{Reason: "has counts that disagree with its header"}
	}
	if err := checkSegmentShape(&s.Header, &s); err != nil {
		return nil, &SegmentError{Reason: "is not a sealed segment", Err: err}
	}
	return &s, nil
}
