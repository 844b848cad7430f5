package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// TestAuditVerifyCommandSeesACutThroughTheWitness runs `coffer audit
// verify` itself, on both backends: offline key rotations write the
// offline chain and hand its checkpoints to a witness file; an intruder
// cuts the chain back to an earlier checkpoint. The database alone still
// verifies; with the witness, from the configuration or from --witness,
// the command exits 1 naming the node and the seq of the cut.
func TestAuditVerifyCommandSeesACutThroughTheWitness(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			witnessFile := filepath.Join(t.TempDir(), "witness", "checkpoints.jsonl")
			initArgs := []string{"init", "--data-dir", dir}
			if b.Name != "sqlite" {
				initArgs = append(initArgs, "--database-url", b.DSN(t))
			}
			if code, _, errs := runCLI(t, initArgs...); code != 0 {
				t.Fatal(errs)
			}
			withWitness := []string{"COFFER_AUDIT_WITNESS=" + witnessFile}
			cli := func(env []string, args ...string) (int, string, string) {
				var out, errb bytes.Buffer
				code := run(context.Background(), args, &out, &errb, env)
				return code, out.String(), errb.String()
			}
			for range 3 {
				if code, _, errs := cli(withWitness, "keys", "rotate", "--data-dir", dir, "audit/hmac"); code != 0 {
					t.Fatalf("rotate: %s", errs)
				}
			}
			if code, out, errs := cli(withWitness, "audit", "verify", "--data-dir", dir); code != 0 || out != "ok: 6 events\n" {
				t.Fatalf("verify before the cut: %d %q %q", code, out, errs)
			}
			cfg, err := config.Load(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, dsn := cfg.Database()
			db := storetest.Intruder(t, dsn)
			node := cfg.Node + "/offline"
			for _, q := range []string{`DELETE FROM audit_log WHERE node = $1 AND seq > 4`, `DELETE FROM audit_checkpoints WHERE node = $1 AND seq > 4`} {
				if _, err := db.ExecContext(context.Background(), q, node); err != nil {
					t.Fatal(err)
				}
			}
			if code, out, errs := cli(nil, "audit", "verify", "--data-dir", dir); code != 0 {
				t.Fatalf("the database alone cannot see the cut, yet verify said: %d %q %q", code, out, errs)
			}
			for name, run := range map[string]func() (int, string, string){
				"audit.witness": func() (int, string, string) { return cli(withWitness, "audit", "verify", "--data-dir", dir) },
				"--witness": func() (int, string, string) {
					return cli(nil, "audit", "verify", "--data-dir", dir, "--witness", witnessFile)
				},
			} {
				code, out, errs := run()
				if code != 1 || out != "" || !strings.Contains(errs, `node "`+node+`" seq 6`) || !strings.Contains(errs, "cut off") {
					t.Errorf("verify with %s after the cut: %d %q %q", name, code, out, errs)
				}
			}
		})
	}
}
