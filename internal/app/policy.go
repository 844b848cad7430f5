package app

import (
	"context"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/policystore"
)

// StoredPolicy is the policy document of a deployment as read offline.
type StoredPolicy = policystore.Stored

// ApplyPolicy is the offline break-glass of PUT /v1/policy (`coffer
// policy apply --data-dir DIR FILE`): it puts the document in force in
// cfg's store, with no caller and no policy decision, for an operator
// who holds the data directory (and its root key) when no principal may
// change the policy any more. The document must compile and, unless
// force, leave some client or user that is not disabled able to change
// the policy again (a 422 policy-lockout otherwise). Serving nodes load
// the new version within seconds. It is audited on the offline chain
// NODE/offline (policy.apply, or policy.apply_forced with force), before
// it acts and with its outcome, and returns the new policy version.
func ApplyPolicy(ctx context.Context, cfg *config.Config, data []byte, format string, force bool) (int64, error) {
	return offline(ctx, cfg, Options{}, func(c *components) (int64, error) {
		return c.policies.ApplyAudited(ctx, c.audited().Run, data, format, force)
	})
}

// GetPolicy reads the policy document in force in cfg's store offline
// (`coffer policy get --data-dir DIR`), audited on the offline chain
// (policy.get) like ApplyPolicy.
func GetPolicy(ctx context.Context, cfg *config.Config) (StoredPolicy, error) {
	return offline(ctx, cfg, Options{}, func(c *components) (StoredPolicy, error) {
		return c.policies.GetAudited(ctx, c.audited().Run)
	})
}
