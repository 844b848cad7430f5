package auditarchive

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
)

// VerifyOptions narrow a verification to a range.
type VerifyOptions struct {
	// Since, if set, starts each node's chain at its first archived
	// segment whose last event is at or after Since (anchored on that
	// segment's prev_hash) instead of at genesis.
	Since time.Time
	// Segments, if set, verifies only these segments (ids), each anchored
	// on its own prev_hash, and continuity between any two of them that
	// are adjacent; the database is not walked.
	Segments []string
}

// Report sums up a verification across the archive and the database.
type Report struct {
	Nodes       int
	Segments    int
	Events      int // archived and database events verified
	Checkpoints int
}

// Verify walks each node's chain through its archived segments, in seq
// order, and on into the database (store, when not nil) as one chain:
// every segment must belong to deployment and the node, start where the
// previous ended and link to its head, verify event by event and
// checkpoint by checkpoint (each signature checked), and the database must
// go on where the archive ends, its pruned events all archived. It returns
// the first break of the first broken node as a *audit.VerifyError naming
// the node, the seq and the segment; another error when the archive, the
// store or a key cannot be read.
func Verify(ctx context.Context, arch Archive, store audit.Store, keys audit.KeyLookup, deployment string, opt VerifyOptions) (Report, error) {
	var rep Report
	listed, err := arch.List(ctx)
	if err != nil {
		return rep, fmt.Errorf("auditarchive: list archive: %w", err)
	}
	byNode := map[string][]Info{}
	for _, in := range listed {
		if len(opt.Segments) > 0 && !slices.Contains(opt.Segments, in.ID) {
			continue
		}
		byNode[in.Node] = append(byNode[in.Node], in)
	}
	if len(opt.Segments) > 0 {
		for _, id := range opt.Segments {
			if _, err := arch.Stat(ctx, id); err != nil {
				node, first, _, perr := audit.ParseSegmentID(id)
				if perr != nil {
					return rep, perr
				}
				return rep, &audit.VerifyError{Node: node, Seq: first, EventID: audit.EventID(node, first),
					Reason: "segment " + id + " is not in the archive"}
			}
		}
		store = nil
	}
	nodes := make([]string, 0, len(byNode))
	for n := range byNode {
		nodes = append(nodes, n)
	}
	if store != nil {
		dbNodes, err := store.AuditNodes(ctx)
		if err != nil {
			return rep, err
		}
		for _, n := range dbNodes {
			if _, ok := byNode[n]; !ok {
				nodes = append(nodes, n)
			}
		}
	}
	sort.Strings(nodes)
	vk := audit.NewVerifyKeys(keys)
	for _, node := range nodes {
		if err := verifyNode(ctx, arch, store, vk, deployment, node, byNode[node], opt, &rep); err != nil {
			return rep, err
		}
		rep.Nodes++
	}
	return rep, nil
}

func verifyNode(ctx context.Context, arch Archive, store audit.Store, vk *audit.VerifyKeys, deployment, node string, segs []Info, opt VerifyOptions, rep *Report) error {
	var chain *audit.Chain
	if opt.Since.IsZero() && len(opt.Segments) == 0 {
		chain = audit.NewChain(ctx, vk, node)
	}
	for _, in := range segs {
		data, err := arch.Get(ctx, in.ID)
		if err != nil {
			return fmt.Errorf("auditarchive: verify: %w", err)
		}
		seg, err := audit.DecodeSegment(data)
		if err != nil {
			// Truncated, re-compressed wrongly, edited past its format.
			var serr *audit.SegmentError
			if errors.As(err, &serr) {
				return &audit.VerifyError{Node: node, Seq: in.FirstSeq, EventID: audit.EventID(node, in.FirstSeq),
					Reason: "segment " + in.ID + ": " + serr.Error()}
			}
			return err
		}
		h := &seg.Header
		if h.ID() != in.ID {
			return &audit.VerifyError{Node: node, Seq: in.FirstSeq, EventID: audit.EventID(node, in.FirstSeq),
				Reason: fmt.Sprintf("segment %s: its header says it is %s (renamed or moved)", in.ID, h.ID())}
		}
		if chain == nil || (len(opt.Segments) > 0 && chain.Next() != h.FirstSeq) {
			if !opt.Since.IsZero() && h.LastTime.Before(opt.Since) {
				continue
			}
			chain = audit.NewChainAt(ctx, vk, node, h.FirstSeq, h.PrevHash)
		}
		if err := chain.Segment(seg, deployment); err != nil {
			return err
		}
		rep.Segments++
	}
	if store == nil {
		if chain != nil {
			ev, cp := chain.Counts()
			rep.Events += ev
			rep.Checkpoints += cp
		}
		return nil
	}
	// The database goes on where the archive ends; what it pruned must all
	// be in the archive.
	cps, err := store.Checkpoints(ctx, node)
	if err != nil {
		return err
	}
	var pruned uint64
	var prunedHash string
	if ps, ok := store.(audit.PrunedStore); ok {
		if pruned, prunedHash, err = ps.AuditPrunedThrough(ctx, node); err != nil {
			return err
		}
	}
	switch {
	case chain == nil && pruned > 0:
		// --since later than every archived segment: start at the
		// database's pruned boundary, anchored on its signed checkpoint.
		chain = audit.NewChainAt(ctx, vk, node, pruned+1, prunedHash)
		i := slices.IndexFunc(cps, func(c audit.Checkpoint) bool { return c.Seq == pruned })
		if i < 0 {
			return chain.Fail(pruned, "events pruned through seq %d, but no signed checkpoint is there", pruned)
		}
		if err := chain.CheckAnchor(&cps[i], prunedHash); err != nil {
			return err
		}
	case chain == nil:
		chain = audit.NewChain(ctx, vk, node)
	case pruned >= chain.Next():
		next := chain.Next()
		return chain.Fail(next, "segment missing: the database pruned events through seq %d, the archive holds them only up to seq %d", pruned, next-1)
	}
	for _, cp := range cps {
		if cp.Seq < chain.Next() {
			continue
		}
		if err := chain.Checkpoint(cp); err != nil {
			return err
		}
	}
	var failed error
	err = store.ScanAudit(ctx, node, chain.Next()-1, func(e audit.Event) error {
		failed = chain.Event(&e)
		return failed
	})
	if failed != nil {
		return failed
	}
	var cerr *audit.CorruptEventError
	if errors.As(err, &cerr) {
		return chain.Fail(cerr.Seq, "stored event does not decode or a column disagrees with it (edited outside Coffer)")
	}
	if err != nil {
		return err
	}
	if err := chain.Finish(); err != nil {
		return err
	}
	ev, cp := chain.Counts()
	rep.Events += ev
	rep.Checkpoints += cp
	return nil
}
