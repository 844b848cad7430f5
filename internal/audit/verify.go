package audit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
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
	ctx    context.Context
	node   string
	keys   *verifyKeys
	next   uint64 // seq expected next
	prev   string // hash expected in the next PrevHash
	hmacV  uint32 // HMAC key version of the last event; versions never go down
	signV  uint32 // signing key version of the last checkpoint checked
	cps    []Checkpoint
	lastCP uint64 // seq of the last checkpoint added
	events int
	cpsOK  int
}

func newNodeChain(ctx context.Context, node string, keys *verifyKeys) *nodeChain {
	return &nodeChain{ctx: ctx, node: node, keys: keys, next: 1, prev: Genesis(node), hmacV: 1, signV: 1}
}

func (n *nodeChain) fail(seq uint64, id, format string, args ...any) *VerifyError {
	if id == "" {
		id = EventID(n.node, seq)
	}
	return &VerifyError{Node: n.node, Seq: seq, EventID: id, Reason: fmt.Sprintf(format, args...)}
}

// addCheckpoint queues c, which must come in ascending Seq order, to be
// checked when the walk reaches its event. It returns a *VerifyError for
// a finding, another error when a key cannot be read.
func (n *nodeChain) addCheckpoint(c Checkpoint) error {
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

// signature checks c's signature under the signing key version it names,
// which must not be older than the previous checkpoint's.
func (n *nodeChain) signature(c *Checkpoint) error {
	v := EffectiveVersion(c.KeyVersion)
	if v < n.signV {
		return n.fail(c.Seq, "", "checkpoint signing key version went back from %d to %d (key_version edited, or signed with an older, perhaps leaked, key)", n.signV, v)
	}
	pub, err := n.keys.public(n.ctx, v)
	if errors.Is(err, errNoKey) {
		return n.fail(c.Seq, "", "checkpoint names signing key version %d, which does not exist (key_version edited?)", v)
	}
	if err != nil {
		return fmt.Errorf("%w (checkpoint at %s)", err, EventID(n.node, c.Seq))
	}
	if !VerifyCheckpoint(pub, c) {
		return n.fail(c.Seq, "", "checkpoint signature is invalid")
	}
	n.signV = v
	return nil
}

func (n *nodeChain) checkCheckpoint(c *Checkpoint, hash string) error {
	if err := n.signature(c); err != nil {
		return err
	}
	if c.Hash != hash {
		return n.fail(c.Seq, "", "event hash differs from the signed checkpoint")
	}
	n.cpsOK++
	return nil
}

// event checks the next event of the walk. It returns a *VerifyError for a
// finding, another error when a key cannot be read.
func (n *nodeChain) event(e *Event) error {
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
	v := EffectiveVersion(e.KeyVersion)
	if v < n.hmacV {
		// Once a chain moved to a new key version, an event under an older
		// one was made with a key that may have leaked.
		return n.fail(e.Seq, e.ID, "HMAC key version went back from %d to %d (key_version edited, or chained with an older, perhaps leaked, key)", n.hmacV, v)
	}
	c, err := n.keys.chainer(n.ctx, v)
	if errors.Is(err, errNoKey) {
		return n.fail(e.Seq, e.ID, "event names HMAC key version %d, which does not exist (key_version edited?)", v)
	}
	if err != nil {
		return fmt.Errorf("%w (event %s)", err, e.ID)
	}
	ok, err := c.check(e)
	if err != nil || !ok {
		return n.fail(e.Seq, e.ID, "hash does not match the event (edited)")
	}
	if len(n.cps) > 0 && n.cps[0].Seq == e.Seq {
		if err := n.checkCheckpoint(&n.cps[0], e.Hash); err != nil {
			return err
		}
		n.cps = n.cps[1:]
	}
	n.hmacV = v
	n.next++
	n.prev = e.Hash
	n.events++
	return nil
}

// finish checks that no checkpoint is left beyond the last event: a signed
// checkpoint the events no longer reach means the log was cut off.
func (n *nodeChain) finish() error {
	if len(n.cps) == 0 {
		return nil
	}
	c := n.cps[len(n.cps)-1]
	if err := n.signature(&c); err != nil {
		return err
	}
	return n.fail(n.next, "", "log cut off: a signed checkpoint is at seq %d but the last event is seq %d", c.Seq, n.next-1)
}

// Verify checks every node's chain in store: seq contiguous from 1, each
// PrevHash linking to the previous Hash (Genesis for the first), each Hash
// recomputed under the HMAC key version the event names (key_version, 1
// when absent), each checkpoint signed by the signing key version it names
// and matching the event at its seq, key versions never going down along a
// chain, and no checkpoint beyond the last event. keys looks the versions
// up. It returns a *VerifyError naming the first bad event on any edit,
// deletion, insertion, reordering, unknown or relabelled key version, or
// cut back to before the last checkpoint, and another error if the store
// or a key cannot be read. A cut that also removes every checkpoint after
// it cannot be seen here (see the package documentation).
//
// It may run while a Writer appends: checkpoints are read before events, and
// both are appended in one transaction, so every checkpoint read has its
// event in the scan.
func Verify(ctx context.Context, store Store, keys KeyLookup) (Report, error) {
	if keys == nil {
		return Report{}, errors.New("audit: verify: no keys")
	}
	return verifyStore(ctx, store, newVerifyKeys(keys), nil)
}

// verifyStore is Verify. With found nil it returns the first finding;
// otherwise it appends each chain's first finding to *found and goes on
// with the next chain (a finding is then no error).
func verifyStore(ctx context.Context, store Store, vk *verifyKeys, found *[]*VerifyError) (Report, error) {
	var rep Report
	nodes, err := store.AuditNodes(ctx)
	if err != nil {
		return rep, fmt.Errorf("audit: verify: list nodes: %w", err)
	}
	for _, node := range nodes {
		n, err := verifyStoreNode(ctx, store, vk, node)
		var verr *VerifyError
		switch {
		case errors.As(err, &verr) && found != nil:
			*found = append(*found, verr)
			continue
		case err != nil:
			return rep, err
		}
		rep.Nodes++
		rep.Events += n.events
		rep.Checkpoints += n.cpsOK
	}
	return rep, nil
}

// verifyStoreNode checks one node's chain in store, returning its first
// finding (a *VerifyError) or an error reading the store or a key.
func verifyStoreNode(ctx context.Context, store Store, vk *verifyKeys, node string) (*nodeChain, error) {
	n := newNodeChain(ctx, node, vk)
	cps, err := store.Checkpoints(ctx, node)
	if err != nil {
		return nil, fmt.Errorf("audit: verify: checkpoints of %q: %w", node, err)
	}
	from, err := prunedAnchor(ctx, store, n, cps)
	if err != nil {
		return nil, err
	}
	for _, cp := range cps {
		if cp.Seq <= from {
			continue // over pruned events, checked in their archived segments
		}
		if err := n.addCheckpoint(cp); err != nil {
			return nil, err
		}
	}
	var read int
	failed, err := checkPipelined(func(fn func(Event) error) error {
		return store.ScanAudit(ctx, node, from, func(e Event) error {
			if read++; read&4095 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			return fn(e)
		})
	}, n.event)
	if failed != nil {
		return nil, failed
	}
	if cerr := (*CorruptEventError)(nil); errors.As(err, &cerr) {
		return nil, corruptFinding(n, cerr)
	}
	if err != nil {
		return nil, fmt.Errorf("audit: verify: scan %q: %w", node, err)
	}
	if err := n.finish(); err != nil {
		return nil, err
	}
	return n, nil
}

// errCheckFailed stops a scan whose events checkPipelined's check refused.
var errCheckFailed = errors.New("audit: verify: check failed")

// checkPipelined calls check on each event scan reads, in order, in
// another goroutine than scan's, a batch at a time: reading and decoding
// the store's rows and checking the chain (an HMAC per event) then take a
// core each. It returns check's first error (scan stops soon after it),
// and scan's own error, which only counts when check found nothing among
// the events read before it, as if both ran in one loop.
func checkPipelined(scan func(fn func(Event) error) error, check func(*Event) error) (checkErr, scanErr error) {
	const batch = 1024
	var (
		work   = make(chan []Event, 2)
		done   = make(chan error, 1)
		failed atomic.Bool
	)
	go func() {
		var err error
		for b := range work {
			for i := 0; err == nil && i < len(b); i++ {
				if err = check(&b[i]); err != nil {
					failed.Store(true)
				}
			}
		}
		done <- err
	}()
	cur := make([]Event, 0, batch)
	scanErr = scan(func(e Event) error {
		if failed.Load() {
			return errCheckFailed
		}
		if cur = append(cur, e); len(cur) == batch {
			work <- cur
			cur = make([]Event, 0, batch)
		}
		return nil
	})
	if len(cur) > 0 && !errors.Is(scanErr, errCheckFailed) {
		work <- cur
	}
	close(work)
	if checkErr = <-done; checkErr != nil || errors.Is(scanErr, errCheckFailed) {
		return checkErr, nil
	}
	return nil, scanErr
}

// prunedAnchor starts n after the events of its node that store pruned
// (once archived): at the signed checkpoint at the last pruned seq, which
// must exist, verify and sign the hash the store recorded. It returns the
// last pruned seq (0 when none was pruned).
func prunedAnchor(ctx context.Context, store Store, n *nodeChain, cps []Checkpoint) (uint64, error) {
	ps, ok := store.(PrunedStore)
	if !ok {
		return 0, nil
	}
	seq, hash, err := ps.AuditPrunedThrough(ctx, n.node)
	if err != nil {
		return 0, fmt.Errorf("audit: verify: pruned boundary of %q: %w", n.node, err)
	}
	if seq == 0 {
		return 0, nil
	}
	for i := range cps {
		if cps[i].Seq == seq {
			c := &Chain{n: n}
			if err := c.CheckAnchor(&cps[i], hash); err != nil {
				return 0, err
			}
			n.next, n.prev = seq+1, hash
			return seq, nil
		}
	}
	return 0, n.fail(seq, "", "events pruned through seq %d, but no signed checkpoint is there", seq)
}

// corruptFinding turns a stored row that does not decode, or whose columns
// disagree with its body, into a finding naming it.
func corruptFinding(n *nodeChain, cerr *CorruptEventError) *VerifyError {
	if cerr.Column != "" {
		return n.fail(cerr.Seq, "", "column %s disagrees with the event's hashed body (edited outside Coffer)", cerr.Column)
	}
	return n.fail(cerr.Seq, "", "stored event does not decode (edited)")
}

// VerifyFile checks the JSON lines written by a file or stream sink, read
// from paths in order as one stream (pass LogFiles(path) for a rotated
// file). Each node's events must start at seq 1 and be checked as Verify
// does, with keys; a checkpoint line must match the event it follows. A
// line that is not a sink line is an error naming the file and line.
func VerifyFile(ctx context.Context, keys KeyLookup, paths ...string) (Report, error) {
	if keys == nil {
		return Report{}, errors.New("audit: verify: no keys")
	}
	rep, found, _, err := verifyFileChains(ctx, newVerifyKeys(keys), func(line func(*Event, *Checkpoint) error) error {
		for _, p := range paths {
			if err := readSinkFile(ctx, p, line); err != nil {
				return err
			}
		}
		return nil
	})
	switch {
	case err != nil:
		return rep, err
	case len(found) > 0:
		return rep, found[0]
	}
	return rep, nil
}

// verifyFileChains checks the chains of the lines read calls its argument
// with (a file set's), each node on its own: the first finding of each node
// (in the order met) is returned, and that node's later lines are skipped.
// It also returns every node the lines hold, sorted. An error of read
// (an unreadable file or line) is returned.
func verifyFileChains(ctx context.Context, vk *verifyKeys, read func(line func(*Event, *Checkpoint) error) error) (Report, []*VerifyError, []string, error) {
	var (
		rep   Report
		found []*VerifyError
	)
	chains := map[string]*nodeChain{}
	broken := map[string]bool{}
	check := func(node string, err error) error {
		var verr *VerifyError
		if errors.As(err, &verr) {
			found = append(found, verr)
			broken[node] = true
			return nil
		}
		return err
	}
	line := func(e *Event, cp *Checkpoint) error {
		node := e.nodeOr(cp)
		if broken[node] {
			return nil
		}
		n := chains[node]
		if n == nil {
			n = newNodeChain(ctx, node, vk)
			chains[node] = n
		}
		if cp != nil {
			return check(node, n.addCheckpoint(*cp))
		}
		return check(node, n.event(e))
	}
	if err := read(line); err != nil {
		return rep, found, nil, err
	}
	names := make([]string, 0, len(chains))
	for name := range chains {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if broken[name] {
			continue
		}
		n := chains[name]
		if err := check(name, n.finish()); err != nil {
			return rep, found, nil, err
		}
		if broken[name] {
			continue
		}
		rep.Nodes++
		rep.Events += n.events
		rep.Checkpoints += n.cpsOK
	}
	return rep, found, names, nil
}

// nodeOr returns the node of e, or of cp when e is nil.
func (e *Event) nodeOr(cp *Checkpoint) string {
	if e == nil {
		return cp.Node
	}
	return e.Node
}

// readSinkFile calls fn with each line of a sink file, decoded: an event or
// a checkpoint. It stops at fn's first error, and at a line that does not
// read or decode, with an error naming the file and line.
func readSinkFile(ctx context.Context, path string, fn func(*Event, *Checkpoint) error) error {
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
		if err := fn(e, cp); err != nil {
			return err
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
