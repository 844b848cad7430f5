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
	"github.com/cofferhq/coffer/internal/coffer"
)

// The offline mode of `coffer policy get` and `coffer policy apply`,
// selected by --data-dir: the break-glass that reads or replaces the
// policy in the deployment's store with no server, no token and no
// policy decision, audited on the offline chain (app.GetPolicy,
// app.ApplyPolicy).

// policyGetCmd is `coffer policy get --data-dir DIR`.
func policyGetCmd(stdout io.Writer, env []string) *cobra.Command {
	var dir, dbURL string
	cmd := &cobra.Command{
		Use:   "get --data-dir DIR",
		Short: "Print the policy document in force (offline, from the store; audited)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return policyGetOffline(cmd, stdout, env, dir, dbURL)
		},
	}
	deploymentFlags(cmd, env, &dir, &dbURL)
	return cmd
}

// policyApplyCmd is `coffer policy apply --data-dir DIR FILE`.
func policyApplyCmd(stdout io.Writer, env []string) *cobra.Command {
	var (
		dir, dbURL string
		force      bool
	)
	cmd := &cobra.Command{
		Use: "apply --data-dir DIR [--force] FILE",
		Short: "Put a policy document (YAML, or JSON by .json) in force (offline break-glass, in the store; audited). " +
			"A document under which no client or user could change the policy again is refused unless --force",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return policyApplyOffline(cmd, stdout, env, dir, dbURL, args[0], force)
		},
	}
	deploymentFlags(cmd, env, &dir, &dbURL)
	cmd.Flags().BoolVar(&force, "force", false, "apply even a document under which nobody could change the policy again")
	return cmd
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
