package detect

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/google/uuid"
)

// isRead reports whether action returns values to the caller, so that its
// Count adds to data.bulk_read.
func isRead(action string) bool {
	switch action {
	case "read", "search", "detokenize", "decrypt":
		return true
	}
	return false
}

// maxBatch bounds how many queued observations one pass takes.
const maxBatch = 1024

// process works through the queue until Close (after draining it) or
// until ctx ends, a batch at a time: whatever is queued when it looks.
func (d *Detector) process(ctx context.Context) {
	defer close(d.procDone)
	batch := make([]queued, 0, maxBatch)
	var last time.Time
	for {
		select {
		case q := <-d.queue:
			if wait := d.cfg.BatchInterval - time.Since(last); wait > 0 && len(d.queue) < maxBatch-1 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-d.stop:
				case <-ctx.Done():
				}
				t.Stop()
			}
			d.handleBatch(ctx, d.fill(append(batch[:0], q)))
			last = time.Now()
		case <-d.stop:
			for {
				select {
				case q := <-d.queue:
					d.handleBatch(ctx, d.fill(append(batch[:0], q)))
				default:
					return
				}
			}
		case <-ctx.Done():
			return
		}
	}
}

// fill adds what is queued now, up to maxBatch, without waiting.
func (d *Detector) fill(batch []queued) []queued {
	for len(batch) < maxBatch {
		select {
		case q := <-d.queue:
			batch = append(batch, q)
		default:
			return batch
		}
	}
	return batch
}

// batchCounts is the counting ledger of one batch of observations. The
// detectors run twice over the batch: the first pass only collects what
// each observation adds to which counter, one AddCounts applies the sums,
// and the second pass replays the additions one by one from the total
// before the batch, so thresholds are crossed exactly where they would
// have been one observation at a time, by one round trip per batch
// rather than one per request (and the queue keeps up under load).
type batchCounts struct {
	collect bool
	keys    []localKey
	sums    map[localKey]int
	running map[localKey]int
}

// handleBatch runs every detector over a batch; a barrier item is closed
// once everything before it was processed.
func (d *Detector) handleBatch(ctx context.Context, batch []queued) {
	obs := make([]Observation, 0, len(batch))
	for _, q := range batch {
		if q.done != nil {
			d.handleObservations(ctx, obs)
			obs = obs[:0]
			close(q.done)
			continue
		}
		obs = append(obs, d.normalize(q.obs))
	}
	d.handleObservations(ctx, obs)
}

func (d *Detector) handleObservations(ctx context.Context, obs []Observation) {
	if len(obs) == 0 {
		return
	}
	b := &batchCounts{collect: true, sums: map[localKey]int{}}
	d.batch = b
	defer func() { d.batch = nil }()
	for _, o := range obs {
		d.handle(ctx, o)
	}
	b.collect = false
	b.running = d.addBatch(ctx, b)
	for _, o := range obs {
		d.handle(ctx, o)
	}
}

// addBatch applies the batch's sums through the store (or, when it fails,
// on this node) and returns each counter's total before the batch.
func (d *Detector) addBatch(ctx context.Context, b *batchCounts) map[localKey]int {
	base := make(map[localKey]int, len(b.keys))
	if len(b.keys) == 0 {
		return base
	}
	adds := make([]CountAdd, len(b.keys))
	for i, k := range b.keys {
		adds[i] = CountAdd{Key: k.key, Window: time.Unix(0, k.win).UTC(), N: b.sums[k]}
	}
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	totals, err := d.store.AddCounts(sctx, adds)
	cancel()
	if err == nil && len(totals) != len(adds) {
		err = errors.New("detect: store returned the wrong number of totals")
	}
	for i, k := range b.keys {
		total := 0
		if err == nil {
			total = totals[i]
		} else {
			total = d.addLocal(k, adds[i].Window, adds[i].N, err)
		}
		base[k] = total - adds[i].N
	}
	return base
}

// normalize pins the observation's time and clips its strings, once,
// so both passes of a batch see the same observation.
func (d *Detector) normalize(o Observation) Observation {
	if o.Time.IsZero() {
		o.Time = d.now()
	}
	o.Time = o.Time.UTC()
	o.PrincipalID, o.AttemptedID, o.SourceIP = clip(o.PrincipalID), clip(o.AttemptedID), clip(o.SourceIP)
	o.Action, o.Resource = clip(o.Action), clip(o.Resource)
	return o
}

// handle runs every detector over one normalized observation.
func (d *Detector) handle(ctx context.Context, o Observation) {
	t := o.Time
	subject := "ip:" + o.SourceIP
	if o.PrincipalID != "" {
		subject = "principal:" + o.PrincipalID
	}
	win := t.Truncate(d.cfg.Window)

	if o.Canary {
		det := d.detail(o, nil)
		d.raise(ctx, t, KindCanary, SeverityHigh, o.PrincipalID, subject+"|"+o.Resource, o, det)
	}

	if o.AuthFailure {
		d.authFailure(ctx, t, win, o)
	} else if o.Decision == "deny" {
		if total, ok := d.count(ctx, "deny|"+subject, win, 1, d.cfg.DeniedBurst, false); ok {
			d.raise(ctx, t, KindDeniedBurst, SeverityMedium, o.PrincipalID, subject, o,
				d.detail(o, windowDetail(total, d.cfg.DeniedBurst, d.cfg.Window, win)))
		}
	}

	if o.Missing {
		if total, ok := d.count(ctx, "enum|"+subject, win, 1, d.cfg.Enumeration, false); ok {
			d.raise(ctx, t, KindEnumeration, SeverityMedium, o.PrincipalID, subject, o,
				d.detail(o, windowDetail(total, d.cfg.Enumeration, d.cfg.Window, win)))
		}
	}

	if o.Count > 0 && o.Decision != "deny" && isRead(o.Action) {
		if total, ok := d.count(ctx, "bulk|"+subject, win, o.Count, d.cfg.BulkReadValues, true); ok {
			d.raise(ctx, t, KindBulkRead, SeverityHigh, o.PrincipalID, subject, o,
				d.detail(o, windowDetail(total, d.cfg.BulkReadValues, d.cfg.Window, win)))
		}
	}

	if o.Decision == "allow" && o.PrincipalID != "" && len(d.hours) > 0 {
		if h, outside := d.outsideHours(o, t); outside {
			det := d.detail(o, map[string]any{"hours": h.String()})
			d.raise(ctx, t, KindUnusualHour, SeverityMedium, o.PrincipalID, subject, o, det)
		}
	}
}

// authFailure counts a failed authentication per attempted principal and
// per source IP; one event covers both when they cross together.
func (d *Detector) authFailure(ctx context.Context, t, win time.Time, o Observation) {
	who := o.PrincipalID
	if who == "" {
		who = o.AttemptedID
	}
	thr := d.cfg.FailedAuthBurst
	det := map[string]any{"threshold": thr, "window": d.cfg.Window.String(), "window_start": win.Format(time.RFC3339)}
	subject := ""
	if who != "" {
		if total, ok := d.count(ctx, "auth|id|"+who, win, 1, thr, false); ok {
			det["failures_for_principal"] = total
			subject = "principal:" + who
		}
	}
	if o.SourceIP != "" {
		if total, ok := d.count(ctx, "auth|ip|"+o.SourceIP, win, 1, thr, false); ok {
			det["failures_from_ip"] = total
			if subject == "" {
				subject = "ip:" + o.SourceIP
			}
		}
	}
	if subject == "" {
		return
	}
	if o.PrincipalID == "" && o.AttemptedID != "" {
		det["attempted_id"] = o.AttemptedID
	}
	d.raise(ctx, t, KindBruteForce, SeverityHigh, who, subject, o, d.detail(o, det))
}

// outsideHours reports whether t lies outside the working hours that
// apply to the observation's principal: its id's, else its roles' (inside
// any one is enough), else those of "*". It returns the hours it used.
func (d *Detector) outsideHours(o Observation, t time.Time) (hoursSpec, bool) {
	if h, ok := d.hours[o.PrincipalID]; ok {
		return h, !h.contains(t)
	}
	var (
		first hoursSpec
		found bool
	)
	for _, r := range o.Roles {
		h, ok := d.hours[r]
		if !ok {
			continue
		}
		if h.contains(t) {
			return h, false
		}
		if !found {
			first, found = h, true
		}
	}
	if found {
		return first, true
	}
	h, ok := d.hours["*"]
	return h, ok && !h.contains(t)
}

// count adds n to key's window total and reports whether this addition
// carried it to the threshold (total >= thr) or, when strict, over it
// (total > thr). Exactly one addition per key and window does, on any node.
// Inside a batch it goes through the batch's ledger.
func (d *Detector) count(ctx context.Context, key string, win time.Time, n, thr int, strict bool) (int, bool) {
	var total int
	if b := d.batch; b != nil {
		k := localKey{key, win.UnixNano()}
		if b.collect {
			if _, ok := b.sums[k]; !ok {
				b.keys = append(b.keys, k)
			}
			b.sums[k] += n
			return 0, false
		}
		b.running[k] += n
		total = b.running[k]
	} else {
		total = d.add(ctx, key, win, n)
	}
	prev := total - n
	if strict {
		return total, prev <= thr && total > thr
	}
	return total, prev < thr && total >= thr
}

type localKey struct {
	key string
	win int64
}

// add adds n through the store; when the store fails it counts in memory
// so detection goes on (per node) while the database is unreachable.
func (d *Detector) add(ctx context.Context, key string, win time.Time, n int) int {
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	total, err := d.store.AddCount(sctx, key, win, n)
	cancel()
	if err == nil {
		return total
	}
	return d.addLocal(localKey{key, win.UnixNano()}, win, n, err)
}

// addLocal counts on this node only, after the store failed with err.
func (d *Detector) addLocal(k localKey, win time.Time, n int, err error) int {
	if d.localWindow.IsZero() || win.After(d.localWindow) {
		d.localWindow = win
		oldest := win.Add(-2 * max(d.cfg.Window, d.cfg.Cooldown)).UnixNano()
		for k := range d.local {
			if k.win < oldest {
				delete(d.local, k)
			}
		}
		d.log.Error("detect: shared count failed, counting on this node only", "err", err)
	}
	d.local[k] += n
	return d.local[k]
}

// raise records, logs, counts, suspends for and sends one event, unless
// the same kind was raised for the same subject in this cooldown window.
func (d *Detector) raise(ctx context.Context, t time.Time, kind, severity, principal, subject string, o Observation, detail map[string]any) {
	if d.batch != nil && d.batch.collect {
		return // the first pass of a batch only collects counts
	}
	if d.add(ctx, "cool|"+kind+"|"+subject, t.Truncate(d.cfg.Cooldown), 1) > 1 {
		return
	}
	id, err := uuid.NewRandomFromReader(d.rand)
	if err != nil {
		d.log.Error("detect: event id", "err", err)
		return
	}
	ev := coffer.SecurityEvent{ID: id.String(), Time: t, Kind: kind, Severity: severity, Principal: principal, Detail: detail}
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	if err := d.store.InsertSecurityEvent(sctx, ev); err != nil {
		d.log.Error("detect: storing security event", "id", ev.ID, "kind", kind, "err", err)
	}
	cancel()
	d.log.Warn("security event", "id", ev.ID, "kind", kind, "severity", severity, "principal", principal, "detail", detail)
	d.onEv(kind)
	if d.susOn[kind] && o.PrincipalID != "" {
		d.suspend(ctx, o.PrincipalID, kind)
	}
	if len(d.hooks) == 0 {
		return
	}
	body, err := json.Marshal(ev)
	if err != nil {
		d.log.Error("detect: encoding security event", "id", ev.ID, "err", err)
		return
	}
	for _, h := range d.hooks {
		h.enqueue(body)
	}
}

// suspend suspends principal id for Config.SuspendFor, here at once and
// in the store for the other nodes.
func (d *Detector) suspend(ctx context.Context, id, kind string) {
	until := d.now().Add(d.cfg.SuspendFor)
	d.mu.Lock()
	if until.After(d.suspended[id]) {
		d.suspended[id] = until
	}
	d.mu.Unlock()
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if err := d.store.SuspendPrincipal(sctx, id, until, kind); err != nil {
		d.log.Error("detect: storing suspension (this node only)", "principal", id, "err", err)
	}
	d.log.Warn("detect: principal suspended", "principal", id, "kind", kind, "until", until.UTC().Format(time.RFC3339))
}

// detail is the event detail: where and what, plus extra. Names only.
func (d *Detector) detail(o Observation, extra map[string]any) map[string]any {
	m := map[string]any{}
	for k, v := range map[string]string{"ip": o.SourceIP, "action": o.Action, "resource": o.Resource, "principal_kind": o.PrincipalKind} {
		if v != "" {
			m[k] = v
		}
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func windowDetail(total, thr int, window time.Duration, win time.Time) map[string]any {
	return map[string]any{"count": total, "threshold": thr, "window": window.String(), "window_start": win.Format(time.RFC3339)}
}

// clip bounds an id taken from a request.
func clip(s string) string {
	if len(s) > maxIDLen {
		return s[:maxIDLen]
	}
	return s
}
