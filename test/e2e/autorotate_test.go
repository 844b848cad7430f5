package e2e

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// TestAutoRotateByUses: with keys.rotate_after_uses at 12, a collection
// key that has sealed 14 values (3 values and 2 records' seals on create,
// then 3 updates of a record, each sealing its 2 values and its seal
// again) is rotated by the server on its own; every record reads back
// before and after the rewrap, which then moves every value to the new
// version; the rotation is logged and counted, and the rewrap (3 values
// and 2 seals) does not make the new version due again.
func TestAutoRotateByUses(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			n := start(t, b, "COFFER_KEYS_ROTATE_AFTER_USES=12", "COFFER_KEYS_ROTATE_CHECK_INTERVAL=100ms")
			ctx := context.Background()
			n.ServeMetrics()
			if err := n.Admin.CreateCollection(ctx, customers); err != nil {
				t.Fatal(err)
			}
			const ssn = "123-45-6789"
			want := map[string]string{}
			for _, email := range []string{"rot-a@example.com", "rot-b@example.com"} {
				data := map[string]any{"email": email}
				if len(want) == 0 {
					data["ssn"] = ssn
				}
				id, err := n.Admin.CreateRecord(ctx, "customers", client.NewRecord{Owner: "o", Data: data})
				if err != nil {
					t.Fatal(err)
				}
				want[id] = email
			}
			readAll := func(when string) {
				t.Helper()
				for id, email := range want {
					r, err := n.Admin.GetRecord(ctx, "customers", id)
					if err != nil || r.Data["email"] != email {
						t.Fatalf("%s: record %s: %v %v", when, id, err, r)
					}
					if s, ok := r.Data["ssn"]; ok && s != ssn {
						t.Fatalf("%s: record %s ssn %v", when, id, s)
					}
				}
			}
			db := n.openStore()
			keyVersions := func() []coffer.DataKey {
				t.Helper()
				ks, err := db.DataKeys(ctx, "collection/customers")
				if err != nil {
					t.Fatal(err)
				}
				return ks
			}
			readAll("before rotation")
			if ks := keyVersions(); len(ks) != 1 {
				t.Fatalf("5 seals rotated the key: %+v", ks)
			}
			// Three updates of one field, each sealing the record again
			// (email, ssn, seal): 14 seals under version 1 in all, over 12
			// only with the last.
			// Update the record with the ssn; search later for the other,
			// whose email stays.
			var first, other string
			for id := range want {
				if r, err := n.Admin.GetRecord(ctx, "customers", id); err == nil && r.Data["ssn"] != nil {
					first = id
				} else {
					other = id
				}
			}
			for i := range 3 {
				email := "rot-" + string(rune('c'+i)) + "@example.com"
				if err := n.Admin.UpdateRecord(ctx, "customers", first, map[string]any{"email": email}); err != nil {
					t.Fatal(err)
				}
				want[first] = email
			}
			waitFor(t, "the collection key to rotate on its own", func() bool { return len(keyVersions()) == 2 })
			readAll("right after the rotation")
			ks := keyVersions()
			if ks[0].Uses < 13 || ks[1].State != coffer.KeyActive {
				t.Fatalf("versions after rotation: %+v", ks)
			}
			waitFor(t, "the rewrap to move every value to version 2", func() bool {
				v := versions(t, db, "customers")
				return v[2] == 3 && len(v) == 1
			})
			readAll("after the rewrap")
			if hits, err := n.Admin.Search(ctx, "customers", map[string]any{"email": want[other]}, 10); err != nil || len(hits) != 1 {
				t.Fatalf("search after rewrap: %v %v", hits, err)
			}
			// The rewrap sealed 3 values and 2 seals under version 2: not
			// due again.
			time.Sleep(500 * time.Millisecond)
			if ks := keyVersions(); len(ks) != 2 {
				t.Fatalf("rotated again: %d versions", len(ks))
			}

			logs := n.Logs.String()
			if !strings.Contains(logs, `"msg":"data key rotated automatically","key_id":"collection/customers","from_version":1,"to_version":2,"reason":"uses"`) {
				t.Errorf("rotation not logged:\n%s", logs)
			}
			for _, secret := range []string{ssn, "rot-a@example.com", "rot-e@example.com"} {
				if strings.Contains(logs, secret) {
					t.Errorf("logs hold a value: %s", secret)
				}
			}
			body := n.scrapeMetrics()
			if !strings.Contains(body, `coffer_key_operations_total{op="auto_rotate",outcome="ok"} 1`) {
				t.Errorf("rotation not counted:\n%s", grepLines(body, "coffer_key_operations"))
			}
		})
	}
}

// TestAutoRotateKeyWithTooManyValues: with keys.rotate_after_uses at 8, a
// collection key holding 8 values (and 4 records' seals) is rotated once
// by the server on its own and rewrapped; the rewrap seals the 12 under
// the new version,
// over the bound again, which used to rotate and rewrap it at every check.
// Now it stays at version 2 over many checks: the server warns, with the
// key id and counts, that the key holds too many values for the bound, and
// counts it in its own metric.
func TestAutoRotateKeyWithTooManyValues(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			n := start(t, b, "COFFER_KEYS_ROTATE_AFTER_USES=8", "COFFER_KEYS_ROTATE_CHECK_INTERVAL=100ms")
			ctx := context.Background()
			n.ServeMetrics()
			if err := n.Admin.CreateCollection(ctx, customers); err != nil {
				t.Fatal(err)
			}
			want := map[string]string{}
			for i := range 4 { // 8 values and 4 records' seals, each sealed once
				email := "many-" + string(rune('a'+i)) + "@example.com"
				id, err := n.Admin.CreateRecord(ctx, "customers", client.NewRecord{Owner: "o",
					Data: map[string]any{"email": email, "name": "Many " + string(rune('A'+i))}})
				if err != nil {
					t.Fatal(err)
				}
				want[id] = email
			}
			db := n.openStore()
			keyVersions := func() []coffer.DataKey {
				t.Helper()
				ks, err := db.DataKeys(ctx, "collection/customers")
				if err != nil {
					t.Fatal(err)
				}
				return ks
			}
			waitFor(t, "the collection key to rotate on its own", func() bool { return len(keyVersions()) >= 2 })
			waitFor(t, "the rewrap to move every value to version 2", func() bool {
				v := versions(t, db, "customers")
				return v[2] == 8 && len(v) == 1
			})
			const warning = "split the collection or raise keys.rotate_after_uses"
			waitFor(t, "the warning that the key holds too many values", func() bool {
				return strings.Contains(n.Logs.String(), warning)
			})
			time.Sleep(time.Second) // about ten more checks
			ks := keyVersions()
			if len(ks) != 2 {
				t.Fatalf("rotated again after its rewrap: %d versions", len(ks))
			}
			// Each value (and each record's seal) is sealed once under
			// version 2: moved there by the rewrap, or, for a record
			// created after the rotation (a check may run before the last
			// create: 9 seals are over 8), sealed there at once. Only the
			// latter count towards the next rotation, and stay below it.
			if fresh := ks[1].Uses - ks[1].RewrapUses; ks[1].Uses != 12 || ks[1].RewrapUses == 0 || fresh > 3 {
				t.Fatalf("version 2: %d uses, %d rewrap uses; want 12, of which at most 3 not rewraps", ks[1].Uses, ks[1].RewrapUses)
			}
			for id, email := range want {
				r, err := n.Admin.GetRecord(ctx, "customers", id)
				if err != nil || r.Data["email"] != email {
					t.Fatalf("record %s: %v %v", id, err, r)
				}
			}

			logs := n.Logs.String()
			if c := strings.Count(logs, `"reason":"uses"`); c != 1 {
				t.Errorf("%d rotations by uses logged, want 1", c)
			}
			for l := range strings.Lines(logs) {
				if !strings.Contains(l, warning) {
					continue
				}
				for _, w := range []string{`"level":"WARN"`, `"key_id":"collection/customers"`, `"version":2`,
					`"rewrap_uses":` + strconv.FormatUint(ks[1].RewrapUses, 10), `"rotate_after_uses":8`} {
					if !strings.Contains(l, w) {
						t.Errorf("warning lacks %s: %s", w, l)
					}
				}
			}
			for _, secret := range []string{"many-a@example.com", "Many B"} {
				if strings.Contains(logs, secret) {
					t.Errorf("logs hold a value: %s", secret)
				}
			}
			body := n.scrapeMetrics()
			if !strings.Contains(body, `coffer_key_operations_total{op="auto_rotate",outcome="ok"} 1`) {
				t.Errorf("rotations counted:\n%s", grepLines(body, "coffer_key_operations"))
			}
			if !regexp.MustCompile(`(?m)^coffer_key_rotation_too_many_values_total [1-9]`).MatchString(body) {
				t.Errorf("the key with too many values was not counted:\n%s",
					grepLines(body, "coffer_key_rotation_too_many_values_total"))
			}
		})
	}
}

func grepLines(s, sub string) string {
	var out []string
	for l := range strings.Lines(s) {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}
