package e2e

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// TestLeastPrivilege: coffer migrate creates an app role that can serve but
// can neither edit nor delete audit events; serve refuses a superuser.
func TestLeastPrivilege(t *testing.T) {
	ctx := context.Background()
	ownerDSN := storetest.PostgresDSN(t)
	dir := t.TempDir() + "/data"
	if _, err := app.Init(ctx, app.InitOptions{DataDir: dir, DatabaseURL: ownerDSN, Listen: "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Serving as the owner (a superuser here) is refused.
	if _, err := app.Open(ctx, cfg, app.Options{}); err == nil || !strings.Contains(err.Error(), "superuser") {
		t.Fatalf("serve as a superuser: %v", err)
	}
	const role = "coffer_app_e2e"
	if err := cfg.Set("database_app_role", role); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Migrate(ctx, cfg); err != nil {
		t.Fatalf("migrate with an app role: %v", err)
	}
	u, _ := url.Parse(ownerDSN)
	u.User = url.User(role)
	appDSN := u.String()
	if err := cfg.Set("database_url", appDSN); err != nil {
		t.Fatal(err)
	}
	srv, err := app.Open(ctx, cfg, app.Options{})
	if err != nil {
		t.Fatalf("serve as the app role: %v", err)
	}
	_ = srv.Shutdown(ctx)
	conn, err := pgx.Connect(ctx, appDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM audit_log`).Scan(&n); err != nil {
		t.Fatalf("app role cannot read the audit log: %v", err)
	}
	// A row for the DELETE to meet (the app role may append): no archived
	// segment covers it, so the trigger must refuse it.
	if _, err := conn.Exec(ctx, `INSERT INTO audit_events (node, seq, id, time, principal, action, body, hash, prev_hash)
		VALUES ('privilege-test', 1, 'privilege-test:1', 1, '', 'x', '{}', 'h', 'p')`); err != nil {
		t.Fatalf("app role cannot append to the audit log: %v", err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO audit_log (node, seq, time, principal, action, hash, body)
		VALUES ('privilege-test', 1, 1, '', 'x', decode(repeat('00', 32), 'hex'), decode('00', 'hex'))`); err != nil {
		t.Fatalf("app role cannot append to the audit log: %v", err)
	}
	for _, stmt := range []string{
		`UPDATE audit_events SET body = '{}'`,
		`DELETE FROM audit_events`,
		`TRUNCATE audit_events`,
		`UPDATE audit_log SET action = 'x'`,
		`DELETE FROM audit_log`,
		`TRUNCATE audit_log`,
		`DROP TABLE records`,
		`ALTER TABLE audit_events DISABLE TRIGGER ALL`,
	} {
		// DELETE is granted to prune archived segments (migration 21), and
		// refused by the table's trigger for every row no archived segment
		// covers: here, all of them.
		if _, err := conn.Exec(ctx, stmt); err == nil || !strings.Contains(err.Error(), "denied") && !strings.Contains(err.Error(), "must be owner") &&
			!(strings.HasPrefix(stmt, "DELETE") && strings.Contains(err.Error(), "only archived segments may be pruned")) {
			t.Errorf("app role ran %q: %v", stmt, err)
		}
	}
}
