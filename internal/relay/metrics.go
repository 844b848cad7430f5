package relay

import (
	"time"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/metrics"
)

// Metered is the Config.Observe that counts relayed calls and their
// latency in m, by route and outcome (bounded labels: the configured
// routes' names and Outcomes).
func Metered(m *metrics.Metrics) func(route, outcome string, d time.Duration) {
	return func(route, outcome string, d time.Duration) {
		m.RelayRequests.WithLabelValues(route, outcome).Inc()
		m.RelayLatency.WithLabelValues(route).Observe(d.Seconds())
	}
}

// ExportRoutes exports every outcome of routes at 0 in m, so that rate()
// sees a route's first call: at start and after a reload.
func ExportRoutes(m *metrics.Metrics, routes []config.RelayRoute) {
	for _, rt := range routes {
		for _, o := range Outcomes() {
			m.RelayRequests.WithLabelValues(rt.Name, o)
		}
	}
}
