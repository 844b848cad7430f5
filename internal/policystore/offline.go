package policystore

import "context"

// Stored is the policy document in force as an offline command reads it.
type Stored struct {
	Data   []byte
	Format string // "json" or "yaml"
	// Version is the stored policy version (0: none was ever put; Data
	// is then the bootstrap policy in force).
	Version int64
}

// Audited runs op between an offline command's audit events, refusing it
// when they cannot be written (auditadmin.Offline.Run).
type Audited func(ctx context.Context, action, resource string, op func() error) error

// ApplyAudited is Apply for the offline break-glass (`coffer policy apply
// --data-dir`), audited by run before it acts and with its outcome
// (policy.apply, or policy.apply_forced with force).
func (h *Holder) ApplyAudited(ctx context.Context, run Audited, data []byte, format string, force bool) (v int64, err error) {
	action := "policy.apply"
	if force {
		action = "policy.apply_forced"
	}
	err = run(ctx, action, "policy", func() (err error) {
		v, err = h.Apply(ctx, data, format, force)
		return err
	})
	return v, err
}

// GetAudited reads the document in force and its version for an offline
// command (`coffer policy get --data-dir`), audited by run (policy.get).
func (h *Holder) GetAudited(ctx context.Context, run Audited) (out Stored, err error) {
	err = run(ctx, "policy.get", "policy", func() (err error) {
		if out.Version, err = h.store.PolicyVersion(ctx); err != nil {
			return err
		}
		out.Data, out.Format, err = h.Get(ctx)
		return err
	})
	return out, err
}
