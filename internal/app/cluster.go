package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cofferhq/coffer/internal/cluster"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/store"
)

// metaIssuer is the meta key of the deployment's token issuer.
const metaIssuer = "auth.issuer"

// checkSchema refuses a database whose schema is newer than this binary's
// unless the `coffer migrate` that brought it there recorded that nodes of
// this binary's schema may still serve it (a rolling upgrade); an older
// database is refused before, by the pending migrations check.
func (c *components) checkSchema(ctx context.Context) error {
	database, binary, err := c.db.SchemaVersions(ctx)
	if err != nil {
		return err
	}
	c.schema = binary
	if database <= binary {
		return nil
	}
	floor, err := c.db.CompatibleFromRecorded(ctx)
	if err != nil {
		return err
	}
	if _, err := cluster.CheckSchema(database, binary, floor); err != nil {
		return err
	}
	c.opts.Logger.Warn("the database schema is newer than this node's: a rolling upgrade is under way; upgrade this node soon",
		"database_schema", database, "node_schema", binary, "compatible_from", floor)
	return nil
}

// resolveNode settles the node id when the configuration does not set
// one: the id kept in the data directory (made there once), or a new one.
// A data directory served before node ids were generated keeps the host
// name it used, so that its audit chain goes on, unless another live node
// holds it. Offline commands only read the kept id, and fall back to the
// host name.
func (c *components) resolveNode(ctx context.Context) error {
	cfg := c.cfg
	if !cfg.Derived("node") {
		return nil
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "coffer"
	}
	if c.opts.Offline {
		return nil // config.Load already took the kept id, if any
	}
	legacy := ""
	if _, err := os.Stat(filepath.Join(cfg.DataDir, cluster.IDFileName)); errors.Is(err, os.ErrNotExist) && cluster.ValidID(cfg.Node) {
		if seq, _, err := c.db.AuditHead(ctx, cfg.Node); err == nil && seq > 0 {
			n, err := c.db.Node(ctx, cfg.Node)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			if err != nil || !n.Live(c.opts.Now()) {
				legacy = cfg.Node
			}
		}
	}
	id, source, err := cluster.ResolveID(cfg.DataDir, host, legacy, c.opts.Rand)
	if err != nil {
		return err
	}
	switch source {
	case cluster.IDCopied:
		c.opts.Logger.Warn("this data directory was made on another host or path (a copy): this node has a new id", "node", id)
	case cluster.IDGenerated, cluster.IDLegacy:
		c.opts.Logger.Info("node id kept in the data directory", "node", id, "source", string(source),
			"file", filepath.Join(cfg.DataDir, cluster.IDFileName))
	}
	cfg.Node = id
	return nil
}

// deploymentIssuer returns the iss this node issues and the others it
// accepts. The deployment's issuer is kept in the store: the first node
// that serves records its own (auth.issuer, or public_url), and every node
// without an auth.issuer setting issues and accepts that one, so a token
// from any node verifies on every node. A node with auth.issuer set
// issues with it and accepts both.
func (c *components) deploymentIssuer(ctx context.Context) (string, []string, error) {
	cfg := c.cfg
	var (
		dep string
		err error
	)
	if c.opts.Offline {
		dep, err = c.db.Meta(ctx, metaIssuer)
		if errors.Is(err, store.ErrNotFound) {
			return cfg.Auth.Issuer, nil, nil
		}
	} else {
		dep, err = c.db.AddMeta(ctx, metaIssuer, cfg.Auth.Issuer)
	}
	if err != nil {
		return "", nil, fmt.Errorf("deployment issuer: %w", err)
	}
	if cfg.Derived("auth.issuer") || dep == cfg.Auth.Issuer {
		return dep, nil, nil
	}
	c.opts.Logger.Warn("auth.issuer differs from the deployment's issuer: tokens this node issues verify only on nodes with the same setting; remove it to use the deployment's",
		"issuer", cfg.Auth.Issuer, "deployment_issuer", dep)
	return cfg.Auth.Issuer, []string{dep}, nil
}

// clusterHint is the end of the message that refuses a node id in use.
func clusterHint(cfg *config.Config) string {
	if !cfg.Derived("node") {
		return "If that node is gone, start again once its lease has run out; otherwise give this node its own id: remove the node setting (an id is then made and kept in the data directory) or set a different one."
	}
	return fmt.Sprintf("If that node is gone, start again once its lease has run out; otherwise this data directory is shared with it: remove %s to make a new id.",
		filepath.Join(cfg.DataDir, cluster.IDFileName))
}
