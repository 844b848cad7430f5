package cluster

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

// Lease defaults: a live node renews its lease every DefaultHeartbeat; a
// node that stops renewing loses it DefaultLeaseTTL after its last
// heartbeat.
const (
	DefaultLeaseTTL  = 15 * time.Second
	DefaultHeartbeat = 5 * time.Second
)

// Store keeps the node leases. AcquireNodeLease must take the lease in one
// statement, only when it is free, run out or n.Instance's already.
type Store interface {
	AcquireNodeLease(ctx context.Context, n coffer.Node) (bool, error)
	RenewNodeLease(ctx context.Context, node, instance string, now, until time.Time) (bool, error)
	ReleaseNodeLease(ctx context.Context, node, instance string) error
	Node(ctx context.Context, id string) (coffer.Node, error)
}

// Config configures Join.
type Config struct {
	Store Store
	// Node is the node id to hold; Host, Version and Schema describe this
	// node in GET /v1/sys/nodes.
	Node, Host, Version string
	Schema              int64
	// TTL and Heartbeat default to DefaultLeaseTTL and DefaultHeartbeat;
	// Heartbeat must be shorter than TTL.
	TTL, Heartbeat time.Duration
	Now            func() time.Time
	Rand           io.Reader
	Logger         *slog.Logger
	// Hint ends the message of an ErrNodeInUse: how to give this node
	// another id.
	Hint string
}

// ErrNodeInUse: another live process holds the node id.
var ErrNodeInUse = errors.New("node id in use by another live node")

// InUseError is Join's refusal: the holder of the id, as its row says.
type InUseError struct {
	Holder coffer.Node
	Hint   string
}

func (e *InUseError) Error() string {
	return fmt.Sprintf("node id %q is in use by another live node (host %q, Coffer %s, started %s, last heartbeat %s): "+
		"two nodes must never share an id (they would write one audit chain). %s",
		e.Holder.ID, e.Holder.Host, e.Holder.Version, e.Holder.StartedAt.Format(time.RFC3339),
		e.Holder.HeartbeatAt.Format(time.RFC3339Nano), e.Hint)
}

func (e *InUseError) Unwrap() error { return ErrNodeInUse }

// Member is this process's hold on its node id.
type Member struct {
	c        Config
	instance string

	mu       sync.Mutex
	until    time.Time // the lease as last renewed
	lost     bool      // another instance took the id
	lastErr  error
	stopOnce sync.Once
	done     chan struct{}
	stopped  chan struct{}
}

// Join takes the lease on c.Node for this process. When another instance
// holds it, Join watches it for up to one lease time: if that instance
// renews it, it is alive and Join fails with an *InUseError; if its lease
// runs out (a node that died without releasing it), Join takes it. Call
// Run to keep the lease, Leave to give it up.
func Join(ctx context.Context, c Config) (*Member, error) {
	if c.TTL <= 0 {
		c.TTL = DefaultLeaseTTL
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.Heartbeat >= c.TTL {
		return nil, errors.New("cluster: the heartbeat must be shorter than the lease")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	var b [16]byte
	if _, err := io.ReadFull(c.Rand, b[:]); err != nil {
		return nil, fmt.Errorf("cluster: instance id: %w", err)
	}
	m := &Member{c: c, instance: hex.EncodeToString(b[:]), done: make(chan struct{}), stopped: make(chan struct{})}
	started := c.Now()
	var seen *coffer.Node
	deadline := started.Add(c.TTL + c.Heartbeat)
	for {
		now := c.Now()
		ok, err := c.Store.AcquireNodeLease(ctx, coffer.Node{ID: c.Node, Instance: m.instance, Host: c.Host,
			Version: c.Version, SchemaVersion: c.Schema, StartedAt: started, HeartbeatAt: now, LeaseUntil: now.Add(c.TTL)})
		if err != nil {
			return nil, fmt.Errorf("cluster: join: %w", err)
		}
		if ok {
			m.until = now.Add(c.TTL)
			return m, nil
		}
		holder, err := c.Store.Node(ctx, c.Node)
		if err != nil {
			return nil, fmt.Errorf("cluster: join: %w", err)
		}
		// Another process renewed its lease since we first looked: alive.
		if seen != nil && (holder.Instance != seen.Instance || !holder.HeartbeatAt.Equal(seen.HeartbeatAt)) {
			return nil, &InUseError{Holder: holder, Hint: c.Hint}
		}
		if seen == nil {
			c.Logger.Warn("node id held by another process: waiting to see whether it is alive",
				"node", c.Node, "holder_host", holder.Host, "last_heartbeat", holder.HeartbeatAt, "lease_until", holder.LeaseUntil)
			seen = &holder
		}
		if !now.Before(deadline) {
			return nil, &InUseError{Holder: holder, Hint: c.Hint}
		}
		wait := min(c.Heartbeat/2, holder.LeaseUntil.Sub(now)+time.Millisecond)
		wait = max(wait, time.Millisecond)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("cluster: join: %w", ctx.Err())
		case <-time.After(wait):
		}
	}
}

// Instance is the random id of this process's hold on the node id.
func (m *Member) Instance() string { return m.instance }

// Run renews the lease every heartbeat until ctx ends or Leave is called.
func (m *Member) Run(ctx context.Context) {
	defer close(m.stopped)
	t := time.NewTicker(m.c.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.done:
			return
		case <-t.C:
			m.beat(ctx)
		}
	}
}

func (m *Member) beat(ctx context.Context) {
	now := m.c.Now()
	until := now.Add(m.c.TTL)
	ok, err := m.c.Store.RenewNodeLease(ctx, m.c.Node, m.instance, now, until)
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case err != nil:
		if ctx.Err() == nil {
			m.c.Logger.Warn("node heartbeat failed", "node", m.c.Node, "error", err)
		}
		m.lastErr = err
	case !ok:
		if !m.lost {
			m.c.Logger.Error("node lease lost: another process holds this node id; this node reports itself not ready", "node", m.c.Node)
		}
		m.lost = true
	default:
		m.until, m.lastErr = until, nil
	}
}

// Healthy reports an error once the lease was lost to another process or
// ran out without a renewal (the database unreachable): then another node
// may hold this id, and this one must not serve as it.
func (m *Member) Healthy() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.lost:
		return errors.New("cluster: node lease lost to another process")
	case !m.c.Now().Before(m.until):
		if m.lastErr != nil {
			return fmt.Errorf("cluster: node lease ran out: %w", m.lastErr)
		}
		return errors.New("cluster: node lease ran out")
	}
	return nil
}

// Leave stops the heartbeat and releases the lease, so that the id may
// be used again at once (a restart).
func (m *Member) Leave(ctx context.Context) error {
	m.stopOnce.Do(func() { close(m.done) })
	if err := m.c.Store.ReleaseNodeLease(ctx, m.c.Node, m.instance); err != nil {
		return fmt.Errorf("cluster: leave: %w", err)
	}
	return nil
}
