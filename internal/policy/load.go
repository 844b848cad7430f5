package policy

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/cofferhq/coffer/internal/coffer"
)

// Document formats.
const (
	FormatJSON = "json"
	FormatYAML = "yaml"
)

// maxProblems bounds the problems one Load reports.
const maxProblems = 1000

// Problem is one thing wrong with a policy document.
type Problem struct {
	// Path locates it, e.g. "roles.support[0].actions[1]"; empty for the
	// document as a whole.
	Path string
	// Message says what is wrong.
	Message string
}

// String returns "PATH: MESSAGE".
func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// ProblemsError is Load's error: every problem found in the document.
type ProblemsError struct {
	Problems []Problem
}

// Error summarises the problems: the first, and how many there are.
func (e *ProblemsError) Error() string {
	switch len(e.Problems) {
	case 0:
		return "policy: invalid document"
	case 1:
		return "policy: " + e.Problems[0].String()
	}
	return fmt.Sprintf("policy: %d problems, first: %s", len(e.Problems), e.Problems[0])
}

// Resources that stand alone (no name), besides "*".
var plainResources = [...]string{"audit", "policy", "clients", "users", "security", "subjects", "inspect", "nodes"}

// Resource kinds that take a name: KIND/NAME.
var namedResources = [...]string{"collections", "tokens", "keys"}

// document is the normalised content of a policy document.
type document struct {
	roles []docRole // in document order
}

type docRole struct {
	name       string
	requireMFA bool
	object     bool // written as {require_mfa, rules}
	rules      []docRule
}

// docRule is one rule as written (the normalised JSON form).
type docRule struct {
	Resources []string          `json:"resources"`
	Actions   []string          `json:"actions"`
	When      string            `json:"when,omitempty"`
	Fields    map[string]string `json:"fields,omitempty"`
}

// Load parses, validates and compiles a policy document in format "json"
// or "yaml" ("yml" is taken for "yaml"). Any problem, anywhere in the
// document, makes it fail with a *ProblemsError listing every problem found.
// It never panics.
func Load(data []byte, format string) (p *Policy, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, &ProblemsError{Problems: []Problem{{Message: internalProblem}}}
		}
	}()
	format = strings.ToLower(format)
	if format == "yml" {
		format = FormatYAML
	}
	if format != FormatJSON && format != FormatYAML {
		return nil, &ProblemsError{Problems: []Problem{{Message: "format must be json or yaml"}}}
	}
	if len(data) > MaxDocumentBytes {
		return nil, &ProblemsError{Problems: []Problem{{Message: fmt.Sprintf("document is larger than %d bytes", MaxDocumentBytes)}}}
	}
	var (
		root     *node
		problems []Problem
	)
	if format == FormatJSON {
		root, problems = parseJSON(data)
	} else {
		root, problems = parseYAML(data)
	}
	if root == nil || len(problems) > 0 {
		return nil, &ProblemsError{Problems: problems}
	}
	v := validator{}
	doc := v.document(root)
	// Compile the conditions even when the structure has problems, so one
	// answer lists every problem (an unknown action and a CEL typo alike).
	roles := v.compile(doc)
	if len(v.problems) > 0 {
		return nil, &ProblemsError{Problems: v.problems}
	}
	return &Policy{source: append([]byte(nil), data...), format: format, doc: doc, roles: roles}, nil
}

// internalProblem is reported if validating a document panicked: a bug,
// which the fuzz test looks for.
const internalProblem = "internal error while checking the document"

type validator struct {
	problems []Problem
	full     bool
}

func (v *validator) add(path, format string, args ...any) {
	if v.full {
		return
	}
	if len(v.problems) == maxProblems {
		v.problems = append(v.problems, Problem{Message: "too many problems; stopped looking"})
		v.full = true
		return
	}
	v.problems = append(v.problems, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// entries checks that n is a mapping with only the allowed keys (all keys
// when allowed is nil) and no key twice, and returns its entries by key.
func (v *validator) entries(n *node, path string, allowed ...string) (map[string]*node, bool) {
	if n.kind != kindMap {
		v.add(path, "must be a mapping, not %s", n.describe())
		return nil, false
	}
	out := make(map[string]*node, len(n.keys))
	for i, k := range n.keys {
		kp := join(path, k)
		if _, dup := out[k]; dup {
			v.add(kp, "duplicate key")
			continue
		}
		if allowed != nil && !contains(allowed, k) {
			v.add(kp, "unknown key; want one of %s", strings.Join(allowed, ", "))
			continue
		}
		out[k] = n.vals[i]
	}
	return out, true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (v *validator) str(n *node, path string) (string, bool) {
	if n.kind != kindScalar || n.tag != "str" {
		v.add(path, "must be a string, not %s", n.describe())
		return "", false
	}
	return n.value, true
}

func (v *validator) strList(n *node, path string) ([]string, []string) {
	if n.kind != kindSeq {
		v.add(path, "must be a list of strings, not %s", n.describe())
		return nil, nil
	}
	if len(n.items) == 0 {
		v.add(path, "must not be empty")
		return nil, nil
	}
	out := make([]string, 0, len(n.items))
	paths := make([]string, 0, len(n.items))
	for i, it := range n.items {
		p := index(path, i)
		if s, ok := v.str(it, p); ok {
			out = append(out, s)
			paths = append(paths, p)
		}
	}
	return out, paths
}

func (v *validator) document(root *node) document {
	top, ok := v.entries(root, "", "roles")
	if !ok {
		return document{}
	}
	rolesNode, ok := top["roles"]
	if !ok {
		v.add("roles", "is required")
		return document{}
	}
	if rolesNode.kind == kindMap && len(rolesNode.keys) == 0 {
		v.add("roles", "must define at least one role")
		return document{}
	}
	roles, ok := v.entries(rolesNode, "roles")
	if !ok {
		return document{}
	}
	var doc document
	for _, name := range rolesNode.keys {
		rn, ok := roles[name]
		if !ok {
			continue // a duplicate, already reported
		}
		roles[name] = nil // a later duplicate is skipped above; this one once
		if rn == nil {
			continue
		}
		path := join("roles", name)
		if !validName(name, false) {
			v.add(path, "role name must be 1 to 64 of a-z 0-9 _ -")
		}
		doc.roles = append(doc.roles, v.role(rn, name, path))
	}
	return doc
}

func (v *validator) role(n *node, name, path string) docRole {
	r := docRole{name: name}
	rulesNode, rulesPath := n, path
	if n.kind == kindMap {
		r.object = true
		m, _ := v.entries(n, path, "require_mfa", "rules")
		if mfa, ok := m["require_mfa"]; ok {
			if mfa.kind != kindScalar || mfa.tag != "bool" {
				v.add(join(path, "require_mfa"), "must be true or false, not %s", mfa.describe())
			} else {
				r.requireMFA = mfa.value == "true"
			}
		}
		rulesPath = join(path, "rules")
		if rulesNode = m["rules"]; rulesNode == nil {
			v.add(rulesPath, "is required")
			return r
		}
	}
	if rulesNode.kind != kindSeq {
		v.add(rulesPath, "must be a list of rules (or {require_mfa, rules}), not %s", rulesNode.describe())
		return r
	}
	if len(rulesNode.items) == 0 {
		v.add(rulesPath, "role has no rules")
		return r
	}
	for i, rn := range rulesNode.items {
		r.rules = append(r.rules, v.rule(rn, index(rulesPath, i)))
	}
	return r
}

func (v *validator) rule(n *node, path string) docRule {
	var r docRule
	m, ok := v.entries(n, path, "resources", "actions", "when", "fields")
	if !ok {
		return r
	}
	if rn, ok := m["resources"]; ok {
		res, paths := v.strList(rn, join(path, "resources"))
		for i, s := range res {
			if msg := checkResource(s); msg != "" {
				v.add(paths[i], "%s", msg)
			}
		}
		r.Resources = res
	} else {
		v.add(join(path, "resources"), "is required")
	}
	var acts actionSet
	if an, ok := m["actions"]; ok {
		list, paths := v.strList(an, join(path, "actions"))
		for i, s := range list {
			if s == "*" {
				acts |= actAll
				continue
			}
			b := actionBit(s)
			if b == 0 {
				v.add(paths[i], "unknown action %s; want * or one of %s", quote(s), strings.Join(Actions(), " "))
			}
			acts |= b
		}
		r.Actions = list
	} else {
		v.add(join(path, "actions"), "is required")
	}
	if wn, ok := m["when"]; ok {
		if s, ok := v.str(wn, join(path, "when")); ok {
			if strings.TrimSpace(s) == "" {
				v.add(join(path, "when"), "must not be empty; leave it out for no condition")
			}
			r.When = s
		}
	}
	if fn, ok := m["fields"]; ok {
		fp := join(path, "fields")
		if fm, ok := v.entries(fn, fp); ok {
			if len(fn.keys) == 0 {
				v.add(fp, "must name at least one field; leave it out to show every field plain")
			}
			r.Fields = make(map[string]string, len(fm))
			for _, k := range fn.keys {
				vn, ok := fm[k]
				if !ok {
					continue
				}
				delete(fm, k) // a duplicate key is reported once, by entries
				kp := join(fp, k)
				if k != "*" && !validName(k, false) {
					v.add(kp, "field name must be * or 1 to 64 of a-z 0-9 _ -")
				}
				s, ok := v.str(vn, kp)
				if !ok {
					continue
				}
				if _, ok := ParseView(s); !ok {
					v.add(kp, "unknown view %s; want plain, masked or deny", quote(s))
					continue
				}
				r.Fields[k] = s
			}
			if acts != 0 && acts&actViews == 0 {
				v.add(fp, "fields apply only to read, search and detokenize, which this rule does not grant")
			}
		}
	}
	return r
}

// validName reports whether s is 1 to 64 of [a-z0-9_-]; with glob, s may
// also end in "*" (and then be empty before it).
func validName(s string, glob bool) bool {
	if glob && strings.HasSuffix(s, "*") {
		s = s[:len(s)-1]
		if s == "" {
			return true
		}
		if len(s) > 63 {
			return false
		}
	}
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// checkResource returns what is wrong with a resource pattern, or "".
func checkResource(s string) string {
	if s == "*" {
		return ""
	}
	for _, r := range plainResources {
		if s == r {
			return ""
		}
	}
	if rest, ok := strings.CutPrefix(s, coffer.SystemKeyPrefix); ok {
		if validSystemKey(rest) {
			return ""
		}
		return fmt.Sprintf("bad resource %s: after system/keys/ comes a key id, parts of 1 to 64 of a-z 0-9 _ - "+
			"separated by /, optionally ending in *", quote(s))
	}
	kind, name, ok := strings.Cut(s, "/")
	if ok && contains(namedResources[:], kind) {
		if validName(name, true) {
			return ""
		}
		return fmt.Sprintf("bad resource %s: the name must be 1 to 64 of a-z 0-9 _ -, optionally ending in *", quote(s))
	}
	return fmt.Sprintf("unknown resource %s; want *, collections/NAME, tokens/TYPE, keys/NAME, system/keys/KEY_ID, %s",
		quote(s), strings.Join(plainResources[:], ", "))
}

// validSystemKey reports whether s (what follows system/keys/) is a
// pattern of Coffer's own key ids: "*", or parts of validName separated
// by "/", the last one optionally ending in "*" (audit/*, tokens/card_number/fpe,
// collection/cust*), at most 300 bytes.
func validSystemKey(s string) bool {
	if s == "*" {
		return true
	}
	if s == "" || len(s) > 300 {
		return false
	}
	parts := strings.Split(s, "/")
	for i, p := range parts {
		last := i == len(parts)-1
		if last && p == "*" {
			continue
		}
		if !validName(p, last) || (last && p == "*") {
			return false
		}
	}
	return true
}

// compilePattern turns a valid resource pattern into a matcher.
func compilePattern(s string) pattern {
	if strings.HasSuffix(s, "*") {
		return pattern{s: s[:len(s)-1], prefix: true}
	}
	return pattern{s: s}
}

// compile builds the decision structures of a valid document, compiling
// every condition; CEL problems are added to v.
func (v *validator) compile(doc document) map[string]*role {
	roles := make(map[string]*role, len(doc.roles))
	var env *celEnv
	for _, dr := range doc.roles {
		r := &role{name: dr.name, requireMFA: dr.requireMFA}
		rulesPath := join("roles", dr.name)
		if dr.object {
			rulesPath = join(rulesPath, "rules")
		}
		for i, d := range dr.rules {
			ru := &rule{name: dr.name + "[" + strconv.Itoa(i) + "]"}
			for _, s := range d.Resources {
				ru.resources = append(ru.resources, compilePattern(s))
			}
			for _, a := range d.Actions {
				if a == "*" {
					ru.actions = actAll
				} else {
					ru.actions |= actionBit(a)
				}
			}
			if d.Fields != nil {
				fs := &fieldSpec{named: make(map[string]View, len(d.Fields))}
				for k, s := range d.Fields {
					view, _ := ParseView(s)
					if k == "*" {
						fs.star = view
					} else {
						fs.named[k] = view
					}
				}
				ru.fields = fs
			}
			if strings.TrimSpace(d.When) != "" {
				if env == nil {
					var err error
					if env, err = newCELEnv(); err != nil {
						v.add("", "cannot set up the condition language: %v", err)
						return nil
					}
				}
				wp := join(index(rulesPath, i), "when")
				cond, problems := env.compile(d.When)
				for _, p := range problems {
					v.add(wp, "%s", p)
				}
				ru.cond = cond
			}
			r.rules = append(r.rules, ru)
		}
		roles[dr.name] = r
	}
	return roles
}
