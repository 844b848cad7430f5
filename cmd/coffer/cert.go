package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/app"
)

func certCmd(stdout io.Writer, env []string) *cobra.Command {
	cmd := &cobra.Command{Use: "cert", Short: "Client certificates for mTLS"}
	var (
		dir, name, outDir string
		ttl               time.Duration
	)
	issue := &cobra.Command{
		Use:   "issue --data-dir DIR --name CLIENT_ID",
		Short: "Issue a short-lived client certificate for a service client",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needDir(dir); err != nil {
				return err
			}
			cfg, err := loadConfig(dir, env, nil)
			if err != nil {
				return err
			}
			certPEM, keyPEM, err := app.IssueClientCert(cmd.Context(), cfg, name, ttl)
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			certFile := filepath.Join(outDir, name+".pem")
			keyFile := filepath.Join(outDir, name+"-key.pem")
			if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
				return &exitError{code: 1, err: err}
			}
			if err := os.WriteFile(certFile, certPEM, 0o644); err != nil { // #nosec G306 -- a certificate is public
				return &exitError{code: 1, err: err}
			}
			fmt.Fprintf(stdout, "certificate: %s\nkey:         %s (0600)\nvalid for:   %s\n", certFile, keyFile, ttl)
			return nil
		},
	}
	dataDirFlag(issue, env, &dir)
	issue.Flags().StringVar(&name, "name", "", "the service client's id")
	issue.Flags().StringVar(&outDir, "out-dir", ".", "where to write NAME.pem and NAME-key.pem")
	issue.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "lifetime (short: renew often)")
	_ = issue.MarkFlagRequired("name")
	cmd.AddCommand(issue)
	return cmd
}
