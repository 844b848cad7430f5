package lifecycle_test

import (
	"context"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/lifecycle"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// allow is an Authorizer that allows what its set names.
type allow map[string]bool

func (a allow) Allowed(_ *coffer.Principal, action, resource, _ string, note *coffer.AccessNote) error {
	if a[action+" "+resource] {
		note.Allow("test")
		return nil
	}
	note.Deny("no rule")
	return coffer.Errorf(coffer.EFORBIDDEN, "not allowed")
}

// TestRewrapProgress: the rewrap job's progress, as a client polls it, is
// idle before any rotation, pending once one asked for a run, running
// (records walked of all records, values moved, the node holding the
// lease) after each batch, and done at the end; asking needs read on
// system/jobs, decided in the use case and noted for the audit log.
func TestRewrapProgress(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := setup(t, b)
			f.insert(t, 1200, 0, nil)
			p := &coffer.Principal{ID: "ops", Kind: coffer.KindUser}
			j := lifecycle.New(lifecycle.Config{Store: f.db, Keys: f.keys, Node: "a", Batch: 500,
				Authz: allow{"read system/jobs": true}})
			rewrap := func() lifecycle.JobProgress {
				t.Helper()
				var note coffer.AccessNote
				jobs, err := j.Progress(ctx, coffer.Caller{Principal: p, Note: &note})
				if err != nil {
					t.Fatal(err)
				}
				if note.Action != "read" || note.Resource != "system/jobs" || note.Decision != "allow" {
					t.Errorf("note %+v", note)
				}
				for _, x := range jobs {
					if x.Name == lifecycle.RewrapJob {
						return x
					}
				}
				t.Fatalf("no rewrap in %+v", jobs)
				return lifecycle.JobProgress{}
			}
			if got := rewrap(); got.State != "idle" || got.Done != 1200 || got.Total != 1200 {
				t.Fatalf("before any rotation: %+v", got)
			}
			if _, err := f.keys.Rotate(ctx, "collection/c"); err != nil {
				t.Fatal(err)
			}
			if err := j.RequestRewrap(ctx); err != nil {
				t.Fatal(err)
			}
			if got := rewrap(); got.State != "pending" || got.Done != 0 || got.Total != 1200 {
				t.Fatalf("requested: %+v", got)
			}
			if _, err := j.Rewrap(ctx, 1); err != nil {
				t.Fatal(err)
			}
			got := rewrap()
			if got.State != "running" || got.Done != 500 || got.Total != 1200 || got.Moved != 500 || got.Node != "a" ||
				got.UpdatedAt == nil || time.Since(*got.UpdatedAt) > time.Minute {
				t.Fatalf("after one batch: %+v", got)
			}
			if _, err := j.Rewrap(ctx, 0); err != nil {
				t.Fatal(err)
			}
			if got := rewrap(); got.State != "done" || got.Done != 1200 || got.Total != 1200 || got.Moved != 1200 {
				t.Fatalf("finished: %+v", got)
			}

			// Without read on system/jobs: refused, the denial noted.
			deny := lifecycle.New(lifecycle.Config{Store: f.db, Keys: f.keys, Node: "a", Authz: allow{}})
			var note coffer.AccessNote
			if _, err := deny.Progress(ctx, coffer.Caller{Principal: p, Note: &note}); coffer.ErrorCode(err) != coffer.EFORBIDDEN ||
				note.Decision != "deny" || note.Resource != "system/jobs" {
				t.Fatalf("without the right: %v %+v", err, note)
			}
		})
	}
}
