package httpapi

import (
	"context"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

// NodeLister lists the deployment's node rows (live or not) for a
// caller; it decides who may (cluster.Directory).
type NodeLister interface {
	Nodes(ctx context.Context, c coffer.Caller) ([]coffer.Node, error)
}

// NodeView is one live node in the answer of GET /v1/sys/nodes.
type NodeView struct {
	coffer.Node
	// Self marks the node that answered.
	Self bool `json:"self"`
}

// NodeRoutes adds GET /v1/sys/nodes: the live nodes of the deployment
// (their lease running at now), their versions and last heartbeats.
func NodeRoutes(nodes NodeLister, self string, now func() time.Time) func(*Router) {
	if now == nil {
		now = time.Now
	}
	return func(rt *Router) {
		rt.Handle("GET /v1/sys/nodes", func(c *Call) (Reply, error) {
			all, err := nodes.Nodes(c.R.Context(), c.caller())
			if err != nil {
				return Reply{}, err
			}
			t := now()
			out := make([]NodeView, 0, len(all))
			for _, n := range all {
				if n.Live(t) {
					out = append(out, NodeView{Node: n, Self: n.ID == self})
				}
			}
			c.Note.Count = len(out)
			return Reply{Body: map[string]any{"nodes": out}}, nil
		})
	}
}
