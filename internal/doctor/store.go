package doctor

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/store"
)

// bootstrapClient is the name of the admin client `coffer init` creates.
const bootstrapClient = "bootstrap-admin"

// auditTables are the append-only tables: the app role may INSERT and
// SELECT them, never UPDATE, DELETE or TRUNCATE; except that it may DELETE
// from audit_events and audit_log, to prune sealed segments once archived,
// which their triggers allow for archived rows only (migration 21).
var auditTables = []string{"audit_events", "audit_log", "audit_checkpoints"}

// mayDelete are the audit tables the app role may DELETE from.
var mayDelete = map[string]bool{"audit_events": true, "audit_log": true}

// openStore opens the deployment's store, or says why it cannot. A
// missing SQLite file is not created (checkDatabaseFile reports it).
func openStore(ctx context.Context, cfg *config.Config) (*store.DB, []Finding) {
	kind, dsn := cfg.Database()
	if kind == config.DatabaseSQLite {
		if _, err := os.Stat(dsn); errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
	}
	db, err := store.Open(ctx, dsn, store.Options{MaxConns: 2})
	if err != nil {
		return nil, []Finding{{
			ID: "database.unreachable", Severity: High,
			Title:  "the database cannot be opened: policy, clients and collections were not checked",
			Detail: safeError(err),
			Fix:    "check database_url and that the database is up; run the doctor as the server's user",
		}}
	}
	return db, nil
}

// checkPostgresRoles (PostgreSQL only) flags a superuser connection and an
// app role that may change or remove audit events.
func checkPostgresRoles(ctx context.Context, st *state) []Finding {
	if st.db.Dialect() != store.Postgres {
		return nil
	}
	super, err := st.db.IsSuperuser(ctx)
	if err != nil {
		return []Finding{unchecked("database.superuser", "the database role", err)}
	}
	if super {
		// A superuser holds every privilege: the audit check below would
		// only repeat this finding.
		return []Finding{{
			ID: "database.superuser", Severity: High,
			Title:  "Coffer connects to PostgreSQL as a superuser",
			Detail: "a superuser can rewrite or truncate the audit log and read every table",
			Fix:    "set database_app_role, run `coffer migrate` as the owner, and put the app role in database_url",
		}}
	}
	_, dsn := st.cfg.Database()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return []Finding{unchecked("database.audit_writable", "the audit table privileges", errors.New("cannot connect"))}
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	var writable []string
	for _, t := range auditTables {
		var update, del, trunc *bool
		// to_regclass resolves the name on the connection's search_path, as
		// the server's own statements do; NULL when the table is missing.
		err := conn.QueryRow(ctx, `SELECT has_table_privilege(c, 'UPDATE'), has_table_privilege(c, 'DELETE'),
			has_table_privilege(c, 'TRUNCATE') FROM (SELECT to_regclass($1) AS c) AS t`, t).Scan(&update, &del, &trunc)
		if err != nil {
			return []Finding{unchecked("database.audit_writable", "the audit table privileges", errors.New("query failed"))}
		}
		var privs []string
		for _, p := range []struct {
			name string
			v    *bool
		}{{"UPDATE", update}, {"DELETE", del}, {"TRUNCATE", trunc}} {
			if p.v != nil && *p.v && (p.name != "DELETE" || !mayDelete[t]) {
				privs = append(privs, p.name)
			}
		}
		if len(privs) > 0 {
			writable = append(writable, t+" ("+strings.Join(privs, ", ")+")")
		}
	}
	if len(writable) == 0 {
		return nil
	}
	return []Finding{{
		ID: "database.audit_writable", Severity: High,
		Title:  "the app role may change or remove audit events",
		Detail: "the connected role has " + strings.Join(writable, "; "),
		Fix:    "connect as the role `coffer migrate` grants (database_app_role): INSERT and SELECT only on the audit tables",
	}}
}

// checkClients flags the bootstrap admin client still present.
func checkClients(ctx context.Context, st *state) []Finding {
	clients, err := st.db.Clients(ctx)
	if err != nil {
		return []Finding{unchecked("clients.bootstrap_admin", "the clients", err)}
	}
	var out []Finding
	for _, c := range clients {
		if c.Name != bootstrapClient || c.Disabled {
			continue
		}
		out = append(out, Finding{
			ID: "clients.bootstrap_admin", Severity: Medium,
			Title:  "the bootstrap admin client still exists",
			Detail: "client " + c.ID + " (" + bootstrapClient + ", roles " + strings.Join(c.Roles, " ") + ")",
			Fix:    "rotate or delete it once you have a named admin",
		})
	}
	return out
}

// checkRetention flags collections of SSNs or card numbers kept forever.
func checkRetention(st *state) []Finding {
	var out []Finding
	for _, c := range st.collections {
		fields := sensitiveFields(c)
		if len(fields) == 0 || c.Retention > 0 {
			continue
		}
		out = append(out, Finding{
			ID: "retention.unset", Severity: Low,
			Title:  "a collection of SSNs or card numbers has no retention",
			Detail: "collection " + c.Name + " (" + strings.Join(fields, ", ") + ") keeps records forever",
			Fix:    "set the collection's retention to how long you need the records",
		})
	}
	return out
}
