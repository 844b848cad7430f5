package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/config"
)

// TailAudit prints audit events from since on, one JSON object a line, in
// (time, node, seq) order; with follow it keeps polling for new ones until
// ctx ends. It reads the store directly (it needs the data directory and the
// root key), so it works while the server is down too.
func TailAudit(ctx context.Context, cfg *config.Config, w io.Writer, since time.Time, follow bool) error {
	c, err := open(ctx, cfg, Options{Offline: true})
	if err != nil {
		return err
	}
	defer c.Close()
	enc := json.NewEncoder(w)
	f := audit.Filter{Since: since, Limit: audit.MaxListLimit}
	for {
		evs, err := c.db.ListAudit(ctx, f)
		if err != nil {
			return fmt.Errorf("audit tail: %w", err)
		}
		for _, e := range evs {
			if err := enc.Encode(e); err != nil {
				return err
			}
		}
		if len(evs) > 0 {
			cur := audit.CursorOf(evs[len(evs)-1])
			f.After = &cur
		}
		if len(evs) == audit.MaxListLimit {
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
