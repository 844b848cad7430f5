package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/auditadmin"
	"github.com/cofferhq/coffer/internal/crypto/unseal"
	"github.com/cofferhq/coffer/internal/keyadmin"
)

func keysCmd(stdout io.Writer, env []string) *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Rotate Coffer's keys, and retire or destroy old versions, offline, against the store"}
	var dir, dbURL, newKey string
	var quiet bool
	rotate := &cobra.Command{
		Use: "rotate --data-dir DIR KEY_ID",
		Short: "Make a new version of a key the one that encrypts (collection/NAME, subject/NAME, index/COLLECTION/FIELD, mask/hash/COLLECTION/FIELD, tokens/TYPE[/fpe], " +
			auditadmin.HMACKeyID + ", " + auditadmin.SigningKeyID + ", " + keyadmin.SigningKeyID + ")",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := deploymentConfig(cmd, dir, dbURL, env)
			if err != nil {
				return err
			}
			res, err := app.Keys(cmd.Context(), cfg, func(a *keyadmin.Admin) (keyadmin.KeyRotation, error) {
				return a.RotateOffline(cmd.Context(), args[0])
			})
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			switch {
			case res.KeyID == auditadmin.HMACKeyID:
				fmt.Fprintf(stdout, "%s rotated: version %d now chains the audit log; every older version is kept to verify it\n", res.KeyID, res.Version)
			case res.KeyID == auditadmin.SigningKeyID:
				fmt.Fprintf(stdout, "%s rotated: version %d now signs audit checkpoints; every older version is kept to verify them\n", res.KeyID, res.Version)
			case res.ReindexScheduled:
				fmt.Fprintf(stdout, "%s rotated: version %d now MACs new entries; search looks under every version until a serving node has reindexed\n", res.KeyID, res.Version)
			case res.Version > 0:
				fmt.Fprintf(stdout, "%s rotated: version %d now encrypts; older versions still decrypt\n", res.KeyID, res.Version)
			default:
				fmt.Fprintf(stdout, "%s rotated: a new key signs; older ones verify until their tokens expire\n", res.KeyID)
			}
			if res.RewrapScheduled {
				fmt.Fprintln(stdout, "rewrap scheduled: a serving node moves every value to the new version in the background")
				fmt.Fprintf(stdout, "once it has, retire the older versions (`coffer keys retire %s VERSION`) and later destroy them\n", res.KeyID)
			}
			return nil
		},
	}
	deploymentFlags(rotate, env, &dir, &dbURL)

	rotateRoot := &cobra.Command{
		Use:   "rotate-root --data-dir DIR --new-root-key FILE",
		Short: "Rewrap every data key under a new root key file, then switch the config to it (stop the nodes first)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := deploymentConfig(cmd, dir, dbURL, env)
			if err != nil {
				return err
			}
			ctx, prog := withProgress(cmd, "rotate-root: data key versions", quiet, false)
			res, err := app.RotateRoot(ctx, cfg, newKey)
			if err != nil {
				prog.Stop()
				return &exitError{code: 1, err: err}
			}
			prog.Finish()
			fmt.Fprintf(stdout, `root key rotated: %d data key versions rewrapped
  the config now names: %s
  the old root key is:  %s (0600)

WARNING: the old root key still opens every backup written before now.
Take a new backup, and destroy %s (shred it) once no older backup is needed.
Restart every node with the new root key.
`, res.Rewrapped, res.NewKeyFile, res.OldKeyFile, res.OldKeyFile)
			return nil
		},
	}
	deploymentFlags(rotateRoot, env, &dir, &dbURL)
	rotateRoot.Flags().StringVar(&newKey, "new-root-key", "", "the new root key file (32 bytes base64, mode 0600)")
	_ = rotateRoot.MarkFlagRequired("new-root-key")
	quietFlag(rotateRoot, &quiet)
	revokeSigning := &cobra.Command{
		Use:   "revoke-signing --data-dir DIR KID",
		Short: "Drop a leaked access token signing key at once: every token it signed is refused (a new key signs if it was the active one)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := deploymentConfig(cmd, dir, dbURL, env)
			if err != nil {
				return err
			}
			res, err := app.Keys(cmd.Context(), cfg, func(a *keyadmin.Admin) (keyadmin.SigningKeyRevocation, error) {
				return a.RevokeSigningKeyOffline(cmd.Context(), args[0])
			})
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			fmt.Fprintf(stdout, "signing key %s revoked: every node refuses the tokens it signed from its next request on\n", res.KID)
			if res.NewActiveKID != "" {
				fmt.Fprintf(stdout, "it was the active key: %s signs from now on\n", res.NewActiveKID)
			}
			return nil
		},
	}
	deploymentFlags(revokeSigning, env, &dir, &dbURL)
	cmd.AddCommand(rotate, rotateRoot, revokeSigning)
	for _, vc := range []struct {
		use, short string
		do         func(*keyadmin.Admin, context.Context, string, uint32) (keyadmin.KeyVersionChange, error)
		done       string
	}{
		{"retire", "Stop an old version of a collection/NAME, subject/ID or tokens/TYPE key from decrypting, once no stored value is sealed under it (undo: keys unretire)",
			(*keyadmin.Admin).RetireOffline, "retired: it no longer decrypts (coffer keys unretire brings it back; destroy ends it for good)"},
		{"unretire", "Make a retired key version decrypt again (to undo a retire)",
			(*keyadmin.Admin).UnretireOffline, "active again: it decrypts"},
		{"destroy", "Erase a retired key version for good, once no stored value is sealed under it",
			(*keyadmin.Admin).DestroyOffline, "destroyed: its key bytes are erased; nothing sealed under it can be opened again"},
	} {
		sub := &cobra.Command{
			Use:   vc.use + " --data-dir DIR KEY_ID VERSION",
			Short: vc.short,
			Args:  cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				n, err := strconv.ParseUint(args[1], 10, 32)
				if err != nil || n == 0 {
					return &exitError{code: 2, err: errors.New("VERSION must be a key version number, 1 or more")}
				}
				cfg, err := deploymentConfig(cmd, dir, dbURL, env)
				if err != nil {
					return err
				}
				res, err := app.Keys(cmd.Context(), cfg, func(a *keyadmin.Admin) (keyadmin.KeyVersionChange, error) {
					return vc.do(a, cmd.Context(), args[0], uint32(n)) // #nosec G115 -- ParseUint with bitSize 32 above bounds n
				})
				if err != nil {
					return &exitError{code: 1, err: err}
				}
				fmt.Fprintf(stdout, "%s version %d %s\n", res.KeyID, res.Version, vc.done)
				return nil
			},
		}
		deploymentFlags(sub, env, &dir, &dbURL)
		cmd.AddCommand(sub)
	}
	return cmd
}

func unsealCmd(stdout io.Writer, env []string) *cobra.Command {
	var url, caFile, dir string
	var reset bool
	cmd := &cobra.Command{
		Use:   "unseal --url URL --ca-file FILE < shares | unseal --reset --data-dir DIR",
		Short: "Post root key shares (one per line on stdin) to a sealed server, or drop the shares it holds",
		Long: "Posts each share read from standard input to a sealed server and prints its progress; exits 0 when every\n" +
			"share was accepted (the server may still wait for other holders' shares) and 1 when one was refused.\n" +
			"With --reset it drops every share the sealed server holds, authenticated by the reset token in the\n" +
			"server's data directory (DIR/unseal-reset.token), so it must run where that directory is readable.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if reset {
				return unsealReset(cmd, stdout, env, dir, url, caFile)
			}
			if url == "" {
				return &exitError{code: 2, err: errors.New("--url is required")}
			}
			cl, err := sealedClient(url, caFile)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			sc := bufio.NewScanner(cmd.InOrStdin())
			sent := 0
			st := &client.UnsealStatus{}
			for sc.Scan() {
				share := strings.TrimSpace(sc.Text())
				if share == "" {
					continue
				}
				sent++
				st, err = cl.Unseal(cmd.Context(), share)
				if err != nil {
					return &exitError{code: 1, err: fmt.Errorf("share %d: %w", sent, err)}
				}
				if !st.Sealed {
					fmt.Fprintln(stdout, "unsealed: the server is serving")
					return nil
				}
				fmt.Fprintf(stdout, "share %d accepted: %d of %d\n", sent, st.Progress, st.Threshold)
			}
			if err := sc.Err(); err != nil {
				return &exitError{code: 1, err: err}
			}
			if sent == 0 {
				return &exitError{code: 1, err: errors.New("no share on standard input")}
			}
			// Every share given was taken: the rest are other holders' to give.
			fmt.Fprintf(stdout, "still sealed: %d of %d shares held; the server waits for %d more\n",
				st.Progress, st.Threshold, st.Threshold-st.Progress)
			return nil
		},
	}
	cmd.Flags().StringVar(&url, "url", lookup(env, "COFFER_URL"), "the server's URL (env COFFER_URL; with --reset, default the config's public_url)")
	cmd.Flags().StringVar(&caFile, "ca-file", "", "CA certificate to trust for the server (PEM; with --reset, default the config's tls.ca_file)")
	cmd.Flags().BoolVar(&reset, "reset", false, "drop every share the sealed server holds (needs --data-dir)")
	dataDirFlag(cmd, env, &dir)
	return cmd
}

// unsealReset posts the reset token of the deployment in dir to its
// sealed server.
func unsealReset(cmd *cobra.Command, stdout io.Writer, env []string, dir, url, caFile string) error {
	if err := needDir(dir); err != nil {
		return err
	}
	cfg, err := loadConfig(dir, env, nil)
	if err != nil {
		return err
	}
	if url == "" {
		url = cfg.PublicURL
	}
	if caFile == "" {
		caFile = cfg.TLS.CAFile
	}
	tok, err := os.ReadFile(unseal.ResetFile(cfg)) // #nosec G304 -- a file in the operator's data directory
	if errors.Is(err, os.ErrNotExist) {
		return &exitError{code: 1, err: fmt.Errorf("%s does not exist: the server is not sealed, or is not running from this data directory", unseal.ResetFile(cfg))}
	}
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	cl, err := sealedClient(url, caFile)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	st, err := cl.UnsealReset(cmd.Context(), strings.TrimSpace(string(tok)))
	clear(tok)
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("reset: %w", err)}
	}
	if !st.Sealed {
		fmt.Fprintln(stdout, "the server is not sealed: nothing to reset")
		return nil
	}
	fmt.Fprintf(stdout, "reset: the server holds %d of %d shares; give them again\n", st.Progress, st.Threshold)
	return nil
}

// sealedClient is a client of the server at url (its sealed routes need no
// credentials) that trusts caFile, or the system roots.
func sealedClient(url, caFile string) (*client.Client, error) {
	var opts []client.Option
	if caFile != "" {
		opts = append(opts, client.WithCAFile(caFile))
	}
	return client.New(url, opts...)
}
