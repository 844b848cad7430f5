package store

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/jackc/pgx/v5"
)

var roleNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// GrantAppRole (PostgreSQL) creates role, if missing, as a login role
// without any attribute (no superuser, createdb, createrole, bypassrls) and
// grants it exactly what serving needs in the current schema: SELECT,
// INSERT, UPDATE, DELETE on Coffer's tables, but only SELECT and INSERT on
// the audit tables, and SELECT on the migration table. It runs as the
// schema owner (`coffer migrate`). On SQLite it is an error: SQLite has no
// roles (protect the file with its 0600 mode instead).
func (db *DB) GrantAppRole(ctx context.Context, role string) error {
	if db.dialect != Postgres {
		return fmt.Errorf("store: database roles exist only on PostgreSQL")
	}
	if !roleNameRE.MatchString(role) {
		return fmt.Errorf("store: app role must match %s", roleNameRE)
	}
	// Identifiers cannot be bound as parameters: the name is checked above
	// and quoted by pgx.
	id := pgx.Identifier{role}.Sanitize()
	var schema string
	if err := db.write.queryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return fmt.Errorf("store: current schema: %w", err)
	}
	sch := pgx.Identifier{schema}.Sanitize()
	var exists bool
	if err := db.write.queryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, role).Scan(&exists); err != nil {
		return fmt.Errorf("store: app role: %w", err)
	}
	stmts := []string{}
	if !exists {
		stmts = append(stmts, `CREATE ROLE `+id+` LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS`)
	}
	stmts = append(stmts,
		`GRANT USAGE ON SCHEMA `+sch+` TO `+id,
		`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA `+sch+` TO `+id,
		`REVOKE UPDATE, DELETE, TRUNCATE ON `+sch+`.audit_checkpoints FROM `+id,
		// DELETE on audit_events and audit_log prunes archived segments:
		// their triggers refuse any row no verified segment covers
		// (migration 21).
		`REVOKE UPDATE, TRUNCATE ON `+sch+`.audit_events, `+sch+`.audit_log FROM `+id,
		`REVOKE DELETE, TRUNCATE ON `+sch+`.audit_segments FROM `+id,
		`REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON `+sch+`.goose_db_version FROM `+id,
		`GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA `+sch+` TO `+id,
	)
	return db.inTx(ctx, func(q querier) error {
		for _, s := range stmts {
			if _, err := q.exec(ctx, s); err != nil {
				return fmt.Errorf("store: grant app role: %w", err)
			}
		}
		return nil
	})
}

// ErrSuperuser refuses a serving node connected as a PostgreSQL superuser
// (CheckNotSuperuser).
var ErrSuperuser = errors.New("refusing to serve as a PostgreSQL superuser (it can rewrite the audit log): " +
	"run `coffer migrate` with database_app_role set and connect as that role, or set database_allow_superuser")

// CheckNotSuperuser returns ErrSuperuser when the connected role is a
// PostgreSQL superuser, which a serving node must not be (the app role may
// only insert and read audit rows).
func (db *DB) CheckNotSuperuser(ctx context.Context) error {
	if super, err := db.IsSuperuser(ctx); err != nil || super {
		if err == nil {
			err = ErrSuperuser
		}
		return err
	}
	return nil
}

// IsSuperuser reports whether the connected PostgreSQL role is a superuser
// (always false on SQLite).
func (db *DB) IsSuperuser(ctx context.Context) (bool, error) {
	if db.dialect != Postgres {
		return false, nil
	}
	var super bool
	if err := db.read.queryRow(ctx, `SELECT rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&super); err != nil {
		return false, fmt.Errorf("store: role check: %w", err)
	}
	return super, nil
}
