package e2e

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// TestAuditKeyRotationWhileServing: both audit keys are rotated through
// the key rotation API while a client keeps sending requests; the serving
// node chains and signs under the new versions without a restart (the
// events and checkpoints say which version), the API shows each event's
// key version, and the offline verify that `coffer audit verify` runs
// passes over every event, in the database and in the file; an event
// edited after the rotation is then named.
func TestAuditKeyRotationWhileServing(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			file := filepath.Join(t.TempDir(), "audit.jsonl")
			n := start(t, b, "COFFER_AUDIT_FILE="+file, "COFFER_AUDIT_CHECKPOINT_EVERY=10")
			ctx := context.Background()
			tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
			get := func() {
				t.Helper()
				if st, _, body := n.do("GET", "/v1/collections", tok, "", nil); st != 200 {
					t.Errorf("GET /v1/collections: %d %s", st, body)
				}
			}

			// Traffic all along, from another client connection.
			stop := make(chan struct{})
			var (
				wg         sync.WaitGroup
				background atomic.Int64
			)
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if st, _, body := n.do("GET", "/v1/collections", tok, "", nil); st != 200 {
						t.Errorf("background request: %d %s", st, body)
						return
					}
					background.Add(1)
				}
			})
			for range 12 {
				get()
			}
			for _, key := range []string{"audit/hmac", "audit/signing"} {
				st, body := rotate(n, tok, key)
				if st != 200 || !strings.Contains(string(body), `"version":2`) || strings.Contains(string(body), `"rewrap_scheduled":true`) {
					t.Fatalf("rotate %s: %d %s", key, st, body)
				}
				for range 12 {
					get()
				}
			}
			close(stop)
			wg.Wait()
			if background.Load() == 0 {
				t.Fatal("no background request was served")
			}

			// The API shows every event's key version: both, in order.
			st, _, body := n.do("GET", "/v1/audit/events?limit=1000", tok, "", nil)
			if st != 200 {
				t.Fatalf("audit events: %d %s", st, body)
			}
			var out struct {
				Events []struct {
					Node       string  `json:"node"`
					Seq        uint64  `json:"seq"`
					Action     string  `json:"action"`
					Resource   string  `json:"resource"`
					KeyVersion *uint32 `json:"key_version"`
				} `json:"events"`
			}
			mustJSON(t, body, &out)
			byVersion := map[uint32]int{}
			for _, e := range out.Events {
				if e.KeyVersion == nil {
					t.Fatalf("event %s:%d has no key_version: %s", e.Node, e.Seq, body)
				}
				byVersion[*e.KeyVersion]++
			}
			if byVersion[1] == 0 || byVersion[2] == 0 || len(byVersion) != 2 {
				t.Fatalf("events by HMAC key version: %v", byVersion)
			}

			n.Stop() // flushes and signs the final checkpoint
			db := n.openStore()
			cfg := n.Config()
			var stored int
			var lastV2 audit.Event
			hmacV := uint32(1)
			err := audit.OnRows(db).ScanAudit(ctx, cfg.Node, 0, func(e audit.Event) error {
				stored++
				if e.KeyVersion < hmacV {
					return fmt.Errorf("event %s: key version went back to %d", e.ID, e.KeyVersion)
				}
				hmacV = e.KeyVersion
				if e.KeyVersion == 2 && e.Status == 200 && !strings.HasPrefix(e.Action, "keys.") {
					lastV2 = e
				}
				return nil
			})
			if err != nil || hmacV != 2 || lastV2.ID == "" {
				t.Fatalf("stored chain: %v, last version %d, last v2 event %q", err, hmacV, lastV2.ID)
			}
			cps, err := db.Checkpoints(ctx, cfg.Node)
			if err != nil {
				t.Fatal(err)
			}
			signV := map[uint32]int{}
			for _, c := range cps {
				signV[c.KeyVersion]++
			}
			if signV[1] == 0 || signV[2] == 0 {
				t.Fatalf("checkpoints by signing key version: %v", signV)
			}

			t.Logf("%d events stored, by version %v; checkpoints by version %v; %d background requests", stored, byVersion, signV, background.Load())
			// The offline verify of `coffer audit verify` (database and file).
			got, err := app.VerifyAudit(ctx, cfg)
			if err != nil || got != stored {
				t.Fatalf("VerifyAudit = %d, %v; want ok with all %d events", got, err, stored)
			}

			// Someone with direct database access edits an event written
			// under the new key: verify names it.
			tamper(t, cfg, lastV2)
			_, err = app.VerifyAudit(ctx, cfg)
			var verr *audit.VerifyError
			if !errors.As(err, &verr) || verr.EventID != lastV2.ID || !strings.Contains(verr.Reason, "edited") {
				t.Fatalf("VerifyAudit after an edit of %s = %v", lastV2.ID, err)
			}
		})
	}
}

// tamper changes the stored time of event e, past the append-only
// triggers, as the database owner could.
func tamper(t *testing.T, cfg *config.Config, e audit.Event) {
	t.Helper()
	kind, dsn := cfg.Database()
	const set = `UPDATE audit_log SET time = time + 1`
	if kind == config.DatabaseSQLite {
		db, err := sql.Open("sqlite", dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec(`DROP TRIGGER audit_log_no_update`); err != nil {
			t.Fatal(err)
		}
		res, err := db.Exec(set+` WHERE node = ? AND seq = ?`, e.Node, int64(e.Seq))
		if n, _ := res.RowsAffected(); err != nil || n != 1 {
			t.Fatalf("edit: %d rows, %v", n, err)
		}
		return
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only`); err != nil {
		t.Fatal(err)
	}
	if tag, err := conn.Exec(ctx, set+` WHERE node = $1 AND seq = $2`, e.Node, int64(e.Seq)); err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("edit: %v %v", tag, err)
	}
}
