package witness

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/detect"
)

// Defaults and bounds.
const (
	// DefaultMaxLag is Config.MaxLag's default (audit.witness_max_lag).
	DefaultMaxLag = time.Minute
	// maxQueue bounds the checkpoints waiting; past it the oldest go (the
	// newest of a node proves everything before it).
	maxQueue       = 1024
	minBackoff     = 250 * time.Millisecond
	maxBackoff     = 10 * time.Second
	attemptTimeout = 10 * time.Second
	closeTimeout   = 5 * time.Second
	maxReadBytes   = 64 << 20
	userAgent      = "coffer-witness/1"
)

// Config configures a Sink.
type Config struct {
	// Target is the witness: an https:// URL or an absolute file path.
	Target string
	// Secret signs each POST to a URL (required for one).
	Secret string
	// CAFile, if set, holds PEM certificates a URL's server certificate
	// may chain to, besides the system's roots.
	CAFile string
	// MaxLag is how long a checkpoint may wait before Ready fails:
	// DefaultMaxLag when 0.
	MaxLag time.Duration
	// Now returns the current time (time.Now when nil); lags are measured
	// with it.
	Now func() time.Time
	// Logger receives delivery failures and lag alarms (slog.Default()
	// when nil); never a secret, a URL's path or query, or an event.
	Logger *slog.Logger
	// OnLag, if set, is told the current lag in seconds after each
	// delivery attempt and each readiness check.
	OnLag func(seconds float64)
	// OnFailure, if set, is told of each failed delivery attempt.
	OnFailure func()
}

// IsURL reports whether target names a witness by URL rather than by
// file path.
func IsURL(target string) bool { return strings.Contains(target, "://") }

// waiting is a checkpoint not yet taken by the witness.
type waiting struct {
	cp    audit.Checkpoint
	since time.Time // when it (or an older one it replaced) was queued
}

// Sink is an audit.Sink that delivers every checkpoint it is given to the
// witness from its own goroutine, in order, retrying with backoff. It
// never fails a batch. It is safe for concurrent use.
type Sink struct {
	cfg     Config
	name    string // the target, safe to log
	deliver func(ctx context.Context, body []byte) error

	mu     sync.Mutex
	queue  []waiting
	behind bool // the lag alarm is raised (logged once per episode)
	closed bool

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

// New checks cfg and starts the delivery goroutine, which lives until
// Close.
func New(cfg Config) (*Sink, error) {
	if cfg.MaxLag <= 0 {
		cfg.MaxLag = DefaultMaxLag
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Sink{cfg: cfg, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	switch {
	case IsURL(cfg.Target):
		if cfg.Secret == "" {
			return nil, errors.New("witness: an https witness needs a secret")
		}
		hc, err := httpClient(cfg.Target, cfg.CAFile)
		if err != nil {
			return nil, err
		}
		s.name = detect.RedactURL(cfg.Target)
		s.deliver = func(ctx context.Context, body []byte) error {
			return detect.SignedPost(ctx, hc, cfg.Target, userAgent, cfg.Secret, cfg.Now(), body)
		}
	case filepath.IsAbs(cfg.Target):
		s.name = cfg.Target
		s.deliver = func(_ context.Context, body []byte) error { return appendLine(cfg.Target, body) }
	default:
		return nil, errors.New("witness: the target must be an https:// URL or an absolute file path")
	}
	go s.run()
	return s, nil
}

// WriteBatch implements audit.Sink: it queues the batch's checkpoints for
// delivery and returns at once (events never go to a witness).
func (s *Sink) WriteBatch(_ context.Context, _ []audit.Event, checkpoints []audit.Checkpoint) error {
	s.Add(checkpoints...)
	return nil
}

// Add queues checkpoints for delivery (at start, the node's last stored
// one, which the previous run may not have delivered).
func (s *Sink) Add(checkpoints ...audit.Checkpoint) {
	if len(checkpoints) == 0 {
		return
	}
	now := s.cfg.Now()
	s.mu.Lock()
	for _, c := range checkpoints {
		s.queue = append(s.queue, waiting{cp: c, since: now})
	}
	if over := len(s.queue) - maxQueue; over > 0 {
		oldest := s.queue[0].since
		s.queue = append(s.queue[:0], s.queue[over:]...)
		s.queue[0].since = oldest
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Ready returns an error when a checkpoint has waited for the witness
// longer than the maximum lag (for /readyz), and raises the alarm (an
// error in the log, once per episode).
func (s *Sink) Ready(context.Context) error {
	lag := s.lag()
	s.report(lag)
	if lag > s.cfg.MaxLag {
		return fmt.Errorf("audit witness %s has not taken a signed checkpoint for %s (audit.witness_max_lag %s)",
			s.name, lag.Round(time.Second), s.cfg.MaxLag)
	}
	return nil
}

// lag is how long the oldest waiting checkpoint has waited.
func (s *Sink) lag() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return 0
	}
	return max(s.cfg.Now().Sub(s.queue[0].since), 0)
}

// report exports lag and raises or clears the alarm.
func (s *Sink) report(lag time.Duration) {
	if s.cfg.OnLag != nil {
		s.cfg.OnLag(lag.Seconds())
	}
	s.mu.Lock()
	raise := lag > s.cfg.MaxLag && !s.behind
	caughtUp := lag <= s.cfg.MaxLag && s.behind
	s.behind = lag > s.cfg.MaxLag
	s.mu.Unlock()
	switch {
	case raise:
		s.cfg.Logger.Error("audit witness has not taken signed checkpoints for longer than audit.witness_max_lag: this node reports itself not ready until it does",
			"witness", s.name, "lag", lag.Round(time.Second).String(), "max_lag", s.cfg.MaxLag.String())
	case caughtUp:
		s.cfg.Logger.Info("audit witness caught up", "witness", s.name)
	}
}

// Close delivers what waits (for a few seconds at most), then stops.
// Checkpoints left undelivered are logged, not returned as an error: the
// audit log itself is complete, and the node's last checkpoint is queued
// again when it next starts (an audit writer's Close must not fail, nor a
// shutdown, for a witness that is away).
func (s *Sink) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.stop)
	}
	s.mu.Unlock()
	<-s.done
	s.mu.Lock()
	left := len(s.queue)
	s.mu.Unlock()
	if left > 0 {
		s.cfg.Logger.Error("audit witness: signed checkpoints not delivered at close; the node's last one is sent again at its next start",
			"witness", s.name, "left", left)
	}
	return nil
}

// run delivers the queue in order until Close.
func (s *Sink) run() {
	defer close(s.done)
	var retry *time.Timer
	var retryC <-chan time.Time
	backoff := time.Duration(0)
	for {
		select {
		case <-s.wake:
		case <-retryC:
		case <-s.stop:
			ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
			// What is left is logged by Close; the last one is sent again
			// at the next start.
			_ = s.flush(ctx)
			cancel()
			if retry != nil {
				retry.Stop()
			}
			return
		}
		if err := s.flush(context.Background()); err != nil {
			backoff = min(max(2*backoff, minBackoff), maxBackoff)
			if retry == nil {
				retry = time.NewTimer(backoff)
			} else {
				retry.Reset(backoff)
			}
			retryC = retry.C
			continue
		}
		backoff, retryC = 0, nil
	}
}

// flush delivers waiting checkpoints in order until the queue is empty,
// one fails, or ctx ends.
func (s *Sink) flush(ctx context.Context) error {
	defer func() { s.report(s.lag()) }()
	for {
		s.mu.Lock()
		if len(s.queue) == 0 {
			s.mu.Unlock()
			return nil
		}
		head := s.queue[0].cp
		s.mu.Unlock()
		c := head
		c.KeyVersion = audit.EffectiveVersion(c.KeyVersion)
		body, err := json.Marshal(c)
		if err != nil {
			return fmt.Errorf("witness: encode checkpoint: %w", err)
		}
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err = s.deliver(actx, body)
		cancel()
		if err != nil {
			if s.cfg.OnFailure != nil {
				s.cfg.OnFailure()
			}
			s.cfg.Logger.Warn("audit witness delivery failed; retrying", "witness", s.name, "node", head.Node, "seq", head.Seq, "error", err)
			return err
		}
		s.mu.Lock()
		if len(s.queue) > 0 && s.queue[0].cp.Node == head.Node && s.queue[0].cp.Seq == head.Seq {
			s.queue = s.queue[1:]
		}
		s.mu.Unlock()
	}
}

// httpClient returns a client for an https witness: TLS 1.2 at least,
// the system's roots plus caFile's, no redirects (a POST must not be
// moved elsewhere).
func httpClient(target, caFile string) (*http.Client, error) {
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, errors.New("witness: the URL must be an https:// URL with a host")
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if caFile != "" {
		pemBytes, err := os.ReadFile(caFile) // #nosec G304 -- audit.witness_ca_file, the operator's CA bundle
		if err != nil {
			return nil, fmt.Errorf("witness: CA file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, errors.New("witness: no certificate in the CA file")
		}
	}
	return &http.Client{
		Timeout: attemptTimeout,
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			Proxy:               http.ProxyFromEnvironment,
			TLSHandshakeTimeout: attemptTimeout,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// appendLine appends body and a newline to the witness file (created
// 0600, its directory 0700, if missing) and syncs it.
func appendLine(path string, body []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("witness file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600) // #nosec G304 -- audit.witness, the operator's witness file
	if err != nil {
		return fmt.Errorf("witness file: %w", err)
	}
	_, err = f.Write(append(body, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("witness file: %w", err)
	}
	return nil
}

// Read returns the newest checkpoint of each node that the witness at
// target holds: by GET for a URL (trusting caFile's certificates besides
// the system's), by reading every line for a file (none when the file does
// not exist yet). A line or answer that is not a checkpoint is an error; a
// last line cut short by a crash is skipped.
func Read(ctx context.Context, target, caFile string) ([]audit.Checkpoint, error) {
	var all []audit.Checkpoint
	var err error
	if IsURL(target) {
		all, err = readURL(ctx, target, caFile)
	} else {
		all, err = readFile(target)
	}
	if err != nil {
		return nil, err
	}
	newest := map[string]audit.Checkpoint{}
	var order []string
	for _, c := range all {
		old, ok := newest[c.Node]
		if !ok {
			order = append(order, c.Node)
		}
		if !ok || c.Seq > old.Seq {
			newest[c.Node] = c
		}
	}
	out := make([]audit.Checkpoint, 0, len(order))
	for _, n := range order {
		out = append(out, newest[n])
	}
	return out, nil
}

func readURL(ctx context.Context, target, caFile string) ([]audit.Checkpoint, error) {
	hc, err := httpClient(target, caFile)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, errors.New("witness: bad url")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	resp, err := hc.Do(req)
	if err != nil {
		// A *url.Error repeats the URL, whose path or query may carry a
		// token: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("witness %s: %w", detect.RedactURL(target), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("witness %s answered %d", detect.RedactURL(target), resp.StatusCode)
	}
	var out struct {
		Checkpoints []audit.Checkpoint `json:"checkpoints"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxReadBytes)).Decode(&out); err != nil {
		return nil, fmt.Errorf("witness %s: the answer is not a list of checkpoints: %w", detect.RedactURL(target), err)
	}
	return out.Checkpoints, nil
}

func readFile(path string) ([]audit.Checkpoint, error) {
	f, err := os.Open(path) // #nosec G304 -- the witness file the operator named
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // no checkpoint was ever witnessed: made by the first
	}
	if err != nil {
		return nil, fmt.Errorf("witness file: %w", err)
	}
	defer f.Close()
	var out []audit.Checkpoint
	r := bufio.NewReader(f)
	for line := 1; ; line++ {
		b, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			return out, nil // a last line without its newline was cut short: never acknowledged
		}
		if err != nil {
			return nil, fmt.Errorf("witness file %s: %w", path, err)
		}
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		var c audit.Checkpoint
		if err := json.Unmarshal(b, &c); err != nil || c.Node == "" {
			return nil, fmt.Errorf("witness file %s line %d: not a checkpoint", path, line)
		}
		out = append(out, c)
	}
}
