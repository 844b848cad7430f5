package identity

import (
	"context"
	"errors"
	"math"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/auth"
	"github.com/cofferhq/coffer/internal/coffer"
)

// DefaultAddressMaxFailures is the spray budget of a source address when
// Lockout.AddressMaxFailures is not set.
const DefaultAddressMaxFailures = 100

// Lockout is the brute-force schedule.
//
// An account (a client id, a username's key, a user's MFA step) is locked
// after MaxFailures failed attempts within Window, for Base, doubling with
// each further failure up to Max; only that account. Each attempt is
// counted before its credential is checked and the count is undone by a
// success, so concurrent attempts on any number of nodes get no more than
// the budget between them.
//
// A source address is locked the same way after AddressMaxFailures
// failures across all accounts within Window (its spray budget). While it
// is locked, attempts from it on accounts that already have failures are
// refused unchecked, and every failed attempt from it answers 429 rather
// than 401 (so unknown accounts, which always fail, are refused too, and
// the answer does not tell them from known ones); a right credential of an
// account with no failures is never refused.
type Lockout struct {
	MaxFailures int
	Window      time.Duration
	Base, Max   time.Duration
	// AddressMaxFailures is the spray budget of one source address
	// (default DefaultAddressMaxFailures).
	AddressMaxFailures int
}

func (l Lockout) delay(failures int) time.Duration {
	if l.MaxFailures <= 0 || l.Base <= 0 {
		return auth.LockoutDelay(failures)
	}
	if failures < l.MaxFailures {
		return 0
	}
	n := failures - l.MaxFailures
	if n >= 30 {
		return l.Max
	}
	if d := l.Base << n; d < l.Max && d > 0 {
		return d
	}
	return l.Max
}

// addressDelay is delay with the address's budget.
func (l Lockout) addressDelay(failures int) time.Duration {
	a := Lockout{MaxFailures: l.AddressMaxFailures, Base: l.Base, Max: l.Max}
	if a.MaxFailures <= 0 {
		a.MaxFailures = DefaultAddressMaxFailures
	}
	if a.Base <= 0 {
		a.Base, a.Max = auth.LockoutBase, auth.LockoutMax
	}
	return a.delay(failures)
}

// attempt is one authentication attempt admitted under the lockout rules.
type attempt struct {
	s            *Service
	method, name string
	ip           string
	acct, addr   string
	// addrLocked is the end of the source address's lockout when it was
	// running as the attempt began (zero otherwise).
	addrLocked time.Time
}

// lockedOut is the 429 for a lockout running until until.
func lockedOut(now, until time.Time) error {
	secs := int(math.Ceil(until.Sub(now).Seconds()))
	if secs < 1 {
		secs = 1
	}
	return &coffer.Error{Code: coffer.ERATELIMIT, Message: "too many failed attempts; try again later", RetryAfterSeconds: secs}
}

// begin admits one attempt on account acct (method and name say what and
// whom, for detection) from ip, or refuses it with a 429: while acct is
// locked, or while ip is locked and acct already has failures. An
// admitted attempt has taken one unit of acct's budget; end it with
// succeeded or failed.
func (s *Service) begin(ctx context.Context, method, name, acct, ip string) (*attempt, error) {
	now := s.c.Now()
	a := &attempt{s: s, method: method, name: name, ip: ip, acct: acct, addr: "ip:" + ip}
	until, err := s.c.Store.AuthLockedUntil(ctx, a.addr)
	if err != nil {
		return nil, err
	}
	if until.After(now) {
		a.addrLocked = until
		n, err := s.c.Store.AuthFailures(ctx, acct, now, s.c.Lockout.Window)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			return nil, lockedOut(now, until)
		}
	}
	_, locked, err := s.c.Store.ReserveAuthAttempt(ctx, acct, now, s.c.Lockout.Window, s.c.Lockout.delay)
	if err != nil {
		return nil, err
	}
	if locked.After(now) {
		return nil, lockedOut(now, locked)
	}
	return a, nil
}

// failed ends a failed attempt: the account keeps the failure begin
// counted, the source address counts one towards its spray budget, and
// the detectors hear of it. It returns the refusal to answer: unauth, or
// a 429 when the address was locked.
func (a *attempt) failed(ctx context.Context, unauth error) error {
	s := a.s
	now := s.c.Now()
	if _, _, err := s.c.Store.AuthFailure(ctx, a.addr, now, s.c.Lockout.Window, s.c.Lockout.addressDelay); err != nil {
		s.c.Logger.WarnContext(ctx, "recording an auth failure failed", "error", err)
	}
	if s.c.OnAuthFailure != nil {
		s.c.OnAuthFailure(a.method, a.name, a.ip)
	}
	if !a.addrLocked.IsZero() {
		return lockedOut(now, a.addrLocked)
	}
	return unauth
}

// succeeded ends a successful attempt: the account's failures, this
// attempt's included, are forgotten. The address's are not: a valid
// credential of one account does not buy a sprayer more guesses.
func (a *attempt) succeeded(ctx context.Context) {
	if err := a.s.c.Store.ClearAuthFailures(ctx, a.acct); err != nil {
		a.s.c.Logger.WarnContext(ctx, "clearing auth failures failed", "error", err)
	}
}

// ErrHashBusy is the 503 for a password check that found no free hashing
// slot within the queue timeout.
var ErrHashBusy = &coffer.Error{Code: coffer.EUNAVAILABLE, Message: "too many sign-ins at once; try again shortly", RetryAfterSeconds: 1}

// hashGate bounds the argon2id hashes (64 MiB each) running at once on
// this node: at most cap in all, one per account, each caller waiting at
// most timeout for its turn. It is what keeps unauthenticated logins from
// exhausting memory.
type hashGate struct {
	slots   chan struct{}
	timeout time.Duration

	mu   sync.Mutex
	busy map[string]chan struct{} // account → closed when its hash ends
}

// DefaultHashConcurrency returns the number of concurrent password hashes
// a node allows when none is configured: one per 256 MiB of the Go memory
// limit (GOMEMLIMIT) when one is set, else two per CPU; between 1 and 64.
func DefaultHashConcurrency() int {
	n := 2 * runtime.GOMAXPROCS(0)
	if lim := debug.SetMemoryLimit(-1); lim > 0 && lim < math.MaxInt64 {
		if m := int(lim / (256 << 20)); m < n {
			n = m
		}
	}
	return min(max(n, 1), 64)
}

func newHashGate(capacity int, timeout time.Duration) *hashGate {
	if capacity <= 0 {
		capacity = DefaultHashConcurrency()
	}
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	return &hashGate{slots: make(chan struct{}, capacity), timeout: timeout, busy: map[string]chan struct{}{}}
}

var errGateTimeout = errors.New("identity: no hashing slot")

// acquire waits, at most the gate's timeout, until account has no hash
// running and a slot is free, and takes both; release gives them back.
func (g *hashGate) acquire(ctx context.Context, account string) (release func(), err error) {
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	for {
		g.mu.Lock()
		running, busy := g.busy[account]
		if !busy {
			g.busy[account] = make(chan struct{})
			g.mu.Unlock()
			break
		}
		g.mu.Unlock()
		select {
		case <-running:
		case <-ctx.Done():
			return nil, errGateTimeout
		}
	}
	select {
	case g.slots <- struct{}{}:
	case <-ctx.Done():
		g.leave(account)
		return nil, errGateTimeout
	}
	return func() {
		<-g.slots
		g.leave(account)
	}, nil
}

func (g *hashGate) leave(account string) {
	g.mu.Lock()
	close(g.busy[account])
	delete(g.busy, account)
	g.mu.Unlock()
}

// hashing runs fn (an argon2id hash) through the gate for account, or
// answers ErrHashBusy when no slot comes free in time.
func (s *Service) hashing(ctx context.Context, account string, fn func()) error {
	release, err := s.gate.acquire(ctx, account)
	if err != nil {
		return ErrHashBusy
	}
	defer release()
	fn()
	return nil
}

// LockoutStore keeps the failed attempts and locks of accounts and
// addresses, shared by every node.
type LockoutStore interface {
	AuthFailure(ctx context.Context, key string, now time.Time, window time.Duration, lock func(int) time.Duration) (int, time.Time, error)
	ReserveAuthAttempt(ctx context.Context, key string, now time.Time, window time.Duration, lock func(int) time.Duration) (int, time.Time, error)
	AuthFailures(ctx context.Context, key string, now time.Time, window time.Duration) (int, error)
	AuthLockedUntil(ctx context.Context, key string) (time.Time, error)
	ClearAuthFailures(ctx context.Context, key string) error
}
