package httpapi

import (
	"net/http"
	"unicode/utf8"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/policy"
)

func (s *Server) introspect(c *Call) (Reply, error) {
	c.Note.Target("introspect", "tokens")
	if err := s.c.Policies.Allowed(c.Principal, "read", "clients", c.IP, &c.Note); err != nil {
		return Reply{}, err
	}
	form, bad := s.readForm(c)
	if bad != nil {
		return *bad, nil
	}
	return Reply{Body: s.c.Identity.Introspect(c.R.Context(), form.Get("token"))}, nil
}

func (s *Server) login(c *Call) (Reply, error) {
	c.Note.Target("login", "users")
	var req struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := decodeJSON(c.R, &req); err != nil {
		return Reply{}, err
	}
	if req.Username == "" || req.Password == "" || len(req.Username) > 128 || len(req.Password) > 1024 {
		return Reply{}, coffer.Errorf(coffer.EINVALID, "username and password are required")
	}
	c.Attempted = req.Username
	if !printable(req.Username) {
		c.Note.Deny("login failed")
		return Reply{}, coffer.Errorf(coffer.EUNAUTHENTICATED, "invalid username or password")
	}
	res, err := s.c.Identity.Login(c.R.Context(), req.Username, req.Password, c.IP)
	if err != nil {
		c.Note.Deny("login failed")
		return Reply{}, err
	}
	c.Principal = res.Principal
	c.Note.Touch(coffer.UserTarget(res.Principal.ID))
	if res.MFARequired {
		c.Note.Allow("password; MFA required")
		return Reply{Body: map[string]any{"mfa_required": true, "mfa_token": res.MFAToken}}, nil
	}
	c.Note.Allow("password")
	return Reply{Body: res.Token}, nil
}

func (s *Server) mfa(c *Call) (Reply, error) {
	c.Note.Target("login", "users")
	var req struct {
		MFAToken string `json:"mfa_token"`
		Code     string `json:"code"`
	}
	if err := decodeJSON(c.R, &req); err != nil {
		return Reply{}, err
	}
	if req.MFAToken == "" || req.Code == "" || len(req.Code) > 64 {
		return Reply{}, coffer.Errorf(coffer.EINVALID, "mfa_token and code are required")
	}
	iss, p, err := s.c.Identity.CompleteMFA(c.R.Context(), req.MFAToken, req.Code, c.IP)
	if err != nil {
		c.Note.Deny("MFA failed")
		return Reply{}, err
	}
	c.Principal = p
	c.Note.Touch(coffer.UserTarget(p.ID))
	c.Note.Allow("password+totp")
	return Reply{Body: iss}, nil
}

func (s *Server) startTOTP(c *Call) (Reply, error) {
	c.Note.Target("enrol", "users/"+c.Principal.ID)
	var req struct {
		EnrolmentCode string `json:"enrolment_code"`
	}
	if c.R.ContentLength != 0 {
		if err := decodeJSON(c.R, &req); err != nil {
			return Reply{}, err
		}
	}
	// Any signed-in user may enrol their own second factor; one whose
	// roles require MFA only with an admin's one-time enrolment code.
	en, err := s.c.Identity.StartTOTP(c.R.Context(), c.Principal, "Coffer", req.EnrolmentCode)
	if err != nil {
		c.Note.Deny("TOTP enrolment refused")
		return Reply{}, err
	}
	c.Note.Touch(coffer.UserTarget(c.Principal.ID))
	c.Note.Allow("self")
	return Reply{Body: en}, nil
}

func (s *Server) confirmTOTP(c *Call) (Reply, error) {
	c.Note.Target("enrol", "users/"+c.Principal.ID)
	var req struct {
		Code string `json:"code"`
	}
	if err := decodeJSON(c.R, &req); err != nil {
		return Reply{}, err
	}
	if err := s.c.Identity.ConfirmTOTP(c.R.Context(), c.Principal, req.Code); err != nil {
		c.Note.Deny("TOTP confirmation failed")
		return Reply{}, err
	}
	c.Note.Touch(coffer.UserTarget(c.Principal.ID))
	c.Note.Allow("self")
	return Reply{Status: http.StatusNoContent}, nil
}

func validAttrs(m map[string]string) error {
	if len(m) > 64 {
		return coffer.Errorf(coffer.EINVALID, "at most 64 attributes")
	}
	for k, v := range m {
		if k == "" || len(k) > 64 || len(v) > 256 || !printable(k) || !printable(v) {
			return coffer.Errorf(coffer.EINVALID, "attribute names must be 1 to 64 bytes and values at most 256, printable UTF-8")
		}
	}
	return nil
}

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

func (s *Server) listClients(c *Call) (Reply, error) {
	c.Note.Target("read", "clients")
	if err := s.c.Policies.Allowed(c.Principal, "read", "clients", c.IP, &c.Note); err != nil {
		return Reply{}, err
	}
	cs, err := s.c.Identity.Clients(c.R.Context())
	if err != nil {
		return Reply{}, err
	}
	c.Note.Count = len(cs)
	return Reply{Body: map[string]any{"clients": cs}}, nil
}

func (s *Server) createUser(c *Call) (Reply, error) {
	c.Note.Target("create", "users")
	var req struct {
		Username   string            `json:"username"`
		Password   string            `json:"password"`
		Roles      []string          `json:"roles"`
		Attributes map[string]string `json:"attributes"`
	}
	if err := decodeJSON(c.R, &req); err != nil {
		return Reply{}, err
	}
	if err := s.c.Policies.Allowed(c.Principal, "create", "users", c.IP, &c.Note); err != nil {
		return Reply{}, err
	}
	if err := validAttrs(req.Attributes); err != nil {
		return Reply{}, err
	}
	if !printable(req.Username) {
		return Reply{}, coffer.Errorf(coffer.EINVALID, "username must be printable UTF-8")
	}
	if err := validGrants(held{req.Roles, nil}); err != nil {
		return Reply{}, err
	}
	if err := s.mayGrant(c, "users", "", held{req.Roles, req.Attributes}); err != nil {
		return Reply{}, err
	}
	u, err := s.c.Identity.CreateUser(c.R.Context(), req.Username, req.Password, req.Roles, req.Attributes)
	if err != nil {
		return Reply{}, err
	}
	c.Note.Count = 1
	c.Note.Touch(coffer.UserTarget(u.ID))
	return Reply{Status: http.StatusCreated, Body: u}, nil
}

// checkPolicy explains a decision for a principal without acting on it.
func (s *Server) checkPolicy(c *Call) (Reply, error) {
	c.Note.Target("read", "policy")
	if err := s.c.Policies.Allowed(c.Principal, "read", "policy", c.IP, &c.Note); err != nil {
		return Reply{}, err
	}
	var req struct {
		Principal struct {
			ID         string            `json:"id"`
			Kind       string            `json:"kind"`
			Roles      []string          `json:"roles"`
			Attributes map[string]string `json:"attributes"`
			MFA        bool              `json:"mfa"`
		} `json:"principal"`
		Action   string   `json:"action"`
		Resource string   `json:"resource"`
		Owner    string   `json:"owner"`
		ID       string   `json:"id"`
		IP       string   `json:"ip"`
		Fields   []string `json:"fields"`
	}
	if err := decodeJSON(c.R, &req); err != nil {
		return Reply{}, err
	}
	if req.Action == "" || req.Resource == "" {
		return Reply{}, coffer.Errorf(coffer.EINVALID, "action and resource are required")
	}
	p := &coffer.Principal{ID: req.Principal.ID, Kind: req.Principal.Kind, Roles: req.Principal.Roles,
		Attributes: req.Principal.Attributes, MFA: req.Principal.MFA}
	d := s.c.Policies.Check(policy.Input{Principal: p, Action: req.Action, Resource: req.Resource,
		Owner: req.Owner, ID: req.ID, IP: req.IP, Time: s.c.Now()})
	views := map[string]string{}
	for _, f := range req.Fields {
		views[f] = d.View(f).String()
	}
	out := map[string]any{"allowed": d.Allowed, "rule": d.Rule, "reason": d.Reason}
	if len(views) > 0 {
		out["fields"] = views
	}
	return Reply{Body: out}, nil
}
