package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

// View says how a field is shown. The zero View is Deny.
type View uint8

// Views, ordered from least to most permissive: when several rules allow a
// request, each field gets the most permissive view any of them gives it.
const (
	Deny   View = iota // the field is left out (and never decrypted)
	Masked             // the field is shown through its masker
	Plain              // the field is shown as stored
)

// String returns "deny", "masked" or "plain".
func (v View) String() string {
	switch v {
	case Plain:
		return "plain"
	case Masked:
		return "masked"
	default:
		return "deny"
	}
}

// ParseView parses "plain", "masked" or "deny".
func ParseView(s string) (View, bool) {
	switch s {
	case "plain":
		return Plain, true
	case "masked":
		return Masked, true
	case "deny":
		return Deny, true
	}
	return Deny, false
}

// Actions a rule may grant.
const (
	ActionCreate   = "create"
	ActionRead     = "read"
	ActionUpdate   = "update"
	ActionDelete   = "delete"
	ActionSearch   = "search"
	ActionTokenize = "tokenize"
	// ActionTokenizeLinkable grants the linkable token modes
	// (deterministic and format_preserving) on tokens/TYPE. The same value
	// always gives the same linkable token, so whoever may make them can
	// tokenize guesses and compare: for a low-entropy type (a card number
	// with a known BIN and last four, an SSN, a phone number) it is as
	// good as detokenize. ActionTokenize alone makes random tokens only.
	ActionTokenizeLinkable = "tokenize_linkable" // #nosec G101 -- a policy action name, not a credential
	ActionDetokenize       = "detokenize"
	ActionEncrypt          = "encrypt"
	ActionDecrypt          = "decrypt"
	ActionAdmin            = "admin"
)

// Actions lists every action a policy may name, besides "*".
func Actions() []string {
	return []string{ActionCreate, ActionRead, ActionUpdate, ActionDelete, ActionSearch,
		ActionTokenize, ActionTokenizeLinkable, ActionDetokenize, ActionEncrypt, ActionDecrypt, ActionAdmin}
}

// actionSet is a bit set of actions.
type actionSet uint16

const (
	actCreate actionSet = 1 << iota
	actRead
	actUpdate
	actDelete
	actSearch
	actTokenize
	actDetokenize
	actEncrypt
	actDecrypt
	actAdmin
	actTokenizeLinkable

	actAll = actCreate | actRead | actUpdate | actDelete | actSearch | actTokenize |
		actDetokenize | actEncrypt | actDecrypt | actAdmin | actTokenizeLinkable
	// actViews are the actions field views apply to.
	actViews = actRead | actSearch | actDetokenize
)

// actionBit returns the bit of a named action, 0 when unknown. A switch, so
// the hot path neither hashes nor allocates.
func actionBit(a string) actionSet {
	switch a {
	case ActionCreate:
		return actCreate
	case ActionRead:
		return actRead
	case ActionUpdate:
		return actUpdate
	case ActionDelete:
		return actDelete
	case ActionSearch:
		return actSearch
	case ActionTokenize:
		return actTokenize
	case ActionTokenizeLinkable:
		return actTokenizeLinkable
	case ActionDetokenize:
		return actDetokenize
	case ActionEncrypt:
		return actEncrypt
	case ActionDecrypt:
		return actDecrypt
	case ActionAdmin:
		return actAdmin
	}
	return 0
}

// Policy is a loaded, validated and compiled policy document. It is
// immutable and safe for concurrent use.
type Policy struct {
	source []byte
	format string
	doc    document
	roles  map[string]*role
	// acts recycles CEL activations between decisions.
	acts sync.Pool
}

// role is a compiled role.
type role struct {
	name       string
	requireMFA bool
	rules      []*rule
}

// rule is a compiled rule.
type rule struct {
	name      string // "support[0]"
	resources []pattern
	actions   actionSet
	cond      *condition // nil when the rule has no `when`
	// fields is nil when the rule shows every field plain.
	fields *fieldSpec
}

// fieldSpec is a rule's per-field views.
type fieldSpec struct {
	named map[string]View
	star  View // the view of unlisted fields; Deny without "*"
}

func (f *fieldSpec) view(field string) View {
	if v, ok := f.named[field]; ok {
		return v
	}
	return f.star
}

// pattern is a compiled resource pattern: the resource itself, or with
// prefix set, every resource that starts with s ("*" is the empty prefix).
type pattern struct {
	s      string
	prefix bool
}

func (p pattern) match(res string) bool {
	if p.prefix {
		return strings.HasPrefix(res, p.s)
	}
	return res == p.s
}

func (r *rule) matches(a actionSet, res string) bool {
	if r.actions&a == 0 {
		return false
	}
	for _, p := range r.resources {
		if p.match(res) {
			return true
		}
	}
	return false
}

// Input is one question to the policy.
type Input struct {
	// Principal is who asks; nil is denied.
	Principal *coffer.Principal
	// Action is one of the actions (never "*").
	Action string
	// Resource is what is acted on: "collections/customers",
	// "tokens/card_number", "keys/payments", "audit", "policy", …
	Resource string
	// Owner, Subject, Collection and ID describe the record acted on, when
	// there is one; CEL sees them as resource.owner, resource.subject (the
	// data subject whose key seals the record's values, "" for none),
	// resource.collection and resource.id. Collection is taken from a
	// "collections/NAME" resource when empty. On a create, Owner and
	// Subject are the ones the new record asks for; on an erasure
	// (resource "subjects") Subject is the subject to erase.
	Owner, Subject, Collection, ID string
	// Time and IP are the request's, seen as request.time and request.ip.
	Time time.Time
	IP   string
}

// Decision is the policy's answer. The zero Decision denies everything.
type Decision struct {
	// Allowed reports whether the action is allowed.
	Allowed bool
	// Rule names the first rule that allowed it, e.g. "support[0]".
	Rule string
	// Reason says why it was denied; empty when allowed.
	Reason string

	// plainAll is set when some allowing rule shows every field plain (or
	// the action is one field views do not apply to).
	plainAll bool
	// spec1, spec2 and more are the field views of the allowing rules; two
	// inline so the common cases do not allocate.
	spec1, spec2 *fieldSpec
	more         []*fieldSpec
}

// View returns how field is shown under the decision: Deny when not
// allowed; otherwise the most permissive view the allowing rules give it.
// Views apply to read, search and detokenize; any other allowed action
// shows every field plain.
func (d Decision) View(field string) View {
	if !d.Allowed {
		return Deny
	}
	if d.plainAll {
		return Plain
	}
	v := Deny
	for _, s := range [...]*fieldSpec{d.spec1, d.spec2} {
		if s != nil {
			v = max(v, s.view(field))
		}
	}
	for _, s := range d.more {
		v = max(v, s.view(field))
	}
	return v
}

// AllPlain reports whether every field is shown plain.
func (d Decision) AllPlain() bool { return d.Allowed && d.plainAll }

func (d *Decision) addFields(f *fieldSpec) {
	switch {
	case f == nil:
		d.plainAll = true
	case d.spec1 == nil:
		d.spec1 = f
	case d.spec2 == nil:
		d.spec2 = f
	default:
		d.more = append(d.more, f)
	}
}

// RequiresMFA reports whether the role is defined and requires MFA.
func (p *Policy) RequiresMFA(roleName string) bool {
	r := p.roles[roleName]
	return r != nil && r.requireMFA
}

// Roles returns the names of the roles the policy defines, sorted.
func (p *Policy) Roles() []string {
	out := make([]string, 0, len(p.roles))
	for n := range p.roles {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Source returns the document as it was loaded and its format ("json" or
// "yaml"). The bytes are a copy.
func (p *Policy) Source() (data []byte, format string) {
	return bytes.Clone(p.source), p.format
}

// JSON returns the policy in a normalised JSON form: roles and field names
// sorted, a role without require_mfa as a plain list of rules. Loading it
// gives the same policy, and the same JSON.
func (p *Policy) JSON() ([]byte, error) {
	roles := make(map[string]any, len(p.doc.roles))
	for _, r := range p.doc.roles {
		if r.requireMFA {
			roles[r.name] = struct {
				RequireMFA bool      `json:"require_mfa"`
				Rules      []docRule `json:"rules"`
			}{true, r.rules}
		} else {
			roles[r.name] = r.rules
		}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(map[string]any{"roles": roles}); err != nil {
		return nil, fmt.Errorf("policy: encode: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// defaultSource is the bootstrap policy: the admin role may do everything.
const defaultSource = `roles:
  admin:
    - resources: ["*"]
      actions: ["*"]
`

// Default returns the bootstrap policy: role admin may do every action on
// every resource.
func Default() *Policy {
	p, err := Load([]byte(defaultSource), FormatYAML)
	if err != nil {
		// defaultSource is a constant a test loads; this cannot happen.
		panic("policy: default policy does not load: " + err.Error())
	}
	return p
}

// DenyAll returns a policy that denies everything. Its source is
// `{"roles":{}}`, which Load itself refuses (a policy needs a role).
func DenyAll() *Policy {
	return &Policy{source: []byte(`{"roles":{}}`), format: FormatJSON, roles: map[string]*role{}}
}
