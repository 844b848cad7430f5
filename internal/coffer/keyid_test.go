package coffer

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Every kind of key id parses from its text form and prints back to it,
// with the properties its kind has.
func TestKeyIDKinds(t *testing.T) {
	type props struct{ seals, records, rotatable, retirable, permanent, byAge, byUses, reindexed bool }
	for _, c := range []struct {
		id   string
		kind KeyKind
		name string
		want props
	}{
		{"collection/customers", KeyCollection, "customers", props{seals: true, records: true, rotatable: true, retirable: true, byAge: true, byUses: true}},
		{"subject/42", KeySubject, "42", props{seals: true, records: true, rotatable: true, retirable: true, byUses: true}},
		{"tokens/card", KeyTokenValue, "card", props{seals: true, rotatable: true, retirable: true, byAge: true, byUses: true}},
		{"tokens/card/fpe", KeyTokenFPE, "card", props{rotatable: true}},
		{"tokens/card/deterministic", KeyTokenDeterministic, "card", props{rotatable: true}},
		{"tokens/index", KeyTokenIndex, "", props{}},
		{"tokens/order", KeyTokenOrder, "", props{}},
		{"index/leads/email", KeyIndex, "leads/email", props{rotatable: true, reindexed: true}},
		{"mask/hash/leads/email", KeyPseudonym, "leads/email", props{rotatable: true}},
		{"audit/hmac", KeyAudit, "hmac", props{rotatable: true, permanent: true, byAge: true}},
		{"audit/signing", KeyAudit, "signing", props{rotatable: true, permanent: true, byAge: true}},
		{"audit/other", KeyAudit, "other", props{permanent: true}},
		{"audit-value/leads/email", KeyAuditValue, "leads/email", props{}},
		{"audit-value/tokens", KeyAuditValue, "tokens", props{}},
		{"transit/payments", KeyTransit, "payments", props{}},
		{"coffer/root-check", KeyRootCheck, "", props{}},
		// Malformed ids are unknown, and keep their text.
		{"collection/", KeyUnknown, "", props{}},
		{"tokens/card/other", KeyUnknown, "", props{}},
		{"tokens/", KeyUnknown, "", props{}},
		{"index/leads", KeyUnknown, "", props{}},
		{"index/leads/email/x", KeyUnknown, "", props{}},
		{"mask/hash//email", KeyUnknown, "", props{}},
		{"jwt/signing", KeyUnknown, "", props{}},
		{"", KeyUnknown, "", props{}},
	} {
		k := ParseKeyID(c.id)
		if k.Kind != c.kind || k.Name != c.name || k.String() != c.id {
			t.Errorf("ParseKeyID(%q) = %v %q (%q), want %v %q", c.id, k.Kind, k.Name, k.String(), c.kind, c.name)
		}
		byAge, byUses := k.AutoRotates()
		got := props{k.SealsValues(), k.SealsRecords(), k.Rotatable(), k.Retirable(), k.Permanent(), byAge, byUses, k.Reindexed()}
		if got != c.want {
			t.Errorf("%q: properties %+v, want %+v", c.id, got, c.want)
		}
	}
	if RecordKey("c", "").String() != "collection/c" || RecordKey("c", "s").String() != "subject/s" || TokenValueKey("t").String() != "tokens/t" {
		t.Error("the constructors print other ids")
	}
	if KeyPrefix(KeySubject) != "subject/" || KeyPrefix(KeyTokenIndex) != "" {
		t.Error("KeyPrefix")
	}
}

// The key id scheme is parsed and printed in one place, ParseKeyID and
// String: no other package matches a key id's prefix by hand
// (strings.HasPrefix, CutPrefix or TrimPrefix with a key kind's prefix),
// nor spells a key id or a key-only prefix in a string literal (a new
// prefix or fixed id outside this package fails here). Policy resources ("tokens/TYPE",
// the policy package and the doctor's policy checks) are another name
// space and are not key ids.
func TestKeyIDPrefixesParsedOnlyHere(t *testing.T) {
	prefixes := map[string]bool{"tokens/": true, "coffer/": true}
	for _, p := range keyPrefixes {
		prefixes[p.prefix] = true
	}
	prefixes["mask/"] = true
	allowed := map[string]bool{"internal/coffer": true, "internal/policy": true, "internal/doctor": true}
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if path == root {
				return nil
			}
			if allowed[filepath.ToSlash(rel)] || strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil && keyIDText(s) {
					t.Errorf("%s: %q spells a key id's text: name it with coffer.KeyID (ParseKeyID and String are the only places that know the text form)", fset.Position(lit.Pos()), s)
				}
				return true
			}
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) != 2 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "HasPrefix" && sel.Sel.Name != "CutPrefix" && sel.Sel.Name != "TrimPrefix" {
				return true
			}
			if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "strings" {
				return true
			}
			lit, ok := call.Args[1].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			if s, err := strconv.Unquote(lit.Value); err == nil && prefixes[s] {
				t.Errorf("%s: strings.%s(…, %q) parses a key id by hand: use coffer.ParseKeyID", fset.Position(call.Pos()), sel.Sel.Name, s)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// keyIDText reports whether s is a key id's text, or starts like one, in
// a name space only key ids use (not "tokens/TYPE", which is a policy
// resource too).
func keyIDText(s string) bool {
	switch s {
	case TokenIndexKey.String(), TokenOrderKey.String(), RootCheckKey.String(), AuditHMACKey.String(), AuditSigningKey.String(), KeyPrefix(KeyAudit):
		return true
	}
	for _, p := range keyPrefixes {
		// audit/… is also the audit routes' name space (audit/export).
		if p.kind != KeyAudit && strings.HasPrefix(s, p.prefix) {
			return true
		}
	}
	return false
}
