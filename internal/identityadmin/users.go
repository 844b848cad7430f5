package identityadmin

import (
	"context"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/secret"
)

// UserSpec is the body of POST /v1/users.
type UserSpec struct {
	Username   string            `json:"username"`
	Password   secret.Password   `json:"password"`
	Roles      []string          `json:"roles"`
	Attributes map[string]string `json:"attributes"`
}

// CreateUser creates a user for a caller with create on users that may
// give it everything it holds (the grant rule).
func (a *Admin) CreateUser(ctx context.Context, c coffer.Caller, spec UserSpec) (identity.NewUser, error) {
	if err := a.allowed(c, "create", "users"); err != nil {
		return identity.NewUser{}, err
	}
	if err := validAttrs(spec.Attributes); err != nil {
		return identity.NewUser{}, err
	}
	if !coffer.Printable(spec.Username) {
		return identity.NewUser{}, coffer.Errorf(coffer.EINVALID, "username must be printable UTF-8")
	}
	if err := validGrants(held{spec.Roles, nil}); err != nil {
		return identity.NewUser{}, err
	}
	if err := a.mayGrant(c, "users", "", held{spec.Roles, spec.Attributes}); err != nil {
		return identity.NewUser{}, err
	}
	u, err := a.users.CreateUser(ctx, spec.Username, spec.Password, spec.Roles, spec.Attributes)
	if err != nil {
		return identity.NewUser{}, err
	}
	c.Note.Count = 1
	c.Note.Touch(coffer.UserTarget(u.ID))
	return u, nil
}

// user is client for users.
func (a *Admin) user(ctx context.Context, c coffer.Caller, action, id string, next func(held) *held) (identity.UserInfo, error) {
	c.Note.Target(action, "users/"+id)
	var u identity.UserInfo
	err := a.manage(c, userKind, action, func() (held, string, error) {
		var err error
		u, err = a.users.User(ctx, id)
		return held{u.Roles, u.Attributes}, coffer.UserTarget(u.ID), err
	}, next)
	return u, err
}

// UpdateUser applies pp (which names no name: users have none to change)
// to user id.
func (a *Admin) UpdateUser(ctx context.Context, c coffer.Caller, id string, pp Patch) (identity.UserInfo, error) {
	if pp.Name != nil {
		return identity.UserInfo{}, coffer.Errorf(coffer.EINVALID, `unknown field "name"`)
	}
	return update(ctx, c,
		func(next func(held) *held) (identity.UserInfo, error) { return a.user(ctx, c, "update", id, next) },
		pp, func(u *identity.UserInfo) { pp.patch(&u.Roles, &u.Attributes, &u.Disabled) }, a.users.UpdateUser)
}

// DeleteUser deletes user id.
func (a *Admin) DeleteUser(ctx context.Context, c coffer.Caller, id string) error {
	u, err := a.user(ctx, c, "delete", id, nil)
	if err != nil {
		return err
	}
	return a.users.DeleteUser(ctx, u.ID)
}

// mayManageMFA decides an MFA enrolment code for, or MFA reset of, a
// user: update on users and the grant rule, as for any operation on a
// user, and a sign-in of the last minutes (a token that has been lying
// around does not change how someone else signs in).
func (a *Admin) mayManageMFA(ctx context.Context, c coffer.Caller, id string) (identity.UserInfo, error) {
	u, err := a.user(ctx, c, "update", id, nil)
	if err != nil {
		return u, err
	}
	if err := a.users.RequireFreshAuth(c.Principal); err != nil {
		c.Note.Deny("re-authentication required")
		return u, err
	}
	return u, nil
}

// IssueEnrolmentCode makes a one-time MFA enrolment code for user id.
func (a *Admin) IssueEnrolmentCode(ctx context.Context, c coffer.Caller, id string) (identity.EnrolmentCode, error) {
	u, err := a.mayManageMFA(ctx, c, id)
	if err != nil {
		return identity.EnrolmentCode{}, err
	}
	ec, err := a.users.IssueEnrolmentCode(ctx, u.ID)
	if err != nil {
		return identity.EnrolmentCode{}, err
	}
	c.Note.Count = 1
	return ec, nil
}

// ResetMFA removes user id's second factor.
func (a *Admin) ResetMFA(ctx context.Context, c coffer.Caller, id string) error {
	u, err := a.mayManageMFA(ctx, c, id)
	if err != nil {
		return err
	}
	if err := a.users.ResetMFA(ctx, u.ID); err != nil {
		return err
	}
	c.Note.Count = 1
	return nil
}

// ListUsers lists every user, oldest first, as admins see them (never a
// secret), to a caller with read on users; the count returned is noted for
// the audit log.
func (a *Admin) ListUsers(ctx context.Context, c coffer.Caller) ([]identity.UserInfo, error) {
	c.Note.Target("read", "users")
	if err := a.allowed(c, "read", "users"); err != nil {
		return nil, err
	}
	us, err := a.users.ListUsers(ctx)
	if err != nil {
		return nil, err
	}
	c.Note.Count = len(us)
	return us, nil
}
