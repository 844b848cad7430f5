package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/cli"
	"github.com/cofferhq/coffer/internal/progress"
)

// quietFlag adds -q to a long-running command.
func quietFlag(cmd *cobra.Command, p *bool) {
	cmd.Flags().BoolVarP(p, "quiet", "q", false, "show no progress (otherwise a bar on a terminal, a line every few seconds elsewhere, on standard error)")
}

// withProgress returns the command's context carrying a progress display
// on its standard error under label, and the display, to Finish on
// success or Stop on failure.
func withProgress(cmd *cobra.Command, label string, quiet, bytes bool) (context.Context, *cli.Progress) {
	p := cli.NewProgress(cmd.ErrOrStderr(), label, cli.ProgressOptions{Quiet: quiet, Bytes: bytes})
	return progress.With(cmd.Context(), func(done, total int64) { p.Update(done, total) }), p
}
