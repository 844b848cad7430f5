package httpapi

import (
	"errors"
	"net/http"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/policystore"
	"github.com/cofferhq/coffer/internal/secret"
)

// errBadForm stands for a token request's form that readForm refused
// with its own OAuth answer.
var errBadForm = errors.New("httpapi: malformed form")

func (s *Server) introspect(c *Call) (Reply, error) {
	c.Note.Target("introspect", "tokens")
	var bad *Reply
	in, err := s.c.Introspect.Introspect(c.R.Context(), c.caller(), func() (string, error) {
		form, b := s.readForm(c)
		if b != nil {
			bad = b
			return "", errBadForm
		}
		return form.Get("token"), nil
	})
	if bad != nil {
		return *bad, nil
	}
	if err != nil {
		return Reply{}, err
	}
	return Reply{Body: in}, nil
}

func (s *Server) login(c *Call) (Reply, error) {
	c.Note.Target("login", "users")
	var req struct {
		Username string          `json:"username"`
		Password secret.Password `json:"password"`
	}
	if err := decodeJSON(c.R, &req); err != nil {
		return Reply{}, err
	}
	if req.Username == "" || req.Password.IsZero() || len(req.Username) > 128 || len(req.Password.Reveal()) > 1024 {
		return Reply{}, coffer.Errorf(coffer.EINVALID, "username and password are required")
	}
	c.Attempted = req.Username
	if !printable(req.Username) {
		c.Note.Deny("login failed")
		return Reply{}, coffer.Errorf(coffer.EUNAUTHENTICATED, "invalid username or password")
	}
	res, err := s.c.SignIn.Login(c.R.Context(), req.Username, req.Password, c.IP)
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
		MFAToken string          `json:"mfa_token"`
		Code     secret.Password `json:"code"`
	}
	if err := decodeJSON(c.R, &req); err != nil {
		return Reply{}, err
	}
	if req.MFAToken == "" || req.Code.IsZero() || len(req.Code.Reveal()) > 64 {
		return Reply{}, coffer.Errorf(coffer.EINVALID, "mfa_token and code are required")
	}
	iss, p, err := s.c.SignIn.CompleteMFA(c.R.Context(), req.MFAToken, req.Code, c.IP)
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
	en, err := s.c.SignIn.StartTOTP(c.R.Context(), c.Principal, "Coffer", req.EnrolmentCode)
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
	if err := s.c.SignIn.ConfirmTOTP(c.R.Context(), c.Principal, req.Code); err != nil {
		c.Note.Deny("TOTP confirmation failed")
		return Reply{}, err
	}
	c.Note.Touch(coffer.UserTarget(c.Principal.ID))
	c.Note.Allow("self")
	return Reply{Status: http.StatusNoContent}, nil
}

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool { return coffer.Printable(s) }

// checkPolicy explains a decision for a principal without acting on it.
func (s *Server) checkPolicy(c *Call) (Reply, error) {
	out, err := s.c.Policies.Explain(c.caller(), func() (policystore.Question, error) {
		var q policystore.Question
		return q, decodeJSON(c.R, &q)
	})
	if err != nil {
		return Reply{}, err
	}
	return Reply{Body: out}, nil
}

// listUsers answers GET /v1/users; identityadmin decides who may.
func (s *Server) listUsers(c *Call) (Reply, error) {
	us, err := s.c.Users.ListUsers(c.R.Context(), c.caller())
	if err != nil {
		return Reply{}, err
	}
	return Reply{Body: map[string]any{"users": us}}, nil
}
