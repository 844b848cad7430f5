package main

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/policy"
	"github.com/cofferhq/coffer/internal/policystore"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// oldPolicy is a document an older Coffer stored, when tokenize granted
// every token mode.
const oldPolicy = `roles:
  admin:
    - resources: ["*"]
      actions: ["*"]
  billing:
    - resources: ["tokens/card_number"]
      actions: [tokenize, detokenize]
  support:
    - resources: ["collections/customers"]
      actions: [read]
`

// #15.2: a policy stored before tokenize_linkable existed is rewritten by
// coffer migrate, once, with a printed summary to review, so that roles
// that made linkable tokens still can; a node refuses to serve it
// unrewritten (it would silently grant less than it did).
func TestMigrateRewritesPolicyForTokenizeLinkable(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			dir := filepath.Join(t.TempDir(), "data")
			dbURL := ""
			if b.Name != "sqlite" {
				dbURL = b.DSN(t)
			}
			if _, err := app.Init(ctx, app.InitOptions{DataDir: dir, DatabaseURL: dbURL}); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, dsn := cfg.Database()
			db, err := store.Open(ctx, dsn, store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			// What an older Coffer left: the document, and schema version
			// 0 (migration 10's default for documents saved before it).
			if _, err := db.SavePolicy(ctx, "yaml", []byte(oldPolicy), time.Now()); err != nil {
				t.Fatal(err)
			}
			execSQL(t, dsn, `UPDATE policy SET schema_version = 0`)

			cfg.DatabaseAllowSuperuser = true
			if _, err := app.Open(ctx, cfg, app.Options{}); !errors.Is(err, policystore.ErrRewritePending) {
				t.Fatalf("serving an unrewritten policy: %v, want ErrPolicyRewritePending", err)
			}
			code, out, errs := runCLI(t, "migrate", "--data-dir", dir)
			if code != 0 {
				t.Fatalf("migrate: %d %s", code, errs)
			}
			for _, want := range []string{"rewritten", "Review each change", "tokenize_linkable: roles.billing[0]: grants tokenize on tokens/card_number"} {
				if !strings.Contains(out, want) {
					t.Errorf("migrate's summary lacks %q:\n%s", want, out)
				}
			}
			if strings.Contains(out, "roles.support") || strings.Contains(out, "roles.admin") {
				t.Errorf("migrate changed rules that grant no tokenize:\n%s", out)
			}
			_, format, src, _, err := db.StoredPolicy(ctx)
			if err != nil {
				t.Fatal(err)
			}
			p, err := policy.Load(src, format)
			if err != nil {
				t.Fatal(err)
			}
			d := p.Decide(policy.Input{Principal: &coffer.Principal{ID: "b", Roles: []string{"billing"}},
				Action: policy.ActionTokenizeLinkable, Resource: "tokens/card_number"})
			if !d.Allowed {
				t.Fatalf("billing may not make linkable card tokens after migrate:\n%s", src)
			}
			srv, err := app.Open(ctx, cfg, app.Options{})
			if err != nil {
				t.Fatalf("serve after migrate: %v", err)
			}
			_ = srv.Shutdown(ctx)

			// Once only: a second migrate changes nothing.
			code, out, errs = runCLI(t, "migrate", "--data-dir", dir)
			if code != 0 || strings.Contains(out, "rewritten") {
				t.Fatalf("second migrate: %d %q %s", code, out, errs)
			}
		})
	}
}

// execSQL runs one statement on the database at dsn, as a database
// administrator would.
func execSQL(t *testing.T, dsn, q string) {
	t.Helper()
	driver := "sqlite"
	if strings.HasPrefix(dsn, "postgres") {
		driver = "pgx"
	}
	sdb, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	if _, err := sdb.Exec(q); err != nil {
		t.Fatal(err)
	}
}

// #15.9: a policy stored before Coffer's own keys moved to system/keys/…
// (any version up to 99) is rewritten by coffer migrate: admin on keys/*
// gains system/keys/*, a partial keys/… pattern is only named in the
// summary, and no keys/… pattern reaches an internal key afterwards.
func TestMigrateRewritesPolicyForSystemKeys(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			dir := filepath.Join(t.TempDir(), "data")
			dbURL := ""
			if b.Name != "sqlite" {
				dbURL = b.DSN(t)
			}
			if _, err := app.Init(ctx, app.InitOptions{DataDir: dir, DatabaseURL: dbURL}); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, dsn := cfg.Database()
			db, err := store.Open(ctx, dsn, store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			const old = `roles:
  admin:
    - resources: ["*"]
      actions: ["*"]
  keyadmin:
    - resources: ["keys/*"]
      actions: [admin]
  transit:
    - resources: ["keys/a*", "keys/t*"]
      actions: [admin]
`
			if _, err := db.SavePolicy(ctx, "yaml", []byte(old), time.Now()); err != nil {
				t.Fatal(err)
			}
			// As the Coffer before it left it: its newest migration.
			execSQL(t, dsn, `UPDATE policy SET schema_version = 15`)
			code, out, errs := runCLI(t, "migrate", "--data-dir", dir)
			if code != 0 {
				t.Fatalf("migrate: %d %s", code, errs)
			}
			for _, want := range []string{"system_keys: roles.keyadmin[0]: grants admin on keys/*: added system/keys/*",
				"system_keys: roles.transit[0]: grants admin on keys/a*, keys/t*: no longer covers"} {
				if !strings.Contains(out, want) {
					t.Errorf("migrate's summary lacks %q:\n%s", want, out)
				}
			}
			_, format, src, schema, err := db.StoredPolicy(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if schema < policy.LanguageVersion {
				t.Errorf("the rewritten policy records language version %d", schema)
			}
			p, err := policy.Load(src, format)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				role, res string
				allowed   bool
			}{
				{"keyadmin", "system/keys/audit/hmac", true},
				{"transit", "system/keys/audit/hmac", false},
				{"transit", "system/keys/audit/signing", false},
				{"transit", "system/keys/tokens/card_number/fpe", false},
				{"transit", "keys/alpha", true},
			} {
				d := p.Decide(policy.Input{Principal: &coffer.Principal{ID: "x", Roles: []string{c.role}},
					Action: policy.ActionAdmin, Resource: c.res})
				if d.Allowed != c.allowed {
					t.Errorf("%s admin %s: %v, want %v", c.role, c.res, d.Allowed, c.allowed)
				}
			}
			if code, out, _ = runCLI(t, "migrate", "--data-dir", dir); code != 0 || strings.Contains(out, "rewritten") {
				t.Fatalf("second migrate: %d %q", code, out)
			}
		})
	}
}
