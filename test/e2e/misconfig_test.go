package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/cluster"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// TestNodeOfAnotherDeploymentIsRefused: a data directory initialised on its
// own (its own root key) pointed at another deployment's database refuses
// to start, saying the root key is not that deployment's, and leaves no
// node id or lease behind.
func TestNodeOfAnotherDeploymentIsRefused(t *testing.T) {
	a := startWith(t, postgres(), clusterOpts)
	other := startWith(t, postgres(), clusterOpts)
	other.Stop()
	if err := os.Remove(filepath.Join(other.Dir, cluster.IDFileName)); err != nil {
		t.Fatal(err)
	}
	acfg, err := config.Load(a.Dir, a.Env)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = openServer(t, other.Dir, clusterOpts, append(other.Env, "COFFER_DATABASE_URL="+acfg.DatabaseURL)...)
	if err == nil || !strings.Contains(err.Error(), "not the root key this deployment was initialised with") {
		t.Fatalf("a node of another deployment: %v", err)
	}
	if _, err := os.Stat(filepath.Join(other.Dir, cluster.IDFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused node made a node id: %v", err)
	}
	tok := a.Token(a.Init.ClientID, a.Init.ClientSecret)
	if vs := a.sysNodes(tok); len(vs) != 1 {
		t.Fatalf("the refused node joined: %+v", vs)
	}
}

// TestSchemaVersionsAcrossNodes, on both backends: a node newer than the
// database (a migration it has, not applied) refuses to serve until
// `coffer migrate`; a node one schema version older than the database (a
// rolling upgrade, the new node migrated first) serves and warns, unless a
// migration since recorded that it breaks older nodes.
func TestSchemaVersionsAcrossNodes(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			n := startWith(t, b, clusterOpts)
			n.Stop()
			cfg, err := config.Load(n.Dir, n.Env)
			if err != nil {
				t.Fatal(err)
			}
			_, dsn := cfg.Database()
			db := storetest.Intruder(t, dsn)
			exec := func(q string, args ...any) {
				t.Helper()
				if _, err := db.ExecContext(context.Background(), q, args...); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}

			// This node's newest migration undone: the database is older.
			// (Migration 21, audit_segments, undone as its reverse.)
			if b.Name == "postgres" {
				exec(`DROP TRIGGER IF EXISTS audit_events_delete_archived_only ON audit_events`)
				exec(`DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events`)
				exec(`CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events FOR EACH ROW EXECUTE FUNCTION coffer_append_only()`)
				exec(`DROP TRIGGER IF EXISTS audit_log_delete_archived_only ON audit_log`)
				exec(`DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log`)
				exec(`CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION coffer_append_only()`)
				exec(`DROP TABLE IF EXISTS audit_segments`)
				exec(`DROP FUNCTION IF EXISTS coffer_audit_delete_archived_only()`)
				exec(`DROP FUNCTION IF EXISTS coffer_audit_segment_update()`)
			} else {
				exec(`DROP TRIGGER IF EXISTS audit_events_delete_archived_only`)
				exec(`CREATE TRIGGER IF NOT EXISTS audit_events_no_delete BEFORE DELETE ON audit_events BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END`)
				exec(`DROP TRIGGER IF EXISTS audit_log_delete_archived_only`)
				exec(`CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END`)
				exec(`DROP TABLE IF EXISTS audit_segments`)
			}
			exec(`DELETE FROM goose_db_version WHERE version_id = 21`)
			_, _, err = openServer(t, n.Dir, clusterOpts, n.Env...)
			if !errors.Is(err, app.ErrPendingMigrations) || !strings.Contains(err.Error(), "coffer migrate") {
				t.Fatalf("a newer node on an older database: %v", err)
			}
			if _, err := app.Migrate(context.Background(), cfg); err != nil {
				t.Fatal(err)
			}
			n.Serve("127.0.0.1:0")
			n.Stop()

			// The database one migration ahead of this node (it has no
			// file for 22): served, with a warning.
			exec(`INSERT INTO goose_db_version (version_id, is_applied) VALUES (22, true)`)
			stop, logs, err := openServer(t, n.Dir, clusterOpts, n.Env...)
			if err != nil {
				t.Fatalf("an older node during a rolling upgrade: %v", err)
			}
			if !strings.Contains(logs.String(), "rolling upgrade") {
				t.Fatalf("no warning: %s", logs.String())
			}
			stop()

			// Migration 22 recorded that it breaks nodes older than itself.
			exec(`INSERT INTO meta (key, value) VALUES ($1, '22')`, store.MetaCompatibleFrom)
			_, _, err = openServer(t, n.Dir, clusterOpts, n.Env...)
			if err == nil || !strings.Contains(err.Error(), "upgrade this node") || !strings.Contains(err.Error(), "version 22") {
				t.Fatalf("a node the newer schema no longer serves: %v", err)
			}
		})
	}
}
