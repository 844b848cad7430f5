package detect

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

// Kinds of security events.
const (
	KindBruteForce  = "auth.bruteforce"
	KindDeniedBurst = "access.denied_burst"
	KindBulkRead    = "data.bulk_read"
	KindEnumeration = "data.enumeration"
	KindUnusualHour = "data.unusual_hour"
	KindCanary      = "data.canary"
	// KindBulkTokenize: one principal tokenized many values in a window.
	// Linkable (deterministic, format-preserving) tokenization is a
	// dictionary oracle for low-entropy values, so it has its own, lower
	// threshold.
	KindBulkTokenize = "data.bulk_tokenize"
	// KindIntegrity: a record failed its integrity check on a read or a
	// search: its stored data was changed outside Coffer.
	KindIntegrity = "data.integrity"
)

// Severities of security events.
const (
	SeverityHigh   = "high"
	SeverityMedium = "medium"
)

// Kinds lists every kind of security event, for validation and metrics.
func Kinds() []string {
	return []string{KindBruteForce, KindDeniedBurst, KindBulkRead, KindBulkTokenize, KindEnumeration, KindUnusualHour, KindCanary, KindIntegrity}
}

// Defaults.
const (
	DefaultWindow         = time.Minute
	DefaultBulkReadValues = 500
	// DefaultBulkTokenizeValues and DefaultBulkTokenizeLinkable are the
	// data.bulk_tokenize thresholds: values tokenized in any mode, and
	// of those the linkable (deterministic or format-preserving) ones.
	DefaultBulkTokenizeValues   = 1000
	DefaultBulkTokenizeLinkable = 200
	DefaultFailedAuthBurst      = 10
	DefaultDeniedBurst          = 20
	DefaultEnumeration          = 20
	DefaultSuspendFor           = time.Hour
	DefaultQueueSize            = 4096
	DefaultWebhookQueue         = 256
	DefaultWebhookAttempts      = 5
	DefaultWebhookBackoff       = time.Second
	DefaultWebhookTimeout       = 10 * time.Second
	DefaultSyncInterval         = 15 * time.Second
	DefaultBatchInterval        = 20 * time.Millisecond

	// windowSlices is how many slices a window is counted in: a count
	// "within the window" at time t is the sum of the slices that start
	// at or after t's slice start minus the window (see [Detector.count]).
	windowSlices = 12

	// maxIDLen caps principal and attempted ids used in counter keys and
	// events, so a client cannot make the detector store megabytes.
	maxIDLen = 256
	// maxTampered caps the record ids one data.integrity event names.
	maxTampered = 20
	// storeTimeout bounds each store call made by the detector.
	storeTimeout = 5 * time.Second
)

// Observation is the outcome of one request as the detectors see it: names,
// counts and addresses, never a value.
type Observation struct {
	// Time is when the request finished; zero means Deps.Now().
	Time time.Time
	// PrincipalID and PrincipalKind name the authenticated caller, empty
	// when the request was not authenticated.
	PrincipalID, PrincipalKind string
	// Roles are the principal's roles, matched against Config.Hours.
	Roles []string
	// SourceIP is the client address.
	SourceIP string
	// Action and Resource are the policy action and resource
	// ("read", "collections/customers").
	Action, Resource string
	// Decision is "allow", "deny", or empty when no decision was made.
	Decision string
	// Status is the HTTP status of the answer.
	Status int
	// Count is how many records, tokens or items the request returned or
	// handled.
	Count int
	// Values is how many values the request returned: the fields of every
	// record read or searched (plain or masked), the values detokenized or
	// decrypted. data.bulk_read counts these.
	Values int
	// Linkable is how many of a tokenize request's Count items were
	// tokenized in a linkable mode (deterministic or format-preserving).
	Linkable int
	// Missing is true when the request named something that does not exist.
	Missing bool
	// Canary is true when the request touched a canary record or token.
	Canary bool
	// Tampered lists the records (by id) that failed their integrity
	// check: their stored data was changed outside Coffer.
	Tampered []string
	// AuthFailure is true for a failed login or token request.
	AuthFailure bool
	// AttemptedID is the client id or username a failed authentication
	// tried (never a password or secret).
	AttemptedID string
}

// Webhook receives every security event as a signed JSON POST.
type Webhook struct {
	URL string
	// Secret keys the HMAC-SHA256 signature. It is never logged or printed.
	Secret string
}

// String names the webhook by the scheme and host of its URL only: never
// its secret, nor the URL's path or query, which often hold a token.
func (w Webhook) String() string { return "webhook " + RedactURL(w.URL) }

// GoString is String, so %#v cannot print the secret either.
func (w Webhook) GoString() string { return w.String() }

// LogValue logs what String shows.
func (w Webhook) LogValue() slog.Value { return slog.StringValue(RedactURL(w.URL)) }

// Config tunes the detectors. Zero values take the defaults.
type Config struct {
	// Window is the length of the sliding counting window (default 1m).
	// Counts are kept in twelfths of it: a threshold reached within any
	// span of Window is always seen, and one spread over up to 13/12 of
	// it may be.
	Window time.Duration
	// BulkReadValues: more values than this read, searched, detokenized
	// or decrypted by one principal in a window raise data.bulk_read
	// (default 500). A record read counts each field it returns.
	BulkReadValues int
	// BulkTokenizeValues: more values than this tokenized (in any mode)
	// by one principal in a window raise data.bulk_tokenize (default
	// 1000).
	BulkTokenizeValues int
	// BulkTokenizeLinkable: more values than this tokenized in a linkable
	// mode (deterministic or format-preserving) by one principal in a
	// window raise data.bulk_tokenize (default 200).
	BulkTokenizeLinkable int
	// FailedAuthBurst: this many failed authentications in a window, for
	// one attempted principal or one source IP, raise auth.bruteforce
	// (default 10).
	FailedAuthBurst int
	// DeniedBurst: this many denied requests by one principal (or, when
	// unauthenticated, one source IP) in a window raise access.denied_burst
	// (default 20).
	DeniedBurst int
	// Enumeration: this many requests naming missing records or tokens in
	// a window raise data.enumeration (default 20).
	Enumeration int
	// Hours maps a principal id or a role to the hours in which it is
	// expected to work, as "HH:MM-HH:MM" with an optional IANA time zone
	// ("08:00-18:00 Europe/Berlin"; default UTC; "22:00-06:00" spans
	// midnight; "24:00" may end a range). An allowed request outside them
	// raises data.unusual_hour. The principal's id wins over its roles; of
	// several roles, being inside any one's hours is enough. The key "*"
	// applies to everyone else.
	Hours map[string]string
	// Webhooks receive every event.
	Webhooks []Webhook
	// SuspendOn lists the kinds that also suspend the principal.
	SuspendOn []string
	// SuspendFor is how long such a suspension lasts (default 1h).
	SuspendFor time.Duration
	// Cooldown: the same kind for the same principal is raised at most
	// once per cooldown window (default: Window).
	Cooldown time.Duration
	// QueueSize bounds the observation queue (default 4096).
	QueueSize int
	// WebhookQueue bounds each webhook's delivery queue (default 256).
	WebhookQueue int
	// WebhookAttempts is how many times a delivery is tried (default 5).
	WebhookAttempts int
	// WebhookBackoff is the wait before the second try; it doubles each
	// time, with up to half of it again as random jitter (default 1s).
	WebhookBackoff time.Duration
	// WebhookTimeout bounds one delivery attempt (default 10s).
	WebhookTimeout time.Duration
	// SyncInterval is how often suspensions are reloaded from the store,
	// so that every node sees the others' (default 15s).
	SyncInterval time.Duration
	// BatchInterval is the least time between two passes over the queue
	// (default 20ms): a busy server's observations are counted in one store
	// transaction per interval instead of one per few requests, leaving the
	// database's serial write path to the audit log. It delays detection by
	// at most this much.
	BatchInterval time.Duration
}

func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	defDur(&c.Window, DefaultWindow)
	def(&c.BulkReadValues, DefaultBulkReadValues)
	def(&c.BulkTokenizeValues, DefaultBulkTokenizeValues)
	def(&c.BulkTokenizeLinkable, DefaultBulkTokenizeLinkable)
	def(&c.FailedAuthBurst, DefaultFailedAuthBurst)
	def(&c.DeniedBurst, DefaultDeniedBurst)
	def(&c.Enumeration, DefaultEnumeration)
	defDur(&c.SuspendFor, DefaultSuspendFor)
	defDur(&c.Cooldown, c.Window)
	def(&c.QueueSize, DefaultQueueSize)
	def(&c.WebhookQueue, DefaultWebhookQueue)
	def(&c.WebhookAttempts, DefaultWebhookAttempts)
	defDur(&c.WebhookBackoff, DefaultWebhookBackoff)
	defDur(&c.WebhookTimeout, DefaultWebhookTimeout)
	defDur(&c.SyncInterval, DefaultSyncInterval)
	defDur(&c.BatchInterval, DefaultBatchInterval)
	return c
}

// Validate reports every problem in the configuration in one error. New
// does not fail on a bad configuration (it logs and skips a bad Hours
// entry), so callers validate first.
func (c Config) Validate() error {
	var errs []error
	for name, d := range map[string]time.Duration{
		"window": c.Window, "suspend_for": c.SuspendFor, "cooldown": c.Cooldown,
		"webhook_backoff": c.WebhookBackoff, "webhook_timeout": c.WebhookTimeout, "sync_interval": c.SyncInterval,
		"batch_interval": c.BatchInterval,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("detect.%s must not be negative", name))
		}
	}
	for name, n := range map[string]int{
		"bulk_read_values": c.BulkReadValues, "bulk_tokenize_values": c.BulkTokenizeValues,
		"bulk_tokenize_linkable": c.BulkTokenizeLinkable, "failed_auth_burst": c.FailedAuthBurst,
		"denied_burst": c.DeniedBurst, "enumeration": c.Enumeration, "queue_size": c.QueueSize,
		"webhook_queue": c.WebhookQueue, "webhook_attempts": c.WebhookAttempts,
	} {
		if n < 0 {
			errs = append(errs, fmt.Errorf("detect.%s must not be negative", name))
		}
	}
	for who, spec := range c.Hours {
		if _, err := parseHours(spec); err != nil {
			errs = append(errs, fmt.Errorf("detect.hours[%q]: %w", who, err))
		}
	}
	known := map[string]bool{}
	for _, k := range Kinds() {
		known[k] = true
	}
	for _, k := range c.SuspendOn {
		if !known[k] {
			errs = append(errs, fmt.Errorf("detect.suspend_on: unknown kind %q", k))
		}
	}
	for i, w := range c.Webhooks {
		if err := checkWebhookURL(w.URL); err != nil {
			errs = append(errs, fmt.Errorf("detect.webhooks[%d]: %w", i, err))
		}
		if w.Secret == "" {
			errs = append(errs, fmt.Errorf("detect.webhooks[%d]: a secret is required to sign events", i))
		}
	}
	return errors.Join(errs...)
}

// checkWebhookURL accepts https URLs, and http only to a loopback address.
func checkWebhookURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return errors.New("url must be an absolute https URL")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if h := u.Hostname(); h == "localhost" || h == "127.0.0.1" || h == "::1" {
			return nil
		}
	}
	return errors.New("url must use https (http only to localhost)")
}

// Suspension is one suspended principal.
type Suspension = coffer.Suspension

// Store is the storage the detector needs. Every method must be safe for
// concurrent use by several nodes sharing one database.
type Store interface {
	// InsertSecurityEvent stores one event (Detail as JSON).
	InsertSecurityEvent(ctx context.Context, e coffer.SecurityEvent) error
	// SecurityEvents returns events at or after since, of the given kind
	// (every kind when kind is ""), oldest first, at most limit.
	SecurityEvents(ctx context.Context, since time.Time, kind string, limit int) ([]coffer.SecurityEvent, error)
	// AddCount is an upsert-increment: it atomically adds n to the counter
	// of (key, window), creating it at n when absent, and returns the new
	// total for that key and window start. Concurrent callers on any node
	// must each see a distinct total (in SQL: INSERT … ON CONFLICT (key,
	// window_start) DO UPDATE SET count = count + n RETURNING count). Rows
	// whose window started more than a day ago may be deleted.
	AddCount(ctx context.Context, key string, window time.Time, n int) (total int, err error)
	// AddCounts applies several distinct (key, window) increments in one
	// transaction, each as AddCount would, and returns each new total in
	// order: the detector makes one round trip per batch of observations.
	// When an increment's Since is before its Window, its total also
	// holds the counts of the same key's windows that start at or after
	// Since and before Window (a sliding window made of slices); the
	// increment itself is still atomic, so concurrent callers still each
	// see a distinct total.
	AddCounts(ctx context.Context, adds []CountAdd) (totals []int, err error)
	// SuspendPrincipal creates or replaces the suspension of principal id.
	// An until at or before now lifts it (the row may be kept or deleted).
	SuspendPrincipal(ctx context.Context, id string, until time.Time, reason string) error
	// Suspensions returns the current suspensions; it may include expired
	// ones, which the detector ignores.
	Suspensions(ctx context.Context) ([]Suspension, error)
}

// CountAdd is one increment of AddCounts.
type CountAdd = coffer.CountAdd

// Deps are the detector's collaborators.
type Deps struct {
	Store Store
	// Logger receives events and failures (default: discard).
	Logger *slog.Logger
	// OnEvent is called once per raised event, for metrics.
	OnEvent func(kind string)
	// HTTPClient posts webhooks (default: a client without redirects).
	HTTPClient *http.Client
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Rand makes event ids and backoff jitter (default crypto/rand).
	Rand io.Reader
}

// queued is one item of the observation queue; a non-nil done makes it a
// barrier that is closed when everything before it was processed.
type queued struct {
	obs  Observation
	done chan struct{}
}

// Detector runs the detectors. Create it with New, then Start it; its
// methods are safe for concurrent use.
type Detector struct {
	cfg   Config
	store Store
	log   *slog.Logger
	onEv  func(string)
	http  *http.Client
	now   func() time.Time
	rand  io.Reader
	hours map[string]hoursSpec
	susOn map[string]bool

	queue   chan queued
	stop    chan struct{} // closed by Close: stop accepting, drain, exit
	hooks   []*hookWorker
	dropped atomic.Uint64

	// fallback counts and cooldowns when the store fails; used only by
	// the processing goroutine.
	local       map[localKey]int
	localWindow time.Time
	// batch is the counting ledger of the batch being processed (nil
	// outside one); used only by the processing goroutine.
	batch *batchCounts

	mu        sync.RWMutex
	suspended map[string]time.Time

	startOnce, closeOnce sync.Once
	cancel               context.CancelFunc
	wg                   sync.WaitGroup
	procDone             chan struct{}
	started              atomic.Bool
}

// New returns a detector; nothing runs until Start. A bad Hours entry is
// logged and ignored: call Config.Validate first.
func New(cfg Config, deps Deps) *Detector {
	cfg = cfg.withDefaults()
	d := &Detector{
		cfg:       cfg,
		store:     deps.Store,
		log:       deps.Logger,
		onEv:      deps.OnEvent,
		http:      deps.HTTPClient,
		now:       deps.Now,
		rand:      deps.Rand,
		hours:     map[string]hoursSpec{},
		susOn:     map[string]bool{},
		queue:     make(chan queued, cfg.QueueSize),
		stop:      make(chan struct{}),
		local:     map[localKey]int{},
		suspended: map[string]time.Time{},
		procDone:  make(chan struct{}),
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.onEv == nil {
		d.onEv = func(string) {}
	}
	if d.http == nil {
		d.http = &http.Client{
			Timeout:       cfg.WebhookTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.rand == nil {
		d.rand = rand.Reader
	}
	for who, spec := range cfg.Hours {
		h, err := parseHours(spec)
		if err != nil {
			d.log.Error("detect: ignoring bad hours", "who", who, "err", err)
			continue
		}
		d.hours[who] = h
	}
	for _, k := range cfg.SuspendOn {
		d.susOn[k] = true
	}
	for _, w := range cfg.Webhooks {
		d.hooks = append(d.hooks, &hookWorker{d: d, hook: w, queue: make(chan []byte, cfg.WebhookQueue)})
	}
	return d
}

// Start loads the stored suspensions and starts the processing, webhook
// and suspension-sync goroutines. They stop when ctx ends or on Close.
// Calling Start again does nothing.
func (d *Detector) Start(ctx context.Context) {
	d.startOnce.Do(func() {
		select {
		case <-d.stop:
			return // closed before it started
		default:
		}
		ctx, d.cancel = context.WithCancel(ctx)
		d.started.Store(true)
		d.syncSuspensions(ctx)
		go d.process(ctx)
		for _, h := range d.hooks {
			d.wg.Add(1)
			go func() { defer d.wg.Done(); h.run(ctx) }()
		}
		d.wg.Add(1)
		go func() { defer d.wg.Done(); d.syncLoop(ctx) }()
	})
}

// Close stops accepting observations, processes those already queued,
// then stops the webhook workers (abandoning undelivered events, which
// stay in the store) and waits for every goroutine. It is safe to call
// more than once, and without Start.
func (d *Detector) Close() {
	d.closeOnce.Do(func() {
		close(d.stop)
		if !d.started.Load() {
			return
		}
		<-d.procDone
		d.cancel()
		d.wg.Wait()
		pending := 0
		for _, h := range d.hooks {
			pending += len(h.queue)
		}
		if pending > 0 {
			d.log.Warn("detect: webhook deliveries abandoned on close", "count", pending)
		}
	})
}

// Observe hands one request outcome to the detectors. It never blocks:
// when the queue is full, or after Close, the observation is dropped and
// counted. ctx is the request's; its end does not cancel the processing,
// which outlives the request by design.
func (d *Detector) Observe(_ context.Context, o Observation) {
	select {
	case <-d.stop:
		d.drop()
		return
	default:
	}
	select {
	case d.queue <- queued{obs: o}:
	default:
		d.drop()
	}
}

func (d *Detector) drop() {
	n := d.dropped.Add(1)
	if n == 1 || n%1000 == 0 {
		d.log.Warn("detect: observation queue full, observations dropped", "dropped_total", n)
	}
}

// Dropped returns how many observations were dropped because the queue
// was full or the detector closed.
func (d *Detector) Dropped() uint64 { return d.dropped.Load() }

// Events returns stored security events at or after since, of kind (all
// when ""), oldest first; limit is clamped to 1..1000 (default 100).
func (d *Detector) Events(ctx context.Context, since time.Time, kind string, limit int) ([]coffer.SecurityEvent, error) {
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	evs, err := d.store.SecurityEvents(ctx, since, kind, limit)
	if err != nil {
		return nil, fmt.Errorf("security events: %w", err)
	}
	return evs, nil
}

// Suspended reports whether principal id is suspended now. It reads only
// memory; other nodes' suspensions arrive within Config.SyncInterval.
func (d *Detector) Suspended(id string) bool {
	d.mu.RLock()
	until, ok := d.suspended[id]
	d.mu.RUnlock()
	return ok && until.After(d.now())
}

// Lift ends the suspension of principal id, in the store and here. Other
// nodes follow within Config.SyncInterval. Lifting a principal that is not
// suspended is not an error, and writes and logs nothing: the id is what
// the caller sent, which names no suspension. It reports whether there was
// a suspension to lift.
func (d *Detector) Lift(ctx context.Context, id string) (bool, error) {
	list, err := d.store.Suspensions(ctx)
	if err != nil {
		return false, fmt.Errorf("lift suspension: %w", err)
	}
	now := d.now()
	suspended := slices.ContainsFunc(list, func(s Suspension) bool { return s.Principal == id && s.Until.After(now) })
	d.mu.Lock()
	delete(d.suspended, id) // whatever this node believed, the store says
	d.mu.Unlock()
	if !suspended {
		return false, nil
	}
	if err := d.store.SuspendPrincipal(ctx, id, now, "lifted"); err != nil {
		return false, fmt.Errorf("lift suspension: %w", err)
	}
	d.log.Info("detect: suspension lifted", "principal", id)
	return true, nil
}

func (d *Detector) syncLoop(ctx context.Context) {
	t := time.NewTicker(d.cfg.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.syncSuspensions(ctx)
		}
	}
}

// syncSuspensions replaces the in-memory suspensions by the store's.
// SyncSuspensions reloads the suspensions from the store now (another
// node changed them), besides the periodic sync.
func (d *Detector) SyncSuspensions(ctx context.Context) { d.syncSuspensions(ctx) }

func (d *Detector) syncSuspensions(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	list, err := d.store.Suspensions(ctx)
	if err != nil {
		d.log.Error("detect: loading suspensions", "err", err)
		return
	}
	now := d.now()
	m := make(map[string]time.Time, len(list))
	for _, s := range list {
		if s.Until.After(now) {
			m[s.Principal] = s.Until
		}
	}
	d.mu.Lock()
	d.suspended = m
	d.mu.Unlock()
}

// barrier waits until everything queued before it was processed.
func (d *Detector) barrier(ctx context.Context) error {
	done := make(chan struct{})
	select {
	case d.queue <- queued{done: done}:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Suspend suspends principal id by hand until until (an admin's response,
// reason "manual"), here at once and in the store for the other nodes.
func (d *Detector) Suspend(ctx context.Context, id string, until time.Time) error {
	if err := d.store.SuspendPrincipal(ctx, id, until, "manual"); err != nil {
		return fmt.Errorf("suspend: %w", err)
	}
	d.mu.Lock()
	d.suspended[id] = until
	d.mu.Unlock()
	d.log.Warn("detect: principal suspended by hand", "principal", id, "until", until.UTC().Format(time.RFC3339))
	return nil
}

// ActiveSuspensions returns the suspensions in force now, from the store.
func (d *Detector) ActiveSuspensions(ctx context.Context) ([]Suspension, error) {
	list, err := d.store.Suspensions(ctx)
	if err != nil {
		return nil, fmt.Errorf("suspensions: %w", err)
	}
	now := d.now()
	out := make([]Suspension, 0, len(list))
	for _, s := range list {
		if s.Until.After(now) {
			out = append(out, s)
		}
	}
	return out, nil
}
