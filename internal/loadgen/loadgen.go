package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Request is the HTTP request a scenario sends, the same every time.
type Request struct {
	Method string
	// Path is appended to the target's base URL.
	Path string
	Body []byte
	// Header is sent with every request (with the step's credential
	// added); it must not be changed once a run starts.
	Header http.Header
}

// Scenario is one kind of request repeated under load.
type Scenario struct {
	Name string
	// Items is how many values one request carries: 1, or N for a batch.
	Items   int
	Request Request
}

// Config says what to drive and how hard.
type Config struct {
	// BaseURL is the server, https://HOST:PORT.
	BaseURL string
	// TLS is the client TLS configuration (it trusts the server's CA).
	TLS *tls.Config
	// Scenarios are driven in an order rotated each round and step.
	Scenarios []Scenario
	// Concurrency is the sweep: workers, each with its own keep-alive
	// connection, per step.
	Concurrency []int
	// Duration is how long each step sends requests.
	Duration time.Duration
	// Rounds repeats the whole sweep; figures are medians over rounds.
	Rounds int
	// Auth returns the headers carrying the credential; it is called
	// before each step so a token is renewed between steps. Nil: none.
	Auth func(ctx context.Context) (http.Header, error)
	// Progress, if set, is called about four times a second during a step
	// and once at its end (Status.Done).
	Progress func(Status)
	// Labels are copied into the report (surface, backend, notes).
	Labels map[string]string
}

// Status is where a run is, for a progress line.
type Status struct {
	Step, Steps int
	Round       int
	Scenario    string
	Concurrency int
	Elapsed     time.Duration
	Duration    time.Duration
	Requests    int64
	Errors      int64
	// Done is set once the step is over; Result then holds its figures.
	Done   bool
	Result *Result
}

// Result holds the figures of one step: one scenario at one concurrency in
// one round.
type Result struct {
	Scenario    string  `json:"scenario"`
	Concurrency int     `json:"concurrency"`
	Round       int     `json:"round"`
	Seconds     float64 `json:"seconds"`
	Requests    int64   `json:"requests"`
	OK          int64   `json:"ok"`
	// ReqPerSec counts 2xx answers only (errors must not flatter a run).
	ReqPerSec   float64 `json:"req_per_sec"`
	ItemsPerSec float64 `json:"items_per_sec"`
	P50ms       float64 `json:"p50_ms"`
	P90ms       float64 `json:"p90_ms"`
	P99ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
	// Errors counts answers that were not 2xx by status code, and
	// requests that got no answer as "transport".
	Errors map[string]int64 `json:"errors,omitempty"`
	// LoadAverage is the host's 1-minute load average at the step's end
	// (0 where the host does not say).
	LoadAverage float64 `json:"load_average,omitempty"`
}

// Summary is one scenario at one concurrency over all rounds: medians of
// the rates and percentiles, the largest maximum, the sum of errors.
type Summary struct {
	Scenario    string           `json:"scenario"`
	Concurrency int              `json:"concurrency"`
	Rounds      int              `json:"rounds"`
	Requests    int64            `json:"requests"`
	ReqPerSec   float64          `json:"req_per_sec"`
	ItemsPerSec float64          `json:"items_per_sec"`
	P50ms       float64          `json:"p50_ms"`
	P90ms       float64          `json:"p90_ms"`
	P99ms       float64          `json:"p99_ms"`
	MaxMs       float64          `json:"max_ms"`
	Errors      map[string]int64 `json:"errors,omitempty"`
}

// Report is a whole run.
type Report struct {
	Started     time.Time         `json:"started"`
	Finished    time.Time         `json:"finished"`
	Target      string            `json:"target"`
	Labels      map[string]string `json:"labels,omitempty"`
	Cores       int               `json:"cores"`
	StepSeconds float64           `json:"step_seconds"`
	Rounds      int               `json:"rounds"`
	Concurrency []int             `json:"concurrency"`
	Scenarios   []string          `json:"scenarios"`
	// LoadAverage is the smallest and largest 1-minute load average seen
	// at the steps' ends.
	LoadAverage [2]float64 `json:"load_average"`
	Runs        []Result   `json:"runs"`
	Summary     []Summary  `json:"summary"`
}

// DefaultConcurrency is the sweep `coffer bench` runs unless told.
func DefaultConcurrency() []int { return []int{1, 2, 4, 8, 16, 32, 64, 128, 256} }

// Run drives every scenario at every concurrency for cfg.Rounds rounds and
// returns the report. If ctx ends, it returns what it measured so far
// with ctx's error.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	rep := &Report{Started: time.Now().UTC(), Target: cfg.BaseURL, Labels: cfg.Labels, Cores: runtime.NumCPU(),
		StepSeconds: cfg.Duration.Seconds(), Rounds: cfg.Rounds, Concurrency: cfg.Concurrency}
	for _, s := range cfg.Scenarios {
		rep.Scenarios = append(rep.Scenarios, s.Name)
	}
	steps := cfg.Rounds * len(cfg.Concurrency) * len(cfg.Scenarios)
	step := 0
	var err error
loop:
	for r := 0; r < cfg.Rounds; r++ {
		for ci, c := range cfg.Concurrency {
			for k := range cfg.Scenarios {
				sc := cfg.Scenarios[(k+r+ci)%len(cfg.Scenarios)]
				step++
				var run *Result
				run, err = cfg.step(ctx, sc, c, Status{Step: step, Steps: steps, Round: r + 1, Scenario: sc.Name, Concurrency: c, Duration: cfg.Duration})
				if run != nil {
					rep.Runs = append(rep.Runs, *run)
				}
				if err != nil {
					break loop
				}
			}
		}
	}
	rep.Finished = time.Now().UTC()
	rep.Summary = summarize(cfg.Scenarios, cfg.Concurrency, rep.Runs)
	first := true
	for _, r := range rep.Runs {
		if r.LoadAverage == 0 {
			continue
		}
		if first || r.LoadAverage < rep.LoadAverage[0] {
			rep.LoadAverage[0] = r.LoadAverage
		}
		if first || r.LoadAverage > rep.LoadAverage[1] {
			rep.LoadAverage[1] = r.LoadAverage
		}
		first = false
	}
	return rep, err
}

func (cfg *Config) check() error {
	switch {
	case cfg.BaseURL == "":
		return errors.New("loadgen: no base URL")
	case len(cfg.Scenarios) == 0:
		return errors.New("loadgen: no scenarios")
	case len(cfg.Concurrency) == 0:
		return errors.New("loadgen: no concurrency levels")
	case cfg.Duration <= 0:
		return errors.New("loadgen: the duration of a step must be positive")
	case cfg.Rounds < 1:
		return errors.New("loadgen: at least one round")
	}
	for _, c := range cfg.Concurrency {
		if c < 1 || c > 4096 {
			return fmt.Errorf("loadgen: concurrency %d: 1 to 4096", c)
		}
	}
	return nil
}

// worker is one connection's share of a step.
type worker struct {
	hc     *http.Client
	tr     *http.Transport
	lats   []time.Duration
	errors map[string]int64
	ok     int64
}

// step drives one scenario at concurrency c for cfg.Duration.
func (cfg *Config) step(ctx context.Context, sc Scenario, c int, st Status) (*Result, error) {
	hdr := sc.Request.Header.Clone()
	if hdr == nil {
		hdr = http.Header{}
	}
	if cfg.Auth != nil {
		a, err := cfg.Auth(ctx)
		if err != nil {
			return nil, fmt.Errorf("loadgen: credential: %w", err)
		}
		for k, v := range a {
			hdr[k] = v
		}
	}
	url := strings.TrimRight(cfg.BaseURL, "/") + sc.Request.Path
	send := func(w *worker) (int, error) {
		var body io.Reader
		if sc.Request.Body != nil {
			body = bytes.NewReader(sc.Request.Body)
		}
		req, err := http.NewRequestWithContext(ctx, sc.Request.Method, url, body)
		if err != nil {
			return 0, err
		}
		req.Header = hdr // read-only from here on: shared by the workers
		resp, err := w.hc.Do(req)
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		if cerr := resp.Body.Close(); err == nil {
			err = cerr
		}
		return resp.StatusCode, err
	}
	ws := make([]*worker, c)
	for i := range ws {
		// One transport per worker: one connection each, as a load
		// generator's "connections" means, and no shared pool lock.
		tr := &http.Transport{TLSClientConfig: cfg.TLS, MaxIdleConnsPerHost: 1, DisableCompression: true,
			TLSHandshakeTimeout: 30 * time.Second}
		ws[i] = &worker{tr: tr, hc: &http.Client{Transport: tr, Timeout: 2 * time.Minute}, errors: map[string]int64{}}
	}
	defer func() {
		for _, w := range ws {
			w.tr.CloseIdleConnections()
		}
	}()
	// Warm up: every worker opens its connection (TLS handshake) with one
	// request that is not counted, then all start together.
	var ready sync.WaitGroup
	ready.Add(c)
	startGun := make(chan struct{})
	var reqs, errs atomic.Int64
	var deadline time.Time
	var done sync.WaitGroup
	done.Add(c)
	for _, w := range ws {
		go func(w *worker) {
			defer done.Done()
			_, _ = send(w)
			ready.Done()
			<-startGun
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t0 := time.Now()
				code, err := send(w)
				lat := time.Since(t0)
				switch {
				case err != nil && ctx.Err() != nil:
					return // interrupted: not the server's error
				case err != nil:
					w.errors["transport"]++
					errs.Add(1)
				case code < 200 || code > 299:
					w.errors[strconv.Itoa(code)]++
					errs.Add(1)
				default:
					w.ok++
				}
				w.lats = append(w.lats, lat)
				reqs.Add(1)
			}
		}(w)
	}
	ready.Wait()
	start := time.Now()
	deadline = start.Add(cfg.Duration)
	close(startGun)
	finished := make(chan struct{})
	go func() { done.Wait(); close(finished) }()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case <-finished:
			break wait
		case <-tick.C:
			if cfg.Progress != nil {
				s := st
				s.Elapsed, s.Requests, s.Errors = time.Since(start), reqs.Load(), errs.Load()
				cfg.Progress(s)
			}
		}
	}
	elapsed := time.Since(start)
	run := &Result{Scenario: sc.Name, Concurrency: c, Round: st.Round, Seconds: elapsed.Seconds(), LoadAverage: loadAverage()}
	var lats []time.Duration
	for _, w := range ws {
		lats = append(lats, w.lats...)
		run.OK += w.ok
		for k, v := range w.errors {
			if run.Errors == nil {
				run.Errors = map[string]int64{}
			}
			run.Errors[k] += v
		}
	}
	run.Requests = int64(len(lats))
	run.ReqPerSec = float64(run.OK) / elapsed.Seconds()
	items := sc.Items
	if items < 1 {
		items = 1
	}
	run.ItemsPerSec = run.ReqPerSec * float64(items)
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	run.P50ms, run.P90ms, run.P99ms = ms(quantile(lats, 0.50)), ms(quantile(lats, 0.90)), ms(quantile(lats, 0.99))
	if len(lats) > 0 {
		run.MaxMs = ms(lats[len(lats)-1])
	}
	if cfg.Progress != nil {
		s := st
		s.Elapsed, s.Requests, s.Errors, s.Done, s.Result = elapsed, run.Requests, errs.Load(), true, run
		cfg.Progress(s)
	}
	if err := ctx.Err(); err != nil {
		return run, err
	}
	return run, nil
}

// quantile returns the q-quantile of sorted (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*q+0.999999) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return sorted[i]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// median of xs (xs is reordered).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sort.Float64s(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

func summarize(scs []Scenario, conc []int, runs []Result) []Summary {
	var out []Summary
	for _, sc := range scs {
		for _, c := range conc {
			s := Summary{Scenario: sc.Name, Concurrency: c}
			var rps, ips, p50, p90, p99 []float64
			for _, r := range runs {
				if r.Scenario != sc.Name || r.Concurrency != c {
					continue
				}
				s.Rounds++
				s.Requests += r.Requests
				rps, ips = append(rps, r.ReqPerSec), append(ips, r.ItemsPerSec)
				p50, p90, p99 = append(p50, r.P50ms), append(p90, r.P90ms), append(p99, r.P99ms)
				s.MaxMs = max(s.MaxMs, r.MaxMs)
				for k, v := range r.Errors {
					if s.Errors == nil {
						s.Errors = map[string]int64{}
					}
					s.Errors[k] += v
				}
			}
			if s.Rounds == 0 {
				continue
			}
			s.ReqPerSec, s.ItemsPerSec = median(rps), median(ips)
			s.P50ms, s.P90ms, s.P99ms = median(p50), median(p90), median(p99)
			out = append(out, s)
		}
	}
	return out
}

// loadAverage is the host's 1-minute load average (Linux; 0 elsewhere).
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
