package policy

import (
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/coffer"
)

// #15.9: Coffer's own keys are decided on system/keys/KEY_ID, a namespace
// no transit key pattern reaches.
func TestTransitPatternsNeverCoverSystemKeys(t *testing.T) {
	p, err := Load([]byte(`
roles:
  transit-admin:
    - resources: ["keys/a*", "keys/t*", "keys/*"]
      actions: [admin]
  audit-keys:
    - resources: ["system/keys/audit/*"]
      actions: [admin]
  card-fpe:
    - resources: ["system/keys/tokens/card_number/fpe"]
      actions: [admin]
  collections:
    - resources: ["system/keys/collection/cust*"]
      actions: [admin]
  all-system:
    - resources: ["system/keys/*"]
      actions: [admin]
`), FormatYAML)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		role, res string
		allowed   bool
	}{
		{"transit-admin", "keys/alpha", true},
		{"transit-admin", "keys/tk", true},
		{"transit-admin", "system/keys/audit/hmac", false},
		{"transit-admin", "system/keys/audit/signing", false},
		{"transit-admin", "system/keys/tokens/card_number/fpe", false},
		{"transit-admin", "system/keys/jwt/signing", false},
		{"audit-keys", "system/keys/audit/hmac", true},
		{"audit-keys", "system/keys/audit-value/x", false},
		{"audit-keys", "keys/audit", false},
		{"card-fpe", "system/keys/tokens/card_number/fpe", true},
		{"card-fpe", "system/keys/tokens/card_number/deterministic", false},
		{"collections", "system/keys/collection/customers", true},
		{"collections", "system/keys/collection/orders", false},
		{"all-system", "system/keys/mask/hash/customers/email", true},
		{"all-system", "keys/payments", false},
	} {
		d := p.Decide(Input{Principal: &coffer.Principal{ID: "p", Roles: []string{c.role}}, Action: ActionAdmin, Resource: c.res})
		if d.Allowed != c.allowed {
			t.Errorf("%s admin %s: allowed %v, want %v (%s)", c.role, c.res, d.Allowed, c.allowed, d.Reason)
		}
	}
}

func TestSystemKeyResourcePatterns(t *testing.T) {
	for _, c := range []struct {
		res string
		ok  bool
	}{
		{"system/keys/*", true},
		{"system/keys/audit/hmac", true},
		{"system/keys/audit/*", true},
		{"system/keys/tokens/card_number/fpe", true},
		{"system/keys/collection/cust*", true},
		{"system/keys/", false},
		{"system/keys/a*/b", false},
		{"system/keys/Audit/hmac", false},
		{"system/keys/audit//hmac", false},
		{"system/keys/**", false},
		{"system/*", false},
	} {
		doc := `roles: {r: [{resources: ["` + c.res + `"], actions: [admin]}]}`
		_, err := Load([]byte(doc), FormatYAML)
		if (err == nil) != c.ok {
			t.Errorf("%q: load error %v, want ok=%v", c.res, err, c.ok)
		}
	}
}

const beforeSystemKeys = `roles:
  admin:
    - resources: ["*"]
      actions: ["*"]
  keyadmin:
    - resources: ["keys/*"] # every key
      actions: [admin]
  transit:
    - resources: ["keys/a*", "keys/t*"]
      actions: [admin, encrypt]
  crypto:
    - resources: ["keys/*"]
      actions: [encrypt, decrypt]
  breakglass:
    require_mfa: true
    rules:
      - resources: ["keys/*", "audit"]
        actions: ["*"]
`

// coffer migrate: a grant of admin on keys/* (every key) also covers
// system/keys/* afterwards; "*" covers it still; a partial pattern is
// never widened, only named in the summary.
func TestRewriteSystemKeys(t *testing.T) {
	out, changes, err := ApplyRewrites([]byte(beforeSystemKeys), FormatYAML, 10, Rewrites())
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, c := range changes {
		if c.Rewrite != "system_keys" {
			t.Errorf("unexpected change %s", c)
		}
		lines = append(lines, c.Path)
	}
	want := "roles.keyadmin[0] roles.transit[0] roles.breakglass.rules[0]"
	if strings.Join(lines, " ") != want {
		t.Fatalf("changes at %v, want %s:\n%v", lines, want, changes)
	}
	if !strings.Contains(changes[1].Message, "keys/a*, keys/t*") || !strings.Contains(changes[1].Message, "no longer covers") {
		t.Errorf("the partial patterns' note: %s", changes[1])
	}
	if !strings.Contains(string(out), "# every key") {
		t.Errorf("a comment was lost:\n%s", out)
	}
	p, err := Load(out, FormatYAML)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, c := range []struct {
		role, res string
		allowed   bool
	}{
		{"keyadmin", "system/keys/audit/hmac", true},
		{"keyadmin", "keys/payments", true},
		{"breakglass", "system/keys/jwt/signing", true},
		{"admin", "system/keys/audit/signing", true},
		{"transit", "system/keys/audit/hmac", false},
		{"transit", "system/keys/tokens/card_number/fpe", false},
		{"crypto", "system/keys/audit/hmac", false},
	} {
		d := p.Decide(Input{Principal: &coffer.Principal{ID: "p", Roles: []string{c.role}, MFA: true}, Action: ActionAdmin, Resource: c.res})
		if d.Allowed != c.allowed {
			t.Errorf("after the rewrite, %s admin %s: %v, want %v", c.role, c.res, d.Allowed, c.allowed)
		}
	}
	// A document saved since is left alone.
	if _, ch, err := ApplyRewrites([]byte(beforeSystemKeys), FormatYAML, LanguageVersion, Rewrites()); err != nil || len(ch) != 0 {
		t.Fatalf("a document of language version %d was rewritten: %v %v", LanguageVersion, ch, err)
	}
}

// LanguageVersion is the newest rewrite's.
func TestLanguageVersionIsTheNewestRewrite(t *testing.T) {
	var newest int64
	for _, rw := range Rewrites() {
		newest = max(newest, rw.Since)
	}
	if newest != LanguageVersion {
		t.Fatalf("LanguageVersion %d, newest rewrite %d", LanguageVersion, newest)
	}
}
