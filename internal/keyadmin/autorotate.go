package keyadmin

import (
	"context"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
	"github.com/cofferhq/coffer/internal/lifecycle"
	"github.com/cofferhq/coffer/internal/metrics"
)

// AutoRotation configures the jobs' automatic rotation of data keys from
// the configuration's keys section: each due key is rotated by the
// Admin admin returns (built after the jobs it needs), with Rotate,
// as `coffer keys rotate` does (so the record keys' rewrap is scheduled,
// and what an operator may not rotate is still refused), and counted in
// the key operations metric (auto_rotate, ok or error). A key left
// unrotated because it holds too many values for a rotation to help is
// counted in its own metric. Both are logged by the job.
func AutoRotation(k config.KeyRotation, keys *keyring.Keyring, m *metrics.Metrics, admin func() *Admin) lifecycle.RotationConfig {
	return lifecycle.RotationConfig{
		Policy: lifecycle.RotationPolicy{
			After:     k.RotateAfter.Duration,
			AfterUses: uint64(max(k.RotateAfterUses, 0)), // #nosec G115 -- clamped to non-negative; validated at most 2^32
		},
		Interval:  k.RotateCheckInterval.Duration,
		Flush:     keys.FlushUses,
		RootWraps: keys.RootWraps,
		Rotate: func(ctx context.Context, keyID string) (uint32, error) {
			out, err := admin().Rotate(ctx, keyID)
			switch {
			case err == nil:
				m.KeyOps.WithLabelValues("auto_rotate", "ok").Inc()
			case ctx.Err() == nil:
				m.KeyOps.WithLabelValues("auto_rotate", "error").Inc()
			}
			return out.Version, err
		},
		OnTooManyValues: func(string) { m.KeysTooManyValues.Inc() },
	}
}

// MeterJobs counts the key jobs of c in m: the rewrap's records and
// batches (rewrap_job, ok or error), the reindex's batches (reindex_job:
// ok when it moved entries, error when it failed before its context
// ended). It returns c with those hooks set.
func MeterJobs(c lifecycle.Config, m *metrics.Metrics) lifecycle.Config {
	c.OnRewrapped = func(n int) {
		m.RewrapProcessed.Add(float64(n))
		if n > 0 {
			m.KeyOps.WithLabelValues("rewrap_job", "ok").Inc()
		}
	}
	c.OnRewrapFailed = func(error) { m.KeyOps.WithLabelValues("rewrap_job", "error").Inc() }
	if reindex := c.Reindex; reindex != nil {
		c.Reindex = func(ctx context.Context) (int, error) {
			moved, err := reindex(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				m.KeyOps.WithLabelValues("reindex_job", "error").Inc()
			case err == nil && moved > 0:
				m.KeyOps.WithLabelValues("reindex_job", "ok").Inc()
			}
			return moved, err
		}
	}
	return c
}
