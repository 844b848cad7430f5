// Package metrics defines Coffer's Prometheus collectors on an injected
// registry (no global registry, no promauto) and serves them on their own
// listener.
//
// Labels are bounded and never sensitive: route patterns, status codes,
// methods, outcomes and kinds. A principal id, a record id, a collection
// name chosen by a caller or any value must never become a label.
package metrics
