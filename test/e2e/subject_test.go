package e2e

import (
	"context"
	"testing"

	"github.com/cofferhq/coffer/client"
)

// subjectPolicy binds a writer to the data subject its attributes name:
// it may write records of no subject or of its own, and update only those.
const subjectPolicy = `roles:
  admin:
    - resources: ["*"]
      actions: ["*"]
  intake:
    - resources: ["collections/customers"]
      actions: [create, read, update]
      when: resource.subject == "" || resource.subject == principal.attributes["subject"]
`

// TestSubjectUnderPolicy: conditions see a record's data subject as
// resource.subject, on create (the subject asked for) and on update (the
// stored one), so a writer cannot bind a record to another data subject's
// key, nor change a record of another subject.
func TestSubjectUnderPolicy(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		ctx := context.Background()
		if err := n.Admin.CreateCollection(ctx, customers); err != nil {
			t.Fatal(err)
		}
		if err := n.Admin.PutPolicy(ctx, []byte(subjectPolicy), "yaml"); err != nil {
			t.Fatal(err)
		}
		cl, err := n.Admin.CreateClient(ctx, "intake-s1", []string{"intake"}, map[string]string{"subject": "s1"})
		if err != nil {
			t.Fatal(err)
		}
		in := n.Client(cl.ClientID, cl.ClientSecret)
		data := map[string]any{"name": "Ada"}
		if _, err := in.CreateRecord(ctx, "customers", client.NewRecord{Data: data}); err != nil {
			t.Fatalf("create without a subject: %v", err)
		}
		mine, err := in.CreateRecord(ctx, "customers", client.NewRecord{Subject: "s1", Data: data})
		if err != nil {
			t.Fatalf("create for its own subject: %v", err)
		}
		if _, err := in.CreateRecord(ctx, "customers", client.NewRecord{Subject: "s2", Data: data}); client.StatusCode(err) != 403 {
			t.Fatalf("create bound to another subject's key: %v, want 403", err)
		}
		other, err := n.Admin.CreateRecord(ctx, "customers", client.NewRecord{Subject: "s2", Data: data})
		if err != nil {
			t.Fatal(err)
		}
		if err := in.UpdateRecord(ctx, "customers", mine, map[string]any{"name": "Ada L."}); err != nil {
			t.Fatalf("update of its own subject's record: %v", err)
		}
		if err := in.UpdateRecord(ctx, "customers", other, map[string]any{"name": "Mallory"}); client.StatusCode(err) != 404 {
			t.Fatalf("update of another subject's record: %v, want 404", err)
		}
		if rec, err := n.Admin.GetRecord(ctx, "customers", other); err != nil || rec.Data["name"] != "Ada" {
			t.Fatalf("the other subject's record after the refused update: %v %v", rec, err)
		}
	})
}
