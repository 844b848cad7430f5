package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Sink receives a copy of every batch after the store has made it durable.
// A Writer calls a sink from one goroutine at a time, in Seq order.
type Sink interface {
	// WriteBatch writes events (ascending Seq, one node) and the checkpoints
	// signed over them. It returns when the batch is as durable as the sink
	// can make it. After an error the Writer resends, from the store, every
	// event the sink has not acknowledged, so a sink must not skip ahead.
	WriteBatch(ctx context.Context, events []Event, checkpoints []Checkpoint) error
	// Close flushes and releases the sink.
	Close() error
}

// Positioner is implemented by a sink that keeps what it was given and can
// say how far it got. At start the Writer resends it, from the store, every
// event after its position, so that a sink restarted after a crash (or
// added to a node with history) holds the whole chain.
type Positioner interface {
	// Position returns the Seq of node's last event the sink holds, 0 if
	// none.
	Position(node string) (uint64, error)
}

// ECSVersion is the Elastic Common Schema version of the JSON lines.
const ECSVersion = "8.11.0"

// ecsLine is one line of a sink: an event or a checkpoint in ECS shape.
// Every Event field is present (ECS fields where ECS has one, coffer.* where
// not), so that a line decodes back to exactly the event that was chained.
type ecsLine struct {
	Timestamp string     `json:"@timestamp"`
	ECS       ecsVersion `json:"ecs"`
	Event     ecsEvent   `json:"event"`
	User      *ecsUser   `json:"user,omitempty"`
	Source    *ecsSource `json:"source,omitempty"`
	HTTP      *ecsHTTP   `json:"http,omitempty"`
	Trace     *ecsTrace  `json:"trace,omitempty"`
	Labels    *ecsLabels `json:"labels,omitempty"`
	Host      ecsHost    `json:"host"`
	Coffer    ecsCoffer  `json:"coffer"`
}

type ecsVersion struct {
	Version string `json:"version"`
}

type ecsEvent struct {
	Kind     string  `json:"kind"`
	Dataset  string  `json:"dataset"`
	Action   string  `json:"action"`
	Outcome  string  `json:"outcome,omitempty"`
	ID       string  `json:"id,omitempty"`
	Sequence *uint64 `json:"sequence,omitempty"`
	Reason   string  `json:"reason,omitempty"`
}

type ecsUser struct {
	ID    string   `json:"id,omitempty"`
	Roles []string `json:"roles,omitempty"`
}

type ecsSource struct {
	IP string `json:"ip"`
}

type ecsHTTP struct {
	Response struct {
		StatusCode int `json:"status_code"`
	} `json:"response"`
}

type ecsTrace struct {
	ID string `json:"id"`
}

type ecsLabels struct {
	Resource string `json:"resource,omitempty"`
	Rule     string `json:"rule,omitempty"`
}

type ecsHost struct {
	Name string `json:"name"`
}

type ecsCoffer struct {
	Hash          string         `json:"hash,omitempty"`
	PrevHash      string         `json:"prev_hash,omitempty"`
	PrincipalKind string         `json:"principal_kind,omitempty"`
	Decision      string         `json:"decision,omitempty"`
	Fields        []string       `json:"fields,omitempty"`
	Count         int            `json:"count,omitempty"`
	ValueHMACs    []string       `json:"value_hmacs,omitempty"`
	KeyVersion    uint32         `json:"key_version,omitempty"` // the HMAC key version; absent before audit keys rotated
	Targets       []string       `json:"targets,omitempty"`     // what the action touched; absent before events named it
	Checkpoint    *ecsCheckpoint `json:"checkpoint,omitempty"`
}

type ecsCheckpoint struct {
	Seq        uint64 `json:"seq"`
	Hash       string `json:"hash"`
	Signature  []byte `json:"signature"`
	KeyVersion uint32 `json:"key_version,omitempty"` // the signing key version; absent before audit keys rotated
}

const (
	ecsDataset          = "coffer.audit"
	checkpointAction    = "audit.checkpoint"
	ecsKindEvent        = "event"
	ecsKindState        = "state"
	outcomeSuccess      = "success"
	outcomeFailure      = "failure"
	timestampLayout     = "2006-01-02T15:04:05.000000Z07:00"
	maxSinkLineBytes    = 1 << 20
	defaultMaxFileBytes = 100 << 20
)

// Outcome returns the ECS event.outcome of e: "failure" when the policy
// denied or the answer was an error status (>= 400), else "success".
func Outcome(e *Event) string {
	if e.Decision == DecisionDeny || e.Status >= 400 {
		return outcomeFailure
	}
	return outcomeSuccess
}

// AppendECS appends e as one ECS JSON object and a newline to dst.
func AppendECS(dst []byte, e *Event) ([]byte, error) {
	seq := e.Seq
	l := ecsLine{
		Timestamp: e.Time.UTC().Format(timestampLayout),
		ECS:       ecsVersion{ECSVersion},
		Event: ecsEvent{Kind: ecsKindEvent, Dataset: ecsDataset, Action: e.Action, Outcome: Outcome(e),
			ID: e.ID, Sequence: &seq, Reason: e.Reason},
		Host: ecsHost{e.Node},
		Coffer: ecsCoffer{Hash: e.Hash, PrevHash: e.PrevHash, PrincipalKind: e.PrincipalKind,
			Decision: e.Decision, Fields: e.Fields, Count: e.Count, ValueHMACs: e.ValueHMACs, KeyVersion: e.KeyVersion,
			Targets: e.Targets},
	}
	if e.PrincipalID != "" || len(e.Roles) > 0 {
		l.User = &ecsUser{ID: e.PrincipalID, Roles: e.Roles}
	}
	if e.SourceIP != "" {
		l.Source = &ecsSource{e.SourceIP}
	}
	if e.Status != 0 {
		l.HTTP = &ecsHTTP{}
		l.HTTP.Response.StatusCode = e.Status
	}
	if e.RequestID != "" {
		l.Trace = &ecsTrace{e.RequestID}
	}
	if e.Resource != "" || e.Rule != "" {
		l.Labels = &ecsLabels{e.Resource, e.Rule}
	}
	return appendLine(dst, &l)
}

// appendCheckpointECS appends c as one ECS JSON object and a newline.
func appendCheckpointECS(dst []byte, c *Checkpoint) ([]byte, error) {
	l := ecsLine{
		Timestamp: c.Time.UTC().Format(timestampLayout),
		ECS:       ecsVersion{ECSVersion},
		Event:     ecsEvent{Kind: ecsKindState, Dataset: ecsDataset, Action: checkpointAction},
		Host:      ecsHost{c.Node},
		Coffer: ecsCoffer{Checkpoint: &ecsCheckpoint{Seq: c.Seq, Hash: c.Hash, Signature: c.Signature,
			KeyVersion: c.KeyVersion}},
	}
	return appendLine(dst, &l)
}

func appendLine(dst []byte, l *ecsLine) ([]byte, error) {
	b, err := json.Marshal(l)
	if err != nil {
		return dst, fmt.Errorf("audit: encode line: %w", err)
	}
	dst = append(dst, b...)
	return append(dst, '\n'), nil
}

// ParseECS decodes one line written by a sink into either an event or a
// checkpoint (exactly one is non-nil). It refuses unknown fields, so that a
// line cannot carry what the chain does not cover.
func ParseECS(line []byte) (*Event, *Checkpoint, error) {
	var l ecsLine
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return nil, nil, fmt.Errorf("audit: decode line: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, nil, errors.New("audit: decode line: trailing data")
	}
	t, err := time.Parse(time.RFC3339Nano, l.Timestamp)
	if err != nil {
		return nil, nil, errors.New("audit: decode line: bad @timestamp")
	}
	t = t.UTC()
	if l.Event.Dataset != ecsDataset {
		return nil, nil, errors.New("audit: decode line: not a coffer audit line")
	}
	if l.Coffer.Checkpoint != nil {
		if l.Event.Action != checkpointAction || l.Event.Kind != ecsKindState {
			return nil, nil, errors.New("audit: decode line: malformed checkpoint")
		}
		c := &Checkpoint{Node: l.Host.Name, Seq: l.Coffer.Checkpoint.Seq, Hash: l.Coffer.Checkpoint.Hash,
			Time: t, Signature: l.Coffer.Checkpoint.Signature, KeyVersion: l.Coffer.Checkpoint.KeyVersion}
		return nil, c, nil
	}
	if l.Event.Kind != ecsKindEvent || l.Event.Sequence == nil {
		return nil, nil, errors.New("audit: decode line: malformed event")
	}
	e := &Event{
		ID: l.Event.ID, Seq: *l.Event.Sequence, Node: l.Host.Name, Time: t,
		PrincipalKind: l.Coffer.PrincipalKind, Action: l.Event.Action, Fields: l.Coffer.Fields,
		Decision: l.Coffer.Decision, Reason: l.Event.Reason, Count: l.Coffer.Count,
		ValueHMACs: l.Coffer.ValueHMACs, PrevHash: l.Coffer.PrevHash, Hash: l.Coffer.Hash,
		KeyVersion: l.Coffer.KeyVersion, Targets: l.Coffer.Targets,
	}
	if l.User != nil {
		e.PrincipalID, e.Roles = l.User.ID, l.User.Roles
	}
	if l.Source != nil {
		e.SourceIP = l.Source.IP
	}
	if l.HTTP != nil {
		e.Status = l.HTTP.Response.StatusCode
	}
	if l.Trace != nil {
		e.RequestID = l.Trace.ID
	}
	if l.Labels != nil {
		e.Resource, e.Rule = l.Labels.Resource, l.Labels.Rule
	}
	if l.Event.Outcome != Outcome(e) {
		return nil, nil, errors.New("audit: decode line: event.outcome does not match the event")
	}
	return e, nil, nil
}

// encodeBatch returns the lines of a batch: each checkpoint right after the
// event it covers, so that a reader can check it against the last event
// read; checkpoints over earlier events come first.
func encodeBatch(events []Event, checkpoints []Checkpoint) ([]byte, error) {
	var (
		buf []byte
		err error
	)
	i := 0
	for ; i < len(checkpoints) && (len(events) == 0 || checkpoints[i].Seq < events[0].Seq); i++ {
		if buf, err = appendCheckpointECS(buf, &checkpoints[i]); err != nil {
			return nil, err
		}
	}
	for j := range events {
		if buf, err = AppendECS(buf, &events[j]); err != nil {
			return nil, err
		}
		for ; i < len(checkpoints) && checkpoints[i].Seq <= events[j].Seq; i++ {
			if buf, err = appendCheckpointECS(buf, &checkpoints[i]); err != nil {
				return nil, err
			}
		}
	}
	for ; i < len(checkpoints); i++ {
		if buf, err = appendCheckpointECS(buf, &checkpoints[i]); err != nil {
			return nil, err
		}
	}
	return buf, nil
}

// Stream is a Sink that writes ECS JSON lines to an io.Writer (standard
// output for a log shipper). It does not sync; use it best-effort.
type Stream struct {
	mu sync.Mutex
	w  io.Writer
}

// NewStream returns a Sink writing to w.
func NewStream(w io.Writer) *Stream { return &Stream{w: w} }

// WriteBatch implements Sink.
func (s *Stream) WriteBatch(_ context.Context, events []Event, checkpoints []Checkpoint) error {
	buf, err := encodeBatch(events, checkpoints)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.w.Write(buf); err != nil {
		return fmt.Errorf("audit: stream sink: %w", err)
	}
	return nil
}

// Close implements Sink; it does not close the underlying writer.
func (s *Stream) Close() error { return nil }

// JSONLFile is a Sink appending ECS JSON lines to a file (mode 0600),
// synced once per batch. When the file reaches its size limit it is renamed
// to PATH.N (N = 1, 2, … in order of age) and a new PATH is started; the
// chain simply continues in the new file. LogFiles lists the set in order.
type JSONLFile struct {
	mu       sync.Mutex
	path     string
	maxBytes int64
	f        *os.File
	size     int64
}

// NewJSONLFile opens (creating if needed) the file sink at path. maxBytes is
// the size after which the file is rotated: 0 means 100 MiB, a negative
// value never rotates.
func NewJSONLFile(path string, maxBytes int64) (*JSONLFile, error) {
	if maxBytes == 0 {
		maxBytes = defaultMaxFileBytes
	}
	s := &JSONLFile{path: path, maxBytes: maxBytes}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *JSONLFile) open() error {
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit: open file sink: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("audit: open file sink: %w", err)
	}
	size, err := cutTornLine(f, st.Size())
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("audit: open file sink: %w", err)
	}
	s.f, s.size = f, size
	return nil
}

// cutTornLine removes a last line without a newline (a write cut short by a
// crash, never acknowledged to anyone) and returns the new size.
func cutTornLine(f *os.File, size int64) (int64, error) {
	if size == 0 {
		return 0, nil
	}
	n := min(size, maxSinkLineBytes+1)
	tail := make([]byte, n)
	if _, err := f.ReadAt(tail, size-n); err != nil {
		return 0, err
	}
	if tail[n-1] == '\n' {
		return size, nil
	}
	i := bytes.LastIndexByte(tail, '\n')
	if i < 0 && n < size {
		return 0, errors.New("last line longer than any sink line")
	}
	keep := size - n + int64(i) + 1
	if err := f.Truncate(keep); err != nil {
		return 0, err
	}
	return keep, nil
}

// WriteBatch implements Sink: it appends the batch's lines, syncs, and
// rotates the file if it has reached its size limit.
func (s *JSONLFile) WriteBatch(_ context.Context, events []Event, checkpoints []Checkpoint) error {
	buf, err := encodeBatch(events, checkpoints)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		if err := s.open(); err != nil {
			return err
		}
	}
	_, err = s.f.Write(buf)
	if err == nil {
		err = s.f.Sync()
	}
	if err != nil {
		// Cut a partial batch off, so that the Writer's resend does not
		// leave a torn line or a duplicate behind.
		_ = s.f.Truncate(s.size)
		return fmt.Errorf("audit: file sink: %w", err)
	}
	s.size += int64(len(buf))
	if s.maxBytes > 0 && s.size >= s.maxBytes {
		return s.rotate()
	}
	return nil
}

// rotate renames the current file to the next PATH.N and starts a new one.
func (s *JSONLFile) rotate() error {
	files, err := LogFiles(s.path)
	if err != nil {
		return err
	}
	next := len(files) // the rotated ones, plus one; the current file is last
	if err := s.f.Close(); err != nil {
		s.f = nil
		return fmt.Errorf("audit: rotate file sink: %w", err)
	}
	s.f = nil
	if err := os.Rename(s.path, s.path+"."+strconv.Itoa(next)); err != nil {
		return fmt.Errorf("audit: rotate file sink: %w", err)
	}
	if d, err := os.Open(filepath.Dir(s.path)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return s.open()
}

// Position implements Positioner: the Seq of node's last event in the
// file set, 0 if there is none. It reads the files from the newest back.
func (s *JSONLFile) Position(node string) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	files, err := LogFiles(s.path)
	if err != nil {
		return 0, err
	}
	for i := len(files) - 1; i >= 0; i-- {
		seq, err := lastSeqIn(files[i], node)
		if err != nil || seq > 0 {
			return seq, err
		}
	}
	return 0, nil
}

func lastSeqIn(path, node string) (uint64, error) {
	f, err := os.Open(path) // #nosec G304 -- the configured file sink's path or one of its rotations (LogFiles), opened read-only
	if err != nil {
		return 0, fmt.Errorf("audit: read file sink: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	var last uint64
	for {
		b, err := readLine(r)
		if errors.Is(err, io.EOF) {
			return last, nil
		}
		if err != nil {
			return 0, fmt.Errorf("audit: read file sink %s: %w", path, err)
		}
		e, _, err := ParseECS(b)
		if err != nil {
			return 0, fmt.Errorf("audit: read file sink %s: %w", path, err)
		}
		if e != nil && e.Node == node {
			last = e.Seq
		}
	}
}

// Close implements Sink.
func (s *JSONLFile) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// errGap is wrapped by LogFiles' error for a gap in the numbering.
var errGap = errors.New("audit: log file missing from the set")

// LogFiles returns the files of the file sink at path, oldest first: the
// rotated PATH.1, PATH.2, … then PATH itself if it exists. A gap in the
// numbering is an error (a rotated file was removed).
func LogFiles(path string) ([]string, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("audit: list log files: %w", err)
	}
	var nums []int
	current := false
	for _, e := range entries {
		name := e.Name()
		if name == base {
			current = true
			continue
		}
		suffix, ok := strings.CutPrefix(name, base+".")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(suffix)
		if err != nil || n < 1 || strconv.Itoa(n) != suffix {
			continue
		}
		nums = append(nums, n)
	}
	sort.Ints(nums)
	files := make([]string, 0, len(nums)+1)
	for i, n := range nums {
		if n != i+1 {
			return nil, fmt.Errorf("%w: %s.%d is missing", errGap, path, i+1)
		}
		files = append(files, path+"."+strconv.Itoa(n))
	}
	if current {
		files = append(files, path)
	}
	return files, nil
}
