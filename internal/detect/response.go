package detect

import (
	"context"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

// Authorizer decides a caller's request under the policy in force: nil
// when p may take action on resource from ip, a 403 otherwise; the
// decision is recorded in note.
type Authorizer interface {
	Allowed(p *coffer.Principal, action, resource, ip string, note *coffer.AccessNote) error
}

// Response is what admins do with the detectors' findings: read the
// security events, suspend a principal by hand, list and lift suspensions.
// It decides who may: read on security to look, admin on security to act.
type Response struct {
	d    *Detector
	auth Authorizer
}

// NewResponse returns the admins' response to d's findings under auth.
func NewResponse(d *Detector, auth Authorizer) *Response { return &Response{d: d, auth: auth} }

// EventQuery selects security events (GET /v1/security/events).
type EventQuery struct {
	Since time.Time
	Kind  string
	Limit int
}

// MaxSuspension bounds a suspension by hand: a response, not a deletion.
const MaxSuspension = 30 * 24 * time.Hour

func (r *Response) allowed(c coffer.Caller, action string) error {
	c.Note.Target(action, "security")
	return r.auth.Allowed(c.Principal, action, "security", c.IP, c.Note)
}

// Events returns the security events read selects, for a caller with
// read on security. The decision comes before the query is read (its
// error is returned as it is).
func (r *Response) Events(ctx context.Context, c coffer.Caller, read func() (EventQuery, error)) ([]coffer.SecurityEvent, error) {
	if err := r.allowed(c, "read"); err != nil {
		return nil, err
	}
	q, err := read()
	if err != nil {
		return nil, err
	}
	evs, err := r.d.Events(ctx, q.Since, q.Kind, q.Limit)
	if err != nil {
		return nil, err
	}
	if evs == nil {
		evs = []coffer.SecurityEvent{}
	}
	c.Note.Count = len(evs)
	return evs, nil
}

// Lift lets a caller with admin on security restore suspended principal
// id. An id no principal can have lifts nothing.
func (r *Response) Lift(ctx context.Context, c coffer.Caller, id string) error {
	if err := r.allowed(c, "admin"); err != nil {
		return err
	}
	if id == "" || len(id) > 256 {
		return coffer.Errorf(coffer.EINVALID, "principal must be 1 to 256 bytes")
	}
	if !coffer.Printable(id) {
		return nil // no principal has such an id: nothing to lift
	}
	lifted, err := r.d.Lift(ctx, id)
	if err != nil {
		return err
	}
	if lifted {
		c.Note.Count = 1
		c.Note.Touch(coffer.SuspensionTarget(id))
	}
	return nil
}

// Suspend lets a caller with admin on security suspend principal id by
// hand for the duration read reads (a Go duration; "" for 1h, at most
// MaxSuspension): every request of its is refused on every node until
// then or until lifted. It returns the end of the suspension. Suspending
// oneself is refused: nobody could then lift it from this session.
func (r *Response) Suspend(ctx context.Context, c coffer.Caller, id string, read func() (string, error)) (time.Time, error) {
	if err := r.allowed(c, "admin"); err != nil {
		return time.Time{}, err
	}
	if id == "" || len(id) > 256 || !coffer.Printable(id) {
		return time.Time{}, coffer.Errorf(coffer.EINVALID, "principal must be 1 to 256 bytes of printable UTF-8")
	}
	ds, err := read()
	if err != nil {
		return time.Time{}, err
	}
	d := time.Hour
	if ds != "" {
		if d, err = time.ParseDuration(ds); err != nil || d <= 0 || d > MaxSuspension {
			return time.Time{}, coffer.Errorf(coffer.EINVALID, "duration must be a Go duration from 1s to 720h")
		}
	}
	if id == c.Principal.ID {
		c.Note.Deny("a principal may not suspend itself")
		return time.Time{}, coffer.Errorf(coffer.ECONFLICT, "you cannot suspend yourself")
	}
	until := r.d.now().Add(d).UTC().Truncate(time.Second)
	if err := r.d.Suspend(ctx, id, until); err != nil {
		return time.Time{}, err
	}
	c.Note.Count = 1
	c.Note.Touch(coffer.SuspensionTarget(id))
	return until, nil
}

// Suspensions lists the suspensions in force, for a caller with read on
// security.
func (r *Response) Suspensions(ctx context.Context, c coffer.Caller) ([]coffer.Suspension, error) {
	if err := r.allowed(c, "read"); err != nil {
		return nil, err
	}
	list, err := r.d.ActiveSuspensions(ctx)
	if err != nil {
		return nil, err
	}
	c.Note.Count = len(list)
	return list, nil
}
