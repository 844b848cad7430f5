package lifecycle

import (
	"context"
	"log/slog"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

// Flusher writes counts a node keeps in memory to the store (transit's
// and the keyring's use counts); Name says whose in the log.
type Flusher struct {
	Name  string
	Flush func(ctx context.Context) error
}

// FlushAll runs every flusher once, logging (never returning) a failure:
// the counts stay in memory for the next flush.
func FlushAll(ctx context.Context, log *slog.Logger, fs ...Flusher) { flush(ctx, log, false, fs) }

func flush(ctx context.Context, log *slog.Logger, quietOnEnd bool, fs []Flusher) {
	for _, f := range fs {
		if err := f.Flush(ctx); err != nil && (!quietOnEnd || ctx.Err() == nil) {
			log.Warn(f.Name+" flush failed", "error", err)
		}
	}
}

// FlushEvery runs the flushers every period until ctx ends (a flush cut
// short by its end is not logged).
func FlushEvery(ctx context.Context, every time.Duration, log *slog.Logger, fs ...Flusher) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			flush(ctx, log, true, fs)
		}
	}
}

// LimitRotated is told of a key the keyring rotated at its use bound
// (keyring.Options.OnLimitRotate): it logs it and, for the keys of record
// values, schedules the rewrap, as a rotation by `coffer keys rotate`
// would.
func LimitRotated(s JobStateStore, now func() time.Time, log *slog.Logger) func(keyID string, from, to uint32) {
	return func(keyID string, from, to uint32) {
		log.Warn("data key reached its use bound and was rotated at once: lower keys.rotate_after_uses or keys.rotate_check_interval so that the scheduled rotation comes first",
			"key_id", keyID, "from_version", from, "to_version", to)
		if !coffer.ParseKeyID(keyID).SealsRecords() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := RequestRewrap(ctx, s, now()); err != nil {
			log.Warn("the rewrap after a rotation at the use bound could not be scheduled", "key_id", keyID, "error", err)
		}
	}
}
