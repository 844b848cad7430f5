package identityadmin

import (
	"regexp"

	"github.com/cofferhq/coffer/internal/coffer"
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
// mayGrant and mayManage apply it; no operation decides it another way.

// mayGrant reports whether the caller may give h on resource: each role
// and attribute of h it holds itself, or it has admin on resource.
// A refusal is a 403 that says which kind of grant was missing; what
// names the principal ("" for a new one).
func (a *Admin) mayGrant(c coffer.Caller, resource, what string, h held) error {
	p := c.Principal
	role, attr := false, false
	for _, r := range h.Roles {
		if !p.HasRole(r) || (!p.MFA && a.policy.RequiresMFA(r)) {
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
	if err := a.allowed(c, "admin", resource); err == nil {
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
func (a *Admin) mayManage(c coffer.Caller, resource, what string, target held, next *held) error {
	if err := a.mayGrant(c, resource, what, target); err != nil {
		return err
	}
	if next != nil {
		if err := validGrants(*next); err != nil {
			return err
		}
		return a.mayGrant(c, resource, "", *next)
	}
	return nil
}

// kind is the kind of principal an operation acts on: its policy
// resource and its name in refusals.
type kind struct{ resource, what string }

var (
	clientKind = kind{"clients", "client"}
	userKind   = kind{"users", "user"}
)

// manage decides action on an existing principal of kind k: read reads
// it after the caller was allowed action on the kind's resource (so that
// a caller without it learns nothing of which principals exist) and
// returns what it holds and its audit target; the grant rule is applied
// to that and, when next is not nil, to next of it.
func (a *Admin) manage(c coffer.Caller, k kind, action string, read func() (held, string, error), next func(held) *held) error {
	if err := a.allowed(c, action, k.resource); err != nil {
		return err
	}
	h, target, err := read()
	if err != nil {
		return err
	}
	c.Note.Touch(target)
	var nh *held
	if next != nil {
		nh = next(h)
	}
	return a.mayManage(c, k.resource, k.what, h, nh)
}

var roleRE = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

// validGrants checks the names of roles and attributes to be given.
func validGrants(h held) error {
	for _, r := range h.Roles {
		if !roleRE.MatchString(r) {
			return coffer.Errorf(coffer.EINVALID, "roles must match [a-z0-9_-]{1,64}")
		}
	}
	return validAttrs(h.Attributes)
}

func validAttrs(m map[string]string) error {
	if len(m) > 64 {
		return coffer.Errorf(coffer.EINVALID, "at most 64 attributes")
	}
	for k, v := range m {
		if k == "" || len(k) > 64 || len(v) > 256 || !coffer.Printable(k) || !coffer.Printable(v) {
			return coffer.Errorf(coffer.EINVALID, "attribute names must be 1 to 64 bytes and values at most 256, printable UTF-8")
		}
	}
	return nil
}
