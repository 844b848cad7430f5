package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/backup"
)

func backupCmd(stdout io.Writer, env []string) *cobra.Command {
	var dir, out, dbURL string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "backup --data-dir DIR --out FILE",
		Short: "Write an encrypted backup of the store (online: nodes keep serving)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := deploymentConfig(cmd, dir, dbURL, env)
			if err != nil {
				return err
			}
			ctx, prog := withProgress(cmd, "backup: rows", quiet, false)
			res, err := app.Backup(ctx, cfg, out)
			if err != nil {
				prog.Stop()
				return &exitError{code: 1, err: err}
			}
			prog.Finish()
			fmt.Fprintf(stdout, "backup written: %s (%d bytes, mode 0600)\n"+
				"It is encrypted under the root key, which it does not contain: keep the root key safe, apart from the backup.\n",
				res.File, res.Bytes)
			return nil
		},
	}
	deploymentFlags(cmd, env, &dir, &dbURL)
	cmd.Flags().StringVar(&out, "out", "", "the backup file to write")
	_ = cmd.MarkFlagRequired("out")
	quietFlag(cmd, &quiet)
	return cmd
}

func restoreCmd(stdout io.Writer, env []string) *cobra.Command {
	var (
		opts  backup.RestoreOptions
		hosts []string
		quiet bool
	)
	cmd := &cobra.Command{
		Use: "restore --data-dir NEWDIR --in FILE (--root-key-file PATH | --root-key-check-file PATH --unseal-shares-stdin)" +
			" [--subject-keys-from-data-dir LIVEDIR | --subject-keys-from-database-url URL]",
		Short: "Make a new deployment from a backup, in an empty directory",
		Long: `Make a new deployment from a backup, in an empty directory.

A backup holds no data subject's key (crypto-shredding reaches every backup),
so subject-bound values come back only from a deployment that still has the
keys: --subject-keys-from-data-dir names one under the same root key (normally
the live one; it may keep serving, and it is only read), and
--subject-keys-from-database-url its PostgreSQL database. Subjects erased
there stay erased here.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needDir(opts.DataDir); err != nil {
				return err
			}
			if (opts.RootKeyFile == "") == (opts.RootKeyCheckFile == "") {
				return &exitError{code: 2, err: errors.New("give --root-key-file, or --root-key-check-file with --unseal-shares-stdin (a shamir deployment)")}
			}
			if fromStdin, _ := cmd.Flags().GetBool("unseal-shares-stdin"); fromStdin != (opts.RootKeyCheckFile != "") {
				return &exitError{code: 2, err: errors.New("--unseal-shares-stdin goes with --root-key-check-file")}
			} else if fromStdin {
				shares, err := readShares(cmd.InOrStdin())
				if err != nil {
					return &exitError{code: 1, err: err}
				}
				opts.UnsealShares = shares
			}
			opts.Hosts = hosts
			ctx, prog := withProgress(cmd, "restore: backup read", quiet, true)
			res, err := backup.Restore(ctx, opts)
			if err != nil {
				prog.Stop()
				return &exitError{code: 1, err: err}
			}
			prog.Finish()
			fmt.Fprintf(stdout, `Restored into %s

  URL:            %s
  CA certificate: %s (new: clients must trust it)

Clients, users and policies are those of the backup.
`, opts.DataDir, res.URL, res.CACert)
			if opts.SubjectKeysFromDataDir == "" && opts.SubjectKeysFromDatabaseURL == "" {
				fmt.Fprintln(stdout, "Values of data subjects are not in any backup (crypto-shredding) and do not come back:\n"+
					"restore with --subject-keys-from-data-dir LIVEDIR to take the keys of subjects not erased from the live deployment.")
			} else {
				fmt.Fprintf(stdout, `Data subject keys, taken from the subject-key source:
  restored:          %d (their values read again; %d search index entries rebuilt)
  erased there:      %d (stay erased)
  missing there:     %d (stay unreadable)
`, res.SubjectKeysRestored, res.IndexEntriesAdded, res.SubjectKeysErased, res.SubjectKeysMissing)
				if res.SubjectValuesUnreadable > 0 {
					fmt.Fprintf(stdout, "  WARNING: %d values of restored subjects stay unreadable: their key version is retired or destroyed there.\n",
						res.SubjectValuesUnreadable)
				}
				fmt.Fprintln(stdout, "This deployment now holds those subjects' keys: an erasure must be made here too.")
			}
			printPolicyChanges(stdout, res.PolicyChanges)
			fmt.Fprintf(stdout, "\nStart the server with: coffer serve --data-dir %s\n", opts.DataDir)
			return nil
		},
	}
	dataDirFlag(cmd, env, &opts.DataDir)
	cmd.Flags().StringVar(&opts.In, "in", "", "the backup file")
	cmd.Flags().StringVar(&opts.RootKeyFile, "root-key-file", "", "the root key the backup was written under (mode 0600)")
	cmd.Flags().StringVar(&opts.RootKeyCheckFile, "root-key-check-file", "", "a shamir deployment's root-key.check (with --unseal-shares-stdin)")
	cmd.Flags().Bool("unseal-shares-stdin", false, "read root key shares, one per line, from standard input (with --root-key-check-file)")
	cmd.Flags().StringVar(&opts.DatabaseURL, "database-url", "", "restore into this empty PostgreSQL database (default: SQLite in the data directory)")
	cmd.Flags().StringVar(&opts.SubjectKeysFromDataDir, "subject-keys-from-data-dir", "",
		"take the keys of data subjects not erased from this deployment under the same root key (only read; it may be serving)")
	cmd.Flags().StringVar(&opts.SubjectKeysFromDatabaseURL, "subject-keys-from-database-url", "",
		"the PostgreSQL database of that deployment (overrides the one its config names)")
	cmd.Flags().StringVar(&opts.Listen, "listen", "", "address to serve on (default 127.0.0.1:8443)")
	cmd.Flags().StringSliceVar(&hosts, "host", nil, "extra DNS name or IP for the server certificate (repeatable)")
	_ = cmd.MarkFlagRequired("in")
	quietFlag(cmd, &quiet)
	return cmd
}
