package app

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/detect"
	"github.com/cofferhq/coffer/internal/httpapi"
	"github.com/cofferhq/coffer/internal/witness"
)

// liveVerifier verifies the audit log of a serving node (POST
// /v1/audit/verify), one check at a time.
type liveVerifier struct {
	c  *components
	mu sync.Mutex
}

// VerifyAudit implements httpapi.AuditVerifier as VerifyAuditAgainst does
// offline: the witness is read first, then the file sets and the store.
func (v *liveVerifier) VerifyAudit(ctx context.Context) (httpapi.AuditVerification, error) {
	if !v.mu.TryLock() {
		return httpapi.AuditVerification{}, coffer.Errorf(coffer.ECONFLICT, "an audit verification is already running on this node")
	}
	defer v.mu.Unlock()
	cfg := v.c.cfg
	out := httpapi.AuditVerification{}
	copies := audit.Copies{}
	if cfg.Audit.Witness != "" {
		cps, err := witness.Read(ctx, cfg.Audit.Witness, cfg.Audit.WitnessCAFile)
		if err != nil {
			out.Findings = append(out.Findings, "the witness could not be read; the log was checked without it")
			v.c.opts.Logger.Warn("audit verify: witness unreadable", "error", err)
		} else {
			copies.Witnessed, copies.Witness, out.Witness = cps, "the witness "+detect.RedactURL(cfg.Audit.Witness), true
		}
	}
	if cfg.Audit.File != "" {
		copies.Files, copies.FileNode, out.File = []string{cfg.Audit.File}, cfg.Node, true
	}
	rep, err := audit.VerifyAll(ctx, v.c.db, auditKeyLookup{v.c.keys}, copies)
	out.Nodes, out.Events, out.Checkpoints = rep.Nodes, rep.Events, rep.Checkpoints
	out.VerifiedAt = v.c.opts.Now().UTC()
	var found audit.Findings
	switch {
	case errors.As(err, &found):
		for _, f := range found {
			out.Findings = append(out.Findings, f.Error())
		}
	case err != nil:
		return out, fmt.Errorf("app: audit verify: %w", err)
	}
	out.OK = len(out.Findings) == 0
	return out, nil
}
