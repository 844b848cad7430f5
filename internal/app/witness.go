package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/cofferhq/coffer/internal/metrics"
	"github.com/cofferhq/coffer/internal/witness"
)

// openWitness starts the delivery of node's signed audit checkpoints to
// audit.witness, and queues the last one the store holds for node (the
// previous run may not have delivered it). m, if set, receives the lag and
// the failures.
func openWitness(ctx context.Context, c *components, node string, log *slog.Logger, m *metrics.Metrics) (*witness.Sink, error) {
	cfg := witness.Config{
		Target: c.cfg.Audit.Witness, Secret: c.cfg.Audit.WitnessSecret, CAFile: c.cfg.Audit.WitnessCAFile,
		MaxLag: c.cfg.Audit.WitnessMaxLag.Duration, Now: c.opts.Now, Logger: log,
	}
	if m != nil {
		cfg.OnLag, cfg.OnFailure = m.AuditWitnessLag.Set, m.AuditWitnessFailures.Inc
	}
	w, err := witness.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("audit witness: %w", err)
	}
	cps, err := c.db.Checkpoints(ctx, node)
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("audit witness: %w", err)
	}
	if n := len(cps); n > 0 {
		w.Add(cps[n-1])
	}
	return w, nil
}
