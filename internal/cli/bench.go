package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/internal/loadgen"
)

// benchTarget is the server `coffer bench` drives and the credential it
// drives it with.
type benchTarget struct {
	url   string
	tls   *tls.Config
	sdk   *client.Client // nil when only a Vault token is known
	token string         // a fixed Vault token (VAULT_TOKEN), if any
}

func (a *app) benchCmd() *cobra.Command {
	var (
		surface, url, caFile, clientID, scen, conc, jsonFile, svgFile, from string
		duration                                                            time.Duration
		rounds, batch                                                       int
		labels                                                              []string
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load a running server: scenarios × a concurrency sweep, JSON report and SVG plot",
		Long: "Drives a running server with Coffer's own load generator: each scenario at each concurrency (one\n" +
			"keep-alive HTTPS connection per worker, one uncounted warm-up request each) for --duration, the\n" +
			"scenario order rotated every step and round so drift on a shared host falls on all alike. Reports\n" +
			"per scenario and concurrency the 2xx req/s (and items/s for batches), p50/p90/p99/max latency and\n" +
			"errors by status (medians over --rounds); a progress line goes to standard error.\n\n" +
			"--surface coffer (default) drives Coffer's API: healthz, read, create, tokenize, encrypt, decrypt,\n" +
			"batch (a transit encrypt of --batch items); fixtures (a collection, a record, a transit key) are made\n" +
			"first under fresh names. --surface vault drives the Vault transit API (/v1/transit/…, X-Vault-Token):\n" +
			"encrypt, decrypt, batch — against Coffer's compatibility surface or HashiCorp Vault itself.\n\n" +
			"The server and credential are the profile's (coffer login), or --url and --ca-file with --client-id\n" +
			"and COFFER_CLIENT_SECRET; for --surface vault, VAULT_TOKEN instead of a client. Meant for a server\n" +
			"started without a per-principal rate limit (COFFER_LIMITS_RATE_LIMIT=0): the limiter's 429s would\n" +
			"be counted as errors, not measured.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := a.out()
			if err != nil {
				return err
			}
			if from != "" {
				return replot(o, from, svgFile)
			}
			if surface != "coffer" && surface != "vault" {
				return usageError(fmt.Errorf("--surface %q: coffer or vault", surface))
			}
			levels, err := parseLevels(conc)
			if err != nil {
				return usageError(err)
			}
			if batch < 1 || duration <= 0 || rounds < 1 {
				return usageError(errors.New("--batch, --duration and --rounds must be positive"))
			}
			lab := map[string]string{"surface": surface}
			for _, l := range labels {
				k, v, ok := strings.Cut(l, "=")
				if !ok || k == "" {
					return usageError(fmt.Errorf("--label %q: KEY=VALUE", l))
				}
				lab[k] = v
			}
			tg, err := a.benchTarget(surface, url, caFile, clientID)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			setupCtx, cancel := context.WithTimeout(ctx, a.timeout)
			defer cancel()
			var scs []loadgen.Scenario
			names := splitList(scen)
			var auth func(context.Context) (http.Header, error)
			if surface == "coffer" {
				if len(names) == 0 {
					names = loadgen.CofferScenarioNames()
				}
				if _, err := loadgen.CofferScenarios(loadgen.Fixtures{}, names); err != nil {
					return usageError(err)
				}
				f, err := loadgen.SetupCoffer(setupCtx, tg.sdk, batch)
				if err != nil {
					return err
				}
				if scs, err = loadgen.CofferScenarios(f, names); err != nil {
					return usageError(err)
				}
				auth = func(ctx context.Context) (http.Header, error) {
					t, err := tg.sdk.Token(ctx)
					return http.Header{"Authorization": {"Bearer " + t}}, err
				}
			} else {
				if len(names) == 0 {
					names = loadgen.VaultScenarioNames()
				}
				auth = func(ctx context.Context) (http.Header, error) {
					if tg.token != "" {
						return http.Header{"X-Vault-Token": {tg.token}}, nil
					}
					t, err := tg.sdk.Token(ctx)
					return http.Header{"X-Vault-Token": {t}}, err
				}
				if _, err := loadgen.VaultScenarios(loadgen.Fixtures{}, names); err != nil {
					return usageError(err)
				}
				h, err := auth(setupCtx)
				if err != nil {
					return err
				}
				hc := &http.Client{Timeout: a.timeout, Transport: &http.Transport{TLSClientConfig: tg.tls}}
				f, err := loadgen.SetupVault(setupCtx, hc, tg.url, h, batch)
				if err != nil {
					return err
				}
				if scs, err = loadgen.VaultScenarios(f, names); err != nil {
					return usageError(err)
				}
			}
			rep, err := loadgen.Run(ctx, loadgen.Config{BaseURL: tg.url, TLS: tg.tls, Scenarios: scs, Concurrency: levels,
				Duration: duration, Rounds: rounds, Auth: auth, Labels: lab, Progress: a.benchProgress()})
			if rep == nil {
				return err
			}
			if werr := writeBenchFiles(rep, jsonFile, svgFile); werr != nil {
				return werr
			}
			if perr := benchTable(o, rep); perr != nil {
				return perr
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&surface, "surface", "coffer", "API to drive: coffer (Coffer's own) or vault (the Vault transit API)")
	f.StringVar(&url, "url", "", "the server, https://HOST:PORT (default: the profile's)")
	f.StringVar(&caFile, "ca-file", "", "the CA certificate (PEM) of --url's server")
	f.StringVar(&clientID, "client-id", a.env.Getenv("COFFER_CLIENT_ID"), "service client id with --url (env COFFER_CLIENT_ID; secret from COFFER_CLIENT_SECRET)")
	f.StringVar(&scen, "scenarios", "", "comma-separated scenarios (default: all of the surface's)")
	f.StringVar(&conc, "concurrency", "1,2,4,8,16,32,64,128,256", "comma-separated connection counts of the sweep")
	f.DurationVar(&duration, "duration", 5*time.Second, "how long each step sends requests")
	f.IntVar(&rounds, "rounds", 1, "times the whole sweep is run (figures are medians over rounds)")
	f.IntVar(&batch, "batch", 1000, "items of the batch scenario")
	f.StringVar(&jsonFile, "json", "", "write the full report (every step and the summary) as JSON to this file")
	f.StringVar(&svgFile, "svg", "", "write a plot of throughput and p99 against concurrency (SVG) to this file")
	f.StringVar(&from, "from", "", "run nothing: print (and with --svg, plot) the report of an earlier --json file")
	f.StringArrayVar(&labels, "label", nil, "KEY=VALUE noted in the report (e.g. backend=postgres); repeatable")
	return cmd
}

// benchTarget resolves the server and credential: --url or the profile.
func (a *app) benchTarget(surface, url, caFile, clientID string) (*benchTarget, error) {
	var caPEM []byte
	var err error
	tg := &benchTarget{}
	if url == "" {
		dir, err := configDir(a.env.Getenv)
		if err != nil {
			return nil, err
		}
		p, secret, err := store{dir}.load(a.profile)
		if err != nil {
			return nil, err
		}
		if caPEM, err = os.ReadFile(p.CAFile); err != nil { // #nosec G304 -- the profile's own CA copy
			return nil, fmt.Errorf("profile %q: %w", p.Name, err)
		}
		url, clientID = p.URL, p.ClientID
		if tg.sdk, err = client.New(url, client.WithCAPEM(caPEM), client.WithClientCredentials(clientID, secret),
			client.WithTimeout(a.timeout), client.WithTransportWrapper(a.env.Transport)); err != nil {
			return nil, fmt.Errorf("profile %q: %w", p.Name, err)
		}
	} else {
		if caFile == "" {
			return nil, usageError(errors.New("--url needs --ca-file"))
		}
		if caPEM, err = os.ReadFile(caFile); err != nil { // #nosec G304 -- the user names the CA file
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		secret := a.env.Getenv("COFFER_CLIENT_SECRET")
		switch {
		case clientID != "" && secret != "":
			if tg.sdk, err = client.New(url, client.WithCAPEM(caPEM), client.WithClientCredentials(clientID, secret),
				client.WithTimeout(a.timeout), client.WithTransportWrapper(a.env.Transport)); err != nil {
				return nil, err
			}
		case surface == "vault" && a.env.Getenv("VAULT_TOKEN") != "":
			tg.token = a.env.Getenv("VAULT_TOKEN")
		default:
			return nil, usageError(errors.New("no credential: --client-id with COFFER_CLIENT_SECRET (or, for --surface vault, VAULT_TOKEN)"))
		}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("the CA file holds no certificate")
	}
	tg.url = strings.TrimRight(url, "/")
	tg.tls = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, ClientSessionCache: tls.NewLRUClientSessionCache(4096)}
	return tg, nil
}

// benchProgress renders the run's progress on standard error: one line
// redrawn in place on a terminal, a line per finished step otherwise.
func (a *app) benchProgress() func(loadgen.Status) {
	tty := isTerminal(a.env.Stderr)
	return func(s loadgen.Status) {
		head := fmt.Sprintf("[%d/%d] round %d %-9s c=%-4d", s.Step, s.Steps, s.Round, s.Scenario, s.Concurrency)
		switch {
		case s.Done && s.Result != nil:
			r := s.Result
			line := fmt.Sprintf("%s %9.0f req/s  p50 %7.2f ms  p99 %7.2f ms  errors %d", head, r.ReqPerSec, r.P50ms, r.P99ms, s.Errors)
			if tty {
				fmt.Fprintf(a.env.Stderr, "\r\033[K%s\n", line)
			} else {
				fmt.Fprintln(a.env.Stderr, line)
			}
		case tty:
			rate := 0.0
			if s.Elapsed > 0 {
				rate = float64(s.Requests) / s.Elapsed.Seconds()
			}
			fmt.Fprintf(a.env.Stderr, "\r\033[K%s %4.1fs/%s %9.0f req/s  errors %d", head, s.Elapsed.Seconds(), s.Duration, rate, s.Errors)
		}
	}
}

// replot prints and plots a report an earlier run wrote with --json.
func replot(o output, from, svgFile string) error {
	b, err := os.ReadFile(from) // #nosec G304 -- the user names the report
	if err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	var rep loadgen.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return fmt.Errorf("--from %s: %w", from, err)
	}
	if err := writeBenchFiles(&rep, "", svgFile); err != nil {
		return err
	}
	return benchTable(o, &rep)
}

func writeBenchFiles(rep *loadgen.Report, jsonFile, svgFile string) error {
	if jsonFile != "" {
		var b strings.Builder
		if err := (output{w: &b, format: "json"}).json(rep); err != nil {
			return err
		}
		if err := os.WriteFile(jsonFile, []byte(b.String()), 0o600); err != nil {
			return fmt.Errorf("--json: %w", err)
		}
	}
	if svgFile != "" {
		var b strings.Builder
		if err := loadgen.WriteSVG(&b, rep); err != nil {
			return err
		}
		if err := os.WriteFile(svgFile, []byte(b.String()), 0o600); err != nil {
			return fmt.Errorf("--svg: %w", err)
		}
	}
	return nil
}

func benchTable(o output, rep *loadgen.Report) error {
	rows := make([][]string, 0, len(rep.Summary))
	for _, s := range rep.Summary {
		errs := make([]string, 0, len(s.Errors))
		for k, v := range s.Errors {
			errs = append(errs, fmt.Sprintf("%s×%d", k, v))
		}
		sort.Strings(errs)
		rows = append(rows, []string{s.Scenario, strconv.Itoa(s.Concurrency), fmt.Sprintf("%.0f", s.ReqPerSec),
			fmt.Sprintf("%.0f", s.ItemsPerSec), fmt.Sprintf("%.2f", s.P50ms), fmt.Sprintf("%.2f", s.P90ms),
			fmt.Sprintf("%.2f", s.P99ms), fmt.Sprintf("%.2f", s.MaxMs), strings.Join(errs, " ")})
	}
	return o.table(rep, []string{"SCENARIO", "CONNS", "REQ/S", "ITEMS/S", "P50 MS", "P90 MS", "P99 MS", "MAX MS", "ERRORS"}, rows)
}

// parseLevels reads a comma-separated list of connection counts.
func parseLevels(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > 4096 {
			return nil, fmt.Errorf("--concurrency %q: whole numbers from 1 to 4096", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("--concurrency: at least one level")
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
