package policy

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/cofferhq/coffer/internal/coffer"
)

// A Rewrite is one change an upgrade makes to stored policy documents,
// because the new version reads some part of a document differently than
// the version that stored it. `coffer migrate` applies, to the stored
// document, every rewrite it has not had yet (see ApplyRewrites), and
// prints what each changed so that the operator can review it.
//
// Rewrites are kept in one list (Rewrites), in the order they apply; a
// change to the policy language that needs one adds an entry there.
type Rewrite struct {
	// Name names the rewrite in the summary.
	Name string
	// Since is the schema migration that came with the change: a document
	// stored by a version before it (whose recorded schema is below Since)
	// is rewritten, one stored since is taken as written for the new
	// meaning and left alone.
	Since int64
	// Rule changes one rule in place and returns one line per change,
	// for the summary (none when it changed nothing).
	Rule func(r *RewriteRule) []string
}

// RewriteRule is one rule as a Rewrite sees and changes it.
type RewriteRule struct {
	// Path locates the rule, as in a Problem: "roles.billing[0]".
	Path string
	// Resources and Actions are the rule's lists; a Rewrite may replace
	// them.
	Resources []string
	Actions   []string
}

// Change is one line of the summary of ApplyRewrites.
type Change struct {
	// Rewrite is the Name of the rewrite that made it.
	Rewrite string
	// Path locates the rule it changed.
	Path string
	// Message says what changed and what to review.
	Message string
}

// String returns "REWRITE: PATH: MESSAGE".
func (c Change) String() string { return c.Rewrite + ": " + c.Path + ": " + c.Message }

// LanguageVersion is the version of the policy language this Coffer
// reads: the newest Since of Rewrites. Up to 10 it was the number of the
// schema migration that came with a change, and Coffer recorded the
// newest migration with each document it saved. Migration numbers are
// handed out to changes made side by side and land out of order, so
// since version 100 the language counts on its own, above every
// migration number: the store records max(LanguageVersion, the newest
// migration) with each document (store.PolicyLanguageVersion must equal
// this), and a document any earlier Coffer saved (at most its newest
// migration, below 100) gets every rewrite since.
const LanguageVersion = 100

// Rewrites returns every rewrite of stored policy documents, in the order
// they apply.
func Rewrites() []Rewrite {
	return []Rewrite{tokenizeLinkableRewrite(), systemKeysRewrite()}
}

// systemKeysRewrite moves Coffer's own keys out of keys/…: until language
// version 100, key administration of internal keys (audit/hmac,
// tokens/TYPE/fpe, collection/NAME, …) was decided on keys/KEY_ID, so a
// pattern meant for transit keys (keys/a*) covered audit/hmac; since, it
// is decided on system/keys/KEY_ID, which no keys/… pattern matches.
//
// A rule that granted admin on keys/* (every key) gains system/keys/*, so
// it keeps covering Coffer's own keys; "*" covers them still and is left
// alone. A partial pattern (keys/a*) is never widened: it covered internal
// keys only by accident of their names, and the summary says that it no
// longer does, for review.
func systemKeysRewrite() Rewrite {
	return Rewrite{
		Name:  "system_keys",
		Since: 100,
		Rule: func(r *RewriteRule) []string {
			if !slices.Contains(r.Actions, ActionAdmin) && !slices.Contains(r.Actions, "*") {
				return nil
			}
			if slices.Contains(r.Resources, "*") {
				return nil
			}
			var out []string
			if slices.Contains(r.Resources, "keys/*") && !slices.Contains(r.Resources, coffer.SystemKeyPrefix+"*") {
				i := slices.Index(r.Resources, "keys/*")
				r.Resources = slices.Insert(slices.Clone(r.Resources), i+1, coffer.SystemKeyPrefix+"*")
				out = append(out, "grants admin on keys/*: added system/keys/*, the new namespace of Coffer's own keys "+
					"(audit/hmac, audit/signing, jwt/signing, collection/…, tokens/…/fpe, …), so this role keeps "+
					"administering them. Review it: narrow it to keys/* alone if it was meant for transit keys only")
			}
			var partial []string
			for _, s := range r.Resources {
				if strings.HasPrefix(s, "keys/") && strings.HasSuffix(s, "*") && s != "keys/*" {
					partial = append(partial, s)
				}
			}
			if len(partial) > 0 {
				out = append(out, fmt.Sprintf("grants admin on %s: no longer covers any of Coffer's own keys, which "+
					"are now named system/keys/KEY_ID; a transit key pattern never reaches them. If this role must "+
					"rotate internal keys, grant system/keys/… explicitly (e.g. system/keys/collection/*)",
					strings.Join(partial, ", ")))
			}
			return out
		},
	}
}

// tokenizeLinkableRewrite splits tokenize: until schema 10, tokenize
// granted every token mode; since, deterministic and format-preserving
// tokens need tokenize_linkable. A rule that grants tokenize on token
// resources gains tokenize_linkable, so deployments keep working, and the
// summary asks for a review: the new action is as good as detokenize for
// low-entropy values.
func tokenizeLinkableRewrite() Rewrite {
	return Rewrite{
		Name:  "tokenize_linkable",
		Since: 10,
		Rule: func(r *RewriteRule) []string {
			if !slices.Contains(r.Actions, ActionTokenize) || slices.Contains(r.Actions, ActionTokenizeLinkable) ||
				slices.Contains(r.Actions, "*") {
				return nil
			}
			var on []string
			for _, s := range r.Resources {
				if mayMatchTokens(s) {
					on = append(on, s)
				}
			}
			if len(on) == 0 {
				return nil
			}
			i := slices.Index(r.Actions, ActionTokenize)
			r.Actions = slices.Insert(slices.Clone(r.Actions), i+1, ActionTokenizeLinkable)
			return []string{fmt.Sprintf("grants tokenize on %s: added tokenize_linkable, which deterministic and "+
				"format-preserving tokens now need, so this role keeps working. Review it: whoever may make linkable "+
				"tokens can tokenize guesses and compare, which for low-entropy values (card numbers, SSNs, phone "+
				"numbers) is as good as detokenize; remove tokenize_linkable where random tokens are enough",
				strings.Join(on, ", "))}
		},
	}
}

// mayMatchTokens reports whether the valid resource pattern s covers some
// tokens/TYPE resource.
func mayMatchTokens(s string) bool {
	p := compilePattern(s)
	if p.prefix {
		return strings.HasPrefix("tokens/", p.s) || strings.HasPrefix(p.s, "tokens/")
	}
	return strings.HasPrefix(p.s, "tokens/")
}

// ApplyRewrites applies to a stored document (data in format, stored at
// schema version schema) every rewrite of rws whose Since is above
// schema, and returns the rewritten document in the same format with the
// changes made. With no change it returns data itself and no changes.
//
// A YAML document keeps its comments and layout except in the lists a
// rewrite replaced; a JSON one comes back in the normalised form of
// Policy.JSON. The result must load, or ApplyRewrites fails and the
// caller keeps the document as it was; a document that does not load to
// begin with is an error too.
func ApplyRewrites(data []byte, format string, schema int64, rws []Rewrite) ([]byte, []Change, error) {
	if _, err := Load(data, format); err != nil {
		return nil, nil, fmt.Errorf("policy: rewrite: the stored document does not load: %w", err)
	}
	var pending []Rewrite
	for _, rw := range rws {
		if rw.Since > schema {
			pending = append(pending, rw)
		}
	}
	if len(pending) == 0 {
		return data, nil, nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("policy: rewrite: %w", err)
	}
	// A list shared through an anchor may be changed for one rule and not
	// for another: give every alias its own copy first.
	expandAliases(&doc)
	var changes []Change
	err := eachRule(&doc, func(path string, rule *yaml.Node) error {
		r := RewriteRule{Path: path}
		resIdx, actIdx := -1, -1
		for i := 0; i+1 < len(rule.Content); i += 2 {
			switch rule.Content[i].Value {
			case "resources":
				resIdx = i + 1
				r.Resources = scalars(rule.Content[i+1])
			case "actions":
				actIdx = i + 1
				r.Actions = scalars(rule.Content[i+1])
			}
		}
		if resIdx < 0 || actIdx < 0 {
			return fmt.Errorf("policy: rewrite: %s has no resources or actions", path)
		}
		res, acts := slices.Clone(r.Resources), slices.Clone(r.Actions)
		for _, rw := range pending {
			for _, msg := range rw.Rule(&r) {
				changes = append(changes, Change{Rewrite: rw.Name, Path: path, Message: msg})
			}
		}
		if !slices.Equal(res, r.Resources) {
			rule.Content[resIdx] = seqOf(rule.Content[resIdx], r.Resources)
		}
		if !slices.Equal(acts, r.Actions) {
			rule.Content[actIdx] = seqOf(rule.Content[actIdx], r.Actions)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if len(changes) == 0 {
		return data, nil, nil
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, nil, fmt.Errorf("policy: rewrite: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, nil, fmt.Errorf("policy: rewrite: %w", err)
	}
	p, err := Load(b.Bytes(), FormatYAML)
	if err != nil {
		return nil, nil, fmt.Errorf("policy: rewrite: the rewritten document does not load: %w", err)
	}
	if strings.EqualFold(format, FormatJSON) {
		out, err := p.JSON()
		if err != nil {
			return nil, nil, err
		}
		return out, changes, nil
	}
	return b.Bytes(), changes, nil
}

// eachRule calls fn with the path and mapping node of every rule of a
// document that Load accepted.
func eachRule(doc *yaml.Node, fn func(path string, rule *yaml.Node) error) error {
	root := deref(doc)
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = deref(root.Content[0])
	}
	roles := mapValue(root, "roles")
	if roles == nil {
		return errors.New("policy: rewrite: no roles")
	}
	for i := 0; i+1 < len(roles.Content); i += 2 {
		name := roles.Content[i].Value
		body := deref(roles.Content[i+1])
		path := join("roles", name)
		rules := body
		if body.Kind == yaml.MappingNode {
			rules = deref(mapValue(body, "rules"))
			path = join(path, "rules")
		}
		if rules == nil || rules.Kind != yaml.SequenceNode {
			return fmt.Errorf("policy: rewrite: %s holds no list of rules", path)
		}
		for j, r := range rules.Content {
			r = deref(r)
			if r.Kind != yaml.MappingNode {
				return fmt.Errorf("policy: rewrite: %s is not a rule", index(path, j))
			}
			if err := fn(index(path, j), r); err != nil {
				return err
			}
		}
	}
	return nil
}

// deref follows YAML aliases.
func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// expandAliases replaces every alias under n with a copy of what it
// names, and drops the anchors. Load bounds a document's size, aliases
// included, so the copies are bounded too.
func expandAliases(n *yaml.Node) {
	n.Anchor = ""
	for i, c := range n.Content {
		if c.Kind == yaml.AliasNode && c.Alias != nil {
			c = deepCopy(deref(c))
			n.Content[i] = c
		}
		expandAliases(c)
	}
}

// deepCopy returns a copy of n and everything under it.
func deepCopy(n *yaml.Node) *yaml.Node {
	c := *n
	c.Content = make([]*yaml.Node, len(n.Content))
	for i, it := range n.Content {
		c.Content[i] = deepCopy(deref(it))
	}
	return &c
}

// mapValue returns the value of key in mapping m, nil when absent.
func mapValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if deref(m.Content[i]).Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// scalars returns the strings of a list of scalars.
func scalars(n *yaml.Node) []string {
	n = deref(n)
	out := make([]string, 0, len(n.Content))
	for _, it := range n.Content {
		out = append(out, deref(it).Value)
	}
	return out
}

// seqOf returns a new list of the strings items, in the style of old.
func seqOf(old *yaml.Node, items []string) *yaml.Node {
	style := deref(old).Style & yaml.FlowStyle
	n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: style, HeadComment: old.HeadComment,
		LineComment: old.LineComment, FootComment: old.FootComment}
	for _, s := range items {
		n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s})
	}
	return n
}
