package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/policy"
)

func policyCmd(stdout io.Writer, env []string) *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Work with policy documents: test them, read or replace the one in force"}
	var policyFile string
	test := &cobra.Command{
		Use:   "test --policy POLICY.yaml TESTS.yaml",
		Short: "Run a table of expected decisions against a policy",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			doc, err := os.ReadFile(policyFile) // #nosec G304 -- the operator names the file
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			p, err := policy.Load(doc, policyFormat(policyFile))
			if err != nil {
				return &exitError{code: 1, err: fmt.Errorf("%s: %w", policyFile, err)}
			}
			tests, err := os.ReadFile(args[0])
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			results, err := policy.RunTests(p, tests)
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			failed := 0
			for _, r := range results {
				status := "PASS"
				if !r.Pass {
					status, failed = "FAIL", failed+1
				}
				fmt.Fprintf(stdout, "%s %s", status, r.Name)
				if r.Message != "" {
					fmt.Fprintf(stdout, ": %s", r.Message)
				}
				fmt.Fprintln(stdout)
			}
			fmt.Fprintf(stdout, "%d passed, %d failed\n", len(results)-failed, failed)
			if failed > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d policy tests failed", failed)}
			}
			return nil
		},
	}
	test.Flags().StringVar(&policyFile, "policy", "", "the policy document (YAML, or JSON by .json)")
	_ = test.MarkFlagRequired("policy")
	// get and apply are internal/cli's (the API); with --data-dir they take
	// the offline break-glass path, offlinePolicy.
	cmd.AddCommand(test)
	return cmd
}
