package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/client"
)

const pseudonymPolicy = `roles:
  admin:
    - resources: ["*"]
      actions: ["*"]
  analyst:
    - resources: ["collections/*"]
      actions: [read]
      fields: {"*": masked}
`

// TestPseudonymsPerField: the hash mask's pseudonyms are keyed per
// collection and field (mask/hash/COLLECTION/FIELD in the keyring), so
// one value has unrelated pseudonyms in two collections or two fields,
// and the same one within a field; rotating that key changes them.
func TestPseudonymsPerField(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		ctx := context.Background()
		for _, name := range []string{"leads", "patients"} {
			if err := n.Admin.CreateCollection(ctx, client.Collection{Name: name, Fields: []client.Field{
				{Name: "email", Type: "email", Mask: "hash"}, {Name: "contact", Type: "email", Mask: "hash"}}}); err != nil {
				t.Fatal(err)
			}
		}
		if err := n.Admin.PutPolicy(ctx, []byte(pseudonymPolicy), "yaml"); err != nil {
			t.Fatal(err)
		}
		cl, err := n.Admin.CreateClient(ctx, "analyst", []string{"analyst"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		an := n.Client(cl.ClientID, cl.ClientSecret)
		data := map[string]any{"email": "ada@example.com", "contact": "ada@example.com"}
		seen := func(collection string) (email, contact string) {
			t.Helper()
			id, err := n.Admin.CreateRecord(ctx, collection, client.NewRecord{Data: data})
			if err != nil {
				t.Fatal(err)
			}
			r, err := an.GetRecord(ctx, collection, id)
			if err != nil {
				t.Fatal(err)
			}
			email, _ = r.Data["email"].(string)
			contact, _ = r.Data["contact"].(string)
			if !strings.HasPrefix(email, "h:") || !strings.HasPrefix(contact, "h:") {
				t.Fatalf("not pseudonyms: %v", r.Data)
			}
			return email, contact
		}
		le, lc := seen("leads")
		le2, _ := seen("leads")
		pe, _ := seen("patients")
		if le != le2 {
			t.Errorf("one value, one field: pseudonyms %s and %s", le, le2)
		}
		if le == pe {
			t.Errorf("one value in two collections has one pseudonym %s: they link", le)
		}
		if le == lc {
			t.Errorf("one value in two fields has one pseudonym %s: they link", le)
		}
		st, _, b := n.do("POST", "/v1/admin/keys/rotate", n.Token(n.Init.ClientID, n.Init.ClientSecret), "application/json",
			strings.NewReader(`{"key_id":"mask/hash/leads/email"}`))
		if st != 200 {
			t.Fatalf("rotate the pseudonym key: %d %s", st, b)
		}
		if le3, lc3 := seen("leads"); le3 == le || lc3 != lc {
			t.Errorf("after rotating mask/hash/leads/email: email %s (was %s), contact %s (was %s)", le3, le, lc3, lc)
		}
	})
}
