package auditadmin

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/metrics"
	"github.com/cofferhq/coffer/internal/witness"
)

// WitnessConfig says where node's checkpoints go and how their delivery is
// watched.
type WitnessConfig struct {
	Audit config.Audit
	// Store holds node's checkpoints.
	Store interface {
		Checkpoints(ctx context.Context, node string) ([]audit.Checkpoint, error)
	}
	Node   string
	Now    func() time.Time
	Logger *slog.Logger
	// Metrics, if set, receive the lag and the failures.
	Metrics *metrics.Metrics
}

// OpenWitness starts the delivery of the node's signed audit checkpoints to
// audit.witness, and queues the last one the store holds for it (the
// previous run may not have delivered it).
func OpenWitness(ctx context.Context, c WitnessConfig) (*witness.Sink, error) {
	cfg := witness.Config{
		Target: c.Audit.Witness, Secret: c.Audit.WitnessSecret, CAFile: c.Audit.WitnessCAFile,
		MaxLag: c.Audit.WitnessMaxLag.Duration, Now: c.Now, Logger: c.Logger,
	}
	if m := c.Metrics; m != nil {
		cfg.OnLag, cfg.OnFailure = m.AuditWitnessLag.Set, m.AuditWitnessFailures.Inc
	}
	w, err := witness.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("audit witness: %w", err)
	}
	cps, err := c.Store.Checkpoints(ctx, c.Node)
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("audit witness: %w", err)
	}
	if n := len(cps); n > 0 {
		w.Add(cps[n-1])
	}
	return w, nil
}
