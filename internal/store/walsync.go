package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// ErrSyncFailed: an fsync of the SQLite write-ahead log failed. After that
// the kernel may have dropped the pages it could not write, so no later
// fsync can vouch for them: every later group-commit write fails too, until
// the process restarts and SQLite recovers the log from the disk.
var ErrSyncFailed = errors.New("store: the write-ahead log could not be made durable; restart Coffer")

// walSyncer answers the callers of committed group-commit batches once an
// fsync of the WAL that started after their commit has succeeded (see
// groupCommit). It coalesces: one fsync serves every batch committed while
// the previous one ran.
type walSyncer struct {
	db   string // the database file; its WAL is db + "-wal"
	jobs chan syncJob
	done chan struct{}
	// syncFile is fdatasync; tests replace it to fail.
	syncFile func(f *os.File) error

	// Owned by the loop.
	wal    *os.File
	failed error
}

type syncJob struct {
	reqs []txReq
	errs []error
}

// newWALSyncer starts the syncer of the SQLite database file path.
func newWALSyncer(path string) *walSyncer {
	s := &walSyncer{db: path, jobs: make(chan syncJob, 64), done: make(chan struct{}), syncFile: fdatasync}
	go s.loop()
	return s
}

func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd())) // #nosec G115 -- a file descriptor fits an int
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// answer hands a batch's callers to the syncer: each with errs[i] when
// their work failed (nothing of theirs was committed), else once the WAL
// is synced, with nil or the sync's error.
func (s *walSyncer) answer(reqs []txReq, errs []error) {
	s.jobs <- syncJob{reqs: reqs, errs: errs}
}

// close answers every job handed over so far and stops the syncer. The
// group commit must not hand over more.
func (s *walSyncer) close() {
	close(s.jobs)
	<-s.done
	if s.wal != nil {
		_ = s.wal.Close()
	}
}

func (s *walSyncer) loop() {
	defer close(s.done)
	var batch []syncJob
	for j := range s.jobs {
		batch = append(batch[:0], j)
	drain:
		for {
			select {
			case j, ok := <-s.jobs:
				if !ok {
					break drain
				}
				batch = append(batch, j)
			default:
				break drain
			}
		}
		err := s.sync(batch)
		for _, j := range batch {
			for i, r := range j.reqs {
				if j.errs[i] == nil {
					j.errs[i] = err
				}
				r.done <- j.errs[i]
			}
		}
	}
}

// sync makes the commits of batch durable, if any of its callers
// committed, and returns nil or why they are not.
func (s *walSyncer) sync(batch []syncJob) error {
	committed := false
	for _, j := range batch {
		for _, err := range j.errs {
			committed = committed || err == nil
		}
	}
	if !committed {
		return nil
	}
	if s.failed != nil {
		return s.failed
	}
	if s.wal == nil {
		f, err := os.Open(s.db + "-wal")
		if err != nil {
			// The WAL exists once anything was committed in WAL mode.
			return s.fail(fmt.Errorf("store: open the write-ahead log: %w", err))
		}
		// The WAL's directory entry must survive a power loss too.
		if err := syncDir(filepath.Dir(s.db)); err != nil {
			_ = f.Close()
			return s.fail(err)
		}
		s.wal = f
	}
	if err := s.syncFile(s.wal); err != nil {
		return s.fail(fmt.Errorf("store: sync the write-ahead log: %w", err))
	}
	return nil
}

// fail records that the log can no longer be trusted and returns the error
// every caller of this and every later batch gets.
func (s *walSyncer) fail(err error) error {
	s.failed = fmt.Errorf("%w: %w", ErrSyncFailed, err)
	return s.failed
}

// syncDir fsyncs a directory, so that the entries of files created in it
// are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir) // #nosec G304 -- the store's own directory
	if err != nil {
		return fmt.Errorf("store: open the database directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("store: sync the database directory: %w", err)
	}
	return nil
}
