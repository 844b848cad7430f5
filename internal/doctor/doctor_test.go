package doctor_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/doctor"
	"github.com/cofferhq/coffer/internal/pki"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// hardenedPolicy is the bootstrap policy with MFA required of admins.
const hardenedPolicy = `roles:
  admin:
    require_mfa: true
    rules:
      - resources: ["*"]
        actions: ["*"]
`

// deployment is a data directory made by app.Init.
type deployment struct {
	dir string
	cfg *config.Config
}

// newDeployment initialises a deployment in a fresh directory named name
// (default "data"), on SQLite or at dbURL.
func newDeployment(t testing.TB, name, dbURL string) *deployment {
	t.Helper()
	if name == "" {
		name = "data"
	}
	dir := filepath.Join(t.TempDir(), name)
	if _, err := app.Init(context.Background(), app.InitOptions{DataDir: dir, DatabaseURL: dbURL}); err != nil {
		t.Fatalf("init: %v", err)
	}
	cfg, err := config.Load(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &deployment{dir: dir, cfg: cfg}
}

// hardened returns a deployment set up as the hardening advice says, as
// far as that is possible offline: an admin user with MFA, and admins need
// MFA. The bootstrap admin client cannot be deleted without the API, so it
// stays.
func hardened(t testing.TB, dbURL string) *deployment {
	t.Helper()
	d := newDeployment(t, "", dbURL)
	d.withStore(t, func(db *store.DB) {
		if err := db.CreateUser(context.Background(), coffer.User{ID: "u_admin", Username: "ada", UsernameKey: "ada",
			PasswordHash: "$argon2id$unused", Roles: []string{"admin"}, TOTPConfirmed: true, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	})
	d.savePolicy(t, hardenedPolicy)
	return d
}

// TestPolicyLockoutFound: a policy in force under which no client or user
// could change the policy (here: admin needs MFA and nobody has it) is a
// high finding pointing at the offline break-glass (#14.6).
func TestPolicyLockoutFound(t *testing.T) {
	d := newDeployment(t, "", "")
	d.savePolicy(t, hardenedPolicy)
	rep := run(t, d.options())
	if !slices.ContainsFunc(rep.Findings, func(f doctor.Finding) bool {
		return f.ID == "policy.lockout" && f.Severity == doctor.High && strings.Contains(f.Fix, "coffer policy apply --data-dir")
	}) {
		t.Fatalf("want policy.lockout (high) naming the break-glass:%s", summary(rep))
	}
	if fresh := run(t, newDeployment(t, "", "").options()); has(fresh, "policy.lockout", doctor.High) {
		t.Fatalf("a fresh deployment is not locked out:%s", summary(fresh))
	}
}

func (d *deployment) withStore(t testing.TB, fn func(db *store.DB)) {
	t.Helper()
	_, dsn := d.cfg.Database()
	db, err := store.Open(context.Background(), dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fn(db)
}

func (d *deployment) savePolicy(t testing.TB, src string) {
	t.Helper()
	d.withStore(t, func(db *store.DB) {
		if _, err := db.SavePolicy(context.Background(), "yaml", []byte(src), time.Now()); err != nil {
			t.Fatal(err)
		}
	})
}

func (d *deployment) set(t testing.TB, key, value string) {
	t.Helper()
	if err := d.cfg.Set(key, value); err != nil {
		t.Fatal(err)
	}
	if err := d.cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

func chmod(t testing.TB, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func (d *deployment) options() doctor.Options {
	return doctor.Options{
		DataDir: d.dir,
		Config:  d.cfg,
		VerifyAudit: func(ctx context.Context) (int, error) {
			return app.VerifyAudit(ctx, d.cfg)
		},
	}
}

func run(t testing.TB, opts doctor.Options) doctor.Report {
	t.Helper()
	rep, err := doctor.Run(context.Background(), opts)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return rep
}

// summary lists findings as "severity id" lines, for messages.
func summary(r doctor.Report) string {
	var b strings.Builder
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "\n  %s %s: %s (%s)", f.Severity, f.ID, f.Title, f.Detail)
	}
	return b.String()
}

func has(r doctor.Report, id string, sev doctor.Severity) bool {
	return slices.ContainsFunc(r.Findings, func(f doctor.Finding) bool { return f.ID == id && f.Severity == sev })
}

func TestHardenedDeploymentHasNoHighFinding(t *testing.T) {
	d := hardened(t, "")
	rep := run(t, d.options())
	if rep.High() {
		t.Fatalf("high finding on a hardened deployment:%s", summary(rep))
	}
	// Exactly what cannot be fixed offline, and the advice that applies to
	// every single-node deployment.
	want := []string{
		"medium clients.bootstrap_admin",
		"low audit.no_file_sink",
		"low tls.ca_key_online",
		"info audit.no_archive",
		"info audit.no_witness",
		"info audit.verified",
	}
	var got []string
	for _, f := range rep.Findings {
		got = append(got, string(f.Severity)+" "+f.ID)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("findings = %q, want %q:%s", got, want, summary(rep))
	}
}

func TestFreshInitNeedsMFAOnAdmin(t *testing.T) {
	d := newDeployment(t, "", "")
	rep := run(t, d.options())
	if !rep.High() || !has(rep, "policy.admin_without_mfa", doctor.High) || !has(rep, "policy.default", doctor.Info) {
		t.Fatalf("fresh init: want admin without MFA (high) under the default policy:%s", summary(rep))
	}
}

// selfSignedP224 writes a certificate with a P-224 key over certFile.
func selfSignedP224(t testing.TB, certFile string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "weak"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

func certNotAfter(t testing.TB, certFile string) time.Time {
	t.Helper()
	ci, err := pki.CertInfo(certFile)
	if err != nil {
		t.Fatal(err)
	}
	return ci.NotAfter
}

func TestMisconfigurations(t *testing.T) {
	customers := coffer.Collection{Name: "customers", Fields: []coffer.Field{
		{Name: "email", Type: coffer.TypeEmail},
		{Name: "ssn", Type: coffer.TypeSSN},
	}}
	tests := []struct {
		name  string
		setup func(t *testing.T, d *deployment, o *doctor.Options)
		id    string
		sev   doctor.Severity
	}{
		{"an auth.issuer other than the deployment's is medium", func(t *testing.T, d *deployment, _ *doctor.Options) {
			d.set(t, "auth.issuer", "https://elsewhere.example")
		}, "cluster.issuer", doctor.Medium},
		{"root key readable by others is high", func(t *testing.T, d *deployment, _ *doctor.Options) {
			chmod(t, d.cfg.RootKey.File, 0o644)
		}, "root_key.permissions", doctor.High},
		{"root key readable by group is high", func(t *testing.T, d *deployment, _ *doctor.Options) {
			chmod(t, d.cfg.RootKey.File, 0o640)
		}, "root_key.permissions", doctor.High},
		{"root key read-only for its owner is low", func(t *testing.T, d *deployment, _ *doctor.Options) {
			chmod(t, d.cfg.RootKey.File, 0o400)
		}, "root_key.permissions", doctor.Low},
		{"root key missing is high", func(t *testing.T, d *deployment, _ *doctor.Options) {
			if err := os.Rename(d.cfg.RootKey.File, d.cfg.RootKey.File+".bak"); err != nil {
				t.Fatal(err)
			}
		}, "root_key.missing", doctor.High},
		{"root key from the environment in production is medium", func(t *testing.T, d *deployment, _ *doctor.Options) {
			d.set(t, "root_key.provider", "env")
		}, "root_key.env_provider", doctor.Medium},
		{"data directory readable by others is medium", func(t *testing.T, d *deployment, _ *doctor.Options) {
			chmod(t, d.dir, 0o755)
		}, "data_dir.permissions", doctor.Medium},
		{"data directory writable by others is high", func(t *testing.T, d *deployment, _ *doctor.Options) {
			chmod(t, d.dir, 0o777)
		}, "data_dir.permissions", doctor.High},
		{"config file writable by others is high", func(t *testing.T, d *deployment, _ *doctor.Options) {
			chmod(t, filepath.Join(d.dir, config.FileName), 0o666)
		}, "config.permissions", doctor.High},
		{"config file readable by others is low", func(t *testing.T, d *deployment, _ *doctor.Options) {
			chmod(t, filepath.Join(d.dir, config.FileName), 0o644)
		}, "config.permissions", doctor.Low},
		{"certificate expiring within 14 days is high", func(t *testing.T, d *deployment, o *doctor.Options) {
			na := certNotAfter(t, d.cfg.TLS.CertFile)
			o.Now = func() time.Time { return na.Add(-10 * 24 * time.Hour) }
		}, "tls.cert_expiry", doctor.High},
		{"certificate expiring within 30 days is medium", func(t *testing.T, d *deployment, o *doctor.Options) {
			na := certNotAfter(t, d.cfg.TLS.CertFile)
			o.Now = func() time.Time { return na.Add(-20 * 24 * time.Hour) }
		}, "tls.cert_expiry", doctor.Medium},
		{"expired certificate is high", func(t *testing.T, d *deployment, o *doctor.Options) {
			na := certNotAfter(t, d.cfg.TLS.CertFile)
			o.Now = func() time.Time { return na.Add(time.Hour) }
		}, "tls.cert_expiry", doctor.High},
		{"certificate with a P-224 key is high", func(t *testing.T, d *deployment, _ *doctor.Options) {
			selfSignedP224(t, d.cfg.TLS.CertFile)
		}, "tls.weak_key", doctor.High},
		{"unreadable certificate is high", func(t *testing.T, d *deployment, _ *doctor.Options) {
			if err := os.WriteFile(d.cfg.TLS.CertFile, []byte("not a certificate"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "tls.cert_unreadable", doctor.High},
		{"TLS key readable by others is high", func(t *testing.T, d *deployment, _ *doctor.Options) {
			chmod(t, d.cfg.TLS.KeyFile, 0o644)
		}, "tls.key_permissions", doctor.High},
		{"certificate writable by others is high", func(t *testing.T, d *deployment, _ *doctor.Options) {
			chmod(t, d.cfg.TLS.CertFile, 0o666)
		}, "tls.cert_permissions", doctor.High},
		{"CA key readable by others is high", func(t *testing.T, d *deployment, _ *doctor.Options) {
			chmod(t, d.cfg.TLS.CAKeyFile, 0o644)
		}, "tls.ca_key_permissions", doctor.High},
		{"wildcard outside admin is medium", func(t *testing.T, d *deployment, _ *doctor.Options) {
			d.savePolicy(t, hardenedPolicy+`  support:
    - resources: ["*"]
      actions: [read]
`)
		}, "policy.wildcard", doctor.Medium},
		{"plain SSN through star is medium", func(t *testing.T, d *deployment, _ *doctor.Options) {
			d.withStore(t, func(db *store.DB) {
				if err := db.CreateCollection(context.Background(), customers); err != nil {
					t.Fatal(err)
				}
			})
			d.savePolicy(t, hardenedPolicy+`  support:
    - resources: ["collections/customers"]
      actions: [read, search]
      fields: {email: masked, "*": plain}
`)
		}, "policy.plain_sensitive", doctor.Medium},
		{"a policy waiting for its rewrite is high", func(t *testing.T, d *deployment, _ *doctor.Options) {
			d.savePolicy(t, hardenedPolicy+`  billing:
    - resources: ["tokens/card_number"]
      actions: [tokenize, detokenize]
`)
			// As an older Coffer left it: schema_version 0.
			kind, dsn := d.cfg.Database()
			driver := "sqlite"
			if kind != config.DatabaseSQLite {
				driver = "pgx"
			}
			sdb, err := sql.Open(driver, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer sdb.Close()
			if _, err := sdb.Exec(`UPDATE policy SET schema_version = 0`); err != nil {
				t.Fatal(err)
			}
		}, "policy.rewrite_pending", doctor.High},
		{"constant true condition is medium", func(t *testing.T, d *deployment, _ *doctor.Options) {
			d.savePolicy(t, hardenedPolicy+`  customer:
    - resources: ["collections/customers"]
      actions: [read]
      when: 1 == 1
`)
		}, "policy.when_constant", doctor.Medium},
		{"admin role without MFA is high", func(t *testing.T, d *deployment, _ *doctor.Options) {
			d.savePolicy(t, `roles:
  ops:
    - resources: ["*"]
      actions: [admin]
`)
		}, "policy.admin_without_mfa", doctor.High},
		{"stored policy that does not compile is high", func(t *testing.T, d *deployment, _ *doctor.Options) {
			d.savePolicy(t, "roles:\n  admin: []\n")
		}, "policy.invalid", doctor.High},
		{"bootstrap admin still present is medium", func(*testing.T, *deployment, *doctor.Options) {}, "clients.bootstrap_admin", doctor.Medium},
		{"audit log that does not verify is high", func(t *testing.T, d *deployment, o *doctor.Options) {
			o.VerifyAudit = func(context.Context) (int, error) {
				return 0, &audit.VerifyError{Node: "node", Seq: 7, EventID: "node:7", Reason: "hash does not match"}
			}
		}, "audit.verify", doctor.High},
		{"no audit file sink is low", func(*testing.T, *deployment, *doctor.Options) {}, "audit.no_file_sink", doctor.Low},
		{"no audit witness is info", func(*testing.T, *deployment, *doctor.Options) {}, "audit.no_witness", doctor.Info},
		{"a witness file beside the database is medium", func(t *testing.T, d *deployment, _ *doctor.Options) {
			d.set(t, "audit.witness", filepath.Join(d.dir, "witness.jsonl"))
		}, "audit.witness_same_volume", doctor.Medium},
		{"SQLite file readable by others is high", func(t *testing.T, d *deployment, _ *doctor.Options) {
			_, path := d.cfg.Database()
			chmod(t, path, 0o644)
		}, "database.file_permissions", doctor.High},
		{"SQLite file missing is high", func(t *testing.T, d *deployment, _ *doctor.Options) {
			_, path := d.cfg.Database()
			if err := os.Rename(path, path+".bak"); err != nil {
				t.Fatal(err)
			}
		}, "database.missing", doctor.High},
		{"collection of SSNs without retention is low", func(t *testing.T, d *deployment, _ *doctor.Options) {
			d.withStore(t, func(db *store.DB) {
				if err := db.CreateCollection(context.Background(), customers); err != nil {
					t.Fatal(err)
				}
			})
		}, "retention.unset", doctor.Low},
		{"dev flag is high", func(t *testing.T, d *deployment, _ *doctor.Options) {
			d.set(t, "dev", "true")
		}, "dev.mode", doctor.High},
		{"dev credentials on disk are high", func(t *testing.T, d *deployment, _ *doctor.Options) {
			if err := os.WriteFile(filepath.Join(d.dir, "dev-credentials.json"), []byte("{}"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "dev.mode", doctor.High},
		{"metrics on every interface is medium", func(t *testing.T, d *deployment, _ *doctor.Options) {
			d.set(t, "metrics_listen", "0.0.0.0:9464")
		}, "metrics.exposed", doctor.Medium},
		{"API on every interface without client certificates is info", func(t *testing.T, d *deployment, _ *doctor.Options) {
			d.set(t, "listen", "0.0.0.0:8443")
		}, "listen.all_interfaces", doctor.Info},
		{"rate limit disabled is medium", func(t *testing.T, d *deployment, _ *doctor.Options) {
			d.set(t, "limits.rate_limit", "0")
		}, "limits.rate_limit_disabled", doctor.Medium},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := hardened(t, "")
			o := d.options()
			tt.setup(t, d, &o)
			rep := run(t, o)
			if !has(rep, tt.id, tt.sev) {
				t.Fatalf("want %s %s:%s", tt.sev, tt.id, summary(rep))
			}
			if rep.High() != (tt.sev == doctor.High) && !otherHighExpected(tt.id) {
				t.Errorf("High() = %v:%s", rep.High(), summary(rep))
			}
		})
	}
}

// otherHighExpected names findings whose misconfiguration also breaks
// something high elsewhere: a server without its root key or with the key
// in an unset variable cannot verify the audit log either.
func otherHighExpected(id string) bool {
	return id == "root_key.env_provider"
}

func TestDevDirectoryName(t *testing.T) {
	d := newDeployment(t, ".coffer-dev", "")
	d.savePolicy(t, hardenedPolicy)
	rep := run(t, d.options())
	if !has(rep, "dev.mode", doctor.High) {
		t.Fatalf("want dev.mode for .coffer-dev:%s", summary(rep))
	}
}

func TestAuditFileSinkSilencesAdvice(t *testing.T) {
	d := hardened(t, "")
	d.set(t, "audit.file", filepath.Join(d.dir, "audit.log"))
	if err := d.cfg.Set("audit.witness_secret", "s3cret"); err != nil {
		t.Fatal(err)
	}
	d.set(t, "audit.witness", "https://witness.example/coffer")
	rep := run(t, d.options())
	if has(rep, "audit.no_file_sink", doctor.Low) || has(rep, "audit.no_witness", doctor.Info) {
		t.Fatalf("audit.file and audit.witness set, still advised:%s", summary(rep))
	}
}

// TestAuditIntervalDurabilityIsAFinding: the opt-in mode that answers
// before the audit event is durable is reported, naming what a crash
// loses; the default is not.
func TestAuditIntervalDurabilityIsAFinding(t *testing.T) {
	d := hardened(t, "")
	if rep := run(t, d.options()); has(rep, "audit.not_durable", doctor.Medium) {
		t.Fatalf("default durability reported:%s", summary(rep))
	}
	d.set(t, "audit.durability", "interval")
	d.set(t, "audit.flush_interval", "20ms")
	rep := run(t, d.options())
	if !has(rep, "audit.not_durable", doctor.Medium) {
		t.Fatalf("audit.durability interval not reported:%s", summary(rep))
	}
	for _, f := range rep.Findings {
		if f.ID == "audit.not_durable" && !strings.Contains(f.Detail, "20ms") {
			t.Fatalf("the finding does not say what a crash loses: %+v", f)
		}
	}
}

func TestRunLoadsConfigWhenNotGiven(t *testing.T) {
	d := hardened(t, "")
	chmod(t, d.cfg.RootKey.File, 0o644)
	rep := run(t, doctor.Options{DataDir: d.dir})
	if !has(rep, "root_key.permissions", doctor.High) || !has(rep, "audit.not_verified", doctor.Info) {
		t.Fatalf("config loaded from the directory:%s", summary(rep))
	}
	if _, err := doctor.Run(context.Background(), doctor.Options{}); err == nil {
		t.Fatal("Run without config or directory: no error")
	}
}

func TestFindingsHoldNoSecret(t *testing.T) {
	d := newDeployment(t, "", "")
	key, err := os.ReadFile(d.cfg.RootKey.File)
	if err != nil {
		t.Fatal(err)
	}
	chmod(t, d.cfg.RootKey.File, 0o644)
	chmod(t, d.cfg.TLS.KeyFile, 0o644)
	o := d.options()
	o.VerifyAudit = func(context.Context) (int, error) {
		return 0, errors.New("store: connect postgres://coffer:hunter2@db.example.com/coffer: refused")
	}
	rep := run(t, o)
	var text, js bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	tlsKey, err := os.ReadFile(d.cfg.TLS.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{text.String(), js.String()} {
		for _, secret := range []string{strings.TrimSpace(string(key)), "hunter2", string(tlsKey[40:80])} {
			if strings.Contains(out, secret) {
				t.Fatalf("report holds a secret:\n%s", out)
			}
		}
	}
}

// TestPostgres audits a deployment on PostgreSQL: as the owner (a
// superuser here), as the app role `coffer migrate` grants, and as an app
// role that may also update audit events.
func TestPostgres(t *testing.T) {
	ctx := context.Background()
	ownerDSN := storetest.PostgresDSN(t)
	d := hardened(t, ownerDSN)

	rep := run(t, d.options())
	if !has(rep, "database.superuser", doctor.High) {
		t.Fatalf("owner connection: want database.superuser:%s", summary(rep))
	}

	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	role := fmt.Sprintf("coffer_doctor_%x", b)
	t.Cleanup(func() { dropRole(t, ownerDSN, role) })
	d.set(t, "database_app_role", role)
	if _, err := app.Migrate(ctx, d.cfg); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(ownerDSN)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	d.set(t, "database_url", u.String())

	rep = run(t, d.options())
	if rep.High() {
		t.Fatalf("app role deployment: high finding:%s", summary(rep))
	}
	if !has(rep, "clients.bootstrap_admin", doctor.Medium) {
		t.Fatalf("app role deployment: store checks did not run:%s", summary(rep))
	}

	owner, err := pgx.Connect(ctx, ownerDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close(ctx)
	if _, err := owner.Exec(ctx, "GRANT UPDATE ON audit_events TO "+pgx.Identifier{role}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	rep = run(t, d.options())
	if !has(rep, "database.audit_writable", doctor.High) {
		t.Fatalf("app role with UPDATE on audit_events: want database.audit_writable:%s", summary(rep))
	}
}

func dropRole(t testing.TB, dsn, role string) {
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Logf("drop role: %v", err)
		return
	}
	defer c.Close(ctx)
	id := pgx.Identifier{role}.Sanitize()
	for _, s := range []string{"DROP OWNED BY " + id, "DROP ROLE " + id} {
		if _, err := c.Exec(ctx, s); err != nil {
			t.Logf("drop role: %v", err)
		}
	}
}

func TestJSONReport(t *testing.T) {
	d := hardened(t, "")
	chmod(t, d.cfg.RootKey.File, 0o644)
	rep := run(t, d.options())
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var got struct {
		High     bool             `json:"high"`
		Findings []doctor.Finding `json:"findings"`
	}
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if !got.High || !slices.Equal(got.Findings, rep.Findings) || got.Findings[0].Severity != doctor.High {
		t.Fatalf("JSON report: %s", buf.String())
	}
}

func BenchmarkRun(b *testing.B) {
	d := hardened(b, "")
	ctx := context.Background()
	o := d.options()
	o.VerifyAudit = nil
	for b.Loop() {
		if _, err := doctor.Run(ctx, o); err != nil {
			b.Fatal(err)
		}
	}
}

func TestFilesOfAnotherUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("changing a file's owner needs root")
	}
	d := hardened(t, "")
	if err := os.Chown(d.cfg.RootKey.File, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(d.cfg.TLS.KeyFile, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	rep := run(t, d.options())
	if !has(rep, "root_key.owner", doctor.Medium) || !has(rep, "tls.key_owner", doctor.Medium) {
		t.Fatalf("want root_key.owner and tls.key_owner:%s", summary(rep))
	}
}

// TestRelayClientMissing: a relay that names no existing client refuses
// every call: a high finding; naming the bootstrap client clears it.
func TestRelayClientMissing(t *testing.T) {
	d := newDeployment(t, "", "")
	d.cfg.Relay = config.Relay{Listen: "127.0.0.1:8444", Client: "no-such-client", Routes: []config.RelayRoute{{
		Name: "a", Match: config.RelayMatch{Method: "POST", Path: "/a"}, Upstream: "http://127.0.0.1:9000"}}}
	if rep := run(t, d.options()); !has(rep, "relay.client_missing", doctor.High) {
		t.Fatalf("no relay.client_missing:%s", summary(rep))
	}
	d.withStore(t, func(db *store.DB) {
		cs, err := db.Clients(context.Background())
		if err != nil || len(cs) == 0 {
			t.Fatalf("clients: %v", err)
		}
		d.cfg.Relay.Client = cs[0].ID
	})
	if rep := run(t, d.options()); slices.ContainsFunc(rep.Findings, func(f doctor.Finding) bool { return f.ID == "relay.client_missing" }) {
		t.Fatalf("relay.client_missing with an existing client:%s", summary(rep))
	}
}
