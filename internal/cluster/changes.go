package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// DefaultListenBound is how long a node may go without listening for
// changes before it reports itself not ready: its caches then lag by up
// to the polling intervals, more than a cluster promises.
const DefaultListenBound = 10 * time.Second

// Listen follows changes: it calls ready once listening, then changed
// with each changed table's name, until ctx ends or it fails.
type Listen func(ctx context.Context, ready func(), changed func(table string)) error

// FollowConfig configures Follow.
type FollowConfig struct {
	Listen Listen
	// Changed is told each changed table; it must return quickly.
	Changed func(table string)
	// Resync reloads every cache: after (re)connecting, changes made
	// while not listening are not replayed.
	Resync func(ctx context.Context)
	// Bound is how long without listening makes Healthy fail (default
	// DefaultListenBound); Retry the pause between attempts (default 1s).
	Bound, Retry time.Duration
	Now          func() time.Time
	Logger       *slog.Logger
}

// Follower keeps a node listening for changes, reconnecting after a
// failure; while it is not listening the caches' own polling is the
// fallback.
type Follower struct {
	c FollowConfig

	mu        sync.Mutex
	listening bool
	since     time.Time // when it last started or stopped listening
	lastErr   error
}

// NewFollower returns a Follower; call Run.
func NewFollower(c FollowConfig) *Follower {
	if c.Bound <= 0 {
		c.Bound = DefaultListenBound
	}
	if c.Retry <= 0 {
		c.Retry = time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return &Follower{c: c, since: c.Now()}
}

// Run listens until ctx ends, reconnecting after each failure.
func (f *Follower) Run(ctx context.Context) {
	for ctx.Err() == nil {
		err := f.c.Listen(ctx, func() {
			f.set(true, nil)
			f.c.Resync(ctx)
		}, f.c.Changed)
		if ctx.Err() != nil {
			return
		}
		f.set(false, err)
		f.c.Logger.Warn("change notifications lost; polling until they are back", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(f.c.Retry):
		}
	}
}

func (f *Follower) set(listening bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.listening != listening {
		f.since = f.c.Now()
	}
	f.listening, f.lastErr = listening, err
}

// Healthy fails once the node has not been listening for longer than the
// bound.
func (f *Follower) Healthy() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.listening || f.c.Now().Sub(f.since) <= f.c.Bound {
		return nil
	}
	if f.lastErr != nil {
		return fmt.Errorf("cluster: not listening for changes since %s: %w", f.since.Format(time.RFC3339), f.lastErr)
	}
	return errors.New("cluster: not listening for changes")
}
