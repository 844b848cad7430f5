package detect

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/google/uuid"
)

// isTokenize reports whether action tokenizes values, so that its Count
// adds to data.bulk_tokenize: "tokenize", and "tokenize_linkable" where
// linkable modes are an action of their own.
// A relayed call ("relay") counts its tokenized values in Count.
func isTokenize(action string) bool {
	return action == "tokenize" || action == "tokenize_linkable" || action == "relay"
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
		win := time.Unix(0, k.win).UTC()
		adds[i] = CountAdd{Key: k.key, Window: win, N: b.sums[k], Since: d.since(win)}
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
			total = d.addLocal(k, adds[i].Window, adds[i].N, err, true)
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
	if len(o.Tampered) > 0 {
		ids := make([]string, 0, min(len(o.Tampered), maxTampered))
		for _, id := range o.Tampered[:min(len(o.Tampered), maxTampered)] {
			ids = append(ids, clip(id))
		}
		o.Tampered = ids
	}
	return o
}

// handle runs every detector over one normalized observation.
func (d *Detector) handle(ctx context.Context, o Observation) {
	t := o.Time
	subject := "ip:" + o.SourceIP
	if o.PrincipalID != "" {
		subject = "principal:" + o.PrincipalID
	}
	win := d.slice(t)

	if o.Canary {
		det := d.detail(o, nil)
		d.raise(ctx, t, KindCanary, SeverityHigh, o.PrincipalID, subject+"|"+o.Resource, o, det)
	}

	if len(o.Tampered) > 0 {
		// At once, and once per cooldown for the same records (not per
		// principal: each tampered record is news).
		det := d.detail(o, map[string]any{"records": o.Tampered})
		d.raise(ctx, t, KindIntegrity, SeverityHigh, o.PrincipalID, o.Resource+"|"+strings.Join(o.Tampered, ","), o, det)
	}

	if o.AuthFailure {
		d.authFailure(ctx, t, win, o)
	} else if o.Decision == "deny" {
		d.threshold(ctx, o, KindDeniedBurst, SeverityMedium, "deny|"+subject, subject, win, 1, d.cfg.DeniedBurst, false, nil)
	}

	if o.Missing {
		d.threshold(ctx, o, KindEnumeration, SeverityMedium, "enum|"+subject, subject, win, 1, d.cfg.Enumeration, false, nil)
	}

	if o.Decision != "deny" && o.Status < 400 {
		// Whatever the route (a read, a search, a detokenize, a decrypt,
		// an update answered with the record): values that left count.
		if o.Values > 0 {
			d.threshold(ctx, o, KindBulkRead, SeverityHigh, "bulk|"+subject, subject, win, o.Values, d.cfg.BulkReadValues, true, nil)
		}
		if o.Count > 0 && isTokenize(o.Action) {
			d.threshold(ctx, o, KindBulkTokenize, SeverityHigh, "tok|"+subject, subject, win, o.Count, d.cfg.BulkTokenizeValues, true,
				map[string]any{"modes": "any"})
			if o.Linkable > 0 {
				d.threshold(ctx, o, KindBulkTokenize, SeverityHigh, "tokl|"+subject, subject, win, o.Linkable, d.cfg.BulkTokenizeLinkable, true,
					map[string]any{"modes": "linkable"})
			}
		}
	}

	if o.Decision == "allow" && o.PrincipalID != "" && len(d.hours) > 0 {
		if h, outside := d.outsideHours(o, t); outside {
			det := d.detail(o, map[string]any{"hours": h.String()})
			d.raise(ctx, t, KindUnusualHour, SeverityMedium, o.PrincipalID, subject, o, det)
		}
	}
}

// threshold counts n for key in the sliding window ending in slice win
// and raises kind, with extra in its detail, when this observation
// carries the count to thr (or, when strict, over it).
func (d *Detector) threshold(ctx context.Context, o Observation, kind, severity, key, subject string, win time.Time, n, thr int, strict bool, extra map[string]any) {
	if total, ok := d.count(ctx, key, win, n, thr, strict); ok {
		det := windowDetail(total, thr, d.cfg.Window, d.since(win))
		for k, v := range extra {
			det[k] = v
		}
		d.raise(ctx, o.Time, kind, severity, o.PrincipalID, subject, o, d.detail(o, det))
	}
}

// sliceLen is the length of one slice of the sliding window.
func (d *Detector) sliceLen() time.Duration {
	return max(d.cfg.Window/windowSlices, 1)
}

// slice returns the start of the slice holding t.
func (d *Detector) slice(t time.Time) time.Time { return t.Truncate(d.sliceLen()) }

// since returns the start of the oldest slice counted with slice win:
// the window's length before it, so that the slices from since through
// win cover at least the Window before any time inside win.
func (d *Detector) since(win time.Time) time.Time { return win.Add(-d.cfg.Window) }

// authFailure counts a failed authentication per attempted principal and
// per source IP; one event covers both when they cross together.
func (d *Detector) authFailure(ctx context.Context, t, win time.Time, o Observation) {
	who := o.PrincipalID
	if who == "" {
		who = o.AttemptedID
	}
	thr := d.cfg.FailedAuthBurst
	det := map[string]any{"threshold": thr, "window": d.cfg.Window.String(), "window_start": d.since(win).Format(time.RFC3339)}
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

// count adds n to key's count in slice win and reports whether this
// addition carried the key's total over the sliding window (the slices
// from since(win) through win) to the threshold (total >= thr) or, when
// strict, over it (total > thr). Across nodes, the one addition that
// crosses is the one whose atomic increment does. Inside a batch it goes
// through the batch's ledger.
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
		total = d.add(ctx, key, win, d.since(win), n)
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

// add adds n to (key, win) through the store and returns the total from
// since (zero: win alone); when the store fails it counts in memory so
// detection goes on (per node) while the database is unreachable.
func (d *Detector) add(ctx context.Context, key string, win, since time.Time, n int) int {
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	totals, err := d.store.AddCounts(sctx, []CountAdd{{Key: key, Window: win, N: n, Since: since}})
	cancel()
	if err == nil && len(totals) == 1 {
		return totals[0]
	}
	if err == nil {
		err = errors.New("detect: store returned the wrong number of totals")
	}
	return d.addLocal(localKey{key, win.UnixNano()}, win, n, err, !since.IsZero())
}

// addLocal counts on this node only, after the store failed with err, and
// returns the total of the sliding window ending in win (when sliding) or
// of win alone.
func (d *Detector) addLocal(k localKey, win time.Time, n int, err error, sliding bool) int {
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
	total := d.local[k]
	if sliding {
		for s := d.since(win); s.Before(win); s = s.Add(d.sliceLen()) {
			total += d.local[localKey{k.key, s.UnixNano()}]
		}
	}
	return total
}

// raise records, logs, counts, suspends for and sends one event, unless
// the same kind was raised for the same subject in this cooldown window.
func (d *Detector) raise(ctx context.Context, t time.Time, kind, severity, principal, subject string, o Observation, detail map[string]any) {
	if d.batch != nil && d.batch.collect {
		return // the first pass of a batch only collects counts
	}
	if d.add(ctx, "cool|"+kind+"|"+subject, t.Truncate(d.cfg.Cooldown), time.Time{}, 1) > 1 {
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

// windowDetail describes a crossed threshold: the total over the sliding
// window, which started at since at the earliest.
func windowDetail(total, thr int, window time.Duration, since time.Time) map[string]any {
	return map[string]any{"count": total, "threshold": thr, "window": window.String(), "window_start": since.Format(time.RFC3339)}
}

// clip bounds an id taken from a request.
func clip(s string) string {
	if len(s) > maxIDLen {
		return s[:maxIDLen]
	}
	return s
}
