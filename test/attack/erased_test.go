package attack

import "testing"

// The class "erased-subject writes": a data subject once erased stays
// erased, and no path that meets an ended key (an erased subject's key, a
// retired or destroyed version) answers 5xx. Each answers a documented
// 4xx problem.

const (
	msgSubjectErased = "the data subject was erased; nothing can be written for it again"
	msgVersionGone   = "a value is sealed under a key version that was destroyed; it is gone for good"
	msgNoActive      = "the key has no active version to seal with, or a value is sealed under a retired version (an operator may unretire it)"
)

// TestErasedSubjectWrites: after DELETE /v1/subjects/X, for an X with
// records or one never seen, a write for X is 409 subject-erased, nothing
// is stored, and a record of X that survived the erasure (a copy put back
// in the database) reads as gone and cannot be written.
func TestErasedSubjectWrites(t *testing.T) {
	forEachBackend(t, setup{}, func(t *testing.T, n *node) {
		n.must(t, 201, "POST", "/v1/collections", n.admin, people, nil)
		const recs = "/v1/collections/people/records"
		create := func(subject string) reply {
			return n.call(t, "POST", recs, n.admin, map[string]any{"subject": subject, "data": map[string]any{"name": "Eve", "email": "eve@example.com"}})
		}
		var erased struct {
			SubjectErased  bool `json:"subject_erased"`
			RecordsDeleted int  `json:"records_deleted"`
		}
		t.Run("a subject never seen", func(t *testing.T) {
			n.must(t, 200, "DELETE", "/v1/subjects/never-seen", n.admin, nil, &erased)
			if !erased.SubjectErased || erased.RecordsDeleted != 0 {
				t.Fatalf("erasure: %+v", erased)
			}
			wantTypedProblem(t, create("never-seen"), 409, "subject-erased", msgSubjectErased)
		})
		t.Run("a subject with records", func(t *testing.T) {
			var out struct{ ID string }
			wantJSON(t, create("s1"), 201, &out)
			raw := openRaw(t, n)
			var (
				owner, subject, keyID   string
				values, seal            []byte
				canary, crAt, upAt, rev int64
				exp                     *int64
			)
			row := []any{&owner, &subject, &keyID, &values, &canary, &crAt, &upAt, &exp, &rev, &seal}
			raw.row(t, `SELECT owner, subject, key_id, values_blob, canary, created_at, updated_at, expires_at, revision, meta_seal
				FROM records WHERE collection = $1 AND id = $2`, []any{"people", out.ID}, row...)
			n.must(t, 200, "DELETE", "/v1/subjects/s1", n.admin, nil, &erased)
			if erased.RecordsDeleted != 1 {
				t.Fatalf("erasure: %+v", erased)
			}
			wantTypedProblem(t, create("s1"), 409, "subject-erased", msgSubjectErased)
			// The record comes back, as from a copy: it is gone for
			// every purpose, and no write brings its subject back.
			raw.exec(t, `INSERT INTO records (collection, id, owner, subject, key_id, values_blob, canary, created_at, updated_at, expires_at, revision, meta_seal)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
				"people", out.ID, owner, subject, keyID, values, canary, crAt, upAt, exp, rev, seal)
			wantProblem(t, n.call(t, "GET", recs+"/"+out.ID, n.admin, nil), 404, "record not found (its data subject was erased)")
			wantTypedProblem(t, n.call(t, "PATCH", recs+"/"+out.ID, n.admin, `{"data":{"name":"Eve again"}}`), 409, "subject-erased", msgSubjectErased)
			var hits searchHits
			n.must(t, 200, "POST", recs+"/search", n.admin, `{"where":{"name":"Eve"}}`, &hits)
			if len(hits.Records) != 0 {
				t.Errorf("search finds the erased subject's record: %v", hits.ids())
			}
		})
		noEchoInLog(t, n)
	})
}

// TestEndedKeyVersions: values sealed under a version an operator ended
// (retired, or destroyed in the database), and a key left without an
// active version, give documented 4xx answers on every path — records,
// tokens, transit — never a 500.
func TestEndedKeyVersions(t *testing.T) {
	forEachBackend(t, setup{}, func(t *testing.T, n *node) {
		n.must(t, 201, "POST", "/v1/collections", n.admin, people, nil)
		const recs = "/v1/collections/people/records"
		var rec struct{ ID string }
		n.must(t, 201, "POST", recs, n.admin, `{"data":{"name":"Ada","age":36}}`, &rec)
		var tok struct{ Tokens []string }
		n.must(t, 200, "POST", "/v1/tokenize", n.admin, `{"items":[{"value":"4111111111111111","type":"card_number"}]}`, &tok)
		n.must(t, 200, "POST", "/v1/admin/keys/rotate", n.admin, `{"key_id":"tokens/card_number"}`, nil)
		n.must(t, 201, "POST", "/v1/keys", n.admin, `{"name":"k1"}`, nil)
		var ct struct{ Ciphertext string }
		n.must(t, 200, "POST", "/v1/keys/k1/encrypt", n.admin, `{"plaintext":"cGxhbnRlZA=="}`, &ct)
		n.must(t, 200, "POST", "/v1/keys/k1/rotate", n.admin, nil, nil)

		// As the database's owner: end versions behind Coffer's back (no
		// API ends a version that still seals values), then restart so
		// that no key cache remembers them.
		n.Stop()
		raw := openRaw(t, n)
		end := func(keyID string, version int, state string) {
			raw.exec(t, `UPDATE data_keys SET state = $1, wrapped = $2 WHERE key_id = $3 AND version = $4`,
				state, []byte(map[bool]string{true: "", false: "kept"}[state == "destroyed"]), keyID, version)
		}
		raw.exec(t, `UPDATE data_keys SET state = 'retired' WHERE key_id = $1 AND version = 1`, "collection/people")
		end("tokens/card_number", 1, "destroyed")
		end("transit/k1", 1, "destroyed")
		n.serve(setup{})

		t.Run("records: a key without an active version", func(t *testing.T) {
			for _, r := range []reply{
				n.call(t, "POST", recs, n.admin, `{"data":{"name":"Bob"}}`),
				n.call(t, "PATCH", recs+"/"+rec.ID, n.admin, `{"data":{"name":"Ada L."}}`),
			} {
				wantTypedProblem(t, r, 409, "key-retired", msgNoActive)
			}
			wantProblem(t, n.call(t, "GET", recs+"/"+rec.ID, n.admin, nil), 409,
				"a value of this record is sealed under a retired or destroyed key version and cannot be opened (an operator may unretire a retired version)")
			wantProblem(t, n.call(t, "POST", recs+"/search", n.admin, `{"where":{"name":"Ada"}}`), 409,
				"a value of this record is sealed under a retired or destroyed key version and cannot be opened (an operator may unretire a retired version)")
		})
		t.Run("tokens: a destroyed value key version", func(t *testing.T) {
			wantTypedProblem(t, n.call(t, "POST", "/v1/detokenize", n.admin, map[string]any{"tokens": tok.Tokens}), 409,
				"key-version-destroyed", msgVersionGone)
		})
		t.Run("transit: a destroyed key version", func(t *testing.T) {
			for _, op := range []string{"decrypt", "rewrap"} {
				wantProblem(t, n.call(t, "POST", "/v1/keys/k1/"+op, n.admin, map[string]any{"ciphertext": ct.Ciphertext}), 400,
					"ciphertext cannot be decrypted")
				r := n.call(t, "POST", "/v1/keys/k1/"+op, n.admin, map[string]any{"batch_input": []map[string]any{{"ciphertext": ct.Ciphertext}}})
				if r.status >= 500 {
					t.Errorf("batch %s: %s", op, r)
				}
			}
		})
		noEchoInLog(t, n)
	})
}
