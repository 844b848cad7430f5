package audit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// Copies are the copies of the log, kept where the store's attacker cannot
// rewrite them, that VerifyAll compares the store with.
type Copies struct {
	// Files are the paths of file sinks (audit.file): each is read as its
	// whole set, rotated files first (LogFiles), while the sink may still
	// append and rotate.
	Files []string
	// FileNode, if set, is the node that writes the file sets: each must
	// hold that node's whole chain as the store has it (besides every
	// other node it holds events of).
	FileNode string
	// Witnessed are the signed checkpoints a witness holds, read before
	// VerifyAll is called; for each node the one of the highest seq is
	// compared.
	Witnessed []Checkpoint
	// Witness names the witness in findings (its URL or path).
	Witness string
	// Grace is how long VerifyAll waits, once per node, for a file to
	// catch up with events the store already holds (a sink is written
	// just after the store): DefaultGrace when 0.
	Grace time.Duration
}

// DefaultGrace is Copies.Grace's default.
const DefaultGrace = 2 * time.Second

// Findings is every finding of VerifyAll, each naming a node and a seq:
// the first break of each chain (the store's, then each file's), then
// each difference between the store and a copy, in node and seq order.
type Findings []*VerifyError

// Error implements error: one line for the count, then one per finding.
func (f Findings) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "audit log not intact: %d finding(s)", len(f))
	for _, e := range f {
		fmt.Fprintf(&b, "\n  node %q seq %d (event %s): %s", e.Node, e.Seq, e.EventID, e.Reason)
	}
	return b.String()
}

// Unwrap returns each finding, so that errors.As finds the first.
func (f Findings) Unwrap() []error {
	out := make([]error, len(f))
	for i, e := range f {
		out[i] = e
	}
	return out
}

// VerifyAll verifies every chain in store as Verify does, and each copy's
// own chains as VerifyFile does, going on past a broken chain to the next;
// then it compares the store with each copy, both ways:
//
//   - each file set, for every node it holds (and c.FileNode): an event
//     or a checkpoint in one and not in the other, or a different hash at
//     the same seq, with consecutive seqs of one kind reported as a range;
//   - the witness's newest checkpoint of each node: it must verify, and
//     the store must hold it and the event it signs (a store cut back
//     below it, with its checkpoints, shows here).
//
// It returns the store's Report and, when anything was found, Findings;
// another error when a store, file or key cannot be read.
//
// It may run while nodes write: a file is read before the store rows it
// is compared with (so an event in the file is already in the store),
// and a store event the file does not hold yet gets c.Grace to appear.
// The witness's checkpoints must likewise be read before VerifyAll runs.
func VerifyAll(ctx context.Context, store Store, keys KeyLookup, c Copies) (Report, error) {
	if keys == nil {
		return Report{}, errors.New("audit: verify: no keys")
	}
	if c.Grace <= 0 {
		c.Grace = DefaultGrace
	}
	vk := newVerifyKeys(keys)
	var found []*VerifyError
	rep, err := verifyStore(ctx, store, vk, &found)
	if err != nil {
		return rep, err
	}
	for _, path := range c.Files {
		sr := &setReader{live: path}
		_, chainFound, nodes, err := verifyFileChains(ctx, vk, func(line func(*Event, *Checkpoint) error) error {
			defer sr.close()
			for {
				e, cp, err := sr.next()
				if err != nil || (e == nil && cp == nil) {
					return err
				}
				if err := line(e, cp); err != nil {
					return err
				}
			}
		})
		if err != nil {
			return rep, err
		}
		for _, f := range chainFound {
			f.Reason = "in the audit file " + path + ": " + f.Reason
		}
		found = append(found, chainFound...)
		if c.FileNode != "" && !contains(nodes, c.FileNode) {
			nodes = append(nodes, c.FileNode)
		}
		for _, node := range nodes {
			diffs, err := compareFile(ctx, store, path, node, c.Grace)
			if err != nil {
				return rep, err
			}
			found = append(found, diffs...)
		}
	}
	wf, err := compareWitness(ctx, store, vk, c.Witness, c.Witnessed)
	if err != nil {
		return rep, err
	}
	found = append(found, wf...)
	if len(found) > 0 {
		return rep, Findings(found)
	}
	return rep, nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// fileChunk is how many of a node's file events compareFile holds at once.
const fileChunk = 4096

// compareFile compares node's chain in the file set of the sink at path
// (rotated files included) with the
// store's, event by event and checkpoint by checkpoint. It reads a chunk
// of the file, then the store rows up to the chunk's last seq, so that
// whatever the file holds the store held when read; at the file's end it
// waits grace once for the file to take events the store holds beyond it.
func compareFile(ctx context.Context, store Store, path string, node string, grace time.Duration) ([]*VerifyError, error) {
	where := "the file " + path
	fc := &fileCursor{setReader: setReader{live: path}, node: node, cps: map[uint64]string{}}
	defer fc.close()
	d := &diffs{node: node, where: where}
	var (
		dbAfter   uint64 // the last store seq compared
		fileLast  uint64 // the last file seq read
		waited    bool
		storeHead uint64       // the store's head when the file first ended
		storeCPs  []Checkpoint // the store's checkpoints then
	)
	errStop := errors.New("stop")
	// Events the store pruned once archived are compared no more: the
	// archive's segments hold them (and coffer audit verify checks them).
	var pruned uint64
	if ps, ok := store.(PrunedStore); ok {
		seq, _, err := ps.AuditPrunedThrough(ctx, node)
		if err != nil {
			return nil, fmt.Errorf("audit: compare %s: %w", where, err)
		}
		pruned, dbAfter = seq, seq
	}
	for {
		chunk, err := fc.events(fileChunk)
		if err != nil {
			return nil, err
		}
		if len(chunk) > 0 {
			fileLast = chunk[len(chunk)-1].Seq
			for len(chunk) > 0 && chunk[0].Seq <= pruned {
				chunk = chunk[1:]
			}
			if len(chunk) == 0 {
				continue
			}
			err := store.ScanAudit(ctx, node, dbAfter, func(e Event) error {
				if e.Seq > fileLast {
					return errStop
				}
				for len(chunk) > 0 && chunk[0].Seq < e.Seq {
					d.add(onlyInFile, chunk[0].Seq)
					chunk = chunk[1:]
				}
				switch {
				case len(chunk) > 0 && chunk[0].Seq == e.Seq:
					if chunk[0].Hash != e.Hash {
						d.add(hashDiffers, e.Seq)
					} else {
						d.flush()
					}
					chunk = chunk[1:]
				default:
					// The file is past e.Seq: it will never hold it.
					d.add(onlyInStore, e.Seq)
				}
				dbAfter = e.Seq
				return nil
			})
			if err != nil && !errors.Is(err, errStop) && !isCorrupt(err) {
				return nil, fmt.Errorf("audit: compare %s: %w", where, err)
			}
			for _, fe := range chunk {
				d.add(onlyInFile, fe.Seq)
			}
			if isCorrupt(err) {
				break // the store's chain finding names the row; nothing past it can be compared
			}
			continue
		}
		// The file is at its end. What the store held before this moment
		// must be in the file too, once the write that follows each
		// commit is done: look at the store's head and checkpoints now,
		// give the file grace to catch up if it lacks any, and then
		// report what it still lacks (never what the store took later).
		if !waited {
			head, _, err := store.AuditHead(ctx, node)
			if err != nil {
				return nil, fmt.Errorf("audit: compare %s: %w", where, err)
			}
			if storeCPs, err = store.Checkpoints(ctx, node); err != nil {
				return nil, fmt.Errorf("audit: compare %s: checkpoints: %w", where, err)
			}
			storeHead, waited = head, true
			if storeHead > max(dbAfter, fileLast) || fc.lacks(storeCPs) {
				if err := sleep(ctx, grace); err != nil {
					return nil, err
				}
				continue
			}
		}
		err = store.ScanAudit(ctx, node, max(dbAfter, fileLast), func(e Event) error {
			if e.Seq > storeHead {
				return errStop
			}
			d.add(onlyInStore, e.Seq)
			return nil
		})
		if err != nil && !errors.Is(err, errStop) && !isCorrupt(err) {
			return nil, fmt.Errorf("audit: compare %s: %w", where, err)
		}
		d.flush()
		// Checkpoints the file holds are checked against the store as it
		// is now (the file was read first); those the store held before
		// the grace, against the file.
		now, err := store.Checkpoints(ctx, node)
		if err != nil {
			return nil, fmt.Errorf("audit: compare %s: checkpoints: %w", where, err)
		}
		d.checkpoints(fc.cps, storeCPs, now)
		return d.out, nil
	}
	d.flush()
	return d.out, nil
}

func isCorrupt(err error) bool {
	var cerr *CorruptEventError
	return errors.As(err, &cerr)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Kinds of difference between the store and a file.
const (
	onlyInFile  = "in the file but not in the database (the database's log was cut off, or events deleted)"
	onlyInStore = "in the database but not in the file (the file was cut, or its sink is behind)"
	hashDiffers = "hash differs between the file and the database (one of them was edited)"
)

// diffs gathers differences, merging consecutive seqs of one kind into a
// range.
type diffs struct {
	node, where string
	kind        string
	from, to    uint64
	out         []*VerifyError
}

func (d *diffs) add(kind string, seq uint64) {
	if kind == d.kind && seq == d.to+1 {
		d.to = seq
		return
	}
	d.flush()
	d.kind, d.from, d.to = kind, seq, seq
}

func (d *diffs) flush() {
	if d.kind == "" {
		return
	}
	what := fmt.Sprintf("event seq %d", d.from)
	if d.to > d.from {
		what = fmt.Sprintf("events seq %d to %d (%d)", d.from, d.to, d.to-d.from+1)
	}
	reason := strings.Replace(d.kind, "the file", d.where, 1)
	d.out = append(d.out, &VerifyError{Node: d.node, Seq: d.from, EventID: EventID(d.node, d.from),
		Reason: what + ": " + reason})
	d.kind = ""
}

// checkpoints compares the file's checkpoints (seq → hash) with the
// store's: before, read before the file's end was waited for (each must be
// in the file), and now, read after the file (each of the file's must be
// there).
func (d *diffs) checkpoints(file map[uint64]string, before, now []Checkpoint) {
	inStore := make(map[uint64]string, len(now))
	for _, c := range now {
		inStore[c.Seq] = c.Hash
	}
	expected := make(map[uint64]bool, len(before))
	seqs := make([]uint64, 0, len(file)+len(before))
	for _, c := range before {
		expected[c.Seq] = true
		seqs = append(seqs, c.Seq)
	}
	for s := range file {
		if !expected[s] {
			seqs = append(seqs, s)
		}
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	var (
		kind     string
		from, to uint64
		n        int
	)
	emit := func() {
		if kind == "" {
			return
		}
		what := fmt.Sprintf("checkpoint at seq %d", from)
		if n > 1 {
			what = fmt.Sprintf("%d checkpoints from seq %d to %d", n, from, to)
		}
		d.out = append(d.out, &VerifyError{Node: d.node, Seq: from, EventID: EventID(d.node, from),
			Reason: what + ": " + strings.Replace(kind, "the file", d.where, 1)})
		kind = ""
	}
	for _, s := range seqs {
		fh, inFile := file[s]
		sh, stored := inStore[s]
		k := ""
		switch {
		case inFile && !stored:
			k = onlyInFile
		case expected[s] && !inFile:
			k = onlyInStore
		case inFile && fh != sh:
			k = hashDiffers
		}
		if k == "" || k != kind {
			emit()
		}
		if k == "" {
			continue
		}
		if kind == "" {
			kind, from, n = k, s, 0
		}
		to = s
		n++
	}
	emit()
}

// setReader reads the lines of a file sink's set (PATH.1, PATH.2, …,
// PATH) in order while the sink may be appending and rotating: at the
// live file's end it reports the current end (and reads on later), a last
// line still being written is read once whole, and when the file open is
// rotated away it is read to its end and reading goes on with the file
// that follows it in the set as listed then.
type setReader struct {
	live     string      // the sink's path, PATH
	f        *os.File    // the file open, or nil
	st       os.FileInfo // its identity
	r        *bufio.Reader
	off      int64       // offset in f of the next line not read
	final    bool        // f was rotated away: its next end is its last
	lastDone os.FileInfo // the last file read to its end, nil before
}

func (sr *setReader) close() {
	if sr.f != nil {
		_ = sr.f.Close()
		sr.f = nil
	}
}

// open opens the file after lastDone in the set as listed now, and
// reports false when there is none yet.
func (sr *setReader) open() (bool, error) {
	var (
		files []string
		err   error
	)
	// A directory read while the sink renames may miss an entry: a gap
	// that is not there is listed again.
	for try := 0; try < 5; try++ {
		if files, err = LogFiles(sr.live); err == nil || !errors.Is(err, errGap) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		return false, err
	}
	next := 0
	if sr.lastDone != nil {
		next = -1
		for i, p := range files {
			if st, err := os.Stat(p); err == nil && os.SameFile(sr.lastDone, st) {
				next = i + 1
				break
			}
		}
		if next < 0 {
			return false, fmt.Errorf("audit: compare file: a file of the set %s was removed while read", sr.live)
		}
	}
	if next >= len(files) {
		return false, nil
	}
	f, err := os.Open(files[next]) // #nosec G304 -- the configured audit file set, opened read-only
	if errors.Is(err, os.ErrNotExist) && files[next] == sr.live {
		return false, nil // rotated between the listing and now: PATH comes back
	}
	if err != nil {
		return false, fmt.Errorf("audit: compare file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return false, fmt.Errorf("audit: compare file: %w", err)
	}
	sr.f, sr.st, sr.r, sr.off, sr.final = f, st, bufio.NewReaderSize(f, 64<<10), 0, false
	return true, nil
}

// next returns the next line of the set decoded, or nil, nil at its
// current end.
func (sr *setReader) next() (*Event, *Checkpoint, error) {
	for {
		if sr.f == nil {
			ok, err := sr.open()
			if err != nil || !ok {
				return nil, nil, err
			}
		}
		var b []byte
		var err error
		for {
			var part []byte
			part, err = sr.r.ReadSlice('\n')
			b = append(b, part...)
			if !errors.Is(err, bufio.ErrBufferFull) {
				break
			}
			if len(b) > maxSinkLineBytes {
				return nil, nil, fmt.Errorf("audit: compare file %s: line too long", sr.f.Name())
			}
		}
		switch {
		case err == nil:
			sr.off += int64(len(b))
			e, cp, perr := ParseECS(b[:len(b)-1])
			if perr != nil {
				return nil, nil, fmt.Errorf("audit: compare file %s: %w", sr.f.Name(), perr)
			}
			return e, cp, nil
		case !errors.Is(err, io.EOF):
			return nil, nil, fmt.Errorf("audit: compare file %s: %w", sr.f.Name(), err)
		}
		// The end of the open file; a partial line is read again later.
		if _, serr := sr.f.Seek(sr.off, io.SeekStart); serr != nil {
			return nil, nil, fmt.Errorf("audit: compare file: %w", serr)
		}
		sr.r.Reset(sr.f)
		if sr.final {
			sr.lastDone = sr.st
			sr.close()
			continue
		}
		if cur, err := os.Stat(sr.live); err == nil && os.SameFile(cur, sr.st) {
			return nil, nil, nil // the live file: its current end
		} else if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("audit: compare file: %w", err)
		}
		// A rotated file (or one rotated away meanwhile): read once more
		// for what was appended before the rotation, then go on.
		sr.final = true
	}
}

// fileCursor reads one node's events from a file set in order, recording
// its checkpoints.
type fileCursor struct {
	setReader
	node string
	cps  map[uint64]string // the node's checkpoints read: seq → hash
}

// events returns up to n of the node's next events, fewer (or none) at the
// current end of the set.
func (fc *fileCursor) events(n int) ([]*Event, error) {
	var out []*Event
	for len(out) < n {
		e, cp, err := fc.next()
		if err != nil {
			return nil, err
		}
		switch {
		case e == nil && cp == nil:
			return out, nil
		case cp != nil:
			if cp.Node == fc.node {
				fc.cps[cp.Seq] = cp.Hash
			}
		case e.Node == fc.node:
			out = append(out, e)
		}
	}
	return out, nil
}

// lacks reports whether the store holds a checkpoint the file has not
// shown (yet).
func (fc *fileCursor) lacks(stored []Checkpoint) bool {
	for _, c := range stored {
		if _, ok := fc.cps[c.Seq]; !ok {
			return true
		}
	}
	return false
}

// compareWitness checks, for each node, the witness's newest checkpoint:
// it must verify under the signing key version it names, and the store
// must hold it and its event with the same hash.
func compareWitness(ctx context.Context, store Store, vk *verifyKeys, witness string, witnessed []Checkpoint) ([]*VerifyError, error) {
	newest := map[string]Checkpoint{}
	for _, c := range witnessed {
		if old, ok := newest[c.Node]; !ok || c.Seq > old.Seq {
			newest[c.Node] = c
		}
	}
	nodes := make([]string, 0, len(newest))
	for n := range newest {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	if witness == "" {
		witness = "the witness"
	}
	var out []*VerifyError
	for _, node := range nodes {
		c := newest[node]
		n := newNodeChain(ctx, node, vk)
		fail := func(format string, args ...any) {
			out = append(out, n.fail(c.Seq, "", "%s: %s", witness, fmt.Sprintf(format, args...)))
		}
		if c.Seq == 0 {
			fail("holds a checkpoint at seq 0")
			continue
		}
		if err := n.signature(&c); err != nil {
			var verr *VerifyError
			if !errors.As(err, &verr) {
				return nil, err
			}
			fail("its newest checkpoint does not verify (%s): forged, or from another deployment", verr.Reason)
			continue
		}
		head, _, err := store.AuditHead(ctx, node)
		if err != nil {
			return nil, fmt.Errorf("audit: compare witness: %w", err)
		}
		if head < c.Seq {
			fail("log cut off: the witness holds a signed checkpoint at seq %d, but the database's last event is seq %d (events and checkpoints after it deleted)", c.Seq, head)
			continue
		}
		e, err := storeEventAt(ctx, store, node, c.Seq)
		if err != nil {
			return nil, err
		}
		if e == nil {
			fail("the database lacks the event at seq %d that the witnessed checkpoint signs", c.Seq)
		} else if e.Hash != c.Hash {
			fail("the event at seq %d in the database differs from the witnessed checkpoint (hash)", c.Seq)
		}
		cps, err := store.Checkpoints(ctx, node)
		if err != nil {
			return nil, fmt.Errorf("audit: compare witness: %w", err)
		}
		i := sort.Search(len(cps), func(i int) bool { return cps[i].Seq >= c.Seq })
		if i == len(cps) || cps[i].Seq != c.Seq || cps[i].Hash != c.Hash {
			fail("the witnessed checkpoint at seq %d is not in the database (deleted or replaced)", c.Seq)
		}
	}
	return out, nil
}

// storeEventAt returns node's event seq from the store, or nil. A corrupt
// row there is reported by the store's chain check; here it is absent.
func storeEventAt(ctx context.Context, store Store, node string, seq uint64) (*Event, error) {
	errStop := errors.New("stop")
	var out *Event
	err := store.ScanAudit(ctx, node, seq-1, func(e Event) error {
		if e.Seq == seq {
			out = &e
		}
		return errStop
	})
	if err != nil && !errors.Is(err, errStop) && !isCorrupt(err) {
		return nil, fmt.Errorf("audit: compare witness: %w", err)
	}
	return out, nil
}
