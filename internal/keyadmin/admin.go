package keyadmin

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/lifecycle"
	"github.com/cofferhq/coffer/internal/store"
)

// SigningKeys rotates and revokes the access token signing key (the
// identity service).
type SigningKeys interface {
	RotateSigningKey(ctx context.Context) error
	RevokeSigningKey(ctx context.Context, kid string) (identity.SigningKeyRevocation, error)
}

// Policies decides whether a principal may act on a resource, recording
// the decision in note.
type Policies interface {
	Allowed(p *coffer.Principal, action, resource, ip string, note *coffer.AccessNote) error
}

// Caller is who asks, from where, and the note to fill for the audit log.
type Caller struct {
	Principal *coffer.Principal
	IP        string
	Note      *coffer.AccessNote
}

// Config holds an Admin's dependencies.
type Config struct {
	Store       *store.DB
	Keys        *keyring.Keyring
	SigningKeys SigningKeys
	// Jobs schedule and run the rewrap and reindex after a rotation.
	Jobs *lifecycle.Jobs
	// Policies decide the API's calls; nil for offline use.
	Policies Policies
	Now      func() time.Time
	Logger   *slog.Logger
	// RetireAfter is how long a version must have had a newer one before
	// it may be retired: 0 is DefaultRetireAfter, negative at once.
	RetireAfter time.Duration
	// ReindexDelay, if set, is how long a serving node waits after an
	// index key rotation before it reindexes (vault.Vault.ReindexDelay).
	ReindexDelay func() time.Duration
	// Background, if set (a serving node), runs the rewrap or reindex a
	// rotation needs at once instead of at the scheduler's next tick.
	Background context.Context
	// Audited runs an offline operation between its audit events
	// (auditadmin.Offline.Run); the offline methods need it.
	Audited func(ctx context.Context, action, resource string, op func() error) error
}

// Admin administers Coffer's own keys.
type Admin struct{ c Config }

// New returns an Admin over c.
func New(c Config) *Admin {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return &Admin{c: c}
}

// admit checks keyID's form and that the caller may administer it (policy
// action admin on system/keys/KEY_ID), and notes the call for the audit log
// as action (keys.rotate, keys.retire, …) on system/keys/KEY_ID, or on
// system/keys/KEY_ID/versions/N when it changes one version: the policy
// asks only for admin, but the log must tell a rotation from a
// destruction, and which version went.
func (a *Admin) admit(c Caller, action, keyID string, version uint32) error {
	if keyID == "" || len(keyID) > 300 || !printableASCII(keyID) {
		return coffer.Errorf(coffer.EINVALID, "key_id must be 1 to 300 printable ASCII characters")
	}
	res := coffer.SystemKeyTarget(keyID)
	c.Note.Target("admin", res)
	err := a.c.Policies.Allowed(c.Principal, "admin", res, c.IP, c.Note)
	if version > 0 {
		res = coffer.SystemKeyVersionTarget(keyID, version)
	}
	c.Note.Target(action, res)
	return err
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// soon runs a background job after delay, in the background context, and
// logs its outcome; another node holding the job's lease is no failure, and
// the scheduler retries a failed run.
func (a *Admin) soon(job string, delay time.Duration, run func() ([]any, error)) {
	bg := a.c.Background
	go func() {
		if delay > 0 {
			t := time.NewTimer(delay + 100*time.Millisecond)
			defer t.Stop()
			select {
			case <-t.C:
			case <-bg.Done():
				return
			}
		}
		attrs, err := run()
		switch {
		case errors.Is(err, lifecycle.ErrBusy):
		case err != nil && bg.Err() == nil:
			a.c.Logger.Warn(job+" after rotation failed; the scheduler retries", "error", err)
		case err == nil:
			a.c.Logger.Info(job+" after rotation", attrs...)
		}
	}()
}
