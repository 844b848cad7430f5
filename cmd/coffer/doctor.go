package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/doctor"
)

func doctorCmd(stdout io.Writer, env []string) *cobra.Command {
	var (
		dir, dbURL, liveURL string
		asJSON              bool
	)
	cmd := &cobra.Command{
		Use:   "doctor --data-dir DIR [--url https://HOST:PORT] [--json]",
		Short: "Audit a deployment's configuration: one line per finding; exit 1 on a high one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := deploymentConfig(cmd, dir, dbURL, env)
			if err != nil {
				return err
			}
			rep, err := doctor.Run(cmd.Context(), doctor.Options{
				DataDir: dir, Config: cfg, LiveURL: liveURL,
				VerifyAudit: func(ctx context.Context) (int, error) { return app.VerifyAudit(ctx, cfg) },
			})
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			if asJSON {
				err = rep.WriteJSON(stdout)
			} else {
				err = rep.WriteText(stdout)
			}
			if err != nil {
				return err
			}
			if rep.High() {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	deploymentFlags(cmd, env, &dir, &dbURL)
	cmd.Flags().StringVar(&liveURL, "url", "", "also probe this running server's TLS")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}
