package doccheck

import (
	"reflect"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/config"
)

func TestSlugIsGitHubs(t *testing.T) {
	for in, want := range map[string]string{
		" Policy reference":                                           "policy-reference",
		" Conditions (`when`)":                                        "conditions-when",
		" Testing a policy: `coffer policy test`":                     "testing-a-policy-coffer-policy-test",
		" 5. PostgreSQL: migrate as the owner, serve as the app role": "5-postgresql-migrate-as-the-owner-serve-as-the-app-role",
		" See [the guide](x.md) now":                                  "see-the-guide-now",
		" Actions, and what each request needs":                       "actions-and-what-each-request-needs",
	} {
		if got := slug(in); got != want {
			t.Errorf("slug(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCodeSpans(t *testing.T) {
	spans, rest := codeSpans("run `coffer dev` then ``a `b` c`` and [x](y.md) `open")
	if want := []string{"coffer dev", "a `b` c"}; !reflect.DeepEqual(spans, want) {
		t.Fatalf("spans %q, want %q", spans, want)
	}
	if rest != "run   then   and [x](y.md) `open" {
		t.Fatalf("rest %q", rest)
	}
}

func TestConfigKey(t *testing.T) {
	typ := reflect.TypeFor[config.Config]()
	for key, want := range map[string]bool{
		"audit.file":                             true,
		"audit":                                  true,
		"auth.external.role_map":                 true,
		"auth.external.role_map.admins":          true, // a map's key is any name
		"limits.roles.support.tokenize_per_hour": true,
		"keys.rotate_after":                      true,
		"keys.rotate_after.hours":                false, // a duration is a scalar
		"audit.files":                            false,
		"auth.external.issuer.host":              false,
		"detect.suspend_on.x":                    false, // a list of strings
	} {
		if got := configKey(typ, strings.Split(key, ".")); got != want {
			t.Errorf("configKey(%s) = %v, want %v", key, got, want)
		}
	}
}
