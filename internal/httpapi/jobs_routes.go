package httpapi

import (
	"context"

	"github.com/cofferhq/coffer/internal/coffer"
)

// JobProgress reports the background jobs' progress to a caller (the
// serving node's lifecycle.Jobs.Progress): it decides who may (read on
// system/jobs) and fills in the caller's note; the answer is encoded as
// it is.
type JobProgress func(ctx context.Context, c coffer.Caller) (any, error)

// JobRoutes returns the route a client polls to follow the background
// jobs that run on the serving nodes, for Config.Extra:
//
//	GET /v1/admin/jobs → {"jobs": [{"name": "rewrap", "state", "done", "total", …}, …]}
//
// The CLI draws its progress bar from it (coffer jobs wait) and the
// console its rewrap progress.
func JobRoutes(progress JobProgress) func(*Router) {
	return func(rt *Router) {
		rt.Handle("GET /v1/admin/jobs", func(c *Call) (Reply, error) {
			out, err := progress(c.R.Context(), c.caller())
			if err != nil {
				return Reply{}, err
			}
			return Reply{Body: map[string]any{"jobs": out}}, nil
		})
	}
}
