package cluster

import (
	"context"

	"github.com/cofferhq/coffer/internal/coffer"
)

// Authorizer decides a caller's request under the policy in force: nil
// when p may take action on resource from ip, a 403 otherwise; the
// decision is recorded in note.
type Authorizer interface {
	Allowed(p *coffer.Principal, action, resource, ip string, note *coffer.AccessNote) error
}

// NodeStore lists the deployment's node rows (live or not).
type NodeStore interface {
	Nodes(ctx context.Context) ([]coffer.Node, error)
}

// Directory lists the deployment's nodes for callers with read on nodes.
type Directory struct {
	store NodeStore
	auth  Authorizer
}

// NewDirectory returns the node directory of store under auth.
func NewDirectory(store NodeStore, auth Authorizer) *Directory {
	return &Directory{store: store, auth: auth}
}

// Nodes lists every node row (live or not) for a caller with read on
// nodes.
func (d *Directory) Nodes(ctx context.Context, c coffer.Caller) ([]coffer.Node, error) {
	c.Note.Target("read", "nodes")
	if err := d.auth.Allowed(c.Principal, "read", "nodes", c.IP, c.Note); err != nil {
		return nil, err
	}
	return d.store.Nodes(ctx)
}
