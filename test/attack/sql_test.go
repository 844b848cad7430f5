package attack

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// sqlPayloads are classic SQL injection strings, placeholders of both
// drivers, LIKE wildcards, a NUL and invalid UTF-8.
var sqlPayloads = []string{
	`' OR '1'='1`,
	`' OR 1=1 --`,
	`'; DROP TABLE records; --`,
	`1) OR (1=1`,
	`" OR ""="`,
	`' UNION SELECT id, owner, subject, NULL FROM records --`,
	`x'); DELETE FROM clients; --`,
	`'||(SELECT sqlite_version())||'`,
	`'; SELECT pg_sleep(10); --`,
	`admin'--`,
	`$1`,
	`?`,
	`%`,
	`_`,
	`\`,
	"\x00",
	"a\x00' OR '1'='1",
	"\xff' OR '1'='1",
}

// hostile reports whether p is not text a PostgreSQL column can hold: NUL
// or invalid UTF-8.
func hostile(p string) bool { return strings.ContainsRune(p, 0) || !utf8.ValidString(p) }

// invalidUTF8 reports whether p cannot be sent inside JSON (the server
// refuses such a body with 400 before reading it).
func invalidUTF8(p string) bool { return !utf8.ValidString(p) }

// pgBug skips a payload the PostgreSQL store cannot take as a query
// argument, where the server answers 500 instead of refusing it first.
func pgBug(t *testing.T, w *world, p, what string) {
	t.Helper()
	_, _, _ = w, p, what // fixed: the PostgreSQL store treats such strings as matching nothing
}

// js encodes p as a JSON string; invalid UTF-8 goes in raw, so the body
// is what an attacker sends, not what encoding/json would repair.
func js(p string) string {
	if !utf8.ValidString(p) {
		return `"` + p + `"`
	}
	b, _ := json.Marshal(p)
	return string(b)
}

// forEachPayload runs f for each payload as a subtest, and fails any
// payload that made the server stall (pg_sleep(10) would). A stall is
// measured against the median payload of the same route, not against a
// fixed time: on a loaded machine under -race every payload of a route
// that hashes a password can take seconds, and only a payload that ran
// SQL stands out from the others by the sleep it asked for.
func forEachPayload(t *testing.T, f func(t *testing.T, p string)) {
	took := make([]time.Duration, 0, len(sqlPayloads))
	names := make([]string, 0, len(sqlPayloads))
	for _, p := range sqlPayloads {
		name := fmt.Sprintf("%q", p)
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			f(t, p)
			took = append(took, time.Since(start))
			names = append(names, name)
		})
	}
	if len(took) == 0 {
		return
	}
	sorted := slices.Clone(took)
	slices.Sort(sorted)
	median := sorted[len(sorted)/2]
	for i, d := range took {
		if d > median+8*time.Second {
			t.Errorf("payload %s took %v against a median of %v: something executed it", names[i], d, median)
		}
	}
}

var keyName = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

// eventCount lists audit events with a query and returns how many.
func eventCount(t *testing.T, w *world, query string) int {
	t.Helper()
	var out struct {
		Events []json.RawMessage `json:"events"`
	}
	wantJSON(t, w.n.call(t, "GET", "/v1/audit/events?"+query, w.n.admin, nil), 200, &out)
	return len(out.Events)
}

// sqlAttacks put every payload in every path parameter, query parameter
// and JSON field that reaches the store.
func sqlAttacks() []attack {
	const col = "/v1/collections/"
	return []attack{
		{"GET /v1/collections/{c}", "SQL in the collection name is 404", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				pgBug(t, w, p, "collection name")
				wantProblem(t, w.n.call(t, "GET", col+esc(p), w.n.admin, nil), 404, "collection not found")
			})
		}},
		{"POST /v1/collections/{c}/records", "SQL in the collection name is 404", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				pgBug(t, w, p, "collection name")
				r := w.n.call(t, "POST", col+esc(p)+"/records", w.n.admin, `{"owner":"o","data":{"name":"n"}}`)
				wantProblem(t, r, 404, "collection not found")
			})
		}},
		{"POST /v1/collections/{c}/records/search", "SQL in the collection name is 404", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				pgBug(t, w, p, "collection name")
				r := w.n.call(t, "POST", col+esc(p)+"/records/search", w.n.admin, `{"where":{"name":"Ada Lovelace"}}`)
				wantProblem(t, r, 404, "collection not found")
			})
		}},
		{"GET /v1/collections/{c}/records/{id}", "SQL in the collection name or record id is 404", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				pgBug(t, w, p, "record id or collection name")
				wantProblem(t, w.n.call(t, "GET", col+"customers/records/"+esc(p), w.n.admin, nil), 404, "record not found")
				wantProblem(t, w.n.call(t, "GET", col+esc(p)+"/records/"+w.recA, w.n.admin, nil), 404, "record not found")
			})
		}},
		{"PATCH /v1/collections/{c}/records/{id}", "SQL in the collection name or record id is 404", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				pgBug(t, w, p, "record id or collection name")
				body := `{"data":{"name":"Mallory"}}`
				wantProblem(t, w.n.call(t, "PATCH", col+"customers/records/"+esc(p), w.n.admin, body), 404, "record not found")
				wantProblem(t, w.n.call(t, "PATCH", col+esc(p)+"/records/"+w.recA, w.n.admin, body), 404, "record not found")
			})
		}},
		{"DELETE /v1/collections/{c}/records/{id}", "SQL in the collection name or record id is 404", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				pgBug(t, w, p, "record id or collection name")
				wantProblem(t, w.n.call(t, "DELETE", col+"customers/records/"+esc(p), w.n.admin, nil), 404, "record not found")
				wantProblem(t, w.n.call(t, "DELETE", col+esc(p)+"/records/"+w.recA, w.n.admin, nil), 404, "record not found")
			})
		}},
		{"POST /v1/collections/{c}/records/search", "SQL in where values and field names finds nothing", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				search := func(where string) reply {
					return w.n.call(t, "POST", col+"customers/records/search", w.n.admin, `{"where":{`+where+`}}`)
				}
				if invalidUTF8(p) {
					wantProblem(t, search(`"name":`+js(p)), 400, "request body is not valid UTF-8")
					return
				}
				if strings.ContainsRune(p, 0) {
					wantProblem(t, search(`"name":`+js(p)), 422, `field "name": must be valid UTF-8 without NUL`)
				} else {
					var out struct {
						Records []any `json:"records"`
					}
					wantJSON(t, search(`"name":`+js(p)), 200, &out)
					if len(out.Records) != 0 {
						t.Errorf("search for an injected name found %d records", len(out.Records))
					}
					wantProblem(t, search(`"email":`+js(p)), 422, `field "email": must be an email address`)
				}
				wantProblem(t, search(`"age":`+js(p)), 422, `field "age": must be an integer in the 64-bit range`)
				wantProblem(t, search(js(p)+`:"x"`), 422, fmt.Sprintf("field %q is not a searchable field of collection %q", p, "customers"))
			})
		}},
		{"POST /v1/collections/{c}/records", "SQL in owner, subject and data is stored verbatim, nothing else", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				create := func(body string) reply {
					return w.n.call(t, "POST", col+"customers/records", w.n.admin, body)
				}
				body := `{"owner":` + js(p) + `,"subject":` + js(p) + `,"data":{"name":` + js(p) + `}}`
				switch {
				case invalidUTF8(p):
					wantProblem(t, create(body), 400, "request body is not valid UTF-8")
					return
				case strings.ContainsRune(p, 0):
					wantProblem(t, create(body), 422, "owner and subject must be UTF-8 strings of at most 256 bytes")
					wantProblems(t, create(`{"owner":"o","data":{"name":`+js(p)+`}}`), `field "name": must be valid UTF-8 without NUL`,
						`field "name": must be valid UTF-8 without NUL`)
				default:
					var made struct{ ID string }
					wantJSON(t, create(body), 201, &made)
					var got struct {
						Owner, Subject string
						Data           map[string]any
					}
					w.n.must(t, 200, "GET", col+"customers/records/"+made.ID, w.n.admin, nil, &got)
					if got.Owner != p || got.Subject != p || !reflect.DeepEqual(got.Data, map[string]any{"name": p}) {
						t.Errorf("stored %+v, want owner, subject and name %q", got, p)
					}
					var found struct {
						Records []struct{ ID string } `json:"records"`
					}
					w.n.must(t, 200, "POST", col+"customers/records/search", w.n.admin, `{"where":{"name":`+js(p)+`}}`, &found)
					if len(found.Records) != 1 || found.Records[0].ID != made.ID {
						t.Errorf("search for the injected name found %+v, want only %s", found.Records, made.ID)
					}
					w.n.must(t, 204, "DELETE", col+"customers/records/"+made.ID, w.n.admin, nil, nil)
				}
				emailMsg := `field "email": must be an email address`
				if strings.ContainsRune(p, 0) {
					emailMsg = `field "email": must be valid UTF-8 without NUL`
				}
				wantProblems(t, create(`{"owner":"o","data":{"email":`+js(p)+`}}`), emailMsg, emailMsg)
				wantProblems(t, create(`{"owner":"o","data":{"age":`+js(p)+`}}`), `field "age": must be an integer in the 64-bit range`, `field "age": must be an integer in the 64-bit range`)
				msg := fmt.Sprintf("field %q is not in the schema of collection %q", p, "customers")
				wantProblems(t, create(`{"owner":"o","data":{`+js(p)+`:"x"}}`), msg, msg)
			})
		}},
		{"DELETE /v1/subjects/{subject}", "SQL in the subject erases nobody", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				r := w.n.call(t, "DELETE", "/v1/subjects/"+esc(p), w.n.admin, nil)
				if hostile(p) {
					wantProblem(t, r, 422, "subject must be a UTF-8 string of 1 to 256 bytes")
					return
				}
				var out map[string]any
				wantJSON(t, r, 200, &out)
				if !reflect.DeepEqual(out, map[string]any{"subject_erased": true, "records_deleted": 0.0}) {
					t.Errorf("erasing subject %q: %v", p, out)
				}
			})
		}},
		{"DELETE /v1/clients/{id}", "SQL in the client id is 404", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				pgBug(t, w, p, "client id")
				wantProblem(t, w.n.call(t, "DELETE", "/v1/clients/"+esc(p), w.n.admin, nil), 404, "client not found")
			})
		}},
		{"POST /v1/clients/{id}/rotate", "SQL in the client id is 404", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				pgBug(t, w, p, "client id")
				wantProblem(t, w.n.call(t, "POST", "/v1/clients/"+esc(p)+"/rotate", w.n.admin, nil), 404, "client not found")
			})
		}},
		{"DELETE /v1/security/suspensions/{principal}", "SQL in the principal lifts nothing", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				pgBug(t, w, p, "principal")
				r := w.n.call(t, "DELETE", "/v1/security/suspensions/"+esc(p), w.n.admin, nil)
				if r.status != 204 || len(r.body) != 0 {
					t.Errorf("lifting the suspension of %q: %s", p, r)
				}
			})
		}},
		{"GET /v1/audit/events", "SQL in the filters matches no event", func(t *testing.T, w *world) {
			if eventCount(t, w, "principal="+url.QueryEscape(w.n.Init.ClientID)+"&limit=5") != 5 {
				t.Fatal("the principal filter finds none of the admin's events: the check below could not fail")
			}
			forEachPayload(t, func(t *testing.T, p string) {
				pgBug(t, w, p, "audit filter")
				for _, f := range []string{"principal", "action"} {
					if n := eventCount(t, w, f+"="+q(p)); n != 0 {
						t.Errorf("%s=%q matched %d events", f, p, n)
					}
				}
			})
		}},
		{"GET /v1/audit/events", "SQL in the paging cursor pages from the start", func(t *testing.T, w *world) {
			var first struct{ Events []struct{ ID string } }
			w.n.must(t, 200, "GET", "/v1/audit/events?limit=5", w.n.admin, nil, &first)
			forEachPayload(t, func(t *testing.T, p string) {
				if hostile(p) {
					// A node name with NUL or invalid UTF-8 names no position.
					wantProblem(t, w.n.call(t, "GET", "/v1/audit/events?limit=5&after="+q("1.2."+p), w.n.admin, nil), 422,
						"after is not a cursor from a previous page")
					return
				}
				var page struct{ Events []struct{ ID string } }
				w.n.must(t, 200, "GET", "/v1/audit/events?limit=5&after="+q("1.2."+p), w.n.admin, nil, &page)
				if !reflect.DeepEqual(page.Events, first.Events) {
					t.Errorf("cursor %q: page %v, want the first page %v", p, page.Events, first.Events)
				}
			})
		}},
		{"GET /v1/audit/events", "SQL in since, limit and after is 422", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				get := func(qs string) reply { return w.n.call(t, "GET", "/v1/audit/events?"+qs, w.n.admin, nil) }
				wantProblem(t, get("since="+q(p)), 422, "since must be an RFC 3339 time")
				wantProblem(t, get("limit="+q(p)), 422, "limit must be an integer from 1 to 1000")
				wantProblem(t, get("after="+q(p)), 422, "after is not a cursor from a previous page")
			})
		}},
		{"GET /v1/security/events", "SQL in the filters matches no event", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				get := func(qs string) reply { return w.n.call(t, "GET", "/v1/security/events?"+qs, w.n.admin, nil) }
				wantProblem(t, get("since="+q(p)), 422, "since must be an RFC 3339 time")
				wantProblem(t, get("limit="+q(p)), 422, "limit must be an integer from 1 to 1000")
				pgBug(t, w, p, "security event kind")
				r := get("kind=" + q(p))
				if r.status != 200 || string(r.body) != "{\"events\":[]}\n" {
					t.Errorf("kind=%q: %s", p, r)
				}
			})
		}},
		{"GET /v1/keys/{name}", "SQL in the key name is 422", keyAttack("GET", "", "")},
		{"DELETE /v1/keys/{name}", "SQL in the key name is 422", keyAttack("DELETE", "", "")},
		{"POST /v1/keys/{name}/config", "SQL in the key name is 422", keyAttack("POST", "/config", `{"deletable":true}`)},
		{"POST /v1/keys/{name}/rotate", "SQL in the key name is 422", keyAttack("POST", "/rotate", "")},
		{"POST /v1/admin/keys/rotate", "SQL in the key id rotates nothing", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				for _, id := range []string{p, "collection/" + p, "tokens/" + p} {
					if invalidUTF8(id) {
						continue // not JSON-encodable: the body is refused whole (covered by the hostile-body cases)
					}
					r := w.n.call(t, "POST", "/v1/admin/keys/rotate", w.n.admin, `{"key_id":`+js(id)+`}`)
					if r.status != 404 && r.status != 422 {
						t.Errorf("key_id %q: %s (want 404 or 422)", id, r)
					}
				}
			})
		}},
		{"POST /v1/admin/keys/retire", "SQL in the key id retires nothing", keyVersionAttack("retire")},
		{"POST /v1/admin/keys/unretire", "SQL in the key id unretires nothing", keyVersionAttack("unretire")},
		{"POST /v1/admin/keys/destroy", "SQL in the key id destroys nothing", keyVersionAttack("destroy")},
		{"POST /v1/keys/{name}/import", "SQL in the key name and hash function imports nothing", func(t *testing.T, w *world) {
			// The first import makes the RSA wrapping key, seconds of work
			// under the race detector: made here, it is not timed as a
			// payload's.
			if r := w.n.call(t, "GET", "/v1/keys/wrapping_key", w.n.admin, nil); r.status != 200 {
				t.Fatalf("wrapping key: %s", r)
			}
			forEachPayload(t, func(t *testing.T, p string) {
				r := w.n.call(t, "POST", "/v1/keys/"+esc(p)+"/import", w.n.admin, `{"ciphertext":"AAAA"}`)
				switch {
				case keyName.MatchString(p) && r.status == 409: // "_" may have been made by another case
				case keyName.MatchString(p):
					wantProblem(t, r, 422, "the ciphertext does not unwrap to a key")
				default:
					wantProblem(t, r, 422, "key name must match [a-z0-9_-]{1,64}")
				}
				if invalidUTF8(p) {
					return
				}
				r = w.n.call(t, "POST", "/v1/keys/imported/import", w.n.admin, `{"ciphertext":"AAAA","hash_function":`+js(p)+`}`)
				wantProblem(t, r, 422, "hash_function must be SHA1, SHA256, SHA384 or SHA512")
				r = w.n.call(t, "POST", "/v1/keys/imported/import", w.n.admin, `{"ciphertext":`+js(p)+`}`)
				if r.status != 422 {
					t.Errorf("ciphertext %q: %s (want 422)", p, r)
				}
			})
		}},
		{"POST /v1/keys/{name}/import_version", "SQL in the key name is 422", keyAttack("POST", "/import_version", `{"ciphertext":"AAAA"}`)},
		{"POST /v1/keys/{name}/import_version", "SQL in the hash function and ciphertext adds no version to k1", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				if invalidUTF8(p) {
					return
				}
				r := w.n.call(t, "POST", "/v1/keys/k1/import_version", w.n.admin, `{"ciphertext":"AAAA","hash_function":`+js(p)+`}`)
				wantProblem(t, r, 422, "hash_function must be SHA1, SHA256, SHA384 or SHA512")
				r = w.n.call(t, "POST", "/v1/keys/k1/import_version", w.n.admin, `{"ciphertext":`+js(p)+`}`)
				if r.status != 422 {
					t.Errorf("ciphertext %q: %s (want 422)", p, r)
				}
			})
		}},
		{"GET /v1/keys/wrapping_key", "the wrapping key is one public key, the same each time", func(t *testing.T, w *world) {
			var a, b struct {
				PublicKey string `json:"public_key"`
			}
			wantJSON(t, w.n.call(t, "GET", "/v1/keys/wrapping_key", w.n.admin, nil), 200, &a)
			wantJSON(t, w.n.call(t, "GET", "/v1/keys/wrapping_key", w.n.admin, nil), 200, &b)
			if !strings.HasPrefix(a.PublicKey, "-----BEGIN PUBLIC KEY-----") || a != b || strings.Contains(a.PublicKey, "PRIVATE") {
				t.Fatalf("wrapping key answers %q then %q", a.PublicKey, b.PublicKey)
			}
		}},
		{"POST /v1/keys/{name}/encrypt", "SQL in the key name is 422", keyAttack("POST", "/encrypt", `{"plaintext":"cGxhbnRlZA=="}`)},
		{"POST /v1/keys/{name}/decrypt", "SQL in the key name is 422", keyAttack("POST", "/decrypt", `{"ciphertext":"{CT}"}`)},
		{"POST /v1/keys/{name}/rewrap", "SQL in the key name is 422", keyAttack("POST", "/rewrap", `{"ciphertext":"{CT}"}`)},
		{"POST /v1/keys", "SQL in the key name is 422", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				r := w.n.call(t, "POST", "/v1/keys", w.n.admin, `{"name":`+js(p)+`}`)
				switch {
				case invalidUTF8(p):
					wantProblem(t, r, 400, "request body is not valid UTF-8")
				case keyName.MatchString(p):
					wantJSON(t, r, 201, nil) // "_" is a valid name
				default:
					wantProblem(t, r, 422, "key name must match [a-z0-9_-]{1,64}")
				}
			})
		}},
		{"POST /v1/keys/{name}/encrypt", "SQL in plaintext and context is 422", transitAttack("/encrypt", "plaintext", "items[0].plaintext must be standard base64")},
		{"POST /v1/keys/{name}/encrypt", "SQL in the context is 422", transitAttack("/encrypt", "context", "items[0].context must be standard base64")},
		{"POST /v1/keys/{name}/decrypt", "SQL in the ciphertext is 422", transitAttack("/decrypt", "ciphertext", "items[0].ciphertext must be coffer:vN:BASE64 as encrypt returns it")},
		{"POST /v1/keys/{name}/rewrap", "SQL in the ciphertext is 422", transitAttack("/rewrap", "ciphertext", "items[0].ciphertext must be coffer:vN:BASE64 as encrypt returns it")},
		{"POST /v1/keys/{name}/config", "SQL in the rotation period is 422", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				r := w.n.call(t, "POST", "/v1/keys/k1/config", w.n.admin, `{"auto_rotate_period":`+js(p)+`}`)
				if invalidUTF8(p) {
					wantProblem(t, r, 400, "request body is not valid UTF-8")
					return
				}
				msg := `auto_rotate_period must be a Go duration between 1h and 100 years, like "720h", or "0"`
				wantProblems(t, r, msg, msg)
			})
		}},
		{"POST /v1/tokenize", "SQL in token values round-trips verbatim; in type and mode is 422", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				tokenize := func(item string) reply {
					return w.n.call(t, "POST", "/v1/tokenize", w.n.admin, `{"items":[`+item+`]}`)
				}
				if invalidUTF8(p) {
					wantProblem(t, tokenize(`{"value":`+js(p)+`,"type":"string"}`), 400, "request body is not valid UTF-8")
					return
				}
				for _, mode := range []string{"random", "deterministic"} {
					r := tokenize(`{"value":` + js(p) + `,"type":"string","mode":"` + mode + `"}`)
					if strings.ContainsRune(p, 0) {
						wantProblem(t, r, 422, "items[0]: value is not a valid string")
						continue
					}
					var tok struct{ Tokens []string }
					wantJSON(t, r, 200, &tok)
					var back struct{ Values []string }
					w.n.must(t, 200, "POST", "/v1/detokenize", w.n.admin, map[string]any{"tokens": tok.Tokens}, &back)
					if len(back.Values) != 1 || back.Values[0] != p {
						t.Errorf("%s token of %q detokenizes to %q", mode, p, back.Values)
					}
				}
				wantProblem(t, tokenize(`{"value":"x","type":`+js(p)+`}`), 422, "items[0]: type must be one of card_number ssn email phone string")
				wantProblem(t, tokenize(`{"value":"x","type":"string","mode":`+js(p)+`}`), 422, "items[0]: mode must be random, deterministic or format_preserving")
			})
		}},
		{"POST /v1/detokenize", "SQL as a token is 404", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				for _, tok := range []string{p, "tok_str_" + p, "dtk_str_v1_" + p} {
					r := w.n.call(t, "POST", "/v1/detokenize", w.n.admin, `{"tokens":[`+js(tok)+`]}`)
					if invalidUTF8(p) {
						wantProblem(t, r, 400, "request body is not valid UTF-8")
						continue
					}
					wantProblem(t, r, 404, "tokens[0] is unknown or expired")
				}
			})
		}},
		{"POST /v1/collections", "SQL in collection and field names and types is 422", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				create := func(body string) reply { return w.n.call(t, "POST", "/v1/collections", w.n.admin, body) }
				if invalidUTF8(p) {
					wantProblem(t, create(`{"name":`+js(p)+`,"fields":[{"name":"a","type":"string"}]}`), 400, "request body is not valid UTF-8")
					return
				}
				wantProblem(t, create(`{"name":`+js(p)+`,"fields":[{"name":"a","type":"string"}]}`), 422, "collection name must match [a-z][a-z0-9_]{0,62}")
				msg := "fields[0].name must match [a-z][a-z0-9_]{0,62}"
				wantProblems(t, create(`{"name":"injected","fields":[{"name":`+js(p)+`,"type":"string"}]}`), msg, msg)
				msg = "fields[0].type must be one of string email phone card_number ssn date integer"
				wantProblems(t, create(`{"name":"injected","fields":[{"name":"a","type":`+js(p)+`}]}`), msg, msg)
			})
		}},
		{"POST /v1/clients", "SQL in the client name and attributes is stored verbatim", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				create := func(body string) reply { return w.n.call(t, "POST", "/v1/clients", w.n.admin, body) }
				if invalidUTF8(p) {
					wantProblem(t, create(`{"name":`+js(p)+`}`), 400, "request body is not valid UTF-8")
					return
				}
				if strings.ContainsRune(p, 0) {
					wantProblem(t, create(`{"name":`+js(p)+`}`), 422, "name must be 1 to 128 bytes of printable UTF-8")
					return
				}
				var made struct {
					ClientID   string            `json:"client_id"`
					Name       string            `json:"name"`
					Attributes map[string]string `json:"attributes"`
				}
				wantJSON(t, create(`{"name":`+js(p)+`,"attributes":{`+js(p)+`:`+js(p)+`}}`), 201, &made)
				if made.Name != p || made.Attributes[p] != p {
					t.Errorf("created %+v, want name and attribute %q", made, p)
				}
				w.n.must(t, 204, "DELETE", "/v1/clients/"+made.ClientID, w.n.admin, nil, nil)
				r := create(`{"name":"n","roles":[` + js(p) + `]}`)
				if keyName.MatchString(p) { // "_" is a role name an admin may grant
					wantJSON(t, r, 201, &made)
					w.n.must(t, 204, "DELETE", "/v1/clients/"+made.ClientID, w.n.admin, nil, nil)
					return
				}
				wantProblem(t, r, 422, "roles must match [a-z0-9_-]{1,64}")
			})
		}},
		{"POST /v1/users", "SQL in the username is stored verbatim; roles are 422", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				create := func(body string) reply { return w.n.call(t, "POST", "/v1/users", w.n.admin, body) }
				if invalidUTF8(p) {
					wantProblem(t, create(`{"username":`+js(p)+`,"password":"correct horse battery 9"}`), 400, "request body is not valid UTF-8")
					return
				}
				if !keyName.MatchString(p) {
					wantProblem(t, create(`{"username":"u","password":"correct horse battery 9","roles":[`+js(p)+`]}`), 422, "roles must match [a-z0-9_-]{1,64}")
				}
				if strings.ContainsRune(p, 0) {
					wantProblem(t, create(`{"username":`+js("u"+p)+`,"password":"correct horse battery 9"}`), 422, "username must be printable UTF-8")
					return
				}
				var made struct{ Username string }
				wantJSON(t, create(`{"username":`+js("u"+p)+`,"password":"correct horse battery 9"}`), 201, &made)
				if made.Username != "u"+p {
					t.Errorf("created username %q, want %q", made.Username, "u"+p)
				}
			})
		}},
		{"POST /v1/auth/login", "SQL in username and password is 401", func(t *testing.T, w *world) {
			ok := w.n.send(t, req{method: "POST", path: "/v1/auth/login", contentType: "application/json",
				body: []byte(`{"username":"alice","password":"` + alicePassword + `"}`), via: w.n.From(w.n.freshIP())})
			wantJSON(t, ok, 200, nil) // the user the payloads aim at exists and can log in
			forEachPayload(t, func(t *testing.T, p string) {
				via := w.n.From(w.n.freshIP())
				login := func(body string) reply {
					return w.n.send(t, req{method: "POST", path: "/v1/auth/login", contentType: "application/json", body: []byte(body), via: via})
				}
				if invalidUTF8(p) {
					wantProblem(t, login(`{"username":`+js(p)+`,"password":`+js(p)+`}`), 400, "request body is not valid UTF-8")
					return
				}
				for _, user := range []string{p, "alice" + p} {
					wantProblem(t, login(`{"username":`+js(user)+`,"password":`+js(p+marker)+`}`), 401, "invalid username or password")
				}
			})
		}},
		{"POST /v1/auth/mfa", "SQL in the MFA token and code is 401", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				r := w.n.send(t, req{method: "POST", path: "/v1/auth/mfa", contentType: "application/json",
					body: []byte(`{"mfa_token":` + js(p) + `,"code":` + js(p) + `}`), via: w.n.From(w.n.freshIP())})
				if invalidUTF8(p) {
					wantProblem(t, r, 400, "request body is not valid UTF-8")
					return
				}
				wantProblem(t, r, 401, "invalid or expired MFA token or code")
			})
		}},
		{"POST /v1/auth/mfa/totp/confirm", "SQL in the code is refused", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				r := w.n.call(t, "POST", "/v1/auth/mfa/totp/confirm", w.n.admin, `{"code":`+js(p)+`}`)
				if invalidUTF8(p) {
					wantProblem(t, r, 400, "request body is not valid UTF-8")
					return
				}
				wantProblem(t, r, 403, "only users enrol in TOTP")
			})
		}},
		{"POST /v1/oauth/token", "SQL in client id and secret is invalid_client", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				via := w.n.From(w.n.freshIP())
				r := w.n.send(t, req{method: "POST", path: "/v1/oauth/token", contentType: "application/x-www-form-urlencoded",
					body: []byte("grant_type=client_credentials&client_id=" + q(p) + "&client_secret=" + q(p+marker)), via: via})
				wantOAuth(t, r, 401, "invalid_client", "client authentication failed")
				r = w.n.send(t, req{method: "POST", path: "/v1/oauth/token", contentType: "application/x-www-form-urlencoded",
					body: []byte("grant_type=client_credentials"), via: w.n.From(w.n.freshIP()),
					header: map[string]string{"Authorization": "Basic " + base64Std(q(p)+":"+q(p+marker))}})
				wantOAuth(t, r, 401, "invalid_client", "client authentication failed")
				if c := r.header.Get("WWW-Authenticate"); c != `Basic realm="coffer"` {
					t.Errorf("Basic failure challenges with %q", c)
				}
				r = w.n.form(t, "/v1/oauth/token", "grant_type="+q(p), nil)
				wantOAuth(t, r, 400, "unsupported_grant_type", "only client_credentials is supported")
			})
		}},
		{"POST /v1/oauth/revoke", "SQL as the token revokes nothing", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				r := w.n.form(t, "/v1/oauth/revoke", "token="+q(p+marker), nil)
				if r.status != 200 || len(r.body) != 0 {
					t.Errorf("revoking %q: %s", p, r)
				}
				wantOAuth(t, w.n.form(t, "/v1/oauth/revoke", "token=x&token_type_hint="+q(p), nil), 400,
					"unsupported_token_type", "only access tokens can be revoked")
			})
			w.n.must(t, 200, "GET", "/v1/clients", w.n.admin, nil, nil) // the admin's token still works
		}},
		{"POST /v1/oauth/introspect", "SQL as the token is inactive", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				r := w.n.send(t, req{method: "POST", path: "/v1/oauth/introspect", token: w.n.admin,
					contentType: "application/x-www-form-urlencoded", body: []byte("token=" + q(p+marker))})
				if r.status != 200 || string(r.body) != "{\"active\":false}\n" {
					t.Errorf("introspecting %q: %s", p, r)
				}
			})
		}},
		{"PUT /v1/policy", "SQL in role names, resources, actions and conditions is 422, old policy kept", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				// The admin rule stays in every document, so a policy the
				// server wrongly accepts can be put back.
				const admin = `"admin":[{"resources":["*"],"actions":["*"]}]`
				for _, doc := range []string{
					`{"roles":{` + admin + `,` + js(p) + `:[{"resources":["*"],"actions":["*"]}]}}`,
					`{"roles":{` + admin + `,"x":[{"resources":[` + js(p) + `],"actions":["*"]}]}}`,
					`{"roles":{` + admin + `,"x":[{"resources":["*"],"actions":[` + js(p) + `]}]}}`,
					`{"roles":{` + admin + `,"x":[{"resources":["*"],"actions":["*"],"when":` + js(p) + `}]}}`,
				} {
					r := w.n.send(t, req{method: "PUT", path: "/v1/policy", token: w.n.admin, contentType: "application/json", body: []byte(doc)})
					if invalidUTF8(p) {
						wantProblem(t, r, 400, "request body is not valid UTF-8")
						continue
					}
					if r.status == 204 {
						// Put the planted policy back so the rest of the table runs.
						back := w.n.send(t, req{method: "PUT", path: "/v1/policy", token: w.n.admin, contentType: "application/yaml", body: []byte(policyDoc)})
						if back.status != 204 {
							t.Fatalf("restoring the policy: %s", back)
						}
						if p == "_" && strings.Contains(doc, `"_":[`) {
							continue // "_" is a valid role name
						}
						if strings.Contains(doc, `"when"`) {
							t.Errorf("PUT /v1/policy accepted a `when` that is not a boolean expression: %s", doc)
							continue
						}
					}
					if r.status != 422 {
						t.Errorf("policy %s: %s", doc, r)
						continue
					}
					var pr problem
					mustJSON(t, r.body, &pr)
					if pr.Detail != "policy does not compile; the old policy stays in force" || len(pr.Problems) == 0 {
						t.Errorf("policy %s: %s", doc, r)
					}
				}
			})
		}},
		{"POST /v1/policy/check", "SQL in the checked principal and resource is not allowed", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				body := `{"action":"read","resource":"collections/customers","owner":` + js(w.clientA) +
					`,"id":` + js(p) + `,"principal":{"id":` + js(p) + `,"roles":["customer"]}}`
				r := w.n.call(t, "POST", "/v1/policy/check", w.n.admin, body)
				if invalidUTF8(p) {
					wantProblem(t, r, 400, "request body is not valid UTF-8")
					return
				}
				var out struct{ Allowed bool }
				wantJSON(t, r, 200, &out)
				if out.Allowed {
					t.Errorf("principal %q may read a record owned by %s", p, w.clientA)
				}
			})
		}},
		{"POST /v1/inspect", "SQL as text finds nothing", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				r := w.n.call(t, "POST", "/v1/inspect", w.n.admin, `{"text":`+js(p)+`}`)
				if invalidUTF8(p) {
					wantProblem(t, r, 400, "request body is not valid UTF-8")
					return
				}
				if r.status != 200 || string(r.body) != "{\"findings\":[]}\n" {
					t.Errorf("inspecting %q: %s", p, r)
				}
			})
		}},
		{"POST /v1/redact", "SQL as text comes back as is; as the mode it is 422", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				r := w.n.call(t, "POST", "/v1/redact", w.n.admin, `{"text":`+js(p)+`}`)
				if invalidUTF8(p) {
					wantProblem(t, r, 400, "request body is not valid UTF-8")
					return
				}
				var out struct{ Text string }
				wantJSON(t, r, 200, &out)
				if out.Text != p {
					t.Errorf("redacting %q gave %q", p, out.Text)
				}
				wantProblem(t, w.n.call(t, "POST", "/v1/redact", w.n.admin, `{"text":"x","mode":`+js(p)+`}`), 422, "mode must be mask or placeholder")
			})
		}},
	}
}

func base64Std(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// keyAttack puts each payload in the key name of a transit route.
func keyAttack(method, suffix, body string) func(t *testing.T, w *world) {
	return func(t *testing.T, w *world) {
		forEachPayload(t, func(t *testing.T, p string) {
			var b any
			if body != "" {
				b = body
			}
			if body != "" {
				b = strings.ReplaceAll(body, "{CT}", w.ciphertext)
			}
			r := w.n.call(t, method, "/v1/keys/"+esc(p)+suffix, w.n.admin, b)
			if keyName.MatchString(p) {
				wantProblem(t, r, 404, "transit key not found")
				return
			}
			wantProblem(t, r, 422, "key name must match [a-z0-9_-]{1,64}")
		})
	}
}

// transitAttack puts each payload in one field of a transit request on k1.
func transitAttack(suffix, field, msg string) func(t *testing.T, w *world) {
	return func(t *testing.T, w *world) {
		forEachPayload(t, func(t *testing.T, p string) {
			body := map[string]string{"plaintext": `"cGxhbnRlZA=="`, "ciphertext": js(w.ciphertext)}
			if suffix != "/encrypt" {
				delete(body, "plaintext")
			} else {
				delete(body, "ciphertext")
			}
			body[field] = js(p)
			var parts []string
			for k, v := range body {
				parts = append(parts, `"`+k+`":`+v)
			}
			r := w.n.call(t, "POST", "/v1/keys/k1"+suffix, w.n.admin, "{"+strings.Join(parts, ",")+"}")
			if invalidUTF8(p) {
				wantProblem(t, r, 400, "request body is not valid UTF-8")
				return
			}
			wantProblems(t, r, msg, msg)
		})
	}
}

// keyVersionAttack sends SQL payloads as the key id of a retire, unretire
// or destroy of version 1: each is 404 or 422, and nothing changes.
func keyVersionAttack(op string) func(t *testing.T, w *world) {
	return func(t *testing.T, w *world) {
		forEachPayload(t, func(t *testing.T, p string) {
			for _, id := range []string{p, "collection/" + p, "subject/" + p, "tokens/" + p} {
				if invalidUTF8(id) {
					continue // not JSON-encodable: the body is refused whole (covered by the hostile-body cases)
				}
				r := w.n.call(t, "POST", "/v1/admin/keys/"+op, w.n.admin, `{"key_id":`+js(id)+`,"version":1}`)
				// 409 for a subject the erasure attacks erased: its key is a
				// destroyed tombstone.
				erased := r.status == 409 && strings.HasPrefix(id, "subject/") && strings.Contains(string(r.body), "subject erased")
				if r.status != 404 && r.status != 422 && !erased {
					t.Errorf("key_id %q: %s (want 404 or 422)", id, r)
				}
			}
		})
	}
}
