package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/config"
)

// TailAudit prints audit events from since on, one JSON object a line, in
// (time, node, seq) order; with follow it keeps polling for new ones until
// ctx ends. It reads the store directly (it needs the data directory and the
// root key), so it works while the server is down too. Events come from
// their hashed bodies; a stored row whose columns disagree with its body is
// reported to log (a warning for the operator: run `coffer audit verify`).
func TailAudit(ctx context.Context, cfg *config.Config, w io.Writer, log *slog.Logger, since time.Time, follow bool) error {
	c, err := open(ctx, cfg, Options{Offline: true, Logger: log})
	if err != nil {
		return err
	}
	defer c.Close()
	enc := json.NewEncoder(w)
	f := audit.Filter{Since: since, Limit: audit.MaxListLimit}
	for {
		p, err := c.db.ListAuditPage(ctx, f)
		if err != nil {
			return fmt.Errorf("audit tail: %w", err)
		}
		flagCorrupt(c.opts.Logger, p.Corrupt)
		for _, e := range p.Events {
			if err := enc.Encode(e); err != nil {
				return err
			}
		}
		if p.Last != nil {
			f.After = p.Last
		}
		if p.More {
			continue // more waiting: no pause
		}
		if !follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}
