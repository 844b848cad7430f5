package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/auditadmin"
	"github.com/cofferhq/coffer/internal/auditarchive"
	"github.com/cofferhq/coffer/internal/cli"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/harden"
	"github.com/cofferhq/coffer/redact"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func newRoot(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, env []string) *cobra.Command {
	root := &cobra.Command{
		Use:           "coffer",
		Short:         "Coffer: a self-hosted vault for the sensitive data of backend systems",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(
		initCmd(stdout, env),
		serveCmd(stdout, stderr, env),
		devCmd(stdout, stderr, env),
		migrateCmd(stdout, env),
		versionCmd(stdout),
		auditCmd(stdout, env),
		certCmd(stdout, env),
		policyCmd(stdout, env),
		doctorCmd(stdout, env),
		backupCmd(stdout, env), restoreCmd(stdout, env), keysCmd(stdout, env), unsealCmd(stdout, env),
	)
	// The API commands (login, records, tokens, transit, policy get|apply|check,
	// audit events, clients, users, subjects): internal/cli.
	cli.AddCommands(root, cli.Env{Stdin: stdin, Stdout: stdout, Stderr: stderr,
		Getenv: func(k string) string { return lookup(env, k) }}, offlinePolicy(stdout, env))
	return root
}

// dataDirFlag adds --data-dir, defaulting to $COFFER_DATA_DIR.
func dataDirFlag(cmd *cobra.Command, env []string, p *string) {
	cmd.Flags().StringVar(p, "data-dir", lookup(env, "COFFER_DATA_DIR"), "data directory (env COFFER_DATA_DIR)")
}

func lookup(env []string, key string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// deploymentFlags adds --data-dir and --database-url, the two flags every
// command that works on a deployment's store takes.
func deploymentFlags(cmd *cobra.Command, env []string, dir, dbURL *string) {
	dataDirFlag(cmd, env, dir)
	cmd.Flags().StringVar(dbURL, "database-url", "", "PostgreSQL URL (overrides the config)")
	cmd.Flags().Bool("unseal-shares-stdin", false, "read root key shares, one per line, from standard input (shamir deployments)")
}

// deploymentConfig loads the configuration of the deployment in dir, with
// --database-url applied over the file and the environment, and with the
// root key shares of --unseal-shares-stdin.
func deploymentConfig(cmd *cobra.Command, dir, dbURL string, env []string) (*config.Config, error) {
	if err := needDir(dir); err != nil {
		return nil, err
	}
	cfg, err := loadConfig(dir, env, map[string]string{"database_url": dbURL})
	if err != nil {
		return nil, err
	}
	if fromStdin, _ := cmd.Flags().GetBool("unseal-shares-stdin"); fromStdin {
		if cfg.RootKey.Provider != config.ProviderShamir {
			return nil, &exitError{code: 2, err: errors.New("--unseal-shares-stdin: this deployment's root key is not split into shares")}
		}
		if cfg.RootKey.UnsealShares, err = readShares(cmd.InOrStdin()); err != nil {
			return nil, &exitError{code: 1, err: err}
		}
	}
	return cfg, nil
}

// readShares reads non-empty lines (at most 255, each under 4 KiB).
func readShares(r io.Reader) ([]string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 4096)
	var out []string
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			if len(out) == 255 {
				return nil, errors.New("--unseal-shares-stdin: more than 255 shares")
			}
			out = append(out, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--unseal-shares-stdin: reading shares: %w", err)
	}
	if len(out) == 0 {
		return nil, errors.New("--unseal-shares-stdin: no share on standard input")
	}
	return out, nil
}

func needDir(dir string) error {
	if dir == "" {
		return &exitError{code: 2, err: errors.New("--data-dir is required")}
	}
	return nil
}

func initCmd(stdout io.Writer, env []string) *cobra.Command {
	var (
		dir, listen, dbURL string
		asJSON             bool
		hosts              []string
		rk                 app.InitOptions // root key choice
	)
	cmd := &cobra.Command{
		Use:   "init --data-dir DIR [--json]",
		Short: "Create a deployment: config, root key, CA and certificate, database, first admin client",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needDir(dir); err != nil {
				return err
			}
			res, err := app.Init(cmd.Context(), app.InitOptions{DataDir: dir, Listen: listen, DatabaseURL: dbURL, Hosts: hosts,
				RootKeyProvider: rk.RootKeyProvider, Shares: rk.Shares, Threshold: rk.Threshold, PKCS11: rk.PKCS11})
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			if asJSON {
				return json.NewEncoder(stdout).Encode(res) // #nosec G117 -- API.md: init --json prints the admin secret once, by design
			}
			printInit(stdout, res, dir)
			return nil
		},
	}
	dataDirFlag(cmd, env, &dir)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print exactly one JSON object with the URL and admin credentials")
	cmd.Flags().StringVar(&listen, "listen", "", "address to serve on (default 127.0.0.1:8443)")
	cmd.Flags().StringVar(&dbURL, "database-url", lookup(env, "COFFER_DATABASE_URL"), "PostgreSQL URL (default: SQLite in the data directory)")
	cmd.Flags().StringSliceVar(&hosts, "host", nil, "extra DNS name or IP for the server certificate (repeatable)")
	cmd.Flags().StringVar(&rk.RootKeyProvider, "root-key-provider", "", "file (default), shamir or pkcs11")
	cmd.Flags().IntVar(&rk.Shares, "shares", 0, "split the root key into this many shares (shamir; never written to disk)")
	cmd.Flags().IntVar(&rk.Threshold, "threshold", 0, "how many shares unseal the server (shamir)")
	cmd.Flags().StringVar(&rk.PKCS11.Module, "pkcs11-module", "", "PKCS#11 library path (pkcs11)")
	cmd.Flags().StringVar(&rk.PKCS11.TokenLabel, "pkcs11-token-label", "", "token label (pkcs11)")
	cmd.Flags().StringVar(&rk.PKCS11.KeyLabel, "pkcs11-key-label", "", "label of the root key object to create (pkcs11)")
	cmd.Flags().StringVar(&rk.PKCS11.PINEnv, "pkcs11-pin-env", "", "environment variable holding the user PIN (pkcs11; default COFFER_PKCS11_PIN)")
	return cmd
}

func printInit(w io.Writer, res app.InitResult, dir string) {
	fmt.Fprintf(w, `Coffer initialised in %s

  URL:            %s
  CA certificate: %s
  admin client:   %s
  client secret:  %s

The client secret is shown only now: store it in your secret manager.
Start the server with: coffer serve --data-dir %s
`, dir, res.URL, res.CACert, res.ClientID, res.ClientSecret, dir)
	if len(res.UnsealShares) > 0 {
		fmt.Fprintf(w, "\nThe root key is split into %d shares, shown only now. Give each to a different key holder;\n"+
			"the server starts sealed until enough of them are given (coffer unseal).\n\n", len(res.UnsealShares))
		for i, s := range res.UnsealShares {
			fmt.Fprintf(w, "  share %d: %s\n", i+1, s)
		}
	}
}

// loadConfig reads DIR's config with COFFER_* overrides, then flags.
func loadConfig(dir string, env []string, flags map[string]string) (*config.Config, error) {
	cfg, err := config.Load(dir, env)
	if err != nil {
		return nil, &exitError{code: 1, err: fmt.Errorf("config: %w", err)}
	}
	for k, v := range flags {
		if v == "" {
			continue
		}
		if err := cfg.Set(k, v); err != nil {
			return nil, &exitError{code: 1, err: fmt.Errorf("--%s: %w", strings.ReplaceAll(k, "_", "-"), err)}
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, &exitError{code: 1, err: fmt.Errorf("config: %w", err)}
	}
	return cfg, nil
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	// Coffer's own logs pass through the same redactor it offers apps: a
	// value that slips into a message or attribute is masked on the way out.
	// IP addresses stay: here they are listen addresses, database hosts and
	// the sources of attacks, which an operator must be able to read.
	return slog.New(redact.NewHandler(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}),
		redact.HandlerOptions{KeepTypes: []string{redact.TypeIPv4, redact.TypeIPv6}}))
}

func serveCmd(stdout, stderr io.Writer, env []string) *cobra.Command {
	var dir, listen, metricsListen, dbURL string
	cmd := &cobra.Command{
		Use:   "serve --data-dir DIR [--listen ADDR]",
		Short: "Serve the API over HTTPS",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needDir(dir); err != nil {
				return err
			}
			if !config.Initialised(dir) {
				return &exitError{code: 1, err: fmt.Errorf("%s is not an initialised data directory: run `coffer init --data-dir %s` first", dir, dir)}
			}
			flags := map[string]string{"listen": listen, "metrics_listen": metricsListen, "database_url": dbURL}
			cfg, err := loadConfig(dir, env, flags)
			if err != nil {
				return err
			}
			return serve(cmd.Context(), cfg, stderr, nil, func() (*config.Config, error) { return loadConfig(dir, env, flags) })
		},
	}
	dataDirFlag(cmd, env, &dir)
	cmd.Flags().StringVar(&listen, "listen", "", "address to serve HTTPS on (default 127.0.0.1:8443)")
	cmd.Flags().StringVar(&metricsListen, "metrics-listen", "", "address to serve /metrics on (default 127.0.0.1:9464)")
	cmd.Flags().StringVar(&dbURL, "database-url", "", "PostgreSQL URL (overrides the config)")
	return cmd
}

// serve runs a server until ctx ends (SIGINT/SIGTERM), then drains. On
// SIGHUP it loads the configuration again (reload) and reloads the
// relay's routes.
func serve(ctx context.Context, cfg *config.Config, logw io.Writer, ready func(addr string), reload func() (*config.Config, error)) error {
	log := newLogger(logw, cfg.LogLevel)
	harden.Harden(log)
	harden.TuneRuntime(log)
	srv, err := app.Open(ctx, cfg, app.Options{Logger: log, Version: binaryVersion()})
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	ln, err := app.Listen(cfg.Listen)
	if err != nil {
		_ = srv.Shutdown(context.Background())
		return &exitError{code: 1, err: err}
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	if cfg.MetricsListen != "" {
		mln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			_ = srv.Shutdown(context.Background())
			return &exitError{code: 1, err: fmt.Errorf("metrics listener %s: %w", cfg.MetricsListen, err)}
		}
		go func() { errc <- srv.ServeMetrics(mln) }()
	}
	if cfg.Relay.Listen != "" {
		rln, err := app.Listen(cfg.Relay.Listen)
		if err != nil {
			_ = srv.Shutdown(context.Background())
			return &exitError{code: 1, err: fmt.Errorf("relay: %w", err)}
		}
		go func() { errc <- srv.ServeRelay(rln) }()
		log.Info("coffer relay serving", "url", "https://"+rln.Addr().String(), "routes", len(cfg.Relay.Routes))
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer func() {
		signal.Stop(hup)
		close(hup) // ends the reloader: no signal is sent after Stop
	}()
	go func() {
		for range hup {
			ncfg, err := reload()
			if err == nil {
				err = srv.ReloadRelay(ncfg)
			}
			if err != nil {
				log.Error("SIGHUP: configuration not reloaded; the running relay routes are kept", "error", err)
			}
		}
	}()
	log.Info("coffer serving", "url", "https://"+ln.Addr().String(), "metrics", cfg.MetricsListen, "version", version)
	if ready != nil {
		ready(ln.Addr().String())
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		if err != nil {
			_ = srv.Shutdown(context.Background())
			return &exitError{code: 1, err: err}
		}
	}
	log.Info("shutting down: draining requests and flushing the audit log")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Timeouts.Shutdown.Duration)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return &exitError{code: 1, err: fmt.Errorf("shutdown: %w", err)}
	}
	log.Info("stopped")
	return nil
}

func devCmd(stdout, stderr io.Writer, env []string) *cobra.Command {
	var dir, listen string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Initialise ./.coffer-dev if needed and serve it (development only)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			credsFile := filepath.Join(dir, "dev-credentials.json")
			var res app.InitResult
			if !config.Initialised(dir) {
				var err error
				res, err = app.Init(cmd.Context(), app.InitOptions{DataDir: dir, Listen: listen, Dev: true})
				if err != nil {
					return &exitError{code: 1, err: err}
				}
				// Dev only: keep the admin credentials so the next `coffer
				// dev` can print them again. `coffer doctor` flags this.
				b, _ := json.MarshalIndent(res, "", "  ") // #nosec G117 -- dev only, file 0600; coffer doctor flags it
				if err := os.WriteFile(credsFile, b, 0o600); err != nil {
					return &exitError{code: 1, err: err}
				}
			} else if b, err := os.ReadFile(credsFile); err == nil { // #nosec G304 -- our own data dir
				_ = json.Unmarshal(b, &res)
			}
			flags := map[string]string{"listen": listen}
			cfg, err := loadConfig(dir, env, flags)
			if err != nil {
				return err
			}
			return serve(cmd.Context(), cfg, stderr, func(addr string) {
				printDev(stdout, res, addr)
			}, func() (*config.Config, error) { return loadConfig(dir, env, flags) })
		},
	}
	cmd.Flags().StringVar(&dir, "data-dir", ".coffer-dev", "data directory")
	cmd.Flags().StringVar(&listen, "listen", "", "address to serve HTTPS on (default 127.0.0.1:8443)")
	return cmd
}

func printDev(w io.Writer, res app.InitResult, addr string) {
	url := "https://" + addr
	fmt.Fprintf(w, `Coffer dev server (SQLite, DEVELOPMENT ONLY) at %s

  admin client:   %s
  client secret:  %s
  CA certificate: %s

Try it:
  TOKEN=$(curl -s --cacert %s -u '%s:%s' -d grant_type=client_credentials %s/v1/oauth/token | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
  curl -s --cacert %s -H "Authorization: Bearer $TOKEN" %s/v1/collections

Stop with Ctrl-C.
`, url, res.ClientID, res.ClientSecret, res.CACert, res.CACert, res.ClientID, res.ClientSecret, url, res.CACert, url)
}

func migrateCmd(stdout io.Writer, env []string) *cobra.Command {
	var dir, dbURL string
	cmd := &cobra.Command{
		Use:   "migrate --data-dir DIR",
		Short: "Apply the embedded database migrations",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := deploymentConfig(cmd, dir, dbURL, env)
			if err != nil {
				return err
			}
			changes, err := app.Migrate(cmd.Context(), cfg)
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			fmt.Fprintln(stdout, "migrations applied")
			lines := make([]string, len(changes))
			for i, c := range changes {
				lines[i] = c.String()
			}
			printPolicyChanges(stdout, lines)
			return nil
		},
	}
	deploymentFlags(cmd, env, &dir, &dbURL)
	return cmd
}

// printPolicyChanges prints what an upgrade changed in the stored policy,
// for the operator to review.
func printPolicyChanges(w io.Writer, changes []string) {
	if len(changes) == 0 {
		return
	}
	fmt.Fprintf(w, "\nThe stored policy was written for an older policy language and was rewritten (a new policy version).\n"+
		"Review each change (GET /v1/policy) and remove what the roles do not need (%d):\n", len(changes))
	for _, c := range changes {
		fmt.Fprintln(w, "  - "+c)
	}
}

// binaryVersion is the version set at build time, or the module's.
func binaryVersion() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	return v
}

func versionCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(*cobra.Command, []string) {
			goVersion := ""
			if bi, ok := debug.ReadBuildInfo(); ok {
				goVersion = bi.GoVersion
			}
			fmt.Fprintf(stdout, "coffer %s (%s)\n", binaryVersion(), goVersion)
		},
	}
}

func auditCmd(stdout io.Writer, env []string) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Work with the audit log"}
	var (
		dir, dbURL, witnessTarget string
		since                     time.Duration
		segments                  []string
	)
	verify := &cobra.Command{
		Use:   "verify --data-dir DIR [--witness FILE|URL] [--since DURATION | --segments ID,…]",
		Short: "Check the audit chain offline, against the file sink and the witness",
		Long: "Checks every audit chain in the database (hashes, links, signed checkpoints, and that every\n" +
			"column stored beside an event matches its hashed body), checks the file sink's files (audit.file,\n" +
			"rotated ones included) and compares them with the database event by event and checkpoint by\n" +
			"checkpoint, both ways, and compares the witness's newest signed checkpoint of each node with the\n" +
			"database (audit.witness, or --witness). With audit.archive set it also walks the archived segments\n" +
			"and the database as one chain per node (every segment boundary, every checkpoint signature, nothing\n" +
			"missing) and names the first break (segment, seq, what is wrong); --since and --segments verify\n" +
			"only a range of it. Prints \"ok: N events\", or every finding with its node and seq and exits 1.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := deploymentConfig(cmd, dir, dbURL, env)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Minute)
			defer cancel()
			ranged := since > 0 || len(segments) > 0
			if ranged && cfg.Audit.Archive == "" {
				return &exitError{code: 2, err: errors.New("--since and --segments verify a range of the audit archive: audit.archive is not set")}
			}
			n := 0
			if !ranged {
				if n, err = app.VerifyAuditAgainst(ctx, cfg, witnessTarget); err != nil {
					return &exitError{code: 1, err: err}
				}
			}
			if cfg.Audit.Archive != "" {
				opt := auditarchive.VerifyOptions{Segments: segments}
				if since > 0 {
					opt.Since = time.Now().Add(-since)
				}
				rep, err := app.AuditOffline(ctx, cfg, func(o auditadmin.Offline) (auditarchive.Report, error) {
					return auditadmin.VerifyArchive(ctx, o.DB, o.Keys, o.Audit, opt)
				})
				if err != nil {
					return &exitError{code: 1, err: err}
				}
				fmt.Fprintf(stdout, "archive: %d segments, %d events verified with the database as one chain per node\n", rep.Segments, rep.Events)
				n = max(n, rep.Events)
			}
			fmt.Fprintf(stdout, "ok: %d events\n", n)
			return nil
		},
	}
	deploymentFlags(verify, env, &dir, &dbURL)
	verify.Flags().StringVar(&witnessTarget, "witness", "",
		"compare with this witness instead of audit.witness: an https:// URL (its GET answer) or a witness file")
	verify.Flags().DurationVar(&since, "since", 0, "verify only the archived segments (and the database after them) of the last DURATION")
	verify.Flags().StringSliceVar(&segments, "segments", nil, "verify only these archived segments (ids NODE:FIRST-LAST, comma-separated)")
	cmd.AddCommand(verify, auditTailCmd(stdout, env), auditArchiveCmd(stdout, env), auditSearchCmd(stdout))
	return cmd
}

func auditArchiveCmd(stdout io.Writer, env []string) *cobra.Command {
	var (
		dir, dbURL string
		before     time.Duration
	)
	c := &cobra.Command{
		Use:   "archive --data-dir DIR [--before DURATION]",
		Short: "Archive sealed audit segments to audit.archive and prune them from the database",
		Long: "Writes every sealed segment of the audit log (events up to a signed checkpoint) to the directory\n" +
			"audit.archive, reads each back and verifies it, then deletes from the database the archived segments\n" +
			"older than --before (default audit.retain_in_db), keeping each node's newest event. Safe to run while\n" +
			"the server runs (one archiver at a time holds the job's lease) and to run again after a crash.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := deploymentConfig(cmd, dir, dbURL, env)
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("before") {
				before = -1
			}
			res, err := app.AuditOffline(cmd.Context(), cfg, func(o auditadmin.Offline) (auditarchive.Result, error) {
				return auditadmin.ArchiveOffline(cmd.Context(), o, before)
			})
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			fmt.Fprintf(stdout, "archived %d segments (%d events, %d bytes), adopted %d, pruned %d segments (%d events)\n",
				len(res.Archived), res.ArchivedEvents, res.Bytes, len(res.Adopted), len(res.Pruned), res.PrunedEvents)
			return nil
		},
	}
	deploymentFlags(c, env, &dir, &dbURL)
	c.Flags().DurationVar(&before, "before", 0, "archive and prune what is older than this (default audit.retain_in_db)")
	return c
}

func auditSearchCmd(stdout io.Writer) *cobra.Command {
	var (
		dir          string
		q            auditarchive.Query
		since, until string
	)
	c := &cobra.Command{
		Use:   "search --archive DIR [--principal ID] [--action A] [--since T] [--until T] [--node N]",
		Short: "Print archived audit events as JSON lines, read from the segment files directly",
		Long: "Reads the sealed segments in an audit archive directory (no database, no keys) and prints each\n" +
			"event matching the filters. --since and --until take an RFC 3339 time or a duration ago (24h).\n" +
			"It only reads: `coffer audit verify` checks the archive's hashes and signatures.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return &exitError{code: 2, err: errors.New("--archive DIR is required")}
			}
			var err error
			if q.Since, err = timeOrAgo(since); err != nil {
				return &exitError{code: 2, err: fmt.Errorf("--since: %w", err)}
			}
			if q.Until, err = timeOrAgo(until); err != nil {
				return &exitError{code: 2, err: fmt.Errorf("--until: %w", err)}
			}
			if _, err := auditarchive.PrintJSON(cmd.Context(), dir, q, stdout); err != nil {
				return &exitError{code: 1, err: err}
			}
			return nil
		},
	}
	c.Flags().StringVar(&dir, "archive", "", "the audit archive directory (audit.archive)")
	c.Flags().StringVar(&q.Principal, "principal", "", "only events of this principal id")
	c.Flags().StringVar(&q.Action, "action", "", "only events of this action")
	c.Flags().StringVar(&q.Node, "node", "", "only events of this node's chain")
	c.Flags().StringVar(&since, "since", "", "only events at or after this time (RFC 3339, or a duration ago)")
	c.Flags().StringVar(&until, "until", "", "only events before this time (RFC 3339, or a duration ago)")
	return c
}

// timeOrAgo parses an RFC 3339 time or a duration before now ("" is zero).
func timeOrAgo(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(v); err == nil {
		return time.Now().Add(-d), nil
	}
	return time.Parse(time.RFC3339Nano, v)
}

func auditTailCmd(stdout io.Writer, env []string) *cobra.Command {
	var (
		dir, dbURL string
		since      time.Duration
		follow     bool
	)
	tail := &cobra.Command{
		Use:   "tail --data-dir DIR [--since 1h] [-f]",
		Short: "Print audit events as JSON lines, and follow new ones with -f",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := deploymentConfig(cmd, dir, dbURL, env)
			if err != nil {
				return err
			}
			warn := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
			if err := app.TailAudit(cmd.Context(), cfg, stdout, warn, time.Now().Add(-since), follow); err != nil {
				return &exitError{code: 1, err: err}
			}
			return nil
		},
	}
	deploymentFlags(tail, env, &dir, &dbURL)
	tail.Flags().DurationVar(&since, "since", time.Hour, "start this long ago")
	tail.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new events")
	return tail
}
