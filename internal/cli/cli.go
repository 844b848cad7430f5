package cli

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/client"
)

// Env is what the commands read and write besides their flags.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Getenv reads the environment (COFFER_CONFIG_DIR, COFFER_PROFILE,
	// COFFER_CLIENT_SECRET).
	Getenv func(string) string
	// Transport, if set, wraps the HTTP transport of every call (see
	// client.WithTransportWrapper).
	Transport func(http.RoundTripper) http.RoundTripper
}

// OfflinePolicy runs `coffer policy get|apply` against a deployment's store
// instead of its API: the break-glass path taken when --data-dir is given.
// A nil function means this build has no such path.
type OfflinePolicy struct {
	// Flags, if set, adds the offline path's own flags to get and apply.
	Flags func(cmd *cobra.Command)
	Get   func(cmd *cobra.Command, dataDir string) error
	Apply func(cmd *cobra.Command, dataDir, file string, force bool) error
}

// app is the state the commands share: flags common to all of them.
type app struct {
	env     Env
	profile string
	format  string
	timeout time.Duration
}

// AddCommands adds the API commands to root: login, logout, records,
// tokens, transit, clients, users, subjects, bench, `events` under audit,
// `import-vault` under keys, and get, apply and check under policy (audit and policy being root's existing
// commands of those names, made if missing). It adds the persistent flags
// --profile and -o to them.
func AddCommands(root *cobra.Command, env Env, offline OfflinePolicy) {
	a := &app{env: env}
	api := []*cobra.Command{a.loginCmd(), a.logoutCmd(), a.recordsCmd(), a.tokensCmd(), a.transitCmd(),
		a.clientsCmd(), a.usersCmd(), a.subjectsCmd(), a.jobsCmd(), a.benchCmd()}
	root.AddCommand(api...)
	audit := sub(root, "audit", "Work with the audit log")
	events := a.auditEventsCmd()
	audit.AddCommand(events)
	keys := sub(root, "keys", "Work with keys")
	importVault := a.importVaultCmd()
	keys.AddCommand(importVault)
	api = append(api, importVault)
	policy := sub(root, "policy", "Work with policy documents")
	pol := []*cobra.Command{a.policyGetCmd(offline), a.policyApplyCmd(offline), a.policyCheckCmd()}
	policy.AddCommand(pol...)
	for _, c := range append(append(api, events), pol...) {
		a.flags(c)
	}
}

func sub(root *cobra.Command, name, short string) *cobra.Command {
	for _, c := range root.Commands() {
		if c.Name() == name {
			return c
		}
	}
	c := &cobra.Command{Use: name, Short: short}
	root.AddCommand(c)
	return c
}

func (a *app) flags(c *cobra.Command) {
	f := c.PersistentFlags()
	f.StringVar(&a.profile, "profile", a.env.Getenv("COFFER_PROFILE"), "profile to use (env COFFER_PROFILE; default: the last one logged in)")
	f.StringVarP(&a.format, "output", "o", "", "output format: json or table (default: table on a terminal, json otherwise)")
	f.DurationVar(&a.timeout, "timeout", 30*time.Second, "time limit of each call")
	_ = c.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"json", "table"}, cobra.ShellCompDirectiveNoFileComp))
	_ = c.RegisterFlagCompletionFunc("profile", a.completeProfiles)
}

func (a *app) completeProfiles(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	dir, err := configDir(a.env.Getenv)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "profiles"))
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

func (a *app) out() (output, error) {
	switch a.format {
	case "":
		if isTerminal(a.env.Stdout) {
			return output{w: a.env.Stdout, format: "table"}, nil
		}
		return output{w: a.env.Stdout, format: "json"}, nil
	case "json", "table":
		return output{w: a.env.Stdout, format: a.format}, nil
	}
	return output{}, usageError(fmt.Errorf("-o %q: json or table", a.format))
}

// UsageError is a command line the CLI cannot run (exit status 2).
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

func usageError(err error) error { return &UsageError{Err: err} }

// client opens the SDK client of the profile in use.
func (a *app) client() (*client.Client, error) {
	dir, err := configDir(a.env.Getenv)
	if err != nil {
		return nil, err
	}
	p, secret, err := store{dir}.load(a.profile)
	if err != nil {
		return nil, err
	}
	c, err := client.New(p.URL, client.WithCAFile(p.CAFile), client.WithClientCredentials(p.ClientID, secret),
		client.WithEndpoints(p.Endpoints...), client.WithTimeout(a.timeout), client.WithTransportWrapper(a.env.Transport))
	if err != nil {
		return nil, fmt.Errorf("profile %q: %w", p.Name, err)
	}
	return c, nil
}

// call runs fn with the profile's client and the command's context.
func (a *app) call(cmd *cobra.Command, fn func(ctx context.Context, c *client.Client, o output) error) error {
	o, err := a.out()
	if err != nil {
		return err
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	return fn(cmd.Context(), c, o)
}

func (a *app) loginCmd() *cobra.Command {
	var url, caFile, clientID string
	cmd := &cobra.Command{
		Use:   "login --url URL[,URL...] --ca-file FILE --client-id ID",
		Short: "Save a profile: the server, its CA and a service client (secret from COFFER_CLIENT_SECRET or standard input)",
		Long: "Checks the credentials against the server, then saves the profile in the user's config directory\n" +
			"(COFFER_CONFIG_DIR overrides it): the URL, a copy of the CA certificate and the client id, and the\n" +
			"client secret in a file only the user may read (0600). The secret comes from COFFER_CLIENT_SECRET or\n" +
			"the first line of standard input, never from a flag (it would show in the process list).\n" +
			"Several URLs, comma-separated, name the nodes of one deployment: calls are spread over them and\n" +
			"fail over from a node that is down or not ready.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if url == "" || caFile == "" || clientID == "" {
				return usageError(errors.New("--url, --ca-file and --client-id are required"))
			}
			secret := a.env.Getenv("COFFER_CLIENT_SECRET")
			if secret == "" {
				if isTerminal(a.env.Stderr) {
					fmt.Fprint(a.env.Stderr, "client secret: ")
				}
				line, err := bufio.NewReader(a.env.Stdin).ReadString('\n')
				if err != nil && !errors.Is(err, io.EOF) {
					return fmt.Errorf("read the client secret: %w", err)
				}
				secret = strings.TrimSpace(line)
			}
			if secret == "" {
				return usageError(errors.New("no client secret: set COFFER_CLIENT_SECRET or give it on standard input"))
			}
			caPEM, err := os.ReadFile(caFile) // #nosec G304 -- the user names the CA file
			if err != nil {
				return fmt.Errorf("--ca-file: %w", err)
			}
			urls := strings.Split(url, ",")
			for i := range urls {
				urls[i] = strings.TrimRight(strings.TrimSpace(urls[i]), "/")
			}
			c, err := client.New(urls[0], client.WithCAPEM(caPEM), client.WithClientCredentials(clientID, secret),
				client.WithEndpoints(urls[1:]...), client.WithTimeout(a.timeout), client.WithTransportWrapper(a.env.Transport))
			if err != nil {
				return err
			}
			tok, err := c.Token(cmd.Context())
			if err != nil {
				return fmt.Errorf("login refused: %w", err)
			}
			in, err := c.Introspect(cmd.Context(), tok)
			if err != nil {
				return fmt.Errorf("login: %w", err)
			}
			dir, err := configDir(a.env.Getenv)
			if err != nil {
				return err
			}
			s := store{dir}
			name := a.profile
			if name == "" {
				name = "default"
			}
			if err := s.save(Profile{Name: name, URL: urls[0], Endpoints: urls[1:], ClientID: clientID}, caPEM, secret); err != nil {
				return err
			}
			fmt.Fprintf(a.env.Stdout, "logged in to %s as %s (roles %s); profile %q saved in %s\n",
				url, clientID, strings.Join(in.Roles, ","), name, dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&url, "url", "", "the server, https://HOST:PORT (several nodes: comma-separated)")
	cmd.Flags().StringVar(&caFile, "ca-file", "", "the CA certificate (PEM) to check the server's against")
	cmd.Flags().StringVar(&clientID, "client-id", a.env.Getenv("COFFER_CLIENT_ID"), "service client id (env COFFER_CLIENT_ID)")
	return cmd
}

func (a *app) logoutCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Delete a profile and its secret",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			dir, err := configDir(a.env.Getenv)
			if err != nil {
				return err
			}
			return store{dir}.remove(a.profile)
		},
	}
}

// readData reads a JSON object from an argument: inline JSON, @FILE, or -
// for standard input.
func (a *app) readData(arg string) (map[string]any, error) {
	var b []byte
	var err error
	switch {
	case arg == "-":
		b, err = io.ReadAll(io.LimitReader(a.env.Stdin, 16<<20))
	case strings.HasPrefix(arg, "@"):
		b, err = os.ReadFile(arg[1:]) // #nosec G304 -- the user names the file
	default:
		b = []byte(arg)
	}
	if err != nil {
		return nil, fmt.Errorf("--data: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, usageError(fmt.Errorf("--data: a JSON object: %w", err))
	}
	return m, nil
}

func recordRows(recs []client.Record) [][]string {
	var rows [][]string
	for _, r := range recs {
		for _, k := range sortedKeys(r.Data) {
			rows = append(rows, []string{r.ID, k, cell(r.Data[k])})
		}
		if len(r.Data) == 0 {
			rows = append(rows, []string{r.ID, "", ""})
		}
	}
	return rows
}

func (a *app) recordsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "records", Short: "Create, read, update, delete and search records"}
	get := &cobra.Command{
		Use:               "get COLLECTION ID",
		Short:             "Read a record, shaped by your field views",
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: a.completeCollections,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client, o output) error {
				r, err := c.GetRecord(ctx, args[0], args[1])
				if err != nil {
					return err
				}
				return o.table(r, []string{"ID", "FIELD", "VALUE"}, recordRows([]client.Record{*r}))
			})
		},
	}
	var data, owner, subject string
	create := &cobra.Command{
		Use:               "create COLLECTION --data JSON|@FILE|-",
		Short:             "Store a record and print its id",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeCollections,
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := a.readData(data)
			if err != nil {
				return err
			}
			return a.call(cmd, func(ctx context.Context, c *client.Client, o output) error {
				id, err := c.CreateRecord(ctx, args[0], client.NewRecord{Owner: owner, Subject: subject, Data: d})
				if err != nil {
					return err
				}
				return o.table(map[string]string{"id": id}, []string{"ID"}, [][]string{{id}})
			})
		},
	}
	create.Flags().StringVar(&data, "data", "-", "the record's fields: a JSON object, @FILE, or - for standard input")
	create.Flags().StringVar(&owner, "owner", "", "the record's owner")
	create.Flags().StringVar(&subject, "subject", "", "the data subject whose key seals it")
	var patch string
	update := &cobra.Command{
		Use:   "update COLLECTION ID --data JSON|@FILE|-",
		Short: "Replace some fields of a record",
		Args:  cobra.ExactArgs(2), ValidArgsFunction: a.completeCollections,
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := a.readData(patch)
			if err != nil {
				return err
			}
			return a.call(cmd, func(ctx context.Context, c *client.Client, _ output) error {
				return c.UpdateRecord(ctx, args[0], args[1], d)
			})
		},
	}
	update.Flags().StringVar(&patch, "data", "-", "the fields to replace: a JSON object, @FILE, or -")
	del := &cobra.Command{
		Use: "delete COLLECTION ID", Short: "Delete a record", Args: cobra.ExactArgs(2), ValidArgsFunction: a.completeCollections,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client, _ output) error {
				return c.DeleteRecord(ctx, args[0], args[1])
			})
		},
	}
	var where []string
	var limit int
	search := &cobra.Command{
		Use:               "search COLLECTION --where FIELD=VALUE...",
		Short:             "Find records by exact match on searchable fields",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeCollections,
		RunE: func(cmd *cobra.Command, args []string) error {
			w := map[string]any{}
			for _, kv := range where {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return usageError(fmt.Errorf("--where %q: FIELD=VALUE", kv))
				}
				w[k] = v
			}
			if len(w) == 0 {
				return usageError(errors.New("--where FIELD=VALUE is required"))
			}
			return a.call(cmd, func(ctx context.Context, c *client.Client, o output) error {
				recs, err := c.Search(ctx, args[0], w, limit)
				if err != nil {
					return err
				}
				if recs == nil {
					recs = []client.Record{}
				}
				return o.table(map[string]any{"records": recs}, []string{"ID", "FIELD", "VALUE"}, recordRows(recs))
			})
		},
	}
	search.Flags().StringArrayVar(&where, "where", nil, "FIELD=VALUE (repeat for more fields)")
	search.Flags().IntVar(&limit, "limit", 0, "at most this many records")
	cmd.AddCommand(get, create, update, del, search)
	return cmd
}

func (a *app) completeCollections(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	c, err := a.client()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cols, err := c.ListCollections(ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	out := make([]string, 0, len(cols))
	for _, col := range cols {
		out = append(out, col.Name)
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// lines returns args, or the non-empty lines of standard input when there
// are none.
func (a *app) lines(args []string) ([]string, error) {
	if len(args) > 0 {
		return args, nil
	}
	var out []string
	sc := bufio.NewScanner(a.env.Stdin)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read standard input: %w", err)
	}
	return out, nil
}

// batchSize is how many values one tokenize or detokenize call carries.
const batchSize = 1000

// batches calls fn on each slice of at most batchSize items, with a
// progress line when there is more than one.
func (a *app) batches(label string, items []string, fn func(part []string) error) error {
	var p *Progress
	if len(items) > batchSize {
		p = NewProgress(a.env.Stderr, label, ProgressOptions{})
	}
	for i := 0; i < len(items); i += batchSize {
		part := items[i:min(i+batchSize, len(items))]
		if err := fn(part); err != nil {
			p.Stop()
			return err
		}
		p.Update(int64(i+len(part)), int64(len(items)))
	}
	p.Finish()
	return nil
}

func (a *app) tokensCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tokens", Short: "Tokenize and detokenize values"}
	var typ, mode, ttl string
	tok := &cobra.Command{
		Use:   "tokenize --type TYPE [--mode MODE] [VALUE...]",
		Short: "Print a token for each value (arguments, or lines of standard input), in order",
		RunE: func(cmd *cobra.Command, args []string) error {
			values, err := a.lines(args)
			if err != nil {
				return err
			}
			return a.call(cmd, func(ctx context.Context, c *client.Client, o output) error {
				var tokens []string
				err := a.batches("tokenized", values, func(part []string) error {
					items := make([]client.TokenItem, len(part))
					for i, v := range part {
						items[i] = client.TokenItem{Value: v, Type: typ, Mode: mode, TTL: ttl}
					}
					t, err := c.Tokenize(ctx, items)
					tokens = append(tokens, t...)
					return err
				})
				if err != nil {
					return err
				}
				return a.list(o, "tokens", "TOKEN", tokens)
			})
		},
	}
	tok.Flags().StringVar(&typ, "type", "string", "token type: card_number, ssn, email, phone, string")
	tok.Flags().StringVar(&mode, "mode", "", "random (default), deterministic or format_preserving")
	tok.Flags().StringVar(&ttl, "ttl", "", "expire the tokens after this Go duration")
	_ = tok.RegisterFlagCompletionFunc("type", cobra.FixedCompletions([]string{"card_number", "ssn", "email", "phone", "string"}, cobra.ShellCompDirectiveNoFileComp))
	_ = tok.RegisterFlagCompletionFunc("mode", cobra.FixedCompletions([]string{"random", "deterministic", "format_preserving"}, cobra.ShellCompDirectiveNoFileComp))
	detok := &cobra.Command{
		Use:   "detokenize [TOKEN...]",
		Short: "Print the value of each token (arguments, or lines of standard input), in order, all or nothing",
		RunE: func(cmd *cobra.Command, args []string) error {
			tokens, err := a.lines(args)
			if err != nil {
				return err
			}
			return a.call(cmd, func(ctx context.Context, c *client.Client, o output) error {
				var values []string
				err := a.batches("detokenized", tokens, func(part []string) error {
					v, err := c.Detokenize(ctx, part)
					values = append(values, v...)
					return err
				})
				if err != nil {
					return err
				}
				return a.list(o, "values", "VALUE", values)
			})
		},
	}
	cmd.AddCommand(tok, detok)
	return cmd
}

// list prints a list: {"KEY": [...]} as JSON, one per line as a table.
func (a *app) list(o output, key, header string, items []string) error {
	if items == nil {
		items = []string{}
	}
	rows := make([][]string, len(items))
	for i, s := range items {
		rows[i] = []string{s}
	}
	return o.table(map[string][]string{key: items}, []string{header}, rows)
}

func (a *app) transitCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "transit", Short: "Encrypt and decrypt with transit keys"}
	var ctxArg string
	var raw bool
	enc := &cobra.Command{
		Use:   "encrypt KEY [PLAINTEXT]",
		Short: "Encrypt PLAINTEXT (or standard input, as bytes) and print the ciphertext",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var pt []byte
			if len(args) == 2 {
				pt = []byte(args[1])
			} else {
				b, err := io.ReadAll(io.LimitReader(a.env.Stdin, 32<<20))
				if err != nil {
					return fmt.Errorf("read standard input: %w", err)
				}
				pt = b
			}
			kctx, err := decodeContext(ctxArg)
			if err != nil {
				return err
			}
			return a.call(cmd, func(ctx context.Context, c *client.Client, o output) error {
				ct, err := c.Encrypt(ctx, args[0], pt, kctx)
				if err != nil {
					return err
				}
				return o.table(map[string]string{"ciphertext": ct}, []string{"CIPHERTEXT"}, [][]string{{ct}})
			})
		},
	}
	dec := &cobra.Command{
		Use:   "decrypt KEY CIPHERTEXT",
		Short: "Decrypt a ciphertext and print the plaintext (as bytes with --raw)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kctx, err := decodeContext(ctxArg)
			if err != nil {
				return err
			}
			return a.call(cmd, func(ctx context.Context, c *client.Client, o output) error {
				pt, err := c.Decrypt(ctx, args[0], args[1], kctx)
				if err != nil {
					return err
				}
				if raw {
					_, err := a.env.Stdout.Write(pt)
					return err //nolint:wrapcheck // a write to stdout
				}
				return o.table(map[string]string{"plaintext": base64.StdEncoding.EncodeToString(pt)},
					[]string{"PLAINTEXT"}, [][]string{{string(pt)}})
			})
		},
	}
	for _, c := range []*cobra.Command{enc, dec} {
		c.Flags().StringVar(&ctxArg, "context", "", "key derivation context, base64 (must match on decrypt)")
	}
	dec.Flags().BoolVar(&raw, "raw", false, "write the plaintext bytes as they are")
	var deletable bool
	var rotatePeriod string
	create := &cobra.Command{
		Use: "create KEY", Short: "Create a transit key", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client, o output) error {
				k, err := c.CreateKey(ctx, args[0], client.KeySpec{Deletable: deletable, AutoRotatePeriod: rotatePeriod})
				if err != nil {
					return err
				}
				return keyTable(o, k)
			})
		},
	}
	create.Flags().BoolVar(&deletable, "deletable", false, "allow deleting the key")
	create.Flags().StringVar(&rotatePeriod, "auto-rotate-period", "", "rotate after this Go duration")
	rotate := &cobra.Command{
		Use: "rotate KEY", Short: "Make a new version of a transit key the one that encrypts", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client, o output) error {
				k, err := c.RotateKey(ctx, args[0])
				if err != nil {
					return err
				}
				return keyTable(o, k)
			})
		},
	}
	cmd.AddCommand(enc, dec, create, rotate)
	return cmd
}

func keyTable(o output, k *client.Key) error {
	return o.table(k, []string{"NAME", "LATEST", "MIN_DECRYPT", "DELETABLE", "CREATED"},
		[][]string{{k.Name, fmt.Sprint(k.LatestVersion), fmt.Sprint(k.MinDecryptionVersion), fmt.Sprint(k.Deletable), k.CreatedAt.Format(time.RFC3339)}})
}

func decodeContext(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, usageError(fmt.Errorf("--context: base64: %w", err))
	}
	return b, nil
}

func (a *app) clientsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "clients", Short: "Manage service clients"}
	list := &cobra.Command{
		Use: "list", Short: "List service clients", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client, o output) error {
				cs, err := c.ListClients(ctx)
				if err != nil {
					return err
				}
				rows := make([][]string, len(cs))
				for i, x := range cs {
					rows[i] = []string{x.ClientID, x.Name, strings.Join(x.Roles, ","), x.CreatedAt.Format(time.RFC3339)}
				}
				if cs == nil {
					cs = []client.ClientInfo{}
				}
				return o.table(map[string]any{"clients": cs}, []string{"CLIENT_ID", "NAME", "ROLES", "CREATED"}, rows)
			})
		},
	}
	var roles []string
	var attrs map[string]string
	create := &cobra.Command{
		Use: "create NAME --role ROLE...", Short: "Create a service client (its secret is shown once)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client, o output) error {
				nc, err := c.CreateClient(ctx, args[0], roles, attrs)
				if err != nil {
					return err
				}
				return newClientTable(o, nc)
			})
		},
	}
	create.Flags().StringArrayVar(&roles, "role", nil, "a role (repeat for more)")
	create.Flags().StringToStringVar(&attrs, "attr", nil, "attributes KEY=VALUE")
	rotate := &cobra.Command{
		Use: "rotate CLIENT_ID", Short: "Give a client a new secret (shown once)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client, o output) error {
				nc, err := c.RotateClientSecret(ctx, args[0])
				if err != nil {
					return err
				}
				return newClientTable(o, nc)
			})
		},
	}
	del := &cobra.Command{
		Use: "delete CLIENT_ID", Short: "Delete a service client", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client, _ output) error {
				return c.DeleteClient(ctx, args[0])
			})
		},
	}
	cmd.AddCommand(list, create, rotate, del)
	return cmd
}

func newClientTable(o output, nc *client.NewClient) error {
	return o.table(nc, []string{"CLIENT_ID", "CLIENT_SECRET", "NAME", "ROLES"},
		[][]string{{nc.ClientID, nc.ClientSecret, nc.Name, strings.Join(nc.Roles, ",")}})
}

func (a *app) usersCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "users", Short: "Manage users"}
	var roles []string
	var attrs map[string]string
	create := &cobra.Command{
		Use:   "create USERNAME --role ROLE...",
		Short: "Create a user (password from COFFER_USER_PASSWORD or the first line of standard input)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pw := a.env.Getenv("COFFER_USER_PASSWORD")
			if pw == "" {
				line, err := bufio.NewReader(a.env.Stdin).ReadString('\n')
				if err != nil && !errors.Is(err, io.EOF) {
					return fmt.Errorf("read the password: %w", err)
				}
				pw = strings.TrimRight(line, "\r\n")
			}
			if pw == "" {
				return usageError(errors.New("no password: set COFFER_USER_PASSWORD or give it on standard input"))
			}
			return a.call(cmd, func(ctx context.Context, c *client.Client, o output) error {
				u, err := c.CreateUser(ctx, args[0], pw, roles, attrs)
				if err != nil {
					return err
				}
				return o.table(u, []string{"ID", "USERNAME", "ROLES"}, [][]string{{u.ID, u.Username, strings.Join(u.Roles, ",")}})
			})
		},
	}
	create.Flags().StringArrayVar(&roles, "role", nil, "a role (repeat for more)")
	create.Flags().StringToStringVar(&attrs, "attr", nil, "attributes KEY=VALUE")
	code := &cobra.Command{
		Use: "enrolment-code USER_ID", Short: "Issue a user a one-time MFA enrolment code (shown once)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client, o output) error {
				ec, err := c.IssueEnrolmentCode(ctx, args[0])
				if err != nil {
					return err
				}
				return o.table(ec, []string{"USER_ID", "ENROLMENT_CODE", "EXPIRES"}, [][]string{{ec.UserID, ec.Code, ec.ExpiresAt.Format(time.RFC3339)}})
			})
		},
	}
	reset := &cobra.Command{
		Use: "reset-mfa USER_ID", Short: "Remove a user's TOTP secret and recovery codes", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client, _ output) error {
				return c.ResetMFA(ctx, args[0])
			})
		},
	}
	list := &cobra.Command{
		Use: "list", Short: "List users (needs read on users; never a secret)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client, o output) error {
				us, err := c.ListUsers(ctx)
				if err != nil {
					return err
				}
				if us == nil {
					us = []client.UserInfo{}
				}
				rows := make([][]string, len(us))
				for i, u := range us {
					rows[i] = []string{u.ID, u.Username, strings.Join(u.Roles, ","), yesNo(u.MFAEnrolled), yesNo(u.Disabled),
						u.CreatedAt.Format(time.RFC3339)}
				}
				return o.table(map[string]any{"users": us}, []string{"ID", "USERNAME", "ROLES", "MFA", "DISABLED", "CREATED"}, rows)
			})
		},
	}
	cmd.AddCommand(list, create, code, reset)
	return cmd
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func (a *app) subjectsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "subjects", Short: "Data subjects"}
	var yes bool
	erase := &cobra.Command{
		Use:   "erase SUBJECT --yes",
		Short: "Erase a data subject everywhere (crypto-shredding: cannot be undone)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !yes {
				return usageError(errors.New("erasing a subject cannot be undone: add --yes"))
			}
			return a.call(cmd, func(ctx context.Context, c *client.Client, o output) error {
				e, err := c.EraseSubjectCount(ctx, args[0])
				if err != nil {
					return err
				}
				return o.table(e, []string{"SUBJECT", "ERASED", "RECORDS_DELETED"}, [][]string{{args[0], fmt.Sprint(e.SubjectErased), fmt.Sprint(e.RecordsDeleted)}})
			})
		},
	}
	erase.Flags().BoolVar(&yes, "yes", false, "confirm the erasure")
	cmd.AddCommand(erase)
	return cmd
}

func (a *app) auditEventsCmd() *cobra.Command {
	var f client.AuditFilter
	var since time.Duration
	var all bool
	cmd := &cobra.Command{
		Use:   "events [--since 1h] [--principal ID] [--action A] [--limit N] [--all]",
		Short: "Print audit events through the API (--all pages through every match, with a progress line)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if since > 0 {
				f.Since = time.Now().Add(-since)
			}
			return a.call(cmd, func(ctx context.Context, c *client.Client, o output) error {
				var evs []client.AuditEvent
				var p *Progress
				if all {
					p = NewProgress(a.env.Stderr, "audit events read", ProgressOptions{})
					defer p.Finish()
				}
				for {
					page, err := c.AuditEvents(ctx, f)
					if err != nil {
						return err
					}
					evs = append(evs, page.Events...)
					if !all || page.Next == "" {
						break
					}
					p.Update(int64(len(evs)), 0)
					f.After = page.Next
				}
				if evs == nil {
					evs = []client.AuditEvent{}
				}
				rows := make([][]string, len(evs))
				for i, e := range evs {
					rows[i] = []string{e.Time.Format(time.RFC3339), e.Principal, e.Action, e.Resource, e.Decision, fmt.Sprint(e.Status), fmt.Sprint(e.Count)}
				}
				return o.table(map[string]any{"events": evs}, []string{"TIME", "PRINCIPAL", "ACTION", "RESOURCE", "DECISION", "STATUS", "COUNT"}, rows)
			})
		},
	}
	cmd.Flags().DurationVar(&since, "since", 0, "only events this recent")
	cmd.Flags().StringVar(&f.Principal, "principal", "", "only this principal's events")
	cmd.Flags().StringVar(&f.Action, "action", "", "only this action")
	cmd.Flags().IntVar(&f.Limit, "limit", 0, "events per page (the server's default when 0)")
	cmd.Flags().BoolVar(&all, "all", false, "read every page")
	return cmd
}

func (a *app) policyGetCmd(offline OfflinePolicy) *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "get [--data-dir DIR]",
		Short: "Print the policy in force, as it was put (through the API; with --data-dir, offline from the store)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir != "" {
				if offline.Get == nil {
					return usageError(errors.New("--data-dir: this build has no offline policy get"))
				}
				return offline.Get(cmd, dataDir)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			doc, err := c.GetPolicy(cmd.Context())
			if err != nil {
				return err
			}
			if _, err := a.env.Stdout.Write(doc); err != nil {
				return fmt.Errorf("print: %w", err)
			}
			if len(doc) > 0 && doc[len(doc)-1] != '\n' {
				fmt.Fprintln(a.env.Stdout)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "read the policy from this deployment's store instead (break-glass, offline)")
	if offline.Flags != nil {
		offline.Flags(cmd)
	}
	return cmd
}

func (a *app) policyApplyCmd(offline OfflinePolicy) *cobra.Command {
	var dataDir string
	var force bool
	cmd := &cobra.Command{
		Use:   "apply FILE [--data-dir DIR]",
		Short: "Replace the whole policy with FILE (YAML, or JSON by .json); every problem is listed when it does not compile",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dataDir != "" {
				if offline.Apply == nil {
					return usageError(errors.New("--data-dir: this build has no offline policy apply"))
				}
				return offline.Apply(cmd, dataDir, args[0], force)
			}
			doc, err := os.ReadFile(args[0]) // #nosec G304 -- the user names the file
			if err != nil {
				return fmt.Errorf("policy apply: %w", err)
			}
			format := "yaml"
			if strings.EqualFold(filepath.Ext(args[0]), ".json") {
				format = "json"
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.PutPolicy(cmd.Context(), doc, format); err != nil {
				var e *client.Error
				if errors.As(err, &e) && len(e.Problems) > 0 {
					for _, p := range e.Problems {
						fmt.Fprintln(a.env.Stderr, "  "+oneLine(p))
					}
				}
				return err
			}
			fmt.Fprintf(a.env.Stdout, "policy from %s is in force\n", args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "write the policy to this deployment's store instead (break-glass, offline)")
	cmd.Flags().BoolVar(&force, "force", false, "with --data-dir: apply a policy that leaves nobody able to change it")
	if offline.Flags != nil {
		offline.Flags(cmd)
	}
	return cmd
}

func (a *app) policyCheckCmd() *cobra.Command {
	var q client.PolicyCheck
	cmd := &cobra.Command{
		Use:   "check --action A --resource R [--principal-id ID --role ROLE...] [--field F...]",
		Short: "Explain what the policy in force decides, without acting",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if q.Action == "" || q.Resource == "" {
				return usageError(errors.New("--action and --resource are required"))
			}
			return a.call(cmd, func(ctx context.Context, c *client.Client, o output) error {
				d, err := c.CheckPolicy(ctx, q)
				if err != nil {
					return err
				}
				rows := [][]string{{fmt.Sprint(d.Allowed), d.Rule, d.Reason, ""}}
				for _, f := range sortedKeys(d.Fields) {
					rows = append(rows, []string{"", "", "", f + "=" + d.Fields[f]})
				}
				return o.table(d, []string{"ALLOWED", "RULE", "REASON", "FIELDS"}, rows)
			})
		},
	}
	cmd.Flags().StringVar(&q.Action, "action", "", "the action")
	cmd.Flags().StringVar(&q.Resource, "resource", "", "the resource, e.g. collections/customers")
	cmd.Flags().StringVar(&q.Principal.ID, "principal-id", "", "the principal's id")
	cmd.Flags().StringVar(&q.Principal.Kind, "principal-kind", "client", "client, user or external")
	cmd.Flags().StringArrayVar(&q.Principal.Roles, "role", nil, "a role of the principal (repeat for more)")
	cmd.Flags().StringToStringVar(&q.Principal.Attributes, "attr", nil, "attributes of the principal KEY=VALUE")
	cmd.Flags().BoolVar(&q.Principal.MFA, "mfa", false, "the principal signed in with MFA")
	cmd.Flags().StringVar(&q.Owner, "owner", "", "the record's owner")
	cmd.Flags().StringVar(&q.ID, "id", "", "the record's id")
	cmd.Flags().StringVar(&q.IP, "ip", "", "the caller's address")
	cmd.Flags().StringArrayVar(&q.Fields, "field", nil, "a field whose view to show (repeat for more)")
	return cmd
}
