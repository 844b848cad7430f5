package detect

import (
	"fmt"
	"time"

	"github.com/cofferhq/coffer/internal/config"
)

// FromConfig is the detectors' Config as the configuration's detect
// section sets it (thresholds, hours, suspension, webhooks), polling for
// other nodes' suspensions every sync (0: the default); it refuses what
// Validate refuses.
func FromConfig(dc config.Detect, sync time.Duration) (Config, error) {
	cfg := Config{
		Window: dc.Window.Duration, BulkReadValues: dc.BulkReadValues, FailedAuthBurst: dc.FailedAuthBurst,
		DeniedBurst: dc.DeniedBurst, Enumeration: dc.Enumeration, Hours: dc.Hours,
		BulkTokenizeValues: dc.BulkTokenizeValues, BulkTokenizeLinkable: dc.BulkTokenizeLinkable,
		SuspendOn: dc.SuspendOn, SuspendFor: dc.SuspendFor.Duration,
		SyncInterval: sync,
	}
	for _, w := range dc.Webhooks {
		cfg.Webhooks = append(cfg.Webhooks, Webhook{URL: w.URL, Secret: w.Secret})
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("detect: %w", err)
	}
	return cfg, nil
}
