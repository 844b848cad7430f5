package policy

import (
	"strings"
	"unicode/utf8"

	"github.com/cofferhq/coffer/internal/coffer"
)

// maxReasonName bounds an action or resource quoted in a reason.
const maxReasonName = 128

// Decide answers one question. Deny by default: it allows only when a rule
// of one of the principal's roles grants the action on the resource and its
// condition, if any, is true. Rules are tried in the order of the
// principal's roles, then of the role's rules; the first that allows is
// Decision.Rule. For read, search and detokenize every allowing rule is
// found, so that each field gets the most permissive view any gives it.
//
// A role with require_mfa grants nothing to a principal without MFA. A
// condition that fails to evaluate, or runs over CostLimit, is false.
func (p *Policy) Decide(in Input) Decision {
	if p == nil {
		return Decision{Reason: "no policy in force"}
	}
	pr := in.Principal
	if pr == nil {
		return Decision{Reason: "no principal"}
	}
	act := actionBit(in.Action)
	if act == 0 {
		return Decision{Reason: "unknown action " + quote(in.Action)}
	}
	if in.Resource == "" {
		return Decision{Reason: "no resource"}
	}
	views := act&actViews != 0
	var (
		d          Decision
		a          *activation
		mfaRole    string
		falseRule  string
		failedRule string
	)
	defer func() {
		if a != nil {
			p.release(a)
		}
	}()
	for _, rn := range pr.Roles {
		r := p.roles[rn]
		if r == nil {
			continue
		}
		gated := r.requireMFA && !pr.MFA
		for _, ru := range r.rules {
			if !ru.matches(act, in.Resource) {
				continue
			}
			if gated {
				if mfaRole == "" {
					mfaRole = r.name
				}
				break
			}
			if ru.cond != nil {
				if a == nil {
					a = p.activation(&in)
				}
				ok, err := ru.cond.eval(a)
				if err != nil {
					if failedRule == "" {
						failedRule = ru.name
					}
					continue
				}
				if !ok {
					if falseRule == "" {
						falseRule = ru.name
					}
					continue
				}
			}
			if !d.Allowed {
				d.Allowed, d.Rule = true, ru.name
			}
			if !views {
				d.plainAll = true
				return d
			}
			d.addFields(ru.fields)
			if d.plainAll {
				return d // nothing can show more
			}
		}
	}
	if d.Allowed {
		return d
	}
	switch {
	case mfaRole != "":
		d.Reason = "role " + mfaRole + " requires MFA"
	case falseRule != "":
		d.Reason = "condition of " + falseRule + " is false"
	case failedRule != "":
		d.Reason = "condition of " + failedRule + " could not be evaluated"
	default:
		d.Reason = "no rule grants " + cut(in.Action) + " on " + cut(in.Resource) +
			" to roles [" + cut(strings.Join(pr.Roles, " ")) + "]"
	}
	return d
}

// NeedsResource reports whether deciding action on resource for p may
// depend on the stored record: some rule that could grant it has a
// condition that reads resource.owner or resource.subject. When false the
// server may decide before (or without) loading the record.
func (p *Policy) NeedsResource(pr *coffer.Principal, action, resource string) bool {
	if p == nil || pr == nil {
		return false
	}
	act := actionBit(action)
	if act == 0 {
		return false
	}
	for _, rn := range pr.Roles {
		r := p.roles[rn]
		if r == nil || (r.requireMFA && !pr.MFA) {
			continue
		}
		for _, ru := range r.rules {
			if ru.cond != nil && ru.cond.readsRecord && ru.matches(act, resource) {
				return true
			}
		}
	}
	return false
}

// BestView returns the most permissive view of field that any rule of
// p's roles able to grant action on resource may give, conditions aside
// (a rule whose condition reads the record may allow one record and not
// another): Plain only when some such rule could show the field plain.
// A caller whose best view of a field is not Plain can never be shown it
// in plain, whatever the record.
func (p *Policy) BestView(pr *coffer.Principal, action, resource, field string) View {
	if p == nil || pr == nil {
		return Deny
	}
	act := actionBit(action)
	if act == 0 {
		return Deny
	}
	v := Deny
	for _, rn := range pr.Roles {
		r := p.roles[rn]
		if r == nil || (r.requireMFA && !pr.MFA) {
			continue
		}
		for _, ru := range r.rules {
			if !ru.matches(act, resource) {
				continue
			}
			if ru.fields == nil || act&actViews == 0 {
				return Plain
			}
			v = max(v, ru.fields.view(field))
		}
	}
	return v
}

// RolesGranting returns, sorted, the roles with a rule that grants action
// on resource when its condition holds (and, for a require_mfa role, to a
// principal with MFA): who could be allowed it at all.
func (p *Policy) RolesGranting(action, resource string) []string {
	act := actionBit(action)
	if p == nil || act == 0 {
		return nil
	}
	var out []string
	for _, name := range p.Roles() {
		for _, ru := range p.roles[name].rules {
			if ru.matches(act, resource) {
				out = append(out, name)
				break
			}
		}
	}
	return out
}

// activation returns a pooled activation filled from in.
func (p *Policy) activation(in *Input) *activation {
	a, _ := p.acts.Get().(*activation)
	if a == nil {
		a = new(activation)
	}
	pr := in.Principal
	a.principal = principal{ID: pr.ID, Kind: pr.Kind, Roles: pr.Roles, Attributes: pr.Attributes, MFA: pr.MFA}
	a.resource = resource{Owner: in.Owner, Subject: in.Subject, Collection: in.Collection, ID: in.ID}
	if a.resource.Collection == "" {
		if name, ok := strings.CutPrefix(in.Resource, "collections/"); ok {
			a.resource.Collection = name
		}
	}
	a.request = request{Time: in.Time, IP: in.IP}
	return a
}

// release clears an activation (so the pool holds no caller data) and
// returns it to the pool.
func (p *Policy) release(a *activation) {
	*a = activation{}
	p.acts.Put(a)
}

// cut shortens s to about maxReasonName bytes, on a rune boundary.
func cut(s string) string {
	if len(s) <= maxReasonName {
		return s
	}
	n := maxReasonName
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
