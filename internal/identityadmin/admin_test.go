package identityadmin_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/auth"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/keyprovider"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/identityadmin"
	"github.com/cofferhq/coffer/internal/policystore"
	"github.com/cofferhq/coffer/internal/secret"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// operators may create, read and update clients, but hold no admin on
// them; auditors may only read them.
const testPolicy = `roles:
  admin:
    - resources: ["*"]
      actions: ["*"]
  operator:
    - resources: ["clients", "users"]
      actions: ["create", "read", "update", "delete"]
  auditor:
    - resources: ["clients"]
      actions: ["read"]
`

type fixture struct {
	admin *identityadmin.Admin
	ids   *identity.Service
}

// newFixture is the administration over the real identity service and
// policy holder on a fresh SQLite store.
func newFixture(t *testing.T) fixture {
	t.Helper()
	ctx := context.Background()
	db := storetest.Open(t, storetest.Backends()[0]) // SQLite
	keyFile := filepath.Join(t.TempDir(), "root.key")
	if err := keyprovider.CreateFile(keyFile, rand.Reader); err != nil {
		t.Fatal(err)
	}
	p, err := keyprovider.OpenFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	kr := keyring.New(p, db, keyring.Options{})
	t.Cleanup(func() { _ = kr.Close() })
	log := slog.New(slog.DiscardHandler)
	ids := identity.New(identity.Config{Store: db, Sealer: kr, MACs: kr, Logger: log, Now: time.Now, Rand: rand.Reader,
		Tokens: auth.NewTokens(auth.TokenConfig{Issuer: "https://coffer.test", Audience: "coffer"})})
	pol := policystore.New(db, time.Now, log)
	if err := pol.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := pol.Apply(ctx, []byte(testPolicy), "yaml", true); err != nil { // forced: no principal exists yet
		t.Fatal(err)
	}
	return fixture{admin: identityadmin.New(pol, ids, ids, ids), ids: ids}
}

func caller(id string, roles ...string) (coffer.Caller, *coffer.AccessNote) {
	n := &coffer.AccessNote{}
	return coffer.Caller{Principal: &coffer.Principal{ID: id, Kind: coffer.KindClient, Roles: roles}, IP: "10.0.0.1", Note: n}, n
}

func code(err error) string { return coffer.ErrorCode(err) }

// Deny by default: a role the policy gives nothing on clients is refused,
// the refusal is noted for the audit, and nothing is made or changed.
func TestDenyByDefault(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	nobody, note := caller("cl_nobody", "nothing")
	if _, err := f.admin.CreateClient(ctx, nobody, identityadmin.ClientSpec{Name: "x"}); code(err) != coffer.EFORBIDDEN {
		t.Fatalf("create: %v", err)
	}
	if note.Decision != "deny" {
		t.Errorf("the refusal is not noted: %+v", note)
	}
	if _, err := f.admin.Clients(ctx, nobody); code(err) != coffer.EFORBIDDEN {
		t.Fatalf("list: %v", err)
	}
	all, err := f.ids.Clients(ctx)
	if err != nil || len(all) != 0 {
		t.Fatalf("clients after refusals: %v %v", all, err)
	}
	// Read alone does not let a caller change one.
	target, err := f.ids.CreateClient(ctx, "svc", []string{"auditor"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	aud, _ := caller("cl_aud", "auditor")
	off := true
	if _, err := f.admin.UpdateClient(ctx, aud, target.ClientID, identityadmin.Patch{Disabled: &off}); code(err) != coffer.EFORBIDDEN {
		t.Fatalf("update with read only: %v", err)
	}
	if got, _ := f.ids.Client(ctx, target.ClientID); got.Disabled {
		t.Fatal("a refused update disabled the client")
	}
}

// An update cannot escalate: an operator (update on clients, no admin)
// may not give a client a role it does not hold itself, not even to a
// client it may otherwise change, nor act on a client more privileged
// than itself; it may change what it could have created.
func TestUpdateCannotEscalate(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	op, _ := caller("cl_op", "operator")
	mine, err := f.admin.CreateClient(ctx, op, identityadmin.ClientSpec{Name: "worker", Roles: []string{"operator"}})
	if err != nil {
		t.Fatalf("an operator creating a client of its own roles: %v", err)
	}
	if _, err := f.admin.CreateClient(ctx, op, identityadmin.ClientSpec{Name: "boss", Roles: []string{"admin"}}); code(err) != coffer.EFORBIDDEN {
		t.Fatalf("creating an admin: %v", err)
	}

	escalate := []string{"operator", "admin"}
	if _, err := f.admin.UpdateClient(ctx, op, mine.ClientID, identityadmin.Patch{Roles: &escalate}); code(err) != coffer.EFORBIDDEN {
		t.Fatalf("adding admin: %v", err)
	}
	attrs := map[string]string{"tenant": "all"}
	if _, err := f.admin.UpdateClient(ctx, op, mine.ClientID, identityadmin.Patch{Attributes: &attrs}); code(err) != coffer.EFORBIDDEN {
		t.Fatalf("adding an attribute the caller lacks: %v", err)
	}
	if got, _ := f.ids.Client(ctx, mine.ClientID); len(got.Roles) != 1 || got.Roles[0] != "operator" || len(got.Attributes) != 0 {
		t.Fatalf("a refused update changed the client: %+v", got)
	}

	boss, err := f.ids.CreateClient(ctx, "boss", []string{"admin"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	off := true
	if _, err := f.admin.UpdateClient(ctx, op, boss.ClientID, identityadmin.Patch{Disabled: &off}); code(err) != coffer.EFORBIDDEN {
		t.Fatalf("disabling a more privileged client: %v", err)
	}
	if _, err := f.admin.RotateClientSecret(ctx, op, boss.ClientID); code(err) != coffer.EFORBIDDEN {
		t.Fatalf("rotating a more privileged client's secret: %v", err)
	}

	// What it may give, it may change: renamed, disabled, roles kept.
	name := "worker-2"
	got, err := f.admin.UpdateClient(ctx, op, mine.ClientID, identityadmin.Patch{Name: &name, Disabled: &off})
	if err != nil || got.Name != name || !got.Disabled || len(got.Roles) != 1 {
		t.Fatalf("an allowed update: %+v %v", got, err)
	}
	// Admin on clients may escalate.
	adm, _ := caller("cl_admin", "admin")
	if got, err := f.admin.UpdateClient(ctx, adm, mine.ClientID, identityadmin.Patch{Roles: &escalate}); err != nil || len(got.Roles) != 2 {
		t.Fatalf("admin's update: %+v %v", got, err)
	}
}

// Names of roles and attributes are checked before anything is written,
// and a user has no name to patch.
func TestUpdateRefusesBadInput(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	adm, _ := caller("cl_admin", "admin")
	c, err := f.ids.CreateClient(ctx, "svc", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	bad := []string{"Not A Role"}
	if _, err := f.admin.UpdateClient(ctx, adm, c.ClientID, identityadmin.Patch{Roles: &bad}); code(err) != coffer.EINVALID {
		t.Fatalf("bad role: %v", err)
	}
	empty := ""
	if _, err := f.admin.UpdateClient(ctx, adm, c.ClientID, identityadmin.Patch{Name: &empty}); code(err) != coffer.EINVALID {
		t.Fatalf("empty name: %v", err)
	}
	if _, err := f.admin.UpdateUser(ctx, adm, "u_x", identityadmin.Patch{Name: &empty}); code(err) != coffer.EINVALID {
		t.Fatalf("a user's name: %v", err)
	}
}

// A user's password crosses into the administration as a secret.Password:
// decoded from the request body, it never shows when the spec is
// formatted, logged or encoded again, and it still creates the user.
func TestUserSpecPasswordRedacted(t *testing.T) {
	const pw = "correct horse battery staple 42"
	var spec identityadmin.UserSpec
	if err := json.Unmarshal([]byte(`{"username":"ann","password":"`+pw+`","roles":["operator"]}`), &spec); err != nil {
		t.Fatal(err)
	}
	enc, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("spec", "spec", spec, "password", spec.Password)
	for name, out := range map[string]string{
		"%v": fmt.Sprintf("%v", spec), "%+v": fmt.Sprintf("%+v", spec), "%#v": fmt.Sprintf("%#v", spec),
		"%s": fmt.Sprintf("%s", spec.Password), "%q": fmt.Sprintf("%q", spec.Password), "json": string(enc), "slog": logged.String(),
	} {
		if strings.Contains(out, pw) || strings.Contains(out, "horse") {
			t.Errorf("%s reveals the password: %s", name, out)
		}
	}
	f := newFixture(t)
	if err := f.ids.Start(t.Context()); err != nil { // signing keys, to sign in
		t.Fatal(err)
	}
	adm, _ := caller("cl_admin", "admin")
	u, err := f.admin.CreateUser(context.Background(), adm, spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ids.Login(context.Background(), "ann", secret.NewPassword(pw), "10.0.0.2"); err != nil {
		t.Fatalf("the password given through the spec does not sign %s in: %v", u.ID, err)
	}
}
