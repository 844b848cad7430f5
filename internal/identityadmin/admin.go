package identityadmin

import (
	"context"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/secret"
)

// Policy is what the administration asks of the policy in force.
type Policy interface {
	// Allowed decides action on resource for p calling from ip and
	// records the decision in note; the error is a 403 when denied.
	Allowed(p *coffer.Principal, action, resource, ip string, note *coffer.AccessNote) error
	// RequiresMFA reports whether role grants nothing without MFA.
	RequiresMFA(role string) bool
}

// Clients keeps the OAuth2 clients.
type Clients interface {
	CreateClient(ctx context.Context, name string, roles []string, attrs map[string]string) (identity.NewClient, error)
	Clients(ctx context.Context) ([]identity.ClientInfo, error)
	Client(ctx context.Context, id string) (identity.ClientInfo, error)
	UpdateClient(ctx context.Context, was, next identity.ClientInfo) (identity.ClientInfo, error)
	RotateClientSecret(ctx context.Context, id string) (identity.NewClient, error)
	DeleteClient(ctx context.Context, id string) error
}

// Users keeps the users and their second factors.
type Users interface {
	CreateUser(ctx context.Context, username string, password secret.Password, roles []string, attrs map[string]string) (identity.NewUser, error)
	User(ctx context.Context, id string) (identity.UserInfo, error)
	UpdateUser(ctx context.Context, was, next identity.UserInfo) (identity.UserInfo, error)
	DeleteUser(ctx context.Context, id string) error
	ListUsers(ctx context.Context) ([]identity.UserInfo, error)
	IssueEnrolmentCode(ctx context.Context, userID string) (identity.EnrolmentCode, error)
	ResetMFA(ctx context.Context, userID string) error
	// RequireFreshAuth refuses a principal whose sign-in is not recent.
	RequireFreshAuth(p *coffer.Principal) error
}

// Introspector answers RFC 7662 token introspection.
type Introspector interface {
	Introspect(ctx context.Context, token string) identity.Introspection
}

// Admin administers clients and users for a caller.
type Admin struct {
	policy     Policy
	clients    Clients
	users      Users
	introspect Introspector
}

// New returns the administration of clients and users under policy.
func New(policy Policy, clients Clients, users Users, in Introspector) *Admin {
	return &Admin{policy: policy, clients: clients, users: users, introspect: in}
}

func (a *Admin) allowed(c coffer.Caller, action, resource string) error {
	return a.policy.Allowed(c.Principal, action, resource, c.IP, c.Note)
}

// Introspect answers token introspection for a caller with read on
// clients. The decision comes before the request is read: token reads it
// (its error is returned as it is), so that a caller without the right
// learns nothing of how its request was malformed.
func (a *Admin) Introspect(ctx context.Context, c coffer.Caller, token func() (string, error)) (identity.Introspection, error) {
	if err := a.allowed(c, "read", "clients"); err != nil {
		return identity.Introspection{}, err
	}
	tok, err := token()
	if err != nil {
		return identity.Introspection{}, err
	}
	return a.introspect.Introspect(ctx, tok), nil
}
