package fieldpath

import (
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	ok := map[string]Path{
		"email":             {{Name: "email"}},
		"card.number":       {{Name: "card"}, {Name: "number"}},
		"items[*].card":     {{Name: "items"}, {All: true}, {Name: "card"}},
		"[*]":               {{All: true}},
		"[*].email":         {{All: true}, {Name: "email"}},
		"m[*][*]":           {{Name: "m"}, {All: true}, {All: true}},
		"received.card.num": {{Name: "received"}, {Name: "card"}, {Name: "num"}},
		"naïve-field_1":     {{Name: "naïve-field_1"}},
	}
	for s, want := range ok {
		t.Run("ok/"+s, func(t *testing.T) {
			p, err := Parse(s)
			if err != nil {
				t.Fatal(err)
			}
			if len(p) != len(want) {
				t.Fatalf("%q: %v", s, p)
			}
			for i := range p {
				if p[i] != want[i] {
					t.Fatalf("%q: %v, want %v", s, p, want)
				}
			}
			if p.String() != s {
				t.Fatalf("String %q, want %q", p.String(), s)
			}
		})
	}
	for _, s := range []string{"", ".", "a.", ".a", "a..b", "a[0]", "a[]", "a[*]b", "a.[*]", "a*", "a b", "a]", "[", "a\x00",
		"a\tb", string([]byte{0xff}), "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.a.b.c.d.e.f.g"} {
		t.Run("fail/"+s, func(t *testing.T) {
			if _, err := Parse(s); !errors.Is(err, ErrSyntax) {
				t.Fatalf("Parse(%q) = %v, want ErrSyntax", s, err)
			}
		})
	}
}

func TestFormKey(t *testing.T) {
	p, _ := Parse("items[*].card")
	for key, want := range map[string]bool{
		"items[0][card]": true, "items[][card]": true, "items.0.card": true, "ITEMS[3][Card]": true,
		"items[card]": false, "items": false, "items[0][card][x]": false, "items[0[card]": false,
	} {
		if got := p.Matches(FormKey(key)); got != want {
			t.Errorf("%q matches %v, want %v (%v)", key, got, want, FormKey(key))
		}
	}
	e, _ := Parse("card.number")
	for key, want := range map[string]bool{"card.number": true, "card[number]": true, "Card[NUMBER]": true, "card": false, "cardnumber": false} {
		if got := e.Matches(FormKey(key)); got != want {
			t.Errorf("%q matches %v, want %v", key, got, want)
		}
	}
}

// FuzzParse: whatever Parse accepts prints back to the same text and
// parses to the same path (no two spellings of one path, so a check on the
// text is a check on the path); FormKey never panics.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"email", "card.number", "items[*].card", "[*]", "a[*][*].b", "a..b", "a[0]", "[*]x", "Ä.ß"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_ = FormKey(s)
		p, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("error not ErrSyntax: %v", err)
			}
			return
		}
		if len(p) == 0 || len(p) > MaxSegments {
			t.Fatalf("%q: %d segments", s, len(p))
		}
		if p.String() != s {
			t.Fatalf("%q prints as %q", s, p.String())
		}
		q, err := Parse(p.String())
		if err != nil || len(q) != len(p) {
			t.Fatalf("%q does not parse back: %v", s, err)
		}
		for i := range p {
			if p[i] != q[i] {
				t.Fatalf("%q parses back differently", s)
			}
			if !p[i].All && p[i].Name == "" {
				t.Fatalf("%q: empty name", s)
			}
		}
		if !p.Matches(p) {
			t.Fatalf("%q does not match itself", s)
		}
	})
}
