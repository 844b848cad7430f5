package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/cofferhq/coffer/internal/coffer"
)

// Writer defaults.
const (
	DefaultCheckpointEvery    = 1000
	DefaultCheckpointInterval = 10 * time.Second
	DefaultMaxBatch           = 256
	DefaultAppendTimeout      = 10 * time.Second
	DefaultGatherGap          = 50 * time.Microsecond
	DefaultMaxGather          = time.Millisecond
	DefaultRetryInterval      = time.Second
	// MaxStringBytes is the most bytes kept of any one string of an event;
	// longer strings are cut (at a rune boundary).
	MaxStringBytes = 1024
	minHMACKeyLen  = 16
	maxNodeLen     = 128
	sinkScanChunk  = 1000
)

// ErrClosed is returned by Log after Close.
var ErrClosed = errors.New("audit: writer closed")

// ErrNotDurable is wrapped by Log's error when the store append of the
// event's batch failed (or the keys to chain it could not be had): the
// failure BatchStats.Err reports for the batch, and that the outage
// event records (see ActionOutage).
var ErrNotDurable = errors.New("audit: event not made durable")

// ActionOutage is the action of the event the Writer appends first once
// appends work again after failing: its Reason says since when they failed,
// its Count how many events (of requests that were refused) could not be
// written, up to. It makes an outage, and the events it cost, part of the
// chain itself.
const ActionOutage = "audit.outage"

// WriterConfig configures a Writer.
type WriterConfig struct {
	// Node names this process's chain. It must be unique among the
	// processes writing to one store: two writers on one node would fight
	// over its sequence numbers.
	Node string
	// Keys gives the HMAC key that chains events and the key that signs
	// checkpoints, each with its version. The Writer asks it once per
	// batch, so a rotation takes effect without a restart (see
	// KeySource); a fixed Keys value never rotates.
	Keys KeySource
	// Now returns the current time; time.Now when nil.
	Now func() time.Time
	// CheckpointEvery signs a checkpoint at every multiple of this many
	// events: DefaultCheckpointEvery when 0, never by count when negative.
	CheckpointEvery int
	// CheckpointInterval signs a checkpoint when this long has passed since
	// the last one and events were written since: DefaultCheckpointInterval
	// when 0, never by time when negative.
	CheckpointInterval time.Duration
	// MaxBatch is the most events one store append may carry:
	// DefaultMaxBatch when 0. 1 turns group commit off (one append per
	// event).
	MaxBatch int
	// GatherGap makes the writer, under load, once it has a batch, wait
	// for the next event as long as events keep coming at most this far
	// apart (up to MaxGather in all), so that one commit and fsync serve
	// more of them: that saves the CPU of many small commits for a little
	// latency. Load means the batch, or the one before it, holds more than
	// one event; a lone event after a lone event never waits (an idle
	// process's timers fire no sooner than about a millisecond).
	// DefaultGatherGap when 0; never waits when negative.
	GatherGap time.Duration
	// MaxGather bounds that wait: DefaultMaxGather when 0.
	MaxGather time.Duration
	// FlushInterval, when above 0, trades durability for throughput (an
	// operator's opt-in, audit.durability interval): Log returns once the
	// writer has taken the event, before it is durable, and the writer
	// appends what it took at most this long after the first event of a
	// batch. What it risks: events already acknowledged (their requests
	// answered) are lost if the process or host crashes within the
	// interval, or if their append fails; an append that fails makes every
	// Log fail until appends work again, and the outage event counts the
	// acknowledged events that were lost. 0, the default, is durable: Log
	// returns only once the event's batch is in the store.
	FlushInterval time.Duration
	// AppendTimeout bounds one store append and one sink write:
	// DefaultAppendTimeout when 0.
	AppendTimeout time.Duration
	// RetryInterval is how often an unhealthy writer tries on its own to
	// become healthy again, without waiting for an event to write: it
	// appends the outage event, or brings required sinks up to the head.
	// DefaultRetryInterval when 0.
	RetryInterval time.Duration
	// CallerRetries says the caller logs again an event whose Log failed
	// (offline commands racing for one chain do): its failure costs no
	// event, so the writer appends no outage event for it and does not
	// retry on its own.
	CallerRetries bool
	// Sinks receive every batch after the store made it durable, best
	// effort: a failure is logged, counted and retried with the next batch,
	// but fails no request.
	Sinks []Sink
	// RequiredSinks receive every batch before Log returns; a failure fails
	// every Log call of the batch (the events stay in the store) and makes
	// the writer unhealthy until the sink catches up.
	RequiredSinks []Sink
	// Logger receives the writer's own failures (never event contents);
	// slog.Default() when nil.
	Logger *slog.Logger
	// Observe, if set, is called after every store append (from the
	// writer's goroutine; it must not block), so metrics can count
	// throughput, failures and latency without a global.
	Observe func(BatchStats)
}

// BatchStats describes one store append.
type BatchStats struct {
	Events      int           // events in the batch
	Checkpoints int           // checkpoints in the batch
	Duration    time.Duration // time spent in AppendAudit
	Err         error         // nil when the batch is durable
}

// Writer chains events and appends them to the store with group commit:
// one goroutine takes every event waiting (up to MaxBatch), appends them in
// one AppendAudit call, and only then lets their Log calls return. If the
// append fails, every Log call of the batch fails and the chain continues
// from the last durable head. A Writer is safe for concurrent use.
type Writer struct {
	store    Store
	cfg      WriterConfig
	node     string
	log      *slog.Logger
	now      func() time.Time
	every    int
	interval time.Duration
	maxBatch int
	timeout  time.Duration
	gap      time.Duration
	gather   time.Duration
	retry    time.Duration
	flush    time.Duration // FlushInterval; 0: durable before Log returns

	reqs   chan *request
	done   chan struct{} // closed when run exits
	closeC chan struct{} // closed by Close to end run
	mu     sync.RWMutex  // guards closed against sends on reqs
	closed bool

	health atomic.Pointer[error]

	// Owned by run (NewWriter sets them before it starts).
	lastBatch int // events in the last batch run took
	headSeq   uint64
	headHash  string
	cpSeq     uint64
	cpTime    time.Time
	keys      Keys     // the keys of the last batch made durable
	chain     *chainer // keyed with keys.HMACKey
	hmacMin   uint32   // the HMAC key version of the head event, as loaded from the store
	signMin   uint32   // the signing key version of the last checkpoint, as loaded from the store
	reload    bool
	sinks     []*sinkState
	closeErr  error
	// outageSince is when appends began to fail (zero while they work),
	// lost how many events failed since.
	outageSince time.Time
	lost        int
}

type sinkState struct {
	s        Sink
	required bool
	acked    uint64 // last Seq the sink has
	healthy  bool
}

type request struct {
	e    Event
	done chan error
}

// NewWriter checks cfg, loads the node's chain head and last checkpoint
// from store, gets the current keys from cfg.Keys (failing if it cannot)
// and starts the writer goroutine, which lives until Close.
func NewWriter(ctx context.Context, store Store, cfg WriterConfig) (*Writer, error) {
	switch {
	case store == nil:
		return nil, errors.New("audit: nil store")
	case cfg.Node == "" || len(cfg.Node) > maxNodeLen || !utf8.ValidString(cfg.Node):
		return nil, fmt.Errorf("audit: node name must be 1 to %d bytes of UTF-8", maxNodeLen)
	case cfg.Keys == nil:
		return nil, errors.New("audit: no key source")
	case cfg.MaxBatch < 0:
		return nil, errors.New("audit: MaxBatch must not be negative")
	case cfg.FlushInterval < 0:
		return nil, errors.New("audit: FlushInterval must not be negative")
	}
	w := &Writer{
		store:    store,
		cfg:      cfg,
		node:     cfg.Node,
		log:      cfg.Logger,
		now:      cfg.Now,
		every:    cfg.CheckpointEvery,
		interval: cfg.CheckpointInterval,
		maxBatch: cfg.MaxBatch,
		timeout:  cfg.AppendTimeout,
		flush:    cfg.FlushInterval,
		done:     make(chan struct{}),
		closeC:   make(chan struct{}),
	}
	if w.log == nil {
		w.log = slog.Default()
	}
	if w.now == nil {
		w.now = time.Now
	}
	if w.every == 0 {
		w.every = DefaultCheckpointEvery
	}
	if w.interval == 0 {
		w.interval = DefaultCheckpointInterval
	}
	if w.maxBatch == 0 {
		w.maxBatch = DefaultMaxBatch
	}
	if w.timeout <= 0 {
		w.timeout = DefaultAppendTimeout
	}
	if w.gap = cfg.GatherGap; w.gap == 0 {
		w.gap = DefaultGatherGap
	}
	if w.gather = cfg.MaxGather; w.gather <= 0 {
		w.gather = DefaultMaxGather
	}
	if w.retry = cfg.RetryInterval; w.retry <= 0 {
		w.retry = DefaultRetryInterval
	}
	w.reqs = make(chan *request, w.maxBatch)
	if err := w.loadHead(ctx); err != nil {
		return nil, err
	}
	keys, err := w.currentKeys(ctx)
	if err != nil {
		return nil, err
	}
	w.keys, w.chain = keys, newChainer(keys.HMACKey)
	for _, s := range cfg.RequiredSinks {
		w.sinks = append(w.sinks, &sinkState{s: s, required: true, acked: w.headSeq, healthy: true})
	}
	for _, s := range cfg.Sinks {
		w.sinks = append(w.sinks, &sinkState{s: s, acked: w.headSeq, healthy: true})
	}
	for _, s := range w.sinks {
		if err := w.position(s); err != nil {
			return nil, err
		}
	}
	go w.run()
	return w, nil
}

// position sets where a Positioner sink stands, so that the first batch
// brings it up to the head from the store. A best-effort sink that cannot
// tell is fed from the head on; a required one fails the start.
func (w *Writer) position(s *sinkState) error {
	p, ok := s.s.(Positioner)
	if !ok {
		return nil
	}
	seq, err := p.Position(w.node)
	switch {
	case err != nil && s.required:
		return fmt.Errorf("audit: required sink position: %w", err)
	case err != nil:
		w.log.Error("audit sink position unknown; feeding it from the head", "node", w.node, "error", err)
	case seq > w.headSeq:
		// The sink holds events the store lost (a restored backup?): keep
		// writing, and let VerifyFile show the fork.
		w.log.Error("audit sink is ahead of the store: the store lost events", "node", w.node,
			"sink_seq", seq, "store_seq", w.headSeq)
	default:
		s.acked = seq
	}
	return nil
}

// loadHead reads the durable head and last checkpoint of the node, and the
// key versions they were made with (no later batch may use an older one).
func (w *Writer) loadHead(ctx context.Context) error {
	seq, hash, err := w.store.AuditHead(ctx, w.node)
	if err != nil {
		return fmt.Errorf("audit: load chain head: %w", err)
	}
	hmacMin := uint32(1)
	if seq == 0 {
		hash = Genesis(w.node)
	} else if hmacMin, err = w.headVersion(ctx, seq); err != nil {
		return err
	}
	cps, err := w.store.Checkpoints(ctx, w.node)
	if err != nil {
		return fmt.Errorf("audit: load checkpoints: %w", err)
	}
	w.headSeq, w.headHash, w.hmacMin = seq, hash, hmacMin
	w.cpSeq, w.cpTime, w.signMin = 0, w.now(), 1
	if n := len(cps); n > 0 {
		w.cpSeq, w.cpTime = cps[n-1].Seq, cps[n-1].Time
		w.signMin = EffectiveVersion(cps[n-1].KeyVersion)
	}
	return nil
}

// headVersion returns the HMAC key version of the node's event seq.
func (w *Writer) headVersion(ctx context.Context, seq uint64) (uint32, error) {
	errStop := errors.New("stop")
	var v uint32
	found := false
	err := w.store.ScanAudit(ctx, w.node, seq-1, func(e Event) error {
		v, found = EffectiveVersion(e.KeyVersion), e.Seq == seq
		return errStop
	})
	if err != nil && !errors.Is(err, errStop) {
		return 0, fmt.Errorf("audit: load chain head: %w", err)
	}
	if !found {
		return 0, fmt.Errorf("audit: load chain head: event %s not found", EventID(w.node, seq))
	}
	return v, nil
}

// currentKeys asks the key source for the keys to use now and checks them:
// well formed, and no older than the versions the log already holds or
// the writer already uses (it would sign or chain under the newer one
// next, and the versions would go back).
func (w *Writer) currentKeys(ctx context.Context) (Keys, error) {
	k, err := w.cfg.Keys.CurrentKeys(ctx)
	if err != nil {
		return Keys{}, fmt.Errorf("audit: keys: %w", err)
	}
	if err := k.check(); err != nil {
		return Keys{}, err
	}
	if floor := max(w.hmacMin, w.keys.HMACVersion); k.HMACVersion < floor {
		return Keys{}, fmt.Errorf("audit: HMAC key version %d is older than version %d, already in the chain or in use",
			k.HMACVersion, floor)
	}
	if floor := max(w.signMin, w.keys.SigningVersion); k.SigningVersion < floor {
		return Keys{}, fmt.Errorf("audit: signing key version %d is older than version %d, already in a checkpoint or in use",
			k.SigningVersion, floor)
	}
	return k, nil
}

// Log chains e and blocks until the batch holding it is durably in the
// store (and every required sink); with a FlushInterval it returns once
// the writer has taken e, unless the writer is unhealthy (then it fails). It sets e's ID, Seq, Node, Time,
// PrevHash and Hash itself, cuts strings to MaxStringBytes and replaces
// invalid UTF-8. When it returns an error the request must fail: the error
// is a *coffer.Error with code EUNAVAILABLE (store or sink down, writer
// closed) or EINTERNAL (a malformed event). If ctx ends while waiting, Log
// returns the context's error, and the event may still be written.
func (w *Writer) Log(ctx context.Context, e Event) error {
	if e.Decision != "" && e.Decision != DecisionAllow && e.Decision != DecisionDeny {
		return &coffer.Error{Code: coffer.EINTERNAL, Message: "audit event has an unknown decision"}
	}
	sanitize(&e)
	e.Time = w.now().UTC().Truncate(time.Microsecond)
	r := &request{e: e, done: make(chan error, 1)}
	if w.flush > 0 {
		// Not durable before the answer: fail closed at least while the
		// last append failed, so that an outage costs only the events of
		// one interval, never every request's.
		if p := w.health.Load(); p != nil {
			return unavailable(*p)
		}
	}
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return unavailable(ErrClosed)
	}
	select {
	case w.reqs <- r:
		w.mu.RUnlock()
	case <-ctx.Done():
		w.mu.RUnlock()
		return ctx.Err()
	}
	if w.flush > 0 {
		return nil // acknowledged; appended within the interval (see FlushInterval)
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func unavailable(err error) error {
	return &coffer.Error{Code: coffer.EUNAVAILABLE, Message: "audit log unavailable", Cause: err}
}

// Healthy returns nil when the last store append and every required sink
// succeeded and the writer is open, for readiness checks. An unhealthy
// writer retries on its own every RetryInterval.
func (w *Writer) Healthy() error {
	select {
	case <-w.closeC:
		return ErrClosed
	default:
	}
	if p := w.health.Load(); p != nil {
		return *p
	}
	return nil
}

func (w *Writer) setHealth(err error) {
	if err == nil {
		w.health.Store(nil)
		return
	}
	w.health.Store(&err)
}

// Close stops taking events, writes every event already taken, signs a
// final checkpoint over them and closes the sinks. It returns when all of
// that is done or ctx ends.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.closeC)
	}
	w.mu.Unlock()
	select {
	case <-w.done:
		return w.closeErr
	case <-ctx.Done():
		return fmt.Errorf("audit: close: %w", ctx.Err())
	}
}

// run is the writer goroutine.
func (w *Writer) run() {
	defer close(w.done)
	var tick <-chan time.Time
	if w.interval > 0 {
		t := time.NewTicker(w.interval)
		defer t.Stop()
		tick = t.C
	}
	retry := time.NewTicker(w.retry)
	defer retry.Stop()
	batch := make([]*request, 0, w.maxBatch)
	for {
		select {
		case r := <-w.reqs:
			if w.flush > 0 {
				batch = w.gatherFor(w.drain(append(batch[:0], r)), w.flush)
			} else {
				batch = w.gatherMore(w.drain(append(batch[:0], r)))
			}
			w.lastBatch = len(batch)
			// commit answers each request with its error and records it in
			// Healthy; there is no one else to tell.
			_ = w.commit(batch, false)
		case <-tick:
			if w.headSeq > w.cpSeq && w.now().Sub(w.cpTime) >= w.interval {
				// A failed checkpoint is logged and recorded in Healthy; the
				// next tick or batch tries again.
				_ = w.commit(nil, true)
			}
		case <-retry.C:
			w.recover()
		case <-w.closeC:
			// Log holds the read lock while it sends, so once closed is
			// set no send is in flight: whatever is queued is all there is.
			for {
				batch = w.drain(batch[:0])
				if len(batch) == 0 {
					break
				}
				_ = w.commit(batch, false) // answered to each request, as above
			}
			var err error
			if w.headSeq > w.cpSeq {
				err = w.commit(nil, true)
			}
			for _, s := range w.sinks {
				if cerr := s.s.Close(); cerr != nil && err == nil {
					err = fmt.Errorf("audit: close sink: %w", cerr)
				}
			}
			w.closeErr = err
			return
		}
	}
}

// recover tries to make an unhealthy writer healthy: after an outage it
// appends the outage event (commitBatch adds it to any batch); with only a
// required sink behind, it brings the sink up to the head.
func (w *Writer) recover() {
	if w.health.Load() == nil || w.cfg.CallerRetries {
		return
	}
	if !w.outageSince.IsZero() {
		_ = w.commit(nil, false) // records the outcome in Healthy
		return
	}
	if w.feedSinks(nil, nil, true) == nil {
		w.setHealth(nil)
	}
}

// outageEvent is the event that records an outage once appends work again.
func (w *Writer) outageEvent(now time.Time) Event {
	reason := fmt.Sprintf("audit appends failed from %s; up to %d events of requests refused meanwhile are missing",
		w.outageSince.UTC().Format(time.RFC3339Nano), w.lost)
	if w.flush > 0 {
		reason = fmt.Sprintf("audit appends failed from %s; up to %d events are missing, of requests refused meanwhile "+
			"or answered before their event was durable (audit durability: interval)",
			w.outageSince.UTC().Format(time.RFC3339Nano), w.lost)
	}
	return Event{Action: ActionOutage, Resource: "audit", Status: 503, Count: w.lost, Reason: reason, Time: now}
}

// drain adds to batch every request already waiting, up to maxBatch.
func (w *Writer) drain(batch []*request) []*request {
	for len(batch) < w.maxBatch {
		select {
		case r := <-w.reqs:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// gatherMore adds to batch the events that keep coming, each within w.gap
// of the last, for at most w.gather, and returns it: group commit's batches
// otherwise stay as small as the number of events that happened to wait
// during the last commit. It stops at maxBatch, at the first gap and when
// the writer is closed, and does not wait at all without signs of load
// (see WriterConfig.GatherGap).
func (w *Writer) gatherMore(batch []*request) []*request {
	if w.gap < 0 || len(batch) >= w.maxBatch || (len(batch) == 1 && w.lastBatch <= 1) {
		return batch
	}
	deadline := time.Now().Add(w.gather)
	t := time.NewTimer(w.gap)
	defer t.Stop()
	for len(batch) < w.maxBatch {
		select {
		case r := <-w.reqs:
			batch = w.drain(append(batch, r))
			left := time.Until(deadline)
			if left <= 0 {
				return batch
			}
			t.Reset(min(w.gap, left))
		case <-t.C:
			return batch
		case <-w.closeC:
			return batch
		}
	}
	return batch
}

// gatherFor adds to batch every event that comes within d (the flush
// interval), stopping early at maxBatch and when the writer is closed.
func (w *Writer) gatherFor(batch []*request, d time.Duration) []*request {
	if len(batch) >= w.maxBatch {
		return batch
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for len(batch) < w.maxBatch {
		select {
		case r := <-w.reqs:
			batch = w.drain(append(batch, r))
		case <-t.C:
			return batch
		case <-w.closeC:
			return batch
		}
	}
	return batch
}

// commit chains batch from the durable head, appends it with its
// checkpoints, feeds the sinks and answers every request. With forceCP it
// signs a checkpoint at the new head even if none is due.
func (w *Writer) commit(batch []*request, forceCP bool) error {
	events, cps, err := w.commitBatch(batch, forceCP)
	if err != nil {
		err = unavailable(err)
	}

	for _, r := range batch {
		r.done <- err
	}
	if err == nil && (len(events) > 0 || len(cps) > 0) {
		// Best-effort sinks: feedSinks logs a failure and resends later;
		// it returns an error only for required sinks.
		_ = w.feedSinks(events, cps, false)
	}
	return err
}

// commitBatch does commit's work up to answering the requests. It returns
// the events and checkpoints it appended. After an outage the batch
// begins with the outage event. An error for which the batch's events are
// not durable wraps ErrNotDurable.
func (w *Writer) commitBatch(batch []*request, forceCP bool) ([]Event, []Checkpoint, error) {
	ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
	defer cancel()
	if w.reload {
		if err := w.loadHead(ctx); err != nil {
			w.fail(len(batch), len(batch), 0, 0, err)
			return nil, nil, fmt.Errorf("%w: %w", ErrNotDurable, err)
		}
		w.reload = false
	}
	// One call per batch: a rotation takes effect at the next batch. No
	// key, no event: the batch fails closed like a store failure.
	keys, err := w.currentKeys(ctx)
	if err != nil {
		w.fail(len(batch), len(batch), 0, 0, err)
		return nil, nil, fmt.Errorf("%w: %w", ErrNotDurable, err)
	}
	chain := w.chain
	if keys.HMACVersion != w.keys.HMACVersion {
		chain = newChainer(keys.HMACKey) // the chain goes on: prev_hash links across versions
	}
	now := w.now().UTC().Truncate(time.Microsecond)
	events := make([]Event, 0, len(batch)+1)
	if !w.outageSince.IsZero() {
		events = append(events, w.outageEvent(now))
	}
	for _, r := range batch {
		events = append(events, r.e)
	}
	seq, prev := w.headSeq, w.headHash
	cpSeq, cpTime := w.cpSeq, w.cpTime
	var cps []Checkpoint
	if keys.SigningVersion != w.keys.SigningVersion && seq > cpSeq && w.keys.SigningVersion >= w.signMin {
		// The signing key rotated: seal the events written since the last
		// checkpoint under the old key first, so each key signs its own
		// segment, then sign with the new one.
		cps = append(cps, w.checkpoint(w.keys, seq, prev, now))
		cpSeq, cpTime = seq, now
	}
	for i := range events {
		seq++
		e := &events[i]
		e.Seq, e.Node, e.ID, e.PrevHash, e.KeyVersion = seq, w.node, EventID(w.node, seq), prev, keys.HMACVersion
		h, err := chain.hash(e)
		if err != nil {
			return nil, nil, err // cannot happen: prev is always a hash we made
		}
		e.Hash, prev = h, h
		if w.every > 0 && seq%uint64(w.every) == 0 {
			cps = append(cps, w.checkpoint(keys, seq, h, now))
			cpSeq, cpTime = seq, now
		}
	}
	if seq > cpSeq && (forceCP || (w.interval > 0 && now.Sub(cpTime) >= w.interval)) {
		cps = append(cps, w.checkpoint(keys, seq, prev, now))
		cpSeq, cpTime = seq, now
	}
	if len(events) == 0 && len(cps) == 0 {
		return nil, nil, nil
	}
	start := time.Now()
	err = w.store.AppendAudit(ctx, events, cps)
	d := time.Since(start)
	if err != nil {
		// The append may have committed before failing (a lost reply), so
		// the next batch re-reads the head rather than trusting ours.
		w.reload = true
		w.fail(len(batch), len(events), len(cps), d, err)
		return nil, nil, fmt.Errorf("%w: append: %w", ErrNotDurable, err)
	}
	w.headSeq, w.headHash, w.cpSeq, w.cpTime = seq, prev, cpSeq, cpTime
	w.outageSince, w.lost = time.Time{}, 0
	w.keys, w.chain = keys, chain
	w.observe(BatchStats{Events: len(events), Checkpoints: len(cps), Duration: d})
	if err := w.feedSinks(events, cps, true); err != nil {
		return events, cps, err
	}
	w.setHealth(nil)
	return events, cps, nil
}

// fail records a batch that could not be made durable: lost of its
// events were requests' (the rest the outage event), cps checkpoints.
func (w *Writer) fail(lost, events, cps int, d time.Duration, err error) {
	if w.outageSince.IsZero() && !w.cfg.CallerRetries {
		w.outageSince = w.now()
	}
	w.lost += lost
	w.setHealth(fmt.Errorf("audit: batch failed: %w", err))
	w.log.Error("audit batch failed; requests fail closed", "node", w.node, "events", events, "error", err)
	w.observe(BatchStats{Events: events, Checkpoints: cps, Duration: d, Err: err})
}

func (w *Writer) observe(s BatchStats) {
	if w.cfg.Observe != nil {
		w.cfg.Observe(s)
	}
}

// checkpoint returns a checkpoint at seq signed by keys' signing key.
func (w *Writer) checkpoint(keys Keys, seq uint64, hash string, now time.Time) Checkpoint {
	c := Checkpoint{Node: w.node, Seq: seq, Hash: hash, Time: now, KeyVersion: keys.SigningVersion}
	SignCheckpoint(keys.SigningKey, &c)
	return c
}

// feedSinks gives the required (or the best-effort) sinks the durable batch
// events+cps. A sink that missed earlier batches is first brought up to the
// head from the store. It returns the first required sink's error.
func (w *Writer) feedSinks(events []Event, cps []Checkpoint, required bool) error {
	var first error
	for _, s := range w.sinks {
		if s.required != required {
			continue
		}
		err := w.feedSink(s, events, cps)
		if err != nil {
			if s.healthy {
				w.log.Error("audit sink write failed; will resend", "node", w.node, "required", s.required, "error", err)
			}
			s.healthy = false
			if required && first == nil {
				first = fmt.Errorf("audit: required sink: %w", err)
			}
			continue
		}
		s.healthy = true
	}
	if first != nil {
		w.setHealth(first)
	}
	return first
}

func (w *Writer) feedSink(s *sinkState, events []Event, cps []Checkpoint) error {
	ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
	defer cancel()
	from := w.headSeq - uint64(len(events)) // the seq before the batch
	if s.acked != from {
		return w.catchUp(ctx, s)
	}
	if err := s.s.WriteBatch(ctx, events, cps); err != nil {
		return err
	}
	s.acked = w.headSeq
	return nil
}

// catchUp sends s, read from the store, every event after s.acked up to the
// head with the checkpoints over them, in chunks.
func (w *Writer) catchUp(ctx context.Context, s *sinkState) error {
	all, err := w.store.Checkpoints(ctx, w.node)
	if err != nil {
		return err
	}
	var cps []Checkpoint
	for _, c := range all {
		if c.Seq > s.acked && c.Seq <= w.headSeq {
			cps = append(cps, c)
		}
	}
	var chunk []Event
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		hi := chunk[len(chunk)-1].Seq
		var in []Checkpoint
		for len(cps) > 0 && cps[0].Seq <= hi {
			in, cps = append(in, cps[0]), cps[1:]
		}
		if err := s.s.WriteBatch(ctx, chunk, in); err != nil {
			return err
		}
		s.acked, chunk = hi, chunk[:0]
		return nil
	}
	errStop := errors.New("stop")
	err = w.store.ScanAudit(ctx, w.node, s.acked, func(e Event) error {
		if e.Seq > w.headSeq {
			return errStop
		}
		chunk = append(chunk, e)
		if len(chunk) == sinkScanChunk {
			return flush()
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	if s.acked != w.headSeq {
		return fmt.Errorf("audit: sink catch-up stopped at seq %d of %d", s.acked, w.headSeq)
	}
	return nil
}

// sanitize makes every string of e valid UTF-8 of at most MaxStringBytes,
// so that the JSON forms decode to the bytes that were chained.
func sanitize(e *Event) {
	for _, p := range []*string{&e.RequestID, &e.PrincipalID, &e.PrincipalKind, &e.SourceIP,
		&e.Action, &e.Resource, &e.Decision, &e.Rule, &e.Reason} {
		*p = clean(*p)
	}
	// Copy the lists: they are often the caller's (a principal's roles).
	e.Roles, e.Fields, e.ValueHMACs = cleanAll(e.Roles), cleanAll(e.Fields), cleanAll(e.ValueHMACs)
	e.Targets = cleanAll(distinct(e.Targets, MaxTargets))
}

// distinct returns the first max different strings of ss, in order (a
// request that touches one thing twice, as a PATCH that reads the record
// back, names it once).
func distinct(ss []string, max int) []string {
	if len(ss) < 2 {
		return ss
	}
	seen := make(map[string]bool, len(ss))
	out := make([]string, 0, min(len(ss), max))
	for _, s := range ss {
		if len(out) == max {
			break
		}
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func cleanAll(ss []string) []string {
	if len(ss) == 0 {
		return nil
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = clean(s)
	}
	return out
}

func clean(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	// PostgreSQL text cannot hold NUL: an attacker-chosen NUL in an
	// attempted id or a path must not make the audit write (and so the
	// request) fail.
	s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	if len(s) <= MaxStringBytes {
		return s
	}
	cut := MaxStringBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
