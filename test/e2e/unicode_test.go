package e2e

import (
	"context"
	"testing"

	"github.com/cofferhq/coffer/client"
)

// TestUnicodeValues: text is Unicode text. A record stored with a Kelvin
// sign K is stored as the K it is canonically equivalent to, and found by
// that address in any case (decided: the two are one address, not a
// look-alike); an email mixing look-alike letters of two scripts, or
// holding fullwidth forms, is refused on write and on search; combining
// sequences are stored composed (NFC).
func TestUnicodeValues(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		ctx := context.Background()
		if err := n.Admin.CreateCollection(ctx, customers); err != nil {
			t.Fatal(err)
		}
		id, err := n.Admin.CreateRecord(ctx, "customers", client.NewRecord{Data: map[string]any{
			"email": "\u212Aate@example.com", "name": "Cafe\u0301"}})
		if err != nil {
			t.Fatal(err)
		}
		r, err := n.Admin.GetRecord(ctx, "customers", id)
		if err != nil || r.Data["email"] != "Kate@example.com" || r.Data["name"] != "Caf\u00e9" {
			t.Fatalf("stored forms: %+q %v", r.Data, err)
		}
		for _, email := range []string{"kate@example.com", "KATE@example.com", "\u212Aate@example.com"} {
			hits, err := n.Admin.Search(ctx, "customers", map[string]any{"email": email}, 10)
			if err != nil || len(hits) != 1 || hits[0].ID != id {
				t.Fatalf("search %+q: %v %v", email, hits, err)
			}
		}
		for _, email := range []string{"p\u0430ypal@example.com", "ann@ex\u0430mple.com", "\uff4bate@example.com"} {
			if _, err := n.Admin.CreateRecord(ctx, "customers", client.NewRecord{Data: map[string]any{"email": email}}); client.StatusCode(err) != 422 {
				t.Errorf("create with %+q: %v, want 422", email, err)
			}
			if _, err := n.Admin.Search(ctx, "customers", map[string]any{"email": email}, 10); client.StatusCode(err) != 422 {
				t.Errorf("search for %+q: %v, want 422", email, err)
			}
		}
		other, err := n.Admin.CreateRecord(ctx, "customers", client.NewRecord{Data: map[string]any{"email": "\u043a\u0430\u0442\u044f@example.com"}})
		if err != nil {
			t.Fatalf("an address in one other script: %v", err)
		}
		if hits, err := n.Admin.Search(ctx, "customers", map[string]any{"email": "\u041a\u0410\u0422\u042f@example.com"}, 10); err != nil || len(hits) != 1 || hits[0].ID != other {
			t.Fatalf("the Cyrillic address in capitals: %v %v", hits, err)
		}
	})
}
