package httpapi

import (
	"context"
	_ "embed"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/quota"
	secretpkg "github.com/cofferhq/coffer/internal/secret"
	"github.com/cofferhq/coffer/internal/token"
	"github.com/cofferhq/coffer/internal/vault"
)

//go:embed openapi.json
var openAPI []byte

// OpenAPI returns a copy of the OpenAPI 3.1 document the server serves at
// /v1/openapi.json (the contract tests check answers against it).
func OpenAPI() []byte { return append([]byte(nil), openAPI...) }

func (s *Server) routes() {
	s.handle("GET /healthz", public|noAudit, s.healthz)
	s.handle("GET /readyz", public|noAudit, s.readyz)
	s.handle("GET /v1/openapi.json", public|noAudit, func(*Call) (Reply, error) {
		return Reply{Raw: openAPI, ContentType: "application/json"}, nil
	})
	s.handle("GET /.well-known/oauth-authorization-server", public|noAudit, s.metadata)
	s.handle("GET /.well-known/jwks.json", public|noAudit, s.jwks)
	s.handle("POST /v1/oauth/token", public, s.token)
	s.handle("POST /v1/oauth/revoke", public, s.revoke)

	s.handle("POST /v1/oauth/introspect", 0, s.introspect)
	s.handle("POST /v1/auth/login", public, s.login)
	s.handle("POST /v1/auth/mfa", public, s.mfa)
	s.handle("POST /v1/auth/mfa/totp", 0, s.startTOTP)
	s.handle("POST /v1/auth/mfa/totp/confirm", 0, s.confirmTOTP)
	s.handle("POST /v1/clients", idempotent, s.createClient)
	s.handle("GET /v1/clients", 0, s.listClients)
	s.handle("PATCH /v1/clients/{id}", 0, s.updateClient)
	s.handle("DELETE /v1/clients/{id}", 0, s.deleteClient)
	s.handle("POST /v1/clients/{id}/rotate", 0, s.rotateClient)
	s.handle("POST /v1/users", idempotent, s.createUser)
	s.handle("GET /v1/users", 0, s.listUsers)
	s.handle("PATCH /v1/users/{id}", 0, s.updateUser)
	s.handle("DELETE /v1/users/{id}", 0, s.deleteUser)
	s.handle("POST /v1/users/{id}/mfa/enrolment-code", 0, s.issueEnrolmentCode)
	s.handle("DELETE /v1/users/{id}/mfa", 0, s.resetMFA)
	s.handle("POST /v1/policy/check", 0, s.checkPolicy)
	s.handle("GET /v1/policy", 0, s.getPolicy)
	s.handle("PUT /v1/policy", 0, s.putPolicy)

	s.handle("POST /v1/collections", idempotent, s.createCollection)
	s.handle("GET /v1/collections", 0, s.listCollections)
	s.handle("GET /v1/collections/{c}", 0, s.getCollection)
	s.handle("POST /v1/collections/{c}/records", idempotent, s.createRecord)
	s.handle("GET /v1/collections/{c}/records/{id}", 0, s.getRecord)
	s.handle("PATCH /v1/collections/{c}/records/{id}", 0, s.patchRecord)
	s.handle("DELETE /v1/collections/{c}/records/{id}", 0, s.deleteRecord)
	s.handle("POST /v1/collections/{c}/records/search", 0, s.search)
	s.handle("DELETE /v1/subjects/{subject}", 0, s.eraseSubject)
	s.handle("POST /v1/tokenize", idempotent, s.tokenize)
	s.handle("POST /v1/detokenize", 0, s.detokenize)
	s.handle("POST /v1/inspect", 0, s.inspect)
	s.handle("POST /v1/redact", 0, s.redactText)
	s.transitRoutes()
	s.handle("GET /v1/audit/events", 0, s.auditEvents)
	s.handle("POST /v1/audit/verify", 0, s.auditVerify)
	s.handle("POST /v1/admin/audit/archive", 0, s.auditArchive)
	s.handle("GET /v1/security/events", 0, s.securityEvents)
	s.handle("DELETE /v1/security/suspensions/{principal}", 0, s.liftSuspension)
	s.handle("PUT /v1/security/suspensions/{principal}", 0, s.suspend)
	s.handle("GET /v1/security/suspensions", 0, s.suspensions)
	if s.c.Extra != nil {
		s.c.Extra(&Router{s: s})
	}
}

// Routes lists every registered route pattern (for the attack suite's
// coverage check and the OpenAPI test).
func (s *Server) Routes() []string {
	return append([]string(nil), s.routeList...)
}

func (s *Server) healthz(*Call) (Reply, error) {
	return Reply{Body: map[string]string{"status": "ok"}}, nil
}

func (s *Server) readyz(c *Call) (Reply, error) {
	ctx, cancel := context.WithTimeout(c.R.Context(), 3*time.Second)
	defer cancel()
	checks := map[string]string{}
	ok := true
	for name, check := range s.c.Ready {
		if err := check(ctx); err != nil {
			checks[name] = "not ready"
			ok = false
			s.c.Logger.Warn("readiness check failed", "check", name, "error", err)
		} else {
			checks[name] = "ok"
		}
	}
	if !ok {
		return Reply{Status: http.StatusServiceUnavailable, Body: map[string]any{"status": "not ready", "checks": checks}}, nil
	}
	return Reply{Body: map[string]any{"status": "ok", "checks": checks}}, nil
}

func (s *Server) metadata(*Call) (Reply, error) {
	base := strings.TrimRight(s.c.PublicURL, "/")
	issuer := s.c.Issuer
	if issuer == "" {
		issuer = base
	}
	return Reply{Body: map[string]any{
		"issuer":                                           issuer,
		"token_endpoint":                                   base + "/v1/oauth/token",
		"jwks_uri":                                         base + "/.well-known/jwks.json",
		"revocation_endpoint":                              base + "/v1/oauth/revoke",
		"introspection_endpoint":                           base + "/v1/oauth/introspect",
		"grant_types_supported":                            []string{"client_credentials"},
		"response_types_supported":                         []string{},
		"token_endpoint_auth_methods_supported":            []string{"client_secret_basic", "client_secret_post"},
		"revocation_endpoint_auth_methods_supported":       []string{"none"},
		"token_endpoint_auth_signing_alg_values_supported": []string{"EdDSA"},
		"service_documentation":                            base + "/v1/openapi.json",
	}}, nil
}

func (s *Server) jwks(*Call) (Reply, error) {
	b, err := s.c.OAuth.JWKS()
	if err != nil {
		return Reply{}, err
	}
	return Reply{Raw: b, ContentType: "application/jwk-set+json"}, nil
}

// oauthError is an RFC 6749 §5.2 error answer.
func oauthError(status int, code, desc string) Reply {
	return Reply{Status: status, Body: map[string]string{"error": code, "error_description": desc}}
}

func (s *Server) readForm(c *Call) (url.Values, *Reply) {
	if ct := c.R.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		r := oauthError(http.StatusBadRequest, "invalid_request", "Content-Type must be application/x-www-form-urlencoded")
		return nil, &r
	}
	b, err := readBody(c.R)
	if err != nil {
		if coffer.ErrorCode(err) == coffer.ETOOLARGE {
			r := oauthError(http.StatusRequestEntityTooLarge, "invalid_request", "request body too large")
			return nil, &r
		}
		r := oauthError(http.StatusBadRequest, "invalid_request", "request body could not be read")
		return nil, &r
	}
	form, err := url.ParseQuery(string(b))
	if err != nil {
		r := oauthError(http.StatusBadRequest, "invalid_request", "request body is not a valid form")
		return nil, &r
	}
	for k, v := range form {
		if len(v) > 1 {
			r := oauthError(http.StatusBadRequest, "invalid_request", "parameter "+truncate(k)+" is repeated")
			return nil, &r
		}
	}
	return form, nil
}

func (s *Server) token(c *Call) (Reply, error) {
	c.Note.Target("token", "clients")
	form, bad := s.readForm(c)
	if bad != nil {
		c.Note.Deny("malformed token request")
		return *bad, nil
	}
	id, secret, basic := c.R.BasicAuth()
	if basic {
		// RFC 6749 §2.3.1: form-encoded inside Basic.
		var e1, e2 error
		id, e1 = url.QueryUnescape(id)
		secret, e2 = url.QueryUnescape(secret)
		if e1 != nil || e2 != nil || form.Has("client_secret") {
			c.Note.Deny("malformed client authentication")
			return oauthError(http.StatusBadRequest, "invalid_request", "malformed client authentication"), nil
		}
	} else {
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	if gt := form.Get("grant_type"); gt != "client_credentials" {
		c.Note.Deny("unsupported grant type")
		if gt == "" {
			return oauthError(http.StatusBadRequest, "invalid_request", "grant_type is required"), nil
		}
		return oauthError(http.StatusBadRequest, "unsupported_grant_type", "only client_credentials is supported"), nil
	}
	if id == "" || secret == "" || len(id) > 128 || len(secret) > 512 || !printable(id) {
		c.Note.Deny("missing client credentials")
		return s.invalidClient(c, basic), nil
	}
	c.Attempted = id
	iss, p, err := s.c.OAuth.ClientCredentials(c.R.Context(), id, secretpkg.NewPassword(secret), c.IP)
	if err != nil {
		switch coffer.ErrorCode(err) {
		case coffer.EUNAUTHENTICATED:
			c.Note.Deny("invalid client credentials")
			return s.invalidClient(c, basic), nil
		case coffer.ERATELIMIT:
			c.Note.Deny("locked out")
			var ce *coffer.Error
			if asErr(err, &ce) && ce.RetryAfterSeconds > 0 {
				c.header.Set("Retry-After", itoa(ce.RetryAfterSeconds))
			}
			return oauthError(http.StatusTooManyRequests, "invalid_client", "too many failed attempts; try again later"), nil
		}
		return Reply{}, err
	}
	c.Principal = p
	c.Note.Allow("client_credentials")
	c.Note.Touch(coffer.ClientTarget(p.ID))
	return Reply{Body: iss}, nil
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// invalidClient is RFC 6749 §5.2's 401; with Basic it names that scheme.
func (s *Server) invalidClient(c *Call, basic bool) Reply {
	if basic {
		c.header.Set("WWW-Authenticate", `Basic realm="coffer"`)
	}
	return oauthError(http.StatusUnauthorized, "invalid_client", "client authentication failed")
}

func (s *Server) revoke(c *Call) (Reply, error) {
	c.Note.Target("revoke", "tokens")
	form, bad := s.readForm(c)
	if bad != nil {
		return *bad, nil
	}
	tok := form.Get("token")
	if tok == "" {
		return oauthError(http.StatusBadRequest, "invalid_request", "token is required"), nil
	}
	if hint := form.Get("token_type_hint"); hint != "" && hint != "access_token" {
		return oauthError(http.StatusBadRequest, "unsupported_token_type", "only access tokens can be revoked"), nil
	}
	// Whoever holds a token may revoke it (RFC 7009 lets the server decide
	// how to authenticate; the token itself is the credential here).
	id, err := s.c.OAuth.Revoke(c.R.Context(), tok)
	if err != nil {
		return Reply{}, err
	}
	if id != "" {
		c.Note.Count = 1
		c.Note.Touch(coffer.AccessTokenTarget(id))
	}
	c.Note.Allow("token holder")
	return Reply{Status: http.StatusOK}, nil
}

func (s *Server) getPolicy(c *Call) (Reply, error) {
	data, format, err := s.c.Policies.Read(c.R.Context(), c.caller())
	if err != nil {
		return Reply{}, err
	}
	ct := "application/json"
	if format == "yaml" {
		ct = "application/yaml"
	}
	return Reply{Raw: data, ContentType: ct}, nil
}

func (s *Server) putPolicy(c *Call) (Reply, error) {
	c.Note.Target("update", "policy")
	ct := c.R.Header.Get("Content-Type")
	format := ""
	switch {
	case strings.HasPrefix(ct, "application/json"):
		format = "json"
	case strings.HasPrefix(ct, "application/yaml"), strings.HasPrefix(ct, "application/x-yaml"), strings.HasPrefix(ct, "text/yaml"):
		format = "yaml"
	default:
		return Reply{}, &coffer.Error{Code: "unsupported_media", Message: "Content-Type must be application/json or application/yaml"}
	}
	force := false
	switch q := c.R.URL.Query(); {
	case !q.Has("force"), q.Get("force") == "false" && len(q["force"]) == 1:
	case q.Get("force") == "true" && len(q["force"]) == 1:
		force = true
	default:
		return Reply{}, coffer.Errorf(coffer.EINVALID, "force must be true or false")
	}
	b, err := readBody(c.R)
	if err != nil {
		return Reply{}, err
	}
	if err := s.c.Policies.Put(c.R.Context(), c.Principal, c.IP, b, format, force, &c.Note); err != nil {
		return Reply{}, err
	}
	return Reply{Status: http.StatusNoContent}, nil
}

func (s *Server) createCollection(c *Call) (Reply, error) {
	c.Note.Target("admin", "collections")
	var spec vault.CollectionSpec
	if err := decodeJSON(c.R, &spec); err != nil {
		return Reply{}, err
	}
	col, err := s.c.Vault.CreateCollection(c.R.Context(), c.Caller(), spec)
	if err != nil {
		return Reply{}, err
	}
	return Reply{Status: http.StatusCreated, Body: collectionJSON(col)}, nil
}

func collectionJSON(c coffer.Collection) map[string]any {
	m := map[string]any{"name": c.Name, "fields": c.Fields, "created_at": c.CreatedAt}
	if c.Retention > 0 {
		m["retention"] = c.Retention.String()
	}
	return m
}

func (s *Server) listCollections(c *Call) (Reply, error) {
	cols, err := s.c.Vault.Collections(c.R.Context(), c.Caller())
	if err != nil {
		return Reply{}, err
	}
	out := make([]map[string]any, 0, len(cols))
	for _, col := range cols {
		out = append(out, collectionJSON(col))
	}
	return Reply{Body: map[string]any{"collections": out}}, nil
}

func (s *Server) getCollection(c *Call) (Reply, error) {
	col, err := s.c.Vault.Collection(c.R.Context(), c.Caller(), c.R.PathValue("c"))
	if err != nil {
		return Reply{}, err
	}
	return Reply{Body: collectionJSON(col)}, nil
}

func (s *Server) createRecord(c *Call) (Reply, error) {
	c.Note.Target("create", "collections/"+c.R.PathValue("c"))
	var nr vault.NewRecord
	if err := decodeJSON(c.R, &nr); err != nil {
		return Reply{}, err
	}
	id, err := s.c.Vault.CreateRecord(c.R.Context(), c.Caller(), c.R.PathValue("c"), nr)
	if err != nil {
		return Reply{}, err
	}
	c.header.Set("Location", "/v1/collections/"+url.PathEscape(c.R.PathValue("c"))+"/records/"+id)
	return Reply{Status: http.StatusCreated, Body: map[string]string{"id": id}}, nil
}

func (s *Server) getRecord(c *Call) (Reply, error) {
	v, err := s.c.Vault.GetRecord(c.R.Context(), c.Caller(), c.R.PathValue("c"), c.R.PathValue("id"))
	if err != nil {
		return Reply{}, err
	}
	return Reply{Body: v}, nil
}

func (s *Server) patchRecord(c *Call) (Reply, error) {
	c.Note.Target("update", "collections/"+c.R.PathValue("c"))
	var p vault.Patch
	if err := decodeJSON(c.R, &p); err != nil {
		return Reply{}, err
	}
	if err := s.c.Vault.UpdateRecord(c.R.Context(), c.Caller(), c.R.PathValue("c"), c.R.PathValue("id"), p); err != nil {
		return Reply{}, err
	}
	v, err := s.c.Vault.GetRecord(c.R.Context(), c.Caller(), c.R.PathValue("c"), c.R.PathValue("id"))
	if err != nil {
		// Updated, but the caller may not read it back: answer without a body.
		if code := coffer.ErrorCode(err); code == coffer.EFORBIDDEN || code == coffer.ENOTFOUND {
			c.Note.Action, c.Note.Decision = "update", "allow"
			return Reply{Status: http.StatusNoContent}, nil
		}
		return Reply{}, err
	}
	c.Note.Action = "update"
	return Reply{Body: v}, nil
}

func (s *Server) deleteRecord(c *Call) (Reply, error) {
	if err := s.c.Vault.DeleteRecord(c.R.Context(), c.Caller(), c.R.PathValue("c"), c.R.PathValue("id")); err != nil {
		return Reply{}, err
	}
	return Reply{Status: http.StatusNoContent}, nil
}

func (s *Server) search(c *Call) (Reply, error) {
	c.Note.Target("search", "collections/"+c.R.PathValue("c"))
	var q vault.Search
	if err := decodeJSON(c.R, &q); err != nil {
		return Reply{}, err
	}
	recs, err := s.c.Vault.SearchRecords(c.R.Context(), c.Caller(), c.R.PathValue("c"), q)
	if err != nil {
		return Reply{}, err
	}
	return Reply{Body: map[string]any{"records": recs}}, nil
}

func (s *Server) eraseSubject(c *Call) (Reply, error) {
	n, err := s.c.Vault.EraseSubject(c.R.Context(), c.Caller(), c.R.PathValue("subject"))
	if err != nil {
		return Reply{}, err
	}
	return Reply{Body: map[string]any{"subject_erased": true, "records_deleted": n}}, nil
}

func (s *Server) tokenize(c *Call) (Reply, error) {
	c.Note.Target("tokenize", "tokens")
	var req struct {
		Items []token.Item `json:"items"`
	}
	if err := decodeJSON(c.R, &req); err != nil {
		return Reply{}, err
	}
	linkable := 0
	for _, it := range req.Items {
		if token.Linkable(it.Mode) {
			linkable++
		}
	}
	refund := func(context.Context) {}
	if s.c.Quotas != nil {
		var err error
		refund, err = s.c.Quotas.Take(c.R.Context(), c.Principal,
			map[string]int{quota.Tokenize: len(req.Items), quota.TokenizeLinkable: linkable})
		if err != nil {
			c.Note.Deny("tokenize quota")
			return Reply{}, err
		}
	}
	toks, err := s.c.Tokens.Tokenize(c.R.Context(), c.Caller(), req.Items)
	if err != nil {
		refund(c.R.Context())
		return Reply{}, err
	}
	c.Note.Linkable = linkable
	return Reply{Body: map[string]any{"tokens": toks}}, nil
}

func (s *Server) detokenize(c *Call) (Reply, error) {
	c.Note.Target("detokenize", "tokens")
	var req struct {
		Tokens []string `json:"tokens"`
	}
	if err := decodeJSON(c.R, &req); err != nil {
		return Reply{}, err
	}
	vals, err := s.c.Tokens.Detokenize(c.R.Context(), c.Caller(), req.Tokens)
	if err != nil {
		return Reply{}, err
	}
	return Reply{Body: map[string]any{"values": vals}}, nil
}
