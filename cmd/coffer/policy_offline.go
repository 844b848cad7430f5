package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/cli"
	"github.com/cofferhq/coffer/internal/coffer"
)

// The offline mode of `coffer policy get` and `coffer policy apply`,
// selected by --data-dir: the break-glass that reads or replaces the
// policy in the deployment's store with no server, no token and no
// policy decision, audited on the offline chain (app.GetPolicy,
// app.ApplyPolicy).

// offlinePolicy is the break-glass path of `coffer policy get|apply`
// (internal/cli's commands) when --data-dir is given: against the store,
// offline, audited. It adds --database-url and --unseal-shares-stdin to
// both commands.
func offlinePolicy(stdout io.Writer, env []string) cli.OfflinePolicy {
	dbURL := func(cmd *cobra.Command) string { u, _ := cmd.Flags().GetString("database-url"); return u }
	return cli.OfflinePolicy{
		Flags: func(cmd *cobra.Command) {
			cmd.Flags().String("database-url", "", "with --data-dir: PostgreSQL URL (overrides the config)")
			cmd.Flags().Bool("unseal-shares-stdin", false, "with --data-dir: read root key shares, one per line, from standard input (shamir deployments)")
		},
		Get: func(cmd *cobra.Command, dir string) error {
			return policyGetOffline(cmd, stdout, env, dir, dbURL(cmd))
		},
		Apply: func(cmd *cobra.Command, dir, file string, force bool) error {
			return policyApplyOffline(cmd, stdout, env, dir, dbURL(cmd), file, force)
		},
	}
}

func policyGetOffline(cmd *cobra.Command, stdout io.Writer, env []string, dir, dbURL string) error {
	cfg, err := deploymentConfig(cmd, dir, dbURL, env)
	if err != nil {
		return err
	}
	p, err := app.GetPolicy(cmd.Context(), cfg)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	_, err = stdout.Write(p.Data)
	return err
}

func policyApplyOffline(cmd *cobra.Command, stdout io.Writer, env []string, dir, dbURL, file string, force bool) error {
	cfg, err := deploymentConfig(cmd, dir, dbURL, env)
	if err != nil {
		return err
	}
	doc, err := os.ReadFile(file) // #nosec G304 -- the operator names the file
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	v, err := app.ApplyPolicy(cmd.Context(), cfg, doc, policyFormat(file), force)
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("%s: %w", file, problemsOf(err))}
	}
	fmt.Fprintf(stdout, "policy version %d in force; serving nodes load it within seconds\n", v)
	return nil
}

// policyFormat is a policy file's format by its name: JSON for .json,
// YAML otherwise.
func policyFormat(file string) string {
	if strings.EqualFold(filepath.Ext(file), ".json") {
		return "json"
	}
	return "yaml"
}

// problemsOf is err with the problems a policy error lists, one a line.
func problemsOf(err error) error {
	var ce *coffer.Error
	if errors.As(err, &ce) && len(ce.Problems) > 0 {
		return fmt.Errorf("%s:\n  %s", ce.Message, strings.Join(ce.Problems, "\n  "))
	}
	return err
}
