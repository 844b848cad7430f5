package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

// SchemaStore reports the schema versions a node checks before serving.
type SchemaStore interface {
	// SchemaVersions returns the database's schema version and the one
	// this binary was built for.
	SchemaVersions(ctx context.Context) (database, binary int64, err error)
	// CompatibleFromRecorded returns the oldest node schema the last
	// `coffer migrate` said may still serve the database.
	CompatibleFromRecorded(ctx context.Context) (int64, error)
}

// CheckStoreSchema refuses a database whose schema is newer than this
// binary's unless the `coffer migrate` that brought it there recorded that
// nodes of this binary's schema may still serve it (a rolling upgrade,
// logged as a warning); an older database is refused before, by the
// pending migrations check. It returns the binary's schema version.
func CheckStoreSchema(ctx context.Context, db SchemaStore, log *slog.Logger) (int64, error) {
	database, binary, err := db.SchemaVersions(ctx)
	if err != nil {
		return 0, err
	}
	if database <= binary {
		return binary, nil
	}
	floor, err := db.CompatibleFromRecorded(ctx)
	if err != nil {
		return 0, err
	}
	if _, err := CheckSchema(database, binary, floor); err != nil {
		return 0, err
	}
	log.Warn("the database schema is newer than this node's: a rolling upgrade is under way; upgrade this node soon",
		"database_schema", database, "node_schema", binary, "compatible_from", floor)
	return binary, nil
}

// ResolveStore is what ResolveNode reads of the store.
type ResolveStore interface {
	// AuditHead returns the last seq and hash of node's audit chain.
	AuditHead(ctx context.Context, node string) (uint64, string, error)
	// Node returns a node's lease (ENOTFOUND when it never held one).
	Node(ctx context.Context, id string) (coffer.Node, error)
}

// ResolveConfig are the inputs of ResolveNode.
type ResolveConfig struct {
	Store   ResolveStore
	DataDir string
	// Node is the id the configuration derived (the host name, or the id
	// config.Load found kept in the data directory).
	Node   string
	Now    func() time.Time
	Rand   io.Reader
	Logger *slog.Logger
}

// ResolveNode settles the node id of a configuration that does not set
// one: the id kept in the data directory (made there once), or a new one.
// A data directory served before node ids were generated keeps the host
// name it used (c.Node), so that its audit chain goes on, unless another
// live node holds it.
func ResolveNode(ctx context.Context, c ResolveConfig) (string, error) {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "coffer"
	}
	legacy := ""
	if _, err := os.Stat(filepath.Join(c.DataDir, IDFileName)); errors.Is(err, os.ErrNotExist) && ValidID(c.Node) {
		if seq, _, err := c.Store.AuditHead(ctx, c.Node); err == nil && seq > 0 {
			n, err := c.Store.Node(ctx, c.Node)
			if err != nil && coffer.ErrorCode(err) != coffer.ENOTFOUND {
				return "", err
			}
			if err != nil || !n.Live(c.Now()) {
				legacy = c.Node
			}
		}
	}
	id, source, err := ResolveID(c.DataDir, host, legacy, c.Rand)
	if err != nil {
		return "", err
	}
	switch source {
	case IDCopied:
		c.Logger.Warn("this data directory was made on another host or path (a copy): this node has a new id", "node", id)
	case IDGenerated, IDLegacy:
		c.Logger.Info("node id kept in the data directory", "node", id, "source", string(source),
			"file", filepath.Join(c.DataDir, IDFileName))
	}
	return id, nil
}

// LeaseHint is the end of the message that refuses a node id in use
// (Config.Hint): set says whether the configuration names the id.
func LeaseHint(dataDir string, set bool) string {
	if set {
		return "If that node is gone, start again once its lease has run out; otherwise give this node its own id: remove the node setting (an id is then made and kept in the data directory) or set a different one."
	}
	return fmt.Sprintf("If that node is gone, start again once its lease has run out; otherwise this data directory is shared with it: remove %s to make a new id.",
		filepath.Join(dataDir, IDFileName))
}
