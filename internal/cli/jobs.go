package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/client"
)

// jobsCmd follows the background jobs the serving nodes run (rewrap,
// reindex) through GET /v1/admin/jobs.
func (a *app) jobsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "jobs", Short: "Follow the background jobs the servers run (rewrap, reindex)"}
	status := &cobra.Command{
		Use: "status", Short: "Show how far the rewrap and the reindex have come", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client, o output) error {
				js, err := c.Jobs(ctx)
				if err != nil {
					return err
				}
				rows := make([][]string, len(js))
				for i, j := range js {
					rows[i] = []string{j.Name, j.State, fmt.Sprint(j.Done), fmt.Sprint(j.Total), j.Node}
				}
				return o.table(map[string]any{"jobs": js}, []string{"JOB", "STATE", "DONE", "TOTAL", "NODE"}, rows)
			})
		},
	}
	var (
		quiet    bool
		interval time.Duration
	)
	wait := &cobra.Command{
		Use:   "wait rewrap|reindex [-q] [--interval 1s]",
		Short: "Wait for a background job to finish, with a progress bar (a progress line when not on a terminal)",
		Long: "Polls GET /v1/admin/jobs every --interval and shows the job's progress on standard error: on a\n" +
			"terminal a bar with done/total, rate and time left, otherwise a line every few seconds; -q shows\n" +
			"nothing. Exits 0 once the job is done (or has nothing to do).",
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"rewrap", "reindex"},
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if name != "rewrap" && name != "reindex" {
				return usageError(fmt.Errorf("%q: rewrap or reindex", name))
			}
			if interval <= 0 {
				return usageError(fmt.Errorf("--interval must be positive"))
			}
			return a.call(cmd, func(ctx context.Context, c *client.Client, _ output) error {
				p := NewProgress(a.env.Stderr, name, ProgressOptions{Quiet: quiet})
				for {
					js, err := c.Jobs(ctx)
					if err != nil {
						p.Stop()
						return err
					}
					var j *client.JobProgress
					for i := range js {
						if js[i].Name == name {
							j = &js[i]
						}
					}
					if j == nil {
						p.Stop()
						return fmt.Errorf("the server reports no %s job", name)
					}
					p.Update(j.Done, j.Total)
					if j.State == "done" || j.State == "idle" {
						p.Finish()
						return nil
					}
					select {
					case <-ctx.Done():
						p.Stop()
						return ctx.Err()
					case <-time.After(interval):
					}
				}
			})
		},
	}
	wait.Flags().BoolVarP(&quiet, "quiet", "q", false, "show no progress")
	wait.Flags().DurationVar(&interval, "interval", time.Second, "how often to ask the server")
	cmd.AddCommand(status, wait)
	return cmd
}
