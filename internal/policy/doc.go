// Package policy is Coffer's authorization engine: it loads the policy
// document (roles → rules of resources, actions, an optional CEL condition
// and per-field views), validates and compiles it once, and decides each
// request: allowed or not, by which rule or why not, and how every field is
// shown (plain, masked or denied).
//
// # What it owns
//
//   - The document format (docs/policy.md; API.md, "Policy document", and the action
//     tokenize_linkable: deterministic and format-preserving tokens, which
//     tokenize no longer grants), read as YAML or JSON, strictly: every
//     problem in a document is reported at once, each with its path, and
//     nothing of a document with a problem is used.
//   - The rewrites an upgrade makes to documents stored for an older
//     meaning of the language (Rewrites, ApplyRewrites), which `coffer
//     migrate` applies once and prints for review.
//   - The CEL environment of conditions: principal, resource and request
//     as declared object types, so a misspelt field is a load-time problem,
//     and a cost limit on every evaluation.
//   - Deny by default: no matching rule, a false condition, a condition that
//     fails to evaluate or runs over its cost limit, a role that needs MFA
//     without it — each denies.
//   - The policy test tables run by `coffer policy test`.
//
// # What it must never do
//
// It never does I/O: no HTTP, no storage, no logging; the server wires it
// and loads a record's owner when [Policy.NeedsResource] says a condition
// reads it. A [Decision]'s reason names actions, resources, roles and
// rules, never a record's value. A *Policy never changes after Load, so one
// may be shared by any number of goroutines.
package policy
