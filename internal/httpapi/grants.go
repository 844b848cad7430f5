package httpapi

import (
	"context"
	"net/http"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/identityadmin"
)

// ClientAdmin administers OAuth2 clients for a caller; it decides who may
// (identityadmin.Admin: the policy and the grant rule).
type ClientAdmin interface {
	Clients(ctx context.Context, c coffer.Caller) ([]identity.ClientInfo, error)
	CreateClient(ctx context.Context, c coffer.Caller, spec identityadmin.ClientSpec) (identity.NewClient, error)
	UpdateClient(ctx context.Context, c coffer.Caller, id string, pp identityadmin.Patch) (identity.ClientInfo, error)
	DeleteClient(ctx context.Context, c coffer.Caller, id string) error
	RotateClientSecret(ctx context.Context, c coffer.Caller, id string) (identity.NewClient, error)
}

// UserAdmin administers users and their second factors for a caller; it
// decides who may (identityadmin.Admin).
type UserAdmin interface {
	// ListUsers lists every user to a caller with read on users.
	ListUsers(ctx context.Context, c coffer.Caller) ([]identity.UserInfo, error)
	CreateUser(ctx context.Context, c coffer.Caller, spec identityadmin.UserSpec) (identity.NewUser, error)
	UpdateUser(ctx context.Context, c coffer.Caller, id string, pp identityadmin.Patch) (identity.UserInfo, error)
	DeleteUser(ctx context.Context, c coffer.Caller, id string) error
	IssueEnrolmentCode(ctx context.Context, c coffer.Caller, id string) (identity.EnrolmentCode, error)
	ResetMFA(ctx context.Context, c coffer.Caller, id string) error
}

func (s *Server) listClients(c *Call) (Reply, error) {
	cs, err := s.c.Clients.Clients(c.R.Context(), c.caller())
	if err != nil {
		return Reply{}, err
	}
	return Reply{Body: map[string]any{"clients": cs}}, nil
}

func (s *Server) createClient(c *Call) (Reply, error) {
	c.Note.Target("create", "clients")
	var spec identityadmin.ClientSpec
	if err := decodeJSON(c.R, &spec); err != nil {
		return Reply{}, err
	}
	nc, err := s.c.Clients.CreateClient(c.R.Context(), c.caller(), spec)
	if err != nil {
		return Reply{}, err
	}
	return Reply{Status: http.StatusCreated, Body: nc}, nil
}

func (s *Server) updateClient(c *Call) (Reply, error) {
	var pp identityadmin.Patch
	if err := decodeJSON(c.R, &pp); err != nil {
		return Reply{}, err
	}
	out, err := s.c.Clients.UpdateClient(c.R.Context(), c.caller(), c.R.PathValue("id"), pp)
	if err != nil {
		return Reply{}, err
	}
	return Reply{Body: out}, nil
}

func (s *Server) deleteClient(c *Call) (Reply, error) {
	if err := s.c.Clients.DeleteClient(c.R.Context(), c.caller(), c.R.PathValue("id")); err != nil {
		return Reply{}, err
	}
	return Reply{Status: http.StatusNoContent}, nil
}

func (s *Server) rotateClient(c *Call) (Reply, error) {
	nc, err := s.c.Clients.RotateClientSecret(c.R.Context(), c.caller(), c.R.PathValue("id"))
	if err != nil {
		return Reply{}, err
	}
	return Reply{Body: nc}, nil
}

func (s *Server) createUser(c *Call) (Reply, error) {
	c.Note.Target("create", "users")
	var spec identityadmin.UserSpec
	if err := decodeJSON(c.R, &spec); err != nil {
		return Reply{}, err
	}
	u, err := s.c.Users.CreateUser(c.R.Context(), c.caller(), spec)
	if err != nil {
		return Reply{}, err
	}
	return Reply{Status: http.StatusCreated, Body: u}, nil
}

func (s *Server) updateUser(c *Call) (Reply, error) {
	var pp identityadmin.Patch
	if err := decodeJSON(c.R, &pp); err != nil {
		return Reply{}, err
	}
	out, err := s.c.Users.UpdateUser(c.R.Context(), c.caller(), c.R.PathValue("id"), pp)
	if err != nil {
		return Reply{}, err
	}
	return Reply{Body: out}, nil
}

func (s *Server) deleteUser(c *Call) (Reply, error) {
	if err := s.c.Users.DeleteUser(c.R.Context(), c.caller(), c.R.PathValue("id")); err != nil {
		return Reply{}, err
	}
	return Reply{Status: http.StatusNoContent}, nil
}

func (s *Server) issueEnrolmentCode(c *Call) (Reply, error) {
	ec, err := s.c.Users.IssueEnrolmentCode(c.R.Context(), c.caller(), c.R.PathValue("id"))
	if err != nil {
		return Reply{}, err
	}
	return Reply{Status: http.StatusCreated, Body: ec}, nil
}

func (s *Server) resetMFA(c *Call) (Reply, error) {
	if err := s.c.Users.ResetMFA(c.R.Context(), c.caller(), c.R.PathValue("id")); err != nil {
		return Reply{}, err
	}
	return Reply{Status: http.StatusNoContent}, nil
}
