package auditadmin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
	"github.com/cofferhq/coffer/internal/detect"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/witness"
)

// Verification is the outcome of verifying a serving node's audit log
// (POST /v1/audit/verify).
type Verification struct {
	OK          bool      `json:"ok"`
	Nodes       int       `json:"nodes"`
	Events      int       `json:"events"`
	Checkpoints int       `json:"checkpoints"`
	Findings    []string  `json:"findings"`
	File        bool      `json:"file_compared"`
	Witness     bool      `json:"witness_compared"`
	VerifiedAt  time.Time `json:"verified_at"`
}

// Verifier verifies the audit log of a serving node, one check at a time.
type Verifier struct {
	DB   *store.DB
	Keys *keyring.Keyring
	// Audit names the copies to compare (the file sink, the witness).
	Audit  config.Audit
	Node   string
	Now    func() time.Time
	Logger *slog.Logger
	mu     sync.Mutex
}

// VerifyAudit verifies as Copies and audit.VerifyAll do offline: the
// witness is read first, then the file sets and the store. A broken log is
// a result (OK false, with its findings); an unreadable witness is a
// finding, and the log is checked without it.
func (v *Verifier) VerifyAudit(ctx context.Context) (Verification, error) {
	if !v.mu.TryLock() {
		return Verification{}, coffer.Errorf(coffer.ECONFLICT, "an audit verification is already running on this node")
	}
	defer v.mu.Unlock()
	out := Verification{}
	copies := audit.Copies{}
	if v.Audit.Witness != "" {
		cps, err := witness.Read(ctx, v.Audit.Witness, v.Audit.WitnessCAFile)
		if err != nil {
			out.Findings = append(out.Findings, "the witness could not be read; the log was checked without it")
			v.Logger.Warn("audit verify: witness unreadable", "error", err)
		} else {
			copies.Witnessed, copies.Witness, out.Witness = cps, "the witness "+detect.RedactURL(v.Audit.Witness), true
		}
	}
	if v.Audit.File != "" {
		copies.Files, copies.FileNode, out.File = []string{v.Audit.File}, v.Node, true
	}
	rep, err := audit.VerifyAll(ctx, audit.OnRows(v.DB), KeyLookup{v.Keys}, copies)
	out.Nodes, out.Events, out.Checkpoints = rep.Nodes, rep.Events, rep.Checkpoints
	out.VerifiedAt = v.Now().UTC()
	var found audit.Findings
	switch {
	case errors.As(err, &found):
		for _, f := range found {
			out.Findings = append(out.Findings, f.Error())
		}
	case err != nil:
		return out, fmt.Errorf("audit verify: %w", err)
	}
	out.OK = len(out.Findings) == 0
	return out, nil
}

// Copies reads the copies of the audit log that the configuration names,
// for an offline check: the witness (witnessTarget, an https:// URL or a
// file path, instead of audit.witness when not empty), read first, before
// the store, so that a checkpoint it took while the check runs is already
// in the store; and the file sink's file set, which holds node's chain
// whole.
func Copies(ctx context.Context, a config.Audit, node, witnessTarget string) (audit.Copies, error) {
	copies := audit.Copies{Witness: witnessTarget}
	if copies.Witness == "" {
		copies.Witness = a.Witness
	}
	if copies.Witness != "" {
		cps, err := witness.Read(ctx, copies.Witness, a.WitnessCAFile)
		if err != nil {
			return copies, fmt.Errorf("audit witness: %w", err)
		}
		copies.Witnessed = cps
		if witness.IsURL(copies.Witness) {
			copies.Witness = "the witness " + detect.RedactURL(copies.Witness)
		} else {
			copies.Witness = "the witness " + copies.Witness
		}
	}
	if a.File != "" {
		// Events are written to the file from the first one on (or caught
		// up from the store when the sink is added): the serving node's
		// chain must be there whole.
		copies.Files, copies.FileNode = []string{a.File}, node
	}
	return copies, nil
}

// VerifyStore checks every audit chain in db with every version of the
// audit keys (as each event and checkpoint names it), against copies,
// and returns how many events db holds intact; anything found is an
// audit.Findings error naming each node and seq.
func VerifyStore(ctx context.Context, db audit.RowStore, keys *keyring.Keyring, copies audit.Copies) (int, error) {
	rep, err := audit.VerifyAll(ctx, audit.OnRows(db), KeyLookup{Keys: keys}, copies)
	if err != nil {
		return 0, err
	}
	return rep.Events, nil
}
