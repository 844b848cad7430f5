package auditadmin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/cofferhq/coffer/internal/audit"
)

// flushFloorSize is the scratch file FlushFloorStore writes into, over and
// over: allocated once, so that a flush syncs data and no file metadata.
const flushFloorSize = 64 << 20

// FlushFloorStore is the audit store of app.Options.AuditFlushFloor. It keeps
// nothing: AppendAudit writes the batch's encoded events into a
// preallocated scratch file and fdatasyncs it, the least any audit log that
// is durable before the answer can do, so that a benchmark can tell what
// the host's flush costs from what Coffer's own audit path costs. Every
// other method is the real store's, which stays empty.
type FlushFloorStore struct {
	audit.Store
	mu     sync.Mutex // guards everything below
	f      *os.File
	closed bool
	off    int64
	buf    []byte
}

// NewFlushFloorStore allocates the scratch file in dir, and closes and
// removes it when ctx ends.
func NewFlushFloorStore(ctx context.Context, s audit.Store, dir string) (*FlushFloorStore, error) {
	path := filepath.Join(dir, "audit-flush-floor.scratch")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o600) // #nosec G304 -- a fixed name in the data directory
	if err != nil {
		return nil, fmt.Errorf("audit flush floor: %w", err)
	}
	// Written, not truncated to size: a sparse file would allocate blocks,
	// and so change metadata, on the first pass of every flush.
	if _, err := f.WriteAt(make([]byte, flushFloorSize), 0); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("audit flush floor: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("audit flush floor: %w", err)
	}
	fs := &FlushFloorStore{Store: s, f: f}
	context.AfterFunc(ctx, func() {
		// Under the lock: an append still running keeps its descriptor.
		fs.mu.Lock()
		defer fs.mu.Unlock()
		fs.closed = true
		_ = fs.f.Close()
		_ = os.Remove(path)
	})
	return fs, nil
}

// AppendAudit writes events' encodings, one line each, and syncs them;
// checkpoints are dropped.
func (s *FlushFloorStore) AppendAudit(_ context.Context, events []audit.Event, _ []audit.Checkpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("audit flush floor: closed")
	}
	buf := s.buf[:0]
	for i := range events {
		b, err := events[i].AppendJSON(buf)
		if err != nil {
			return fmt.Errorf("audit flush floor: %w", err)
		}
		buf = append(b, '\n')
	}
	s.buf = buf
	if len(buf) > flushFloorSize {
		return fmt.Errorf("audit flush floor: batch of %d bytes", len(buf))
	}
	if s.off+int64(len(buf)) > flushFloorSize {
		s.off = 0
	}
	if _, err := s.f.WriteAt(buf, s.off); err != nil {
		return fmt.Errorf("audit flush floor: %w", err)
	}
	s.off += int64(len(buf))
	if err := unix.Fdatasync(int(s.f.Fd())); err != nil { // #nosec G115 -- a file descriptor fits an int
		return fmt.Errorf("audit flush floor: %w", err)
	}
	return nil
}
