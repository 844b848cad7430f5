package identityadmin

import (
	"context"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/identity"
)

// ClientSpec is the body of POST /v1/clients.
type ClientSpec struct {
	Name       string            `json:"name"`
	Roles      []string          `json:"roles"`
	Attributes map[string]string `json:"attributes"`
}

// Patch is the body of PATCH /v1/clients/{id} and /v1/users/{id}: each
// field present replaces the stored one (roles and attributes as a whole).
type Patch struct {
	Name       *string            `json:"name"`
	Roles      *[]string          `json:"roles"`
	Attributes *map[string]string `json:"attributes"`
	Disabled   *bool              `json:"disabled"`
}

func (pp *Patch) apply(h held) held {
	if pp.Roles != nil {
		h.Roles = *pp.Roles
	}
	if pp.Attributes != nil {
		h.Attributes = *pp.Attributes
	}
	return h
}

// next is what a principal holding h will hold after pp.
func (pp *Patch) next(h held) *held {
	h = pp.apply(h)
	return &h
}

// patch applies pp to a principal's roles, attributes and disabled flag.
func (pp *Patch) patch(roles *[]string, attrs *map[string]string, disabled *bool) {
	h := pp.apply(held{*roles, *attrs})
	*roles, *attrs = h.Roles, h.Attributes
	if pp.Disabled != nil {
		*disabled = *pp.Disabled
	}
}

// update is the one way a principal is changed: read decides the change
// (the operation's right, then the grant rule on what it holds now and
// what pp makes it hold), patch applies pp to a copy, store writes it
// over what was read.
func update[T any](ctx context.Context, c coffer.Caller, read func(next func(held) *held) (T, error), pp Patch,
	patch func(*T), store func(ctx context.Context, was, next T) (T, error)) (T, error) {
	var zero T
	was, err := read(pp.next)
	if err != nil {
		return zero, err
	}
	next := was
	patch(&next)
	out, err := store(ctx, was, next)
	if err != nil {
		return zero, err
	}
	c.Note.Count = 1
	return out, nil
}

func validName(name string) error {
	if name == "" || len(name) > 128 || !coffer.Printable(name) {
		return coffer.Errorf(coffer.EINVALID, "name must be 1 to 128 bytes of printable UTF-8")
	}
	return nil
}

// Clients lists the clients, for a caller with read on clients.
func (a *Admin) Clients(ctx context.Context, c coffer.Caller) ([]identity.ClientInfo, error) {
	c.Note.Target("read", "clients")
	if err := a.allowed(c, "read", "clients"); err != nil {
		return nil, err
	}
	cs, err := a.clients.Clients(ctx)
	if err != nil {
		return nil, err
	}
	c.Note.Count = len(cs)
	return cs, nil
}

// CreateClient creates a client for a caller with create on clients that
// may give it everything it holds (the grant rule).
func (a *Admin) CreateClient(ctx context.Context, c coffer.Caller, spec ClientSpec) (identity.NewClient, error) {
	if err := a.allowed(c, "create", "clients"); err != nil {
		return identity.NewClient{}, err
	}
	if err := validName(spec.Name); err != nil {
		return identity.NewClient{}, err
	}
	if err := validAttrs(spec.Attributes); err != nil {
		return identity.NewClient{}, err
	}
	if err := validGrants(held{spec.Roles, nil}); err != nil {
		return identity.NewClient{}, err
	}
	if err := a.mayGrant(c, "clients", "", held{spec.Roles, spec.Attributes}); err != nil {
		return identity.NewClient{}, err
	}
	nc, err := a.clients.CreateClient(ctx, spec.Name, spec.Roles, spec.Attributes)
	if err != nil {
		return identity.NewClient{}, err
	}
	c.Note.Count = 1
	c.Note.Touch(coffer.ClientTarget(nc.ClientID))
	return nc, nil
}

// client reads the client id an operation (action on clients) acts on,
// applying the grant rule to it and to what next makes of it.
func (a *Admin) client(ctx context.Context, c coffer.Caller, action, id string, next func(held) *held) (identity.ClientInfo, error) {
	c.Note.Target(action, "clients")
	var ci identity.ClientInfo
	err := a.manage(c, clientKind, action, func() (held, string, error) {
		var err error
		ci, err = a.clients.Client(ctx, id)
		return held{ci.Roles, ci.Attributes}, coffer.ClientTarget(ci.ClientID), err
	}, next)
	return ci, err
}

// UpdateClient applies pp to client id.
func (a *Admin) UpdateClient(ctx context.Context, c coffer.Caller, id string, pp Patch) (identity.ClientInfo, error) {
	if pp.Name != nil {
		if err := validName(*pp.Name); err != nil {
			return identity.ClientInfo{}, err
		}
	}
	return update(ctx, c,
		func(next func(held) *held) (identity.ClientInfo, error) { return a.client(ctx, c, "update", id, next) },
		pp, func(ci *identity.ClientInfo) {
			pp.patch(&ci.Roles, &ci.Attributes, &ci.Disabled)
			if pp.Name != nil {
				ci.Name = *pp.Name
			}
		}, a.clients.UpdateClient)
}

// DeleteClient deletes client id.
func (a *Admin) DeleteClient(ctx context.Context, c coffer.Caller, id string) error {
	ci, err := a.client(ctx, c, "delete", id, nil)
	if err != nil {
		return err
	}
	return a.clients.DeleteClient(ctx, ci.ClientID)
}

// RotateClientSecret gives client id a new secret (update on clients).
func (a *Admin) RotateClientSecret(ctx context.Context, c coffer.Caller, id string) (identity.NewClient, error) {
	ci, err := a.client(ctx, c, "update", id, nil)
	if err != nil {
		return identity.NewClient{}, err
	}
	return a.clients.RotateClientSecret(ctx, ci.ClientID)
}
