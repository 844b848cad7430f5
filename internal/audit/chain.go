package audit

import (
	"context"
	"errors"
)

// VerifyKeys caches, for one verification, the key versions a KeyLookup
// gives, so that chains checked one after another (an archive's segments,
// then the database) ask for each version once.
type VerifyKeys struct{ vk *verifyKeys }

// NewVerifyKeys returns the cache over keys.
func NewVerifyKeys(keys KeyLookup) *VerifyKeys { return &VerifyKeys{vk: newVerifyKeys(keys)} }

// Chain checks one node's chain, event by event and checkpoint by
// checkpoint, as Verify does; it lets a caller feed it from several places
// in turn (sealed segments of an archive, then the database) as one chain.
// It is not safe for concurrent use.
type Chain struct{ n *nodeChain }

// NewChain returns the check of node's chain from its first event (seq 1,
// PrevHash Genesis(node)).
func NewChain(ctx context.Context, keys *VerifyKeys, node string) *Chain {
	return &Chain{n: newNodeChain(ctx, node, keys.vk)}
}

// NewChainAt returns the check of node's chain from event next on, whose
// PrevHash must be prev: a range of the chain, anchored where the caller
// has established prev (a verified segment's head, or a signed
// checkpoint).
func NewChainAt(ctx context.Context, keys *VerifyKeys, node string, next uint64, prev string) *Chain {
	n := newNodeChain(ctx, node, keys.vk)
	n.next, n.prev = next, prev
	return &Chain{n: n}
}

// Checkpoint queues cp, in ascending Seq order, to be checked when the
// chain reaches its event (or checks it now when it signs the last event
// read). It returns a *VerifyError for a finding.
func (c *Chain) Checkpoint(cp Checkpoint) error { return c.n.addCheckpoint(cp) }

// Event checks the next event. It returns a *VerifyError for a finding,
// another error when a key cannot be read.
func (c *Chain) Event(e *Event) error { return c.n.event(e) }

// Finish checks that no queued checkpoint is beyond the last event.
func (c *Chain) Finish() error { return c.n.finish() }

// Next is the seq the chain expects next.
func (c *Chain) Next() uint64 { return c.n.next }

// Head is the hash the next event's PrevHash must be.
func (c *Chain) Head() string { return c.n.prev }

// Counts returns the events and checkpoints checked so far.
func (c *Chain) Counts() (events, checkpoints int) { return c.n.events, c.n.cpsOK }

// Fail returns a finding of this chain at seq.
func (c *Chain) Fail(seq uint64, format string, args ...any) *VerifyError {
	return c.n.fail(seq, "", format, args...)
}

// CheckAnchor checks that cp is a validly signed checkpoint of this
// chain's node, signing hash: a range starting after cp.Seq is anchored
// on it. It returns a *VerifyError for a finding.
func (c *Chain) CheckAnchor(cp *Checkpoint, hash string) error {
	if cp.Node != c.n.node {
		return c.n.fail(cp.Seq, "", "checkpoint names node %q", cp.Node)
	}
	if err := c.n.signature(cp); err != nil {
		return err
	}
	if cp.Hash != hash {
		return c.n.fail(cp.Seq, "", "the signed checkpoint at the boundary does not sign the recorded head hash")
	}
	return nil
}

// Segment checks a decoded sealed segment as the next part of the chain:
// it must belong to deployment (when not empty) and to the chain's node,
// start where the chain stands (its FirstSeq is the seq expected next, its
// PrevHash the chain's head: nothing missing, nothing repeated at the
// boundary), and every event and checkpoint in it must verify, the closing
// checkpoint signing its HeadHash. It returns a *VerifyError naming the
// segment for a finding.
func (c *Chain) Segment(s *Segment, deployment string) error {
	h := &s.Header
	id := h.ID()
	switch {
	case deployment != "" && h.Deployment != deployment:
		return c.n.fail(h.FirstSeq, "", "segment %s belongs to another deployment (%q)", id, h.Deployment)
	case h.Node != c.n.node:
		return c.n.fail(h.FirstSeq, "", "segment %s belongs to node %q", id, h.Node)
	case h.FirstSeq > c.n.next:
		return c.n.fail(c.n.next, "", "segment missing: expected seq %d, segment %s starts at %d", c.n.next, id, h.FirstSeq)
	case h.FirstSeq < c.n.next:
		return c.n.fail(h.FirstSeq, "", "segment %s overlaps the chain already verified (up to seq %d)", id, c.n.next-1)
	case h.PrevHash != c.n.prev:
		return c.n.fail(h.FirstSeq, "", "segment %s does not link to the previous segment's head", id)
	}
	for _, cp := range s.Checkpoints {
		if err := c.n.addCheckpoint(cp); err != nil {
			return withSegment(err, id)
		}
	}
	for i := range s.Events {
		if err := c.n.event(&s.Events[i]); err != nil {
			return withSegment(err, id)
		}
	}
	if len(c.n.cps) > 0 {
		return withSegment(c.n.finish(), id)
	}
	if c.n.prev != h.HeadHash {
		return c.n.fail(h.LastSeq, "", "segment %s: head_hash is not the hash of its last event", id)
	}
	return nil
}

// withSegment names segment id in a finding.
func withSegment(err error, id string) error {
	var verr *VerifyError
	if errors.As(err, &verr) {
		v := *verr
		v.Reason = "segment " + id + ": " + v.Reason
		return &v
	}
	return err
}
