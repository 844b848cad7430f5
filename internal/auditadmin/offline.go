package auditadmin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"strconv"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
	"github.com/cofferhq/coffer/internal/store"
)

// OfflineNodeSuffix names the audit chain that offline commands write to:
// NODE/offline. A serving node's chain has one writer, the node itself, so
// a command run beside it keeps its own chain, which `coffer audit verify`
// checks like any other.
const OfflineNodeSuffix = "/offline"

// ErrNotAudited is wrapped by an offline operation's error when the
// operation was done but its outcome could not be written to the audit log
// (its start was).
var ErrNotAudited = errors.New("the outcome could not be written to the audit log")

// Offline audits the administrative commands run against a deployment's
// store without a server (key rotation, backup, restore, policy apply…).
type Offline struct {
	DB   *store.DB
	Keys *keyring.Keyring
	// Audit is the deployment's audit configuration (its witness).
	Audit config.Audit
	// Node is the deployment's node name; events go to NODE/offline.
	Node   string
	Now    func() time.Time
	Logger *slog.Logger
}

// Run runs op, an offline administrative operation, between two events on
// the deployment's offline audit chain: one before, naming the action and
// resource and who runs it ("started"), and one after with the outcome
// ("done", or the error). No first event, no operation: an audit log that
// cannot be written refuses the command as it would a request. Each run
// seals the chain with a signed checkpoint.
func (o Offline) Run(ctx context.Context, action, resource string, op func() error) error {
	node := o.Node + OfflineNodeSuffix
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var sinks []audit.Sink
	if o.Audit.Witness != "" {
		// The run's closing checkpoint goes to the witness too (best
		// effort: the writer's Close waits a few seconds for it), so that
		// the offline chain cannot be cut back unseen either.
		wit, err := OpenWitness(ctx, WitnessConfig{Audit: o.Audit, Store: o.DB, Node: node, Now: o.Now, Logger: log})
		if err != nil {
			return fmt.Errorf("audit log unavailable, nothing done: %w", err)
		}
		sinks = append(sinks, wit)
	}
	w, err := audit.NewWriter(ctx, audit.OnRows(o.DB), audit.WriterConfig{
		Node: node,
		Keys: NewKeySource(o.Keys),
		Now:  o.Now,
		// One command, two events: nothing to gather.
		GatherGap: -1,
		// logRetrying logs a failed event again: nothing is lost.
		CallerRetries: true,
		Logger:        log,
		Sinks:         sinks,
	})
	if err != nil {
		for _, sk := range sinks {
			_ = sk.Close()
		}
		return fmt.Errorf("audit log unavailable, nothing done: %w", err)
	}
	var rid [12]byte
	if _, err := rand.Read(rid[:]); err != nil {
		_ = w.Close(ctx)
		return err
	}
	e := audit.Event{
		RequestID: hex.EncodeToString(rid[:]), PrincipalID: operator(), PrincipalKind: coffer.KindOperator,
		SourceIP: "local", Action: action, Resource: resource, Decision: audit.DecisionAllow, Rule: "offline",
		Reason: "started",
	}
	// The outcome is written, and the writer waited for, even when ctx
	// is cancelled (an interrupted command): an operation that ran gets
	// its outcome recorded, and no write outlives this call (a failed
	// restore empties its database after it returns).
	after, cancel := context.WithTimeout(context.WithoutCancel(ctx), offlineAuditTimeout)
	defer cancel()
	if err := logRetrying(ctx, w, e); err != nil {
		_ = w.Close(after)
		return fmt.Errorf("audit log unavailable, nothing done: %w", err)
	}
	opErr := op()
	e.Reason = "done"
	if opErr != nil {
		e.Reason = coffer.ErrorCode(opErr) + ": " + coffer.ErrorMessage(opErr)
	}
	lerr := logRetrying(after, w, e)
	if cerr := w.Close(after); lerr == nil {
		lerr = cerr
	}
	switch {
	case opErr != nil:
		return opErr
	case lerr != nil:
		return fmt.Errorf("%s %s: %w: %w", action, resource, ErrNotAudited, lerr)
	}
	return nil
}

// offlineAuditTimeout bounds how long an offline command waits for its
// outcome event and for its audit writer to close, once it can no longer
// be cancelled.
const offlineAuditTimeout = 30 * time.Second

// logRetrying logs e, trying again a few times: two offline commands run
// at once share the chain, and the one that loses the race for the next
// sequence number fails its append; the writer then reloads the head, so
// the next try chains after the winner's event.
func logRetrying(ctx context.Context, w *audit.Writer, e audit.Event) error {
	var err error
	for try := 0; try < 5; try++ {
		if err = w.Log(ctx, e); err == nil || ctx.Err() != nil {
			return err
		}
		time.Sleep(time.Duration(try+1) * 20 * time.Millisecond)
	}
	return err
}

// operator names who runs an offline command: the operating system user,
// or its uid where the user database has no entry (a container).
func operator() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "os:" + u.Username
	}
	return "os-uid:" + strconv.Itoa(os.Getuid())
}
