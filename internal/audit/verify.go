package audit

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Report sums up a verified log.
type Report struct {
	Nodes       int // chains verified
	Events      int // events verified, all nodes
	Checkpoints int // checkpoints verified, all nodes
}

// VerifyError names the first event at which a log stops being intact.
// Seq is the position in the node's chain where the problem is (for a
// missing event, the seq that is missing); EventID is the ID of the event
// found there, or of the one expected when none was found.
type VerifyError struct {
	Node    string
	Seq     uint64
	EventID string
	Reason  string
}

// Error implements error.
func (e *VerifyError) Error() string {
	return fmt.Sprintf("audit log not intact: node %q seq %d (event %s): %s", e.Node, e.Seq, e.EventID, e.Reason)
}

// nodeChain checks one node's events in order against its checkpoints.
type nodeChain struct {
	node   string
	pub    ed25519.PublicKey
	c      *chainer
	next   uint64 // seq expected next
	prev   string // hash expected in the next PrevHash
	cps    []Checkpoint
	lastCP uint64 // seq of the last checkpoint added
	events int
	cpsOK  int
}

func newNodeChain(node string, pub ed25519.PublicKey, c *chainer) *nodeChain {
	return &nodeChain{node: node, pub: pub, c: c, next: 1, prev: Genesis(node)}
}

func (n *nodeChain) fail(seq uint64, id, format string, args ...any) *VerifyError {
	if id == "" {
		id = EventID(n.node, seq)
	}
	return &VerifyError{Node: n.node, Seq: seq, EventID: id, Reason: fmt.Sprintf(format, args...)}
}

// addCheckpoint queues c, which must come in ascending Seq order, to be
// checked when the walk reaches its event.
func (n *nodeChain) addCheckpoint(c Checkpoint) *VerifyError {
	if c.Node != n.node {
		return n.fail(c.Seq, "", "checkpoint names node %q", c.Node)
	}
	if c.Seq == 0 {
		return n.fail(c.Seq, "", "checkpoint at seq 0")
	}
	if c.Seq <= n.lastCP {
		return n.fail(c.Seq, "", "checkpoints out of order or duplicated")
	}
	n.lastCP = c.Seq
	if c.Seq < n.next {
		// In a file a checkpoint line follows the event it covers, which
		// must be the last one read.
		if c.Seq != n.next-1 {
			return n.fail(c.Seq, "", "checkpoint after later events")
		}
		return n.checkCheckpoint(&c, n.prev)
	}
	n.cps = append(n.cps, c)
	return nil
}

func (n *nodeChain) checkCheckpoint(c *Checkpoint, hash string) *VerifyError {
	if !VerifyCheckpoint(n.pub, c) {
		return n.fail(c.Seq, "", "checkpoint signature is invalid")
	}
	if c.Hash != hash {
		return n.fail(c.Seq, "", "event hash differs from the signed checkpoint")
	}
	n.cpsOK++
	return nil
}

// event checks the next event of the walk.
func (n *nodeChain) event(e *Event) *VerifyError {
	switch {
	case e.Seq > n.next:
		return n.fail(n.next, "", "event missing: expected seq %d, found seq %d (deleted or reordered)", n.next, e.Seq)
	case e.Seq < n.next:
		return n.fail(n.next, e.ID, "expected seq %d, found seq %d again (inserted or reordered)", n.next, e.Seq)
	case e.Node != n.node:
		return n.fail(e.Seq, e.ID, "event names another node")
	case !isEventID(e.ID, n.node, e.Seq):
		return n.fail(e.Seq, e.ID, "event id does not match its node and seq")
	case e.PrevHash != n.prev:
		return n.fail(e.Seq, e.ID, "prev_hash does not link to the previous event (inserted, deleted or reordered)")
	}
	ok, err := n.c.check(e)
	if err != nil || !ok {
		return n.fail(e.Seq, e.ID, "hash does not match the event (edited)")
	}
	if len(n.cps) > 0 && n.cps[0].Seq == e.Seq {
		if verr := n.checkCheckpoint(&n.cps[0], e.Hash); verr != nil {
			return verr
		}
		n.cps = n.cps[1:]
	}
	n.next++
	n.prev = e.Hash
	n.events++
	return nil
}

// finish checks that no checkpoint is left beyond the last event: a signed
// checkpoint the events no longer reach means the log was cut off.
func (n *nodeChain) finish() *VerifyError {
	if len(n.cps) == 0 {
		return nil
	}
	c := n.cps[len(n.cps)-1]
	if !VerifyCheckpoint(n.pub, &c) {
		return n.fail(c.Seq, "", "checkpoint signature is invalid")
	}
	return n.fail(n.next, "", "log cut off: a signed checkpoint is at seq %d but the last event is seq %d", c.Seq, n.next-1)
}

func checkKeys(pub ed25519.PublicKey, hmacKey []byte) error {
	if len(pub) != ed25519.PublicKeySize {
		return errors.New("audit: verify: public key is not an Ed25519 public key")
	}
	if len(hmacKey) < minHMACKeyLen {
		return fmt.Errorf("audit: verify: HMAC key must be at least %d bytes", minHMACKeyLen)
	}
	return nil
}

// Verify checks every node's chain in store: seq contiguous from 1, each
// PrevHash linking to the previous Hash (Genesis for the first), each Hash
// recomputed under hmacKey, each checkpoint signed by pub and matching the
// event at its seq, and no checkpoint beyond the last event. It returns a
// *VerifyError naming the first bad event on any edit, deletion, insertion,
// reordering or cut back to before the last checkpoint, or another error if
// the store cannot be read. A cut that also removes every checkpoint after
// it cannot be seen here (see the package documentation).
//
// It may run while a Writer appends: checkpoints are read before events, and
// both are appended in one transaction, so every checkpoint read has its
// event in the scan.
func Verify(ctx context.Context, store Store, pub ed25519.PublicKey, hmacKey []byte) (Report, error) {
	var rep Report
	if err := checkKeys(pub, hmacKey); err != nil {
		return rep, err
	}
	nodes, err := store.AuditNodes(ctx)
	if err != nil {
		return rep, fmt.Errorf("audit: verify: list nodes: %w", err)
	}
	c := newChainer(hmacKey)
	for _, node := range nodes {
		n := newNodeChain(node, pub, c)
		cps, err := store.Checkpoints(ctx, node)
		if err != nil {
			return rep, fmt.Errorf("audit: verify: checkpoints of %q: %w", node, err)
		}
		for _, cp := range cps {
			if verr := n.addCheckpoint(cp); verr != nil {
				return rep, verr
			}
		}
		var verr *VerifyError
		err = store.ScanAudit(ctx, node, 0, func(e Event) error {
			if n.events&4095 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if verr = n.event(&e); verr != nil {
				return verr
			}
			return nil
		})
		if verr != nil {
			return rep, verr
		}
		if cerr := (*CorruptEventError)(nil); errors.As(err, &cerr) {
			return rep, n.fail(cerr.Seq, "", "stored event does not decode (edited)")
		}
		if err != nil {
			return rep, fmt.Errorf("audit: verify: scan %q: %w", node, err)
		}
		if verr := n.finish(); verr != nil {
			return rep, verr
		}
		rep.Nodes++
		rep.Events += n.events
		rep.Checkpoints += n.cpsOK
	}
	return rep, nil
}

// VerifyFile checks the JSON lines written by a file or stream sink, read
// from paths in order as one stream (pass LogFiles(path) for a rotated
// file). Each node's events must start at seq 1 and be checked as Verify
// does; a checkpoint line must match the event it follows. A line that is
// not a sink line is an error naming the file and line.
func VerifyFile(ctx context.Context, pub ed25519.PublicKey, hmacKey []byte, paths ...string) (Report, error) {
	var rep Report
	if err := checkKeys(pub, hmacKey); err != nil {
		return rep, err
	}
	c := newChainer(hmacKey)
	chains := map[string]*nodeChain{}
	chain := func(node string) *nodeChain {
		n := chains[node]
		if n == nil {
			n = newNodeChain(node, pub, c)
			chains[node] = n
		}
		return n
	}
	for _, p := range paths {
		if err := verifyOneFile(ctx, p, chain); err != nil {
			return rep, err
		}
	}
	names := make([]string, 0, len(chains))
	for name := range chains {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		n := chains[name]
		if verr := n.finish(); verr != nil {
			return rep, verr
		}
		rep.Nodes++
		rep.Events += n.events
		rep.Checkpoints += n.cpsOK
	}
	return rep, nil
}

func verifyOneFile(ctx context.Context, path string, chain func(string) *nodeChain) error {
	f, err := os.Open(path) // #nosec G304 -- the audit file the operator asked to verify, opened read-only
	if err != nil {
		return fmt.Errorf("audit: verify file: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	for line := 1; ; line++ {
		b, err := readLine(r)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("audit: verify file %s line %d: %w", path, line, err)
		}
		if line&4095 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		e, cp, err := ParseECS(b)
		if err != nil {
			return fmt.Errorf("audit: verify file %s line %d: %w", path, line, err)
		}
		if cp != nil {
			if verr := chain(cp.Node).addCheckpoint(*cp); verr != nil {
				return verr
			}
			continue
		}
		if verr := chain(e.Node).event(e); verr != nil {
			return verr
		}
	}
}

// readLine returns the next newline-terminated line without its newline,
// io.EOF at the end, and an error for a line over maxSinkLineBytes or a
// last line without a newline (a torn write).
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		b, err := r.ReadSlice('\n')
		line = append(line, b...)
		if len(line) > maxSinkLineBytes {
			return nil, errors.New("line too long")
		}
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			return nil, errors.New("last line is incomplete")
		default:
			return nil, err
		}
	}
}

// isEventID reports whether id == EventID(node, seq), without allocating.
func isEventID(id, node string, seq uint64) bool {
	rest, ok := strings.CutPrefix(id, node)
	if !ok || len(rest) == 0 || rest[0] != ':' {
		return false
	}
	var buf [20]byte
	return rest[1:] == string(strconv.AppendUint(buf[:0], seq, 10))
}
