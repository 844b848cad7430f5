package auditadmin

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
	"github.com/cofferhq/coffer/internal/metrics"
	"github.com/cofferhq/coffer/internal/witness"
)

// WriterConfig are the inputs of OpenWriter.
type WriterConfig struct {
	Audit config.Audit
	// Store holds the audit rows and the node's checkpoints.
	Store interface {
		audit.RowStore
		Checkpoints(ctx context.Context, node string) ([]audit.Checkpoint, error)
	}
	Keys    *keyring.Keyring
	Node    string
	DataDir string
	Now     func() time.Time
	Logger  *slog.Logger
	Metrics *metrics.Metrics
	// MaxBatch and GatherGap are the benchmarks' overrides of the
	// writer's (audit.WriterConfig); 0 keeps its defaults.
	MaxBatch  int
	GatherGap time.Duration
	// FlushFloor replaces the store by the benchmark-only flush floor
	// (NewFlushFloorStore in DataDir).
	FlushFloor bool
}

// OpenWriter starts a serving node's audit writer as the configuration
// says: the store's rows, with keys from the key hierarchy (following
// their rotations), the JSON-lines file (ECS fields, for Filebeat/Logstash)
// as a required sink when configured (if it cannot be written, requests
// fail closed), stdout, and the witness, which it returns too (nil when
// none is configured; the writer owns and closes it).
func OpenWriter(ctx context.Context, c WriterConfig) (*audit.Writer, *witness.Sink, error) {
	var store audit.Store = audit.OnRows(c.Store)
	if c.FlushFloor {
		floor, err := NewFlushFloorStore(ctx, store, c.DataDir)
		if err != nil {
			return nil, nil, err
		}
		store = floor
	}
	var required, sinks []audit.Sink
	if c.Audit.File != "" {
		f, err := audit.NewJSONLFile(c.Audit.File, 0)
		if err != nil {
			return nil, nil, fmt.Errorf("audit file: %w", err)
		}
		required = append(required, f)
	}
	if c.Audit.Stdout {
		sinks = append(sinks, audit.NewStream(os.Stdout))
	}
	m := c.Metrics
	var wit *witness.Sink
	if c.Audit.Witness != "" {
		var err error
		wit, err = OpenWitness(ctx, WitnessConfig{Audit: c.Audit, Store: c.Store, Node: c.Node, Now: c.Now, Logger: c.Logger, Metrics: m})
		if err != nil {
			for _, sk := range required {
				_ = sk.Close()
			}
			return nil, nil, err
		}
		sinks = append(sinks, wit)
	}
	w, err := audit.NewWriter(ctx, store, audit.WriterConfig{
		MaxBatch:           c.MaxBatch,
		GatherGap:          c.GatherGap,
		Node:               c.Node,
		Keys:               NewKeySource(c.Keys),
		Now:                c.Now,
		CheckpointEvery:    offIfZero(c.Audit.CheckpointEvery),
		CheckpointInterval: time.Duration(offIfZero(int(c.Audit.CheckpointInterval.Duration))),
		FlushInterval:      flushInterval(c.Audit),
		Sinks:              sinks,
		RequiredSinks:      required,
		Logger:             c.Logger,
		Observe: func(b audit.BatchStats) {
			m.AuditLatency.Observe(b.Duration.Seconds())
			if b.Err != nil {
				m.AuditFailures.Inc()
				return
			}
			m.AuditBatch.Observe(float64(b.Events))
			m.AuditWrites.Add(float64(b.Events))
		},
	})
	if err != nil {
		// The writer did not start: the sinks opened for it are not its.
		for _, sk := range append(required, sinks...) {
			_ = sk.Close()
		}
		return nil, nil, err
	}
	return w, wit, nil
}

// flushInterval is the writer's FlushInterval: 0 (durable before the
// answer) unless audit.durability is interval.
func flushInterval(a config.Audit) time.Duration {
	if a.Durability == config.AuditInterval {
		return a.FlushInterval.Duration
	}
	return 0
}

// offIfZero maps the config's "0 = off" to the audit writer's "negative =
// off" (where 0 means its default).
func offIfZero(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
