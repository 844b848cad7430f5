package attack

import (
	"bytes"
	"strings"
	"testing"
)

const maxBody = 1 << 20

// sized returns a JSON object of exactly n bytes: {"text":"aaa…"}.
func sized(n int) []byte {
	const open, close = `{"text":"`, `"}`
	return []byte(open + strings.Repeat("a", n-len(open)-len(close)) + close)
}

// nested returns a body whose value at field nests depth arrays deep.
func nested(prefix string, depth int, suffix string) []byte {
	return []byte(prefix + strings.Repeat("[", depth) + strings.Repeat("]", depth) + suffix)
}

// jsonRoutes are routes that read a JSON body, with a sample path.
var jsonRoutes = []sample{
	{"POST /v1/collections/{c}/records", "POST", "/v1/collections/customers/records"},
	{"PATCH /v1/collections/{c}/records/{id}", "PATCH", "/v1/collections/customers/records/{A}"},
	{"POST /v1/collections/{c}/records/search", "POST", "/v1/collections/customers/records/search"},
	{"POST /v1/collections", "POST", "/v1/collections"},
	{"POST /v1/tokenize", "POST", "/v1/tokenize"},
	{"POST /v1/detokenize", "POST", "/v1/detokenize"},
	{"POST /v1/clients", "POST", "/v1/clients"},
	{"POST /v1/users", "POST", "/v1/users"},
	{"POST /v1/auth/login", "POST", "/v1/auth/login"},
	{"POST /v1/auth/mfa", "POST", "/v1/auth/mfa"},
	{"POST /v1/auth/mfa/totp/confirm", "POST", "/v1/auth/mfa/totp/confirm"},
	{"POST /v1/policy/check", "POST", "/v1/policy/check"},
	{"POST /v1/keys", "POST", "/v1/keys"},
	{"POST /v1/keys/{name}/config", "POST", "/v1/keys/k1/config"},
	{"POST /v1/keys/{name}/encrypt", "POST", "/v1/keys/k1/encrypt"},
	{"POST /v1/keys/{name}/decrypt", "POST", "/v1/keys/k1/decrypt"},
	{"POST /v1/keys/{name}/rewrap", "POST", "/v1/keys/k1/rewrap"},
	{"POST /v1/keys/{name}/import", "POST", "/v1/keys/imported/import"},
	{"POST /v1/keys/{name}/import_version", "POST", "/v1/keys/k1/import_version"},
	{"POST /v1/keys/{name}/import_vault", "POST", "/v1/keys/vault-imported/import_vault"},
	{"POST /v1/inspect", "POST", "/v1/inspect"},
	{"POST /v1/redact", "POST", "/v1/redact"},
}

// bodyAttacks: oversized, deeply nested, non-UTF-8 and ill-shaped bodies
// on every route that reads JSON, and numbers and strings no field takes.
func bodyAttacks() []attack {
	var out []attack
	for _, s := range jsonRoutes {
		out = append(out, attack{s.route, "oversized, nested, non-UTF-8 and ill-shaped bodies", func(t *testing.T, w *world) {
			path := strings.ReplaceAll(s.path, "{A}", w.recA)
			send := func(body []byte, ct string) reply {
				return w.n.send(t, req{method: s.method, path: path, token: w.n.admin, contentType: ct, body: body})
			}
			wantProblem(t, send(sized(maxBody+1), "application/json"), 413, "request body is larger than 1048576 bytes")
			wantProblem(t, send(nested(`{"a":`, 100000, `}`), "application/json"), 400, "request body is not valid JSON")
			wantProblem(t, send([]byte("{\"name\":\"\xff\xfe"+marker+"\"}"), "application/json"), 400, "request body is not valid UTF-8")
			wantProblem(t, send(nil, "application/json"), 400, "request body is empty; a JSON object is required")
			wantProblem(t, send([]byte(`{"name":"`+marker), "application/json"), 400, "request body is not valid JSON")
			wantProblem(t, send([]byte(`{} {}`), "application/json"), 400, "request body holds more than one JSON value")
			wantProblem(t, send([]byte(`["`+marker+`"]`), "application/json"), 422, "request body must be a JSON object")
			wantProblem(t, send([]byte(`{"`+marker+`":1}`), "application/json"), 422, `unknown field "`+marker+`"`)
			wantProblem(t, send([]byte(`{}`), "text/plain"), 415, "Content-Type must be application/json")
		}})
	}
	return append(out,
		attack{"POST /v1/inspect", "a body of exactly the limit is read", func(t *testing.T, w *world) {
			r := w.n.call(t, "POST", "/v1/inspect", w.n.admin, sized(maxBody))
			if r.status != 200 {
				t.Fatalf("a body of exactly %d bytes: %s", maxBody, r)
			}
		}},
		attack{"POST /v1/oauth/token", "oversized and non-UTF-8 forms", func(t *testing.T, w *world) {
			big := "grant_type=client_credentials&client_id=x&client_secret=" + strings.Repeat("a", maxBody)
			wantOAuth(t, w.n.form(t, "/v1/oauth/token", big, nil), 413, "invalid_request", "request body too large")
			wantOAuth(t, w.n.form(t, "/v1/oauth/token", "grant_type=client_credentials&client_id=\xff&client_secret="+marker, nil),
				400, "invalid_request", "request body could not be read")
			wantOAuth(t, w.n.form(t, "/v1/oauth/token", "grant_type=client_credentials&client_id=%zz", nil),
				400, "invalid_request", "request body is not a valid form")
			wantOAuth(t, w.n.form(t, "/v1/oauth/token", "grant_type=client_credentials&client_id=a&client_id="+w.n.Init.ClientID, nil),
				400, "invalid_request", "parameter client_id is repeated")
			r := w.n.send(t, req{method: "POST", path: "/v1/oauth/token", contentType: "application/json",
				body: []byte(`{"grant_type":"client_credentials"}`)})
			wantOAuth(t, r, 400, "invalid_request", "Content-Type must be application/x-www-form-urlencoded")
		}},
		attack{"POST /v1/oauth/revoke", "oversized forms", func(t *testing.T, w *world) {
			wantOAuth(t, w.n.form(t, "/v1/oauth/revoke", "token="+strings.Repeat("a", maxBody), nil), 413, "invalid_request", "request body too large")
		}},
		attack{"POST /v1/oauth/introspect", "oversized forms", func(t *testing.T, w *world) {
			r := w.n.send(t, req{method: "POST", path: "/v1/oauth/introspect", token: w.n.admin,
				contentType: "application/x-www-form-urlencoded", body: []byte("token=" + strings.Repeat("a", maxBody))})
			wantOAuth(t, r, 413, "invalid_request", "request body too large")
		}},
		attack{"PUT /v1/policy", "oversized, nested, non-UTF-8, duplicate-key and YAML-bomb policies: old policy kept", func(t *testing.T, w *world) {
			put := func(ct string, body []byte) reply {
				return w.n.send(t, req{method: "PUT", path: "/v1/policy", token: w.n.admin, contentType: ct, body: body})
			}
			wantProblem(t, put("application/yaml", append([]byte("roles: {}\n#"), bytes.Repeat([]byte("a"), maxBody)...)), 413, "request body is larger than 1048576 bytes")
			wantProblem(t, put("application/json", []byte("{\"roles\":{}}\xff")), 400, "request body is not valid UTF-8")
			const failed = "policy does not compile; the old policy stays in force"
			for i := 0; i < 2; i++ { // the same answer each time
				wantProblems(t, put("application/json", []byte(`{"roles":{"a":[]},"roles":{"admin":[{"resources":["*"],"actions":["*"]}]}}`)),
					failed, "roles: duplicate key", "roles.a: role has no rules")
			}
			bomb := "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
			prev := "a"
			for _, c := range "bcdefghi" {
				bomb += string(c) + ": &" + string(c) + " [" + strings.Repeat("*"+prev+",", 8) + "*" + prev + "]\n"
				prev = string(c)
			}
			wantProblems(t, put("application/yaml", []byte(bomb)), failed, ": document too large or too deeply nested")
			r := put("application/json", nested(`{"roles":`, 100000, `}`))
			if r.status != 400 && r.status != 422 {
				t.Errorf("a policy nested 100000 deep: %s", r)
			}
			wantProblem(t, put("text/plain", []byte("roles: {}")), 415, "Content-Type must be application/json or application/yaml")
		}},
		attack{"POST /v1/collections/{c}/records", "huge numbers, NUL and duplicate keys in record data", func(t *testing.T, w *world) {
			create := func(data string) reply {
				return w.n.call(t, "POST", "/v1/collections/customers/records", w.n.admin, `{"owner":"o","data":{`+data+`}}`)
			}
			const notInt = `field "age": must be an integer in the 64-bit range`
			for _, num := range []string{"1e400", "18446744073709551616", "9223372036854775808", "-9223372036854775809", "1.5", "1e3", `"1e400"`, `"0x10"`} {
				wantProblems(t, create(`"age":`+num), notInt, notInt)
			}
			const nul = `field "name": must be valid UTF-8 without NUL`
			wantProblems(t, create(`"name":"`+marker+`\u0000"`), nul, nul)
			wantProblem(t, w.n.call(t, "POST", "/v1/collections/customers/records", w.n.admin,
				`{"owner":"`+marker+`\u0000","data":{"name":"x"}}`), 422, "owner and subject must be UTF-8 strings of at most 256 bytes")
			wantProblem(t, create(`"name":`+string(nested("", 100000, ""))), 400, "request body is not valid JSON")
			// Duplicate keys: the last one wins, as it does for the owner in the IDOR cases.
			var made struct{ ID string }
			wantJSON(t, create(`"name":"first","name":"last","age":1,"age":2`), 201, &made)
			var got struct{ Data map[string]any }
			w.n.must(t, 200, "GET", "/v1/collections/customers/records/"+made.ID, w.n.admin, nil, &got)
			if got.Data["name"] != "last" || got.Data["age"] != 2.0 {
				t.Errorf("duplicate keys stored %v, want the last of each", got.Data)
			}
			w.n.must(t, 204, "DELETE", "/v1/collections/customers/records/"+made.ID, w.n.admin, nil, nil)
		}},
		attack{"POST /v1/collections/{c}/records/search", "huge numbers in limit and where", func(t *testing.T, w *world) {
			search := func(body string) reply {
				return w.n.call(t, "POST", "/v1/collections/customers/records/search", w.n.admin, body)
			}
			for _, num := range []string{"1e400", "18446744073709551616", "1.5"} {
				wantProblem(t, search(`{"where":{"age":1},"limit":`+num+`}`), 422, `field "limit" must be of JSON type number`)
				wantProblem(t, search(`{"where":{"age":`+num+`}}`), 422, `field "age": must be an integer in the 64-bit range`)
			}
			wantProblem(t, search(`{"where":{"age":1},"limit":1000000}`), 422, "limit must be at most 1000")
		}},
		attack{"POST /v1/keys/{name}/config", "huge numbers in the key config", func(t *testing.T, w *world) {
			for _, num := range []string{"1e400", "4294967296", "-1", "1.5"} {
				r := w.n.call(t, "POST", "/v1/keys/k1/config", w.n.admin, `{"min_decryption_version":`+num+`}`)
				wantProblem(t, r, 422, `field "min_decryption_version" must be of JSON type number`)
			}
		}},
		attack{"POST /v1/tokenize", "NUL in token values is 422", func(t *testing.T, w *world) {
			r := w.n.call(t, "POST", "/v1/tokenize", w.n.admin, `{"items":[{"value":"`+marker+`\u0000","type":"string"}]}`)
			wantProblem(t, r, 422, "items[0]: value is not a valid string")
		}},
	)
}
