package policy

import (
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

// BenchmarkDecideRBAC decides a plain role grant with field views.
func BenchmarkDecideRBAC(b *testing.B) {
	p := loadFile(b, "example.yaml", FormatYAML)
	in := Input{Principal: &coffer.Principal{ID: "s1", Kind: coffer.KindUser, Roles: []string{"viewer", "support"}},
		Action: "read", Resource: "collections/customers", ID: "r1", Time: time.Now(), IP: "10.0.0.1"}
	b.ReportAllocs()
	for b.Loop() {
		d := p.Decide(in)
		if !d.Allowed || d.View("email") != Masked {
			b.Fatal(d)
		}
	}
}

// BenchmarkDecideCELOwner decides an owner rule: resource.owner == principal.id.
func BenchmarkDecideCELOwner(b *testing.B) {
	p := loadFile(b, "example.yaml", FormatYAML)
	in := Input{Principal: &coffer.Principal{ID: "c1", Kind: coffer.KindUser, Roles: []string{"customer"},
		Attributes: map[string]string{"tier": "gold"}},
		Action: "read", Resource: "collections/customers", Owner: "c1", ID: "r1", Time: time.Now(), IP: "10.0.0.1"}
	b.ReportAllocs()
	for b.Loop() {
		d := p.Decide(in)
		if !d.Allowed || d.View("ssn") != Plain {
			b.Fatal(d)
		}
	}
}

// BenchmarkDecideCELOwnerTracked is the owner rule for a principal too large
// for the static cost bound, so evaluation runs with a cost tracker.
func BenchmarkDecideCELOwnerTracked(b *testing.B) {
	p := loadFile(b, "example.yaml", FormatYAML)
	roles := []string{"customer"}
	for range hintList {
		roles = append(roles, "x")
	}
	in := Input{Principal: &coffer.Principal{ID: "c1", Kind: coffer.KindUser, Roles: roles},
		Action: "read", Resource: "collections/customers", Owner: "c1", ID: "r1", Time: time.Now(), IP: "10.0.0.1"}
	b.ReportAllocs()
	for b.Loop() {
		if d := p.Decide(in); !d.Allowed {
			b.Fatal(d)
		}
	}
}

// BenchmarkDecideDenied is a denial, which formats its reason.
func BenchmarkDecideDenied(b *testing.B) {
	p := loadFile(b, "example.yaml", FormatYAML)
	in := Input{Principal: &coffer.Principal{ID: "s1", Roles: []string{"support"}}, Action: "delete", Resource: "collections/customers"}
	b.ReportAllocs()
	for b.Loop() {
		if d := p.Decide(in); d.Allowed {
			b.Fatal(d)
		}
	}
}
