package policystore

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/policy"
)

// Store persists the policy document.
type Store interface {
	SavePolicy(ctx context.Context, format string, source []byte, now time.Time) (int64, error)
	Policy(ctx context.Context) (version int64, format string, source []byte, err error)
	PolicyVersion(ctx context.Context) (int64, error)
}

// Holder is the policy in force.
type Holder struct {
	store  Store
	now    func() time.Time
	log    *slog.Logger
	cur    atomic.Pointer[policy.Policy]
	ver    atomic.Int64
	Reload func() // called after a new policy is swapped in, if set

	refreshMu sync.Mutex // serialises Refresh
	// Principals, if set, lists the clients and users that are not
	// disabled, as the principals they sign in as: a new document is
	// refused when none of them, nor the caller, could change the policy
	// under it (see Put).
	Principals func(ctx context.Context) ([]coffer.Principal, error)
}

// New returns a Holder; call Load before serving.
func New(s Store, now func() time.Time, log *slog.Logger) *Holder {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Holder{store: s, now: now, log: log}
}

// Load reads the stored policy, or puts the bootstrap policy in force when
// none was saved yet. A stored policy that no longer compiles is an error.
func (h *Holder) Load(ctx context.Context) error {
	v, format, src, err := h.store.Policy(ctx)
	if coffer.ErrorCode(err) == coffer.ENOTFOUND {
		h.cur.Store(policy.Default())
		return nil
	}
	if err != nil {
		return fmt.Errorf("policystore: load: %w", err)
	}
	p, err := policy.Load(src, format)
	if err != nil {
		return fmt.Errorf("policystore: stored policy version %d does not compile: %w", v, err)
	}
	h.cur.Store(p)
	h.ver.Store(v)
	return nil
}

// Current returns the policy in force (never nil after Load).
func (h *Holder) Current() *policy.Policy {
	if p := h.cur.Load(); p != nil {
		return p
	}
	return policy.DenyAll()
}

// Watch polls the store every interval and reloads on a newer version,
// until ctx ends.
func (h *Holder) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.Refresh(ctx)
		}
	}
}

// Refresh loads the stored policy if it is newer than the one in force (a
// change announced by another node, or Watch's poll). Calls are
// serialised, so an older load never replaces a newer one.
func (h *Holder) Refresh(ctx context.Context) {
	h.refreshMu.Lock()
	defer h.refreshMu.Unlock()
	v, err := h.store.PolicyVersion(ctx)
	if err != nil || v <= h.ver.Load() {
		return
	}
	if err := h.Load(ctx); err != nil {
		h.log.Error("policy reload failed; keeping the policy in force", "error", err)
	}
}

// Get returns the document in force as it was loaded.
func (h *Holder) Get(ctx context.Context) ([]byte, string, error) {
	data, format := h.Current().Source()
	return data, format, nil
}

// Allowed decides action on resource for p and records it in note; the
// error is a 403 when denied.
func (h *Holder) Allowed(p *coffer.Principal, action, resource, ip string, note *coffer.AccessNote) error {
	d := h.Current().Decide(policy.Input{Principal: p, Action: action, Resource: resource, Time: h.now(), IP: ip})
	if !d.Allowed {
		note.Deny(d.Reason)
		return coffer.Errorf(coffer.EFORBIDDEN, "not allowed to %s %s", action, resource)
	}
	note.Allow(d.Rule)
	note.Decide(coffer.Decided{Action: action, Resource: resource})
	return nil
}

// Redecide asks the policy in force again, now and from ip, every
// question a request was allowed (coffer.AccessNote.Decided): a replay of
// its kept answer is given only when each is still allowed. The error is
// a 403 naming the first refused.
func (h *Holder) Redecide(p *coffer.Principal, ds []coffer.Decided, ip string) error {
	pol, now := h.Current(), h.now()
	for _, d := range ds {
		in := policy.Input{Principal: p, Action: d.Action, Resource: d.Resource, Owner: d.Owner, Subject: d.Subject,
			Collection: d.Collection, ID: d.ID, Time: now, IP: ip}
		if dec := pol.Decide(in); !dec.Allowed {
			return coffer.Errorf(coffer.EFORBIDDEN, "not allowed to %s %s", d.Action, d.Resource)
		}
	}
	return nil
}

// Put replaces the whole policy for p, calling from ip: it must be
// allowed (update on policy) and compile, and, unless force, leave some
// principal able to change the policy again (see Apply); otherwise the
// old policy stays in force. The new one is saved before it is swapped in.
func (h *Holder) Put(ctx context.Context, p *coffer.Principal, ip string, data []byte, format string, force bool, note *coffer.AccessNote) error {
	if err := h.Allowed(p, "update", "policy", ip, note); err != nil {
		return err
	}
	_, err := h.put(ctx, p, ip, data, format, force, note)
	return err
}

// Apply replaces the whole policy without a caller (the offline
// break-glass, `coffer policy apply`): the document must compile and,
// unless force, some client or user that is not disabled must be able to
// change the policy under it (update on policy). It returns the new
// policy version.
func (h *Holder) Apply(ctx context.Context, data []byte, format string, force bool) (int64, error) {
	return h.put(ctx, nil, "", data, format, force, nil)
}

func (h *Holder) put(ctx context.Context, caller *coffer.Principal, ip string, data []byte, format string, force bool, note *coffer.AccessNote) (int64, error) {
	np, err := policy.Load(data, format)
	if err != nil {
		ce := &coffer.Error{Code: coffer.EINVALID, Message: "policy does not compile; the old policy stays in force", Cause: err}
		if pe, ok := err.(*policy.ProblemsError); ok {
			for _, pr := range pe.Problems {
				ce.Problems = append(ce.Problems, pr.Path+": "+pr.Message)
			}
		}
		return 0, ce
	}
	if err := h.lockout(ctx, np, caller, ip); err != nil {
		if !force || coffer.ErrorCode(err) != coffer.EINVALID {
			return 0, err
		}
		if note != nil {
			note.Reason = "forced: no principal could change the policy under it"
		}
	}
	v, err := h.store.SavePolicy(ctx, format, data, h.now())
	if err != nil {
		return 0, fmt.Errorf("policystore: save: %w", err)
	}
	note.Touch(coffer.PolicyTarget(v))
	h.cur.Store(np)
	h.ver.Store(v)
	if h.Reload != nil {
		h.Reload()
	}
	return v, nil
}

// lockout applies Lockout to np, the caller and the principals
// Principals lists; Principals failing is an error (fail closed).
func (h *Holder) lockout(ctx context.Context, np *policy.Policy, caller *coffer.Principal, ip string) error {
	var others []coffer.Principal
	if h.Principals != nil && (caller == nil || !mayChange(np, caller, ip, h.now())) {
		var err error
		if others, err = h.Principals(ctx); err != nil {
			return fmt.Errorf("policystore: who could change the policy: %w", err)
		}
	}
	return Lockout(np, caller, ip, others, h.now())
}

func mayChange(p *policy.Policy, pr *coffer.Principal, ip string, now time.Time) bool {
	return may(p, pr, "update", ip, now)
}

// may reports whether pr may take action on the policy under p.
func may(p *policy.Policy, pr *coffer.Principal, action, ip string, now time.Time) bool {
	return p.Decide(policy.Input{Principal: pr, Action: action, Resource: "policy", Time: now, IP: ip}).Allowed
}

// SelfLockout is the lockout rule as the console's policy editor applies
// it before it saves, stricter than Lockout: the caller itself must keep
// both read and update on policy under p (from ip; "" for none), since
// whoever saves a policy there must be able to fix it afterwards. It
// returns one problem per right the caller would lose, nil for none.
func SelfLockout(p *policy.Policy, caller *coffer.Principal, ip string, now time.Time) []string {
	var out []string
	for _, act := range []string{"read", "update"} {
		if !may(p, caller, act, ip, now) {
			out = append(out, "this policy would lock you out: you ("+caller.ID+") could no longer "+act+" the policy")
		}
	}
	return out
}

// Lockout returns a 422 policy-lockout problem when, under p at now,
// neither the caller (nil for none; as it called, from ip) nor any of
// others (from no address) could update the policy: the document would
// lock every administrator out, with only the offline break-glass left.
// The problem says which roles could grant it, if any.
func Lockout(p *policy.Policy, caller *coffer.Principal, ip string, others []coffer.Principal, now time.Time) error {
	if caller != nil && mayChange(p, caller, ip, now) {
		return nil
	}
	for i := range others {
		if mayChange(p, &others[i], "", now) {
			return nil
		}
	}
	granting := p.RolesGranting("update", "policy")
	if len(granting) > 10 {
		granting = append(granting[:10], "…")
	}
	problem := "no role grants update on policy"
	if len(granting) > 0 {
		problem = fmt.Sprintf("update on policy is granted only to roles %v, which neither the caller nor any client or user that is not disabled holds (or their conditions are false for them)", granting)
	}
	return &coffer.Error{Code: coffer.EINVALID, Type: coffer.ProblemPolicyLockout,
		Message: "under this policy no principal could change the policy again; the old policy stays in force " +
			"(fix the document, or put it with force=true if this is meant; `coffer policy apply --data-dir DIR FILE` is the offline way back)",
		Problems: []string{problem}}
}

// RequiresMFA reports whether role grants nothing without MFA under the
// policy in force.
func (h *Holder) RequiresMFA(role string) bool { return h.Current().RequiresMFA(role) }

// Read returns the document in force as it was loaded, for a caller with
// read on policy.
func (h *Holder) Read(ctx context.Context, c coffer.Caller) ([]byte, string, error) {
	c.Note.Target("read", "policy")
	if err := h.Allowed(c.Principal, "read", "policy", c.IP, c.Note); err != nil {
		return nil, "", err
	}
	return h.Get(ctx)
}

// Question asks how the policy in force decides a request (the body of
// POST /v1/policy/check): the principal as described, not as stored.
type Question struct {
	Principal struct {
		ID         string            `json:"id"`
		Kind       string            `json:"kind"`
		Roles      []string          `json:"roles"`
		Attributes map[string]string `json:"attributes"`
		MFA        bool              `json:"mfa"`
	} `json:"principal"`
	Action   string   `json:"action"`
	Resource string   `json:"resource"`
	Owner    string   `json:"owner"`
	ID       string   `json:"id"`
	IP       string   `json:"ip"`
	Fields   []string `json:"fields"`
}

// Answer explains a decision: whether it allows, by which rule or why
// not, and the view of each field asked about.
type Answer struct {
	Allowed bool              `json:"allowed"`
	Fields  map[string]string `json:"fields,omitempty"`
	Reason  string            `json:"reason"`
	Rule    string            `json:"rule"`
}

// Explain decides q under the policy in force without acting on it, for
// a caller with read on policy. The decision on the caller comes before
// the question is read (read's error is returned as it is), so that a
// caller without the right learns nothing of how its request was
// malformed.
func (h *Holder) Explain(c coffer.Caller, read func() (Question, error)) (Answer, error) {
	c.Note.Target("read", "policy")
	if err := h.Allowed(c.Principal, "read", "policy", c.IP, c.Note); err != nil {
		return Answer{}, err
	}
	q, err := read()
	if err != nil {
		return Answer{}, err
	}
	if q.Action == "" || q.Resource == "" {
		return Answer{}, coffer.Errorf(coffer.EINVALID, "action and resource are required")
	}
	p := &coffer.Principal{ID: q.Principal.ID, Kind: q.Principal.Kind, Roles: q.Principal.Roles,
		Attributes: q.Principal.Attributes, MFA: q.Principal.MFA}
	d := h.Current().Decide(policy.Input{Principal: p, Action: q.Action, Resource: q.Resource,
		Owner: q.Owner, ID: q.ID, IP: q.IP, Time: h.now()})
	out := Answer{Allowed: d.Allowed, Rule: d.Rule, Reason: d.Reason}
	for _, f := range q.Fields {
		if out.Fields == nil {
			out.Fields = map[string]string{}
		}
		out.Fields[f] = d.View(f).String()
	}
	return out, nil
}
