package httpapi

import (
	"net/http"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/vault"
)

// held is what a principal holds that the policy decides on: its roles
// and its attributes (key=value).
type held struct {
	Roles      []string
	Attributes map[string]string
}

// The grant rule, the one decision of who may hand out roles and
// attributes and who may act on a principal that holds them:
//
//   - a role or an attribute (key=value) the caller holds itself it may
//     give; anything else needs admin on the resource (clients or users).
//     A require_mfa role counts as held only with MFA, when it is in
//     force: a stolen password alone gives nothing of it to hand out
//     (not even an MFA enrolment code for its own user);
//   - creating a principal is giving it everything it holds;
//   - any operation on an existing principal (update, role or attribute
//     change, disable, delete, secret rotation, MFA enrolment code, MFA
//     reset) needs, besides the operation's own right, the right to give
//     everything the principal holds now and everything it will hold
//     after: acting on a principal is as good as becoming it (a rotated
//     secret, a reset second factor) or as taking its rights away from
//     whoever holds them, so nobody may do it to a principal more
//     privileged than one they could create.
//
// mayGrant and mayManage apply it; no route decides it another way.

// mayGrant reports whether the caller may give h on resource: each role
// and attribute of h it holds itself, or it has admin on resource.
// A refusal is a 403 that says which kind of grant was missing; what
// names the principal ("" for a new one).
func (s *Server) mayGrant(c *Call, resource, what string, h held) error {
	p := c.Principal
	role, attr := false, false
	for _, r := range h.Roles {
		if !p.HasRole(r) || (!p.MFA && s.c.Policies.RequiresMFA(r)) {
			role = true
			break
		}
	}
	for k, v := range h.Attributes {
		if got, ok := p.Attributes[k]; !ok || got != v {
			attr = true
			break
		}
	}
	if !role && !attr {
		return nil
	}
	if err := s.c.Policies.Allowed(p, "admin", resource, c.IP, &c.Note); err == nil {
		return nil
	}
	switch {
	case what != "":
		c.Note.Deny(what + " holds roles or attributes the caller lacks")
		return coffer.Errorf(coffer.EFORBIDDEN,
			"the %s holds roles or attributes you do not: acting on it needs admin on %s", what, resource)
	case role:
		return coffer.Errorf(coffer.EFORBIDDEN, "granting a role you do not hold needs admin on %s", resource)
	default:
		return coffer.Errorf(coffer.EFORBIDDEN, "granting an attribute you do not hold needs admin on %s", resource)
	}
}

// mayManage applies the grant rule to an operation on an existing
// principal of kind what ("client", "user") on resource that holds
// target and, when next is not nil, will hold next (the caller was
// allowed the operation's own right first).
func (s *Server) mayManage(c *Call, resource, what string, target held, next *held) error {
	if err := s.mayGrant(c, resource, what, target); err != nil {
		return err
	}
	if next != nil {
		if err := validGrants(*next); err != nil {
			return err
		}
		return s.mayGrant(c, resource, "", *next)
	}
	return nil
}

// validGrants checks the names of roles and attributes to be given.
func validGrants(h held) error {
	for _, r := range h.Roles {
		if !vault.ValidRoleName(r) {
			return coffer.Errorf(coffer.EINVALID, "roles must match [a-z0-9_-]{1,64}")
		}
	}
	return validAttrs(h.Attributes)
}

// client reads the client a route acts on, after the caller was allowed
// action on clients (so that a caller without it learns nothing of
// which clients exist), and applies the grant rule to it and to next.
func (s *Server) client(c *Call, action string, next func(identity.ClientInfo) *held) (identity.ClientInfo, error) {
	id := c.R.PathValue("id")
	c.Note.Target(action, "clients")
	if err := s.c.Policies.Allowed(c.Principal, action, "clients", c.IP, &c.Note); err != nil {
		return identity.ClientInfo{}, err
	}
	ci, err := s.c.Identity.Client(c.R.Context(), id)
	if err != nil {
		return ci, err
	}
	c.Note.Touch(coffer.ClientTarget(ci.ClientID))
	var nh *held
	if next != nil {
		nh = next(ci)
	}
	return ci, s.mayManage(c, "clients", "client", held{ci.Roles, ci.Attributes}, nh)
}

// user is client for users.
func (s *Server) user(c *Call, action string, next func(identity.UserInfo) *held) (identity.UserInfo, error) {
	id := c.R.PathValue("id")
	c.Note.Target(action, "users/"+id)
	if err := s.c.Policies.Allowed(c.Principal, action, "users", c.IP, &c.Note); err != nil {
		return identity.UserInfo{}, err
	}
	u, err := s.c.Identity.User(c.R.Context(), id)
	if err != nil {
		return u, err
	}
	c.Note.Touch(coffer.UserTarget(u.ID))
	var nh *held
	if next != nil {
		nh = next(u)
	}
	return u, s.mayManage(c, "users", "user", held{u.Roles, u.Attributes}, nh)
}

// principalPatch is the body of PATCH /v1/clients/{id} and
// /v1/users/{id}: each field present replaces the stored one (roles and
// attributes as a whole).
type principalPatch struct {
	Name       *string            `json:"name"`
	Roles      *[]string          `json:"roles"`
	Attributes *map[string]string `json:"attributes"`
	Disabled   *bool              `json:"disabled"`
}

func (pp *principalPatch) apply(h held) held {
	if pp.Roles != nil {
		h.Roles = *pp.Roles
	}
	if pp.Attributes != nil {
		h.Attributes = *pp.Attributes
	}
	return h
}

func (s *Server) updateClient(c *Call) (Reply, error) {
	var pp principalPatch
	if err := decodeJSON(c.R, &pp); err != nil {
		return Reply{}, err
	}
	if pp.Name != nil && (*pp.Name == "" || len(*pp.Name) > 128 || !printable(*pp.Name)) {
		return Reply{}, coffer.Errorf(coffer.EINVALID, "name must be 1 to 128 bytes of printable UTF-8")
	}
	was, err := s.client(c, "update", func(ci identity.ClientInfo) *held {
		h := pp.apply(held{ci.Roles, ci.Attributes})
		return &h
	})
	if err != nil {
		return Reply{}, err
	}
	next := was
	h := pp.apply(held{was.Roles, was.Attributes})
	next.Roles, next.Attributes = h.Roles, h.Attributes
	if pp.Name != nil {
		next.Name = *pp.Name
	}
	if pp.Disabled != nil {
		next.Disabled = *pp.Disabled
	}
	out, err := s.c.Identity.UpdateClient(c.R.Context(), was, next)
	if err != nil {
		return Reply{}, err
	}
	c.Note.Count = 1
	return Reply{Body: out}, nil
}

func (s *Server) deleteClient(c *Call) (Reply, error) {
	ci, err := s.client(c, "delete", nil)
	if err != nil {
		return Reply{}, err
	}
	if err := s.c.Identity.DeleteClient(c.R.Context(), ci.ClientID); err != nil {
		return Reply{}, err
	}
	return Reply{Status: http.StatusNoContent}, nil
}

func (s *Server) rotateClient(c *Call) (Reply, error) {
	ci, err := s.client(c, "update", nil)
	if err != nil {
		return Reply{}, err
	}
	nc, err := s.c.Identity.RotateClientSecret(c.R.Context(), ci.ClientID)
	if err != nil {
		return Reply{}, err
	}
	return Reply{Body: nc}, nil
}

func (s *Server) updateUser(c *Call) (Reply, error) {
	var pp principalPatch
	if err := decodeJSON(c.R, &pp); err != nil {
		return Reply{}, err
	}
	if pp.Name != nil {
		return Reply{}, coffer.Errorf(coffer.EINVALID, `unknown field "name"`)
	}
	was, err := s.user(c, "update", func(u identity.UserInfo) *held {
		h := pp.apply(held{u.Roles, u.Attributes})
		return &h
	})
	if err != nil {
		return Reply{}, err
	}
	next := was
	h := pp.apply(held{was.Roles, was.Attributes})
	next.Roles, next.Attributes = h.Roles, h.Attributes
	if pp.Disabled != nil {
		next.Disabled = *pp.Disabled
	}
	out, err := s.c.Identity.UpdateUser(c.R.Context(), was, next)
	if err != nil {
		return Reply{}, err
	}
	c.Note.Count = 1
	return Reply{Body: out}, nil
}

func (s *Server) deleteUser(c *Call) (Reply, error) {
	u, err := s.user(c, "delete", nil)
	if err != nil {
		return Reply{}, err
	}
	if err := s.c.Identity.DeleteUser(c.R.Context(), u.ID); err != nil {
		return Reply{}, err
	}
	return Reply{Status: http.StatusNoContent}, nil
}

// mayManageMFA decides an MFA enrolment code for, or MFA reset of, a
// user: update on users and the grant rule, as for any operation on a
// user, and a sign-in of the last minutes (a token that has been lying
// around does not change how someone else signs in).
func (s *Server) mayManageMFA(c *Call) (identity.UserInfo, error) {
	u, err := s.user(c, "update", nil)
	if err != nil {
		return u, err
	}
	if err := s.c.Identity.RequireFreshAuth(c.Principal); err != nil {
		c.Note.Deny("re-authentication required")
		return u, err
	}
	return u, nil
}

func (s *Server) issueEnrolmentCode(c *Call) (Reply, error) {
	u, err := s.mayManageMFA(c)
	if err != nil {
		return Reply{}, err
	}
	ec, err := s.c.Identity.IssueEnrolmentCode(c.R.Context(), u.ID)
	if err != nil {
		return Reply{}, err
	}
	c.Note.Count = 1
	return Reply{Status: http.StatusCreated, Body: ec}, nil
}

func (s *Server) resetMFA(c *Call) (Reply, error) {
	u, err := s.mayManageMFA(c)
	if err != nil {
		return Reply{}, err
	}
	if err := s.c.Identity.ResetMFA(c.R.Context(), u.ID); err != nil {
		return Reply{}, err
	}
	c.Note.Count = 1
	return Reply{Status: http.StatusNoContent}, nil
}
