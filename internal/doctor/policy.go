package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/ext"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/policy"
	"github.com/cofferhq/coffer/internal/policystore"
)

// adminRole is the role the bootstrap admin client has; it may hold
// wildcards and see every field.
const adminRole = "admin"

// celCostLimit bounds the evaluation of a condition here, as the policy
// bounds it when deciding.
const celCostLimit = policy.CostLimit

// policyDoc is the policy's normalised JSON form (policy.Policy.JSON).
type policyDoc struct {
	Roles map[string]policyRole `json:"roles"`
}

// policyRole is a role: a list of rules, or {require_mfa, rules}.
type policyRole struct {
	RequireMFA bool
	Rules      []policyRule
}

type policyRule struct {
	Resources []string          `json:"resources"`
	Actions   []string          `json:"actions"`
	When      string            `json:"when,omitempty"`
	Fields    map[string]string `json:"fields,omitempty"`
}

// UnmarshalJSON takes either form of a role.
func (r *policyRole) UnmarshalJSON(b []byte) error {
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '[' {
		return json.Unmarshal(b, &r.Rules)
	}
	var o struct {
		RequireMFA bool         `json:"require_mfa"`
		Rules      []policyRule `json:"rules"`
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return err
	}
	r.RequireMFA, r.Rules = o.RequireMFA, o.Rules
	return nil
}

// checkPolicy audits the stored policy, or the bootstrap policy when none
// was stored.
func checkPolicy(ctx context.Context, st *state) []Finding {
	var out []Finding
	version, format, src, err := st.db.Policy(ctx)
	var p *policy.Policy
	switch {
	case coffer.ErrorCode(err) == coffer.ENOTFOUND:
		p = policy.Default()
		out = append(out, Finding{
			ID: "policy.default", Severity: Info,
			Title: "no policy was stored: the bootstrap policy is in force (role admin may do everything)",
			Fix:   "write your roles and `coffer policy` them in with PUT /v1/policy",
		})
	case err != nil:
		return []Finding{unchecked("policy.invalid", "the stored policy", err)}
	default:
		if p, err = policy.Load(src, format); err != nil {
			return []Finding{{
				ID: "policy.invalid", Severity: High,
				Title:  "the stored policy does not compile: the server will not start",
				Detail: fmt.Sprintf("policy version %d", version),
				Fix:    "PUT a corrected policy (`coffer policy test` checks it first)",
			}}
		}
		if _, _, _, schema, err := st.db.StoredPolicy(ctx); err == nil {
			if _, changes, err := policy.ApplyRewrites(src, format, schema, policy.Rewrites()); err == nil && len(changes) > 0 {
				out = append(out, Finding{
					ID: "policy.rewrite_pending", Severity: High,
					Title:  "the stored policy was written for an older policy language: the server will not start",
					Detail: fmt.Sprintf("policy version %d: %d rules to rewrite", version, len(changes)),
					Fix:    "run `coffer migrate`: it rewrites the policy and prints each change to review",
				})
			}
		}
	}
	if f, ok := lockedOut(ctx, st, p); ok {
		out = append(out, f)
	}
	fs, err := analysePolicy(p, st.collections)
	if err != nil {
		return append(out, unchecked("policy.invalid", "the policy", err))
	}
	return append(out, fs...)
}

// lockedOut reports a policy in force under which no client or user that
// is not disabled could change the policy (a forced lockout, or clients
// and users changed since): only the offline break-glass is left.
func lockedOut(ctx context.Context, st *state, p *policy.Policy) (Finding, bool) {
	cs, err := st.db.Clients(ctx)
	if err != nil {
		return unchecked("policy.lockout", "who may change the policy", err), true
	}
	us, err := st.db.Users(ctx)
	if err != nil {
		return unchecked("policy.lockout", "who may change the policy", err), true
	}
	err = policystore.Lockout(p, nil, "", identity.PrincipalsOf(cs, us), st.now)
	var ce *coffer.Error
	if !errors.As(err, &ce) {
		return Finding{}, false
	}
	return Finding{
		ID: "policy.lockout", Severity: High,
		Title:  "no client or user may change the policy (update on policy): every administrator is locked out",
		Detail: strings.Join(ce.Problems, "; "),
		Fix:    "put a corrected policy in force offline: `coffer policy apply --data-dir DIR FILE` (see `coffer policy get --data-dir DIR`)",
	}, true
}

// analysePolicy finds the risky parts of a policy: wildcards outside the
// admin role, admin-like roles without MFA, conditions that are always
// true, and plain access through "*" to collections with SSNs or card
// numbers.
func analysePolicy(p *policy.Policy, cols []coffer.Collection) ([]Finding, error) {
	b, err := p.JSON()
	if err != nil {
		return nil, err
	}
	var doc policyDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("doctor: read the policy: %w", err)
	}
	names := make([]string, 0, len(doc.Roles))
	for n := range doc.Roles {
		names = append(names, n)
	}
	sort.Strings(names)
	cel, err := newConstChecker()
	if err != nil {
		return nil, err
	}
	var out []Finding
	for _, name := range names {
		role := doc.Roles[name]
		admin := false
		for i, r := range role.Rules {
			ruleName := fmt.Sprintf("%s[%d]", name, i)
			starRes := slices.Contains(r.Resources, "*")
			starAct := slices.Contains(r.Actions, "*")
			admin = admin || (starRes && (starAct || slices.Contains(r.Actions, policy.ActionAdmin)))
			if name != adminRole && (starRes || starAct) {
				var what []string
				if starRes {
					what = append(what, `resources "*"`)
				}
				if starAct {
					what = append(what, `actions "*"`)
				}
				out = append(out, Finding{
					ID: "policy.wildcard", Severity: Medium,
					Title:  "a rule outside role admin uses a wildcard",
					Detail: "rule " + ruleName + ": " + strings.Join(what, " and "),
					Fix:    "name the resources and actions the role needs",
				})
			}
			if r.When != "" && cel.alwaysTrue(r.When) {
				out = append(out, Finding{
					ID: "policy.when_constant", Severity: Medium,
					Title:  "a condition is always true",
					Detail: "rule " + ruleName + ": its when grants without looking at the principal, resource or request",
					Fix:    "fix the condition (e.g. resource.owner == principal.id) or remove it if the grant is meant",
				})
			}
			if name != adminRole {
				out = append(out, plainSensitive(ruleName, r, cols)...)
				out = append(out, linkableTokens(ruleName, r)...)
			}
		}
		if admin && !role.RequireMFA {
			out = append(out, Finding{
				ID: "policy.admin_without_mfa", Severity: High,
				Title:  "an admin role does not require MFA",
				Detail: "role " + name + " may do everything (or administer everything) with one factor",
				Fix:    "set require_mfa: true on the role and give it to users who enrol TOTP with an admin's one-time enrolment code (POST /v1/users/{id}/mfa/enrolment-code); service clients get narrower roles",
			})
		}
	}
	return out, nil
}

// lowEntropyTokenTypes are the token types whose values are few enough
// to be found by tokenizing guesses.
var lowEntropyTokenTypes = []string{coffer.TypeCardNumber, coffer.TypeSSN, coffer.TypePhone}

// linkableTokens flags a rule that grants tokenize_linkable on a
// low-entropy token type without detokenize on it: the role can recover
// those values all the same, by tokenizing guesses and comparing.
func linkableTokens(ruleName string, r policyRule) []Finding {
	if !slices.Contains(r.Actions, policy.ActionTokenizeLinkable) || slices.Contains(r.Actions, policy.ActionDetokenize) {
		return nil
	}
	var types []string
	for _, typ := range lowEntropyTokenTypes {
		if slices.ContainsFunc(r.Resources, func(pat string) bool { return matchResource(pat, "tokens/"+typ) }) {
			types = append(types, typ)
		}
	}
	if len(types) == 0 {
		return nil
	}
	return []Finding{{
		ID: "policy.linkable_tokens", Severity: Low,
		Title:  "a rule grants linkable tokens of low-entropy values without detokenize: that is as good as detokenize",
		Detail: fmt.Sprintf("rule %s: tokenize_linkable on %s", ruleName, strings.Join(types, ", ")),
		Fix:    "grant tokenize (random tokens) unless the role needs deterministic or format-preserving tokens; if it does, treat it as holding detokenize",
	}}
}

// viewActions are the actions field views apply to.
var viewActions = []string{policy.ActionRead, policy.ActionSearch}

// plainSensitive flags a rule that shows an SSN or card number field plain
// only because it shows every field plain: no fields, or "*": plain.
func plainSensitive(ruleName string, r policyRule, cols []coffer.Collection) []Finding {
	if !slices.Contains(r.Actions, "*") && !slices.ContainsFunc(r.Actions, func(a string) bool { return slices.Contains(viewActions, a) }) {
		return nil
	}
	if r.Fields != nil && r.Fields["*"] != "plain" {
		return nil
	}
	var out []Finding
	for _, c := range cols {
		if !slices.ContainsFunc(r.Resources, func(pat string) bool { return matchResource(pat, "collections/"+c.Name) }) {
			continue
		}
		var plain []string
		for _, f := range sensitiveFields(c) {
			if _, named := r.Fields[f]; !named {
				plain = append(plain, f)
			}
		}
		if len(plain) == 0 {
			continue
		}
		out = append(out, Finding{
			ID: "policy.plain_sensitive", Severity: Medium,
			Title:  "a rule shows SSN or card number fields plain through \"*\"",
			Detail: fmt.Sprintf("rule %s on collection %s: %s", ruleName, c.Name, strings.Join(plain, ", ")),
			Fix:    "list the field with masked or deny (fields: {" + plain[0] + ": masked, \"*\": plain})",
		})
	}
	return out
}

// matchResource matches a resource pattern of the policy: "*" matches all,
// "PREFIX*" every resource starting with PREFIX, anything else itself.
func matchResource(pat, res string) bool {
	if p, ok := strings.CutSuffix(pat, "*"); ok {
		return strings.HasPrefix(res, p)
	}
	return pat == res
}

// constChecker tells conditions that are true whatever the principal,
// resource and request: it evaluates them with all three unknown, and a
// result that is still true does not depend on them.
type constChecker struct {
	env *cel.Env
}

func newConstChecker() (*constChecker, error) {
	env, err := cel.NewEnv(
		ext.Network(),
		cel.Variable("principal", cel.DynType),
		cel.Variable("resource", cel.DynType),
		cel.Variable("request", cel.DynType),
		cel.ParserExpressionSizeLimit(policy.MaxConditionLength),
	)
	if err != nil {
		return nil, fmt.Errorf("doctor: CEL environment: %w", err)
	}
	return &constChecker{env: env}, nil
}

// alwaysTrue reports whether src evaluates to true with every variable
// unknown. An expression that does not parse or evaluate is not.
func (c *constChecker) alwaysTrue(src string) bool {
	ast, iss := c.env.Parse(src)
	if iss.Err() != nil {
		return false
	}
	prg, err := c.env.Program(ast, cel.EvalOptions(cel.OptPartialEval), cel.CostLimit(celCostLimit))
	if err != nil {
		return false
	}
	val, _, err := prg.Eval(c.env.UnknownVars())
	if err != nil || types.IsUnknownOrError(val) {
		return false
	}
	return val == types.True
}
