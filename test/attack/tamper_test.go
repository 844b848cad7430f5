package attack

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// The class "record tampering": whoever can write the database but holds
// no key cannot change a record unseen. A value put back from an earlier
// revision, a value removed, a metadata column edited (owner, which owner
// rules decide on; subject; canary; expires_at) is detected when the
// record is read, and a planted blind index row pulls no other record into
// a search. Each detection is a 409 problem "integrity" (never a 500, never
// the tampered data) and a data.integrity security event.

const msgIntegrity = "the record failed its integrity check: its stored data was changed outside Coffer"

var vaulted = map[string]any{
	"name": "vaulted",
	"fields": []map[string]any{
		{"name": "name", "type": "string", "searchable": true},
		{"name": "email", "type": "email", "searchable": true},
		{"name": "note", "type": "string"},
	},
}

// TestRecordTampering tampers with the real database directly, on both
// backends, while the server runs.
func TestRecordTampering(t *testing.T) {
	forEachBackend(t, setup{}, func(t *testing.T, n *node) {
		n.must(t, 201, "POST", "/v1/collections", n.admin, vaulted, nil)
		raw := openRaw(t, n)
		const recs = "/v1/collections/vaulted/records"
		create := func(t *testing.T, body map[string]any) string {
			t.Helper()
			if body["data"] == nil {
				body["data"] = map[string]any{"name": "Ada", "email": "ada@example.com", "note": "first " + marker}
			}
			var out struct{ ID string }
			n.must(t, 201, "POST", recs, n.admin, body, &out)
			return out.ID
		}
		values := func(t *testing.T, id string) map[string][]byte {
			t.Helper()
			var b []byte
			raw.row(t, `SELECT values_blob FROM records WHERE collection = 'vaulted' AND id = $1`, []any{id}, &b)
			var v map[string][]byte
			if err := json.Unmarshal(b, &v); err != nil {
				t.Fatal(err)
			}
			return v
		}
		setValues := func(t *testing.T, id string, v map[string][]byte) {
			t.Helper()
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			raw.exec(t, `UPDATE records SET values_blob = $1 WHERE collection = 'vaulted' AND id = $2`, b, id)
		}
		detected := func(t *testing.T, id string) {
			t.Helper()
			r := n.call(t, "GET", recs+"/"+id, n.admin, nil)
			wantTypedProblem(t, r, 409, "integrity", msgIntegrity)
		}
		tampered := 0
		t.Run("roll a field back to an earlier revision", func(t *testing.T) {
			id := create(t, map[string]any{})
			old := values(t, id)["note"]
			n.must(t, 200, "PATCH", recs+"/"+id, n.admin, `{"data":{"note":"second"}}`, nil)
			v := values(t, id)
			v["note"] = old
			setValues(t, id, v)
			tampered++
			detected(t, id)
		})
		t.Run("remove a field", func(t *testing.T) {
			id := create(t, map[string]any{})
			v := values(t, id)
			delete(v, "note")
			setValues(t, id, v)
			tampered++
			detected(t, id)
		})
		t.Run("move a value to another field", func(t *testing.T) {
			id := create(t, map[string]any{})
			v := values(t, id)
			v["name"] = v["note"]
			setValues(t, id, v)
			tampered++
			detected(t, id)
		})
		for _, c := range []struct {
			name, body, set string
			arg             any
		}{
			{"edit the owner", `{"owner":"alice"}`, `owner = $1`, "mallory"},
			{"edit the subject", `{"subject":"subject-x"}`, `subject = $1`, "subject-y"},
			{"hide a canary", `{"canary":true}`, `canary = $1`, 0},
			{"make a record expire later", `{}`, `expires_at = $1`, time.Now().Add(365 * 24 * time.Hour).UnixMicro()},
		} {
			t.Run(c.name, func(t *testing.T) {
				var body map[string]any
				mustJSON(t, []byte(c.body), &body)
				id := create(t, body)
				raw.exec(t, `UPDATE records SET `+c.set+` WHERE collection = 'vaulted' AND id = $2`, c.arg, id)
				tampered++
				detected(t, id)
			})
		}
		t.Run("plant a blind index row", func(t *testing.T) {
			a := create(t, map[string]any{"data": map[string]any{"name": "Ann", "email": "ann@example.com"}})
			b := create(t, map[string]any{"data": map[string]any{"name": "Ben", "email": "ben@example.com"}})
			tampered++
			raw.exec(t, `INSERT INTO record_index (collection, field, mac, record_id, version)
				SELECT collection, field, mac, $1, version FROM record_index WHERE collection = 'vaulted' AND field = 'email' AND record_id = $2`, b, a)
			var hits searchHits
			n.must(t, 200, "POST", recs+"/search", n.admin, `{"where":{"email":"ann@example.com"}}`, &hits)
			if ids := hits.ids(); len(ids) != 1 || ids[0] != a {
				t.Errorf("search for a's email found %v, want only a (%s); b is %s", ids, a, b)
			}
		})
		// Every detection raised a security event, without a value.
		var events struct {
			Events []json.RawMessage `json:"events"`
		}
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			n.must(t, 200, "GET", "/v1/security/events?kind=data.integrity", n.admin, nil, &events)
			if len(events.Events) >= tampered || time.Now().After(deadline) {
				break
			}
		}
		if len(events.Events) < tampered || tampered == 0 {
			t.Errorf("%d data.integrity events for %d tamperings", len(events.Events), tampered)
		}
		for _, e := range events.Events {
			if strings.Contains(string(e), marker) || strings.Contains(string(e), "ann@example.com") {
				t.Errorf("a security event holds a value: %s", e)
			}
		}
		noEchoInLog(t, n)
	})
}
