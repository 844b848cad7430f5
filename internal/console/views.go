package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/coffer"
)

func (con *Console) routes() {
	m := con.mux
	files := http.StripPrefix(Prefix+"static/", http.FileServerFS(con.static))
	m.HandleFunc("GET "+Prefix+"static/", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // no directory listings
			return
		}
		files.ServeHTTP(w, r)
	})
	m.HandleFunc("GET "+Prefix+"{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix+"overview", http.StatusSeeOther)
	})
	m.HandleFunc("GET "+Prefix+"login", con.loginPage)
	m.HandleFunc("POST "+Prefix+"login", con.login)
	m.HandleFunc("GET "+Prefix+"mfa", con.mfaPage)
	m.HandleFunc("POST "+Prefix+"mfa", con.mfaSubmit)
	m.HandleFunc("POST "+Prefix+"logout", con.authed(con.logout))
	m.HandleFunc("GET "+Prefix+"reauth", con.authed(con.reauthPage))

	m.HandleFunc("GET "+Prefix+"overview", con.authed(con.overview))
	m.HandleFunc("GET "+Prefix+"overview/panel", con.authed(con.overviewPanel))
	m.HandleFunc("GET "+Prefix+"audit", con.authed(con.auditPage))
	m.HandleFunc("GET "+Prefix+"audit/export", con.authed(con.auditExport))
	m.HandleFunc("POST "+Prefix+"audit/verify", con.authed(con.verifyAudit))
	m.HandleFunc("GET "+Prefix+"security", con.authed(con.securityPage))
	m.HandleFunc("POST "+Prefix+"security/lift", con.authed(con.liftSuspension))
	m.HandleFunc("POST "+Prefix+"security/suspend", con.authed(con.suspendPrincipal))
	m.HandleFunc("GET "+Prefix+"records", con.authed(con.recordsPage))
	m.HandleFunc("POST "+Prefix+"records/search", con.authed(con.recordsSearch))
	m.HandleFunc("POST "+Prefix+"records/erase", con.authed(con.eraseSubject))
	m.HandleFunc("GET "+Prefix+"policy", con.authed(con.policyPage))
	m.HandleFunc("POST "+Prefix+"policy", con.authed(con.policySave))
	m.HandleFunc("POST "+Prefix+"policy/validate", con.authed(con.policyValidate))
	m.HandleFunc("POST "+Prefix+"policy/check", con.authed(con.policyCheck))
	m.HandleFunc("POST "+Prefix+"policy/test", con.authed(con.policyTest))
	m.HandleFunc("GET "+Prefix+"admin", con.authed(con.adminPage))
	m.HandleFunc("POST "+Prefix+"admin/clients", con.authed(con.createClient))
	m.HandleFunc("POST "+Prefix+"admin/clients/rotate", con.authed(con.rotateClient))
	m.HandleFunc("POST "+Prefix+"admin/users", con.authed(con.createUser))
	m.HandleFunc("POST "+Prefix+"admin/keys", con.authed(con.keyAction))
	m.HandleFunc("GET "+Prefix+"admin/jobs", con.authed(con.jobsJSON))
	m.HandleFunc("GET "+Prefix+"account", con.authed(con.accountPage))
	m.HandleFunc("POST "+Prefix+"account/mfa", con.authed(con.mfaStart))
	m.HandleFunc("POST "+Prefix+"account/mfa/confirm", con.authed(con.mfaConfirm))
	m.HandleFunc(Prefix, func(w http.ResponseWriter, r *http.Request) {
		s := con.lookup(r)
		con.render(w, r, s, http.StatusNotFound, "error", page{Title: "Not found", Error: &Problem{Status: 404, Detail: "There is no such page in the console."}})
	})
}

// ---- audit events, shared by the overview and the explorer ----

// auditFilter is the explorer's filter: what the API filters (principal,
// action, since) and what the console filters on the events it returned
// (until, resource prefix, decision, request id).
type auditFilter struct {
	Range     string // 1h, 24h, 7d or custom
	Since     time.Time
	Until     time.Time
	Principal string
	Action    string
	Resource  string
	Decision  string
	RequestID string
	After     string
}

func (con *Console) parseAuditFilter(q url.Values) (auditFilter, string) {
	f := auditFilter{Range: q.Get("range"), Principal: strings.TrimSpace(q.Get("principal")), Action: strings.TrimSpace(q.Get("action")),
		Resource: strings.TrimSpace(q.Get("resource")), Decision: q.Get("decision"), RequestID: strings.TrimSpace(q.Get("request_id")), After: q.Get("after")}
	now := con.c.Now()
	switch f.Range {
	case "", "1h":
		f.Range, f.Since = "1h", now.Add(-time.Hour)
	case "24h":
		f.Since = now.Add(-24 * time.Hour)
	case "7d":
		f.Since = now.Add(-7 * 24 * time.Hour)
	case "30d":
		f.Since = now.Add(-30 * 24 * time.Hour)
	case "custom":
		var err error
		if f.Since, err = time.Parse(time.RFC3339, strings.TrimSpace(q.Get("since"))); err != nil {
			return f, "From must be an RFC 3339 time, like 2026-01-02T15:04:05Z."
		}
		if u := strings.TrimSpace(q.Get("until")); u != "" {
			if f.Until, err = time.Parse(time.RFC3339, u); err != nil {
				return f, "To must be an RFC 3339 time, like 2026-01-02T15:04:05Z."
			}
		}
	default:
		return f, "Unknown time range."
	}
	if f.Decision != "" && f.Decision != "allow" && f.Decision != "deny" && f.Decision != "none" {
		return f, "Decision must be allow, deny or none."
	}
	return f, ""
}

// query is the filter as console query parameters (for links).
func (f auditFilter) query() url.Values {
	q := url.Values{}
	q.Set("range", f.Range)
	if f.Range == "custom" {
		q.Set("since", f.Since.UTC().Format(time.RFC3339))
		if !f.Until.IsZero() {
			q.Set("until", f.Until.UTC().Format(time.RFC3339))
		}
	}
	for k, v := range map[string]string{"principal": f.Principal, "action": f.Action, "resource": f.Resource,
		"decision": f.Decision, "request_id": f.RequestID} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

func (f auditFilter) match(e audit.Event) bool {
	if !f.Until.IsZero() && e.Time.After(f.Until) {
		return false
	}
	if f.Resource != "" && !strings.HasPrefix(e.Resource, f.Resource) {
		return false
	}
	switch f.Decision {
	case "allow", "deny":
		if e.Decision != f.Decision {
			return false
		}
	case "none":
		if e.Decision != "" {
			return false
		}
	}
	if f.RequestID != "" && e.RequestID != f.RequestID {
		return false
	}
	return true
}

// auditPage is one page of events from GET /v1/audit/events.
type auditPageAnswer struct {
	Events []audit.Event `json:"events"`
	Next   string        `json:"next"`
}

// fetchAudit reads one API page of events.
func (con *Console) fetchAudit(r *http.Request, s *session, f auditFilter, after string, limit int) (auditPageAnswer, *Problem) {
	q := url.Values{}
	q.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
	q.Set("limit", strconv.Itoa(limit))
	if f.Principal != "" {
		q.Set("principal", f.Principal)
	}
	if f.Action != "" {
		q.Set("action", f.Action)
	}
	if after != "" {
		q.Set("after", after)
	}
	res := con.callJSON(r, s, http.MethodGet, "/v1/audit/events?"+q.Encode(), nil)
	if p := res.problem(); p != nil {
		return auditPageAnswer{}, p
	}
	var out auditPageAnswer
	if err := res.decode(&out); err != nil {
		return out, &Problem{Status: 502, Detail: "the audit log's answer could not be read"}
	}
	return out, nil
}

// ---- overview ----

type bar struct {
	X, Y, W, H int
	Label      string
	Deny       bool
}

type chart struct {
	Title  string
	Bars   []bar
	Width  int
	Height int
	Max    int
}

type overviewData struct {
	// Shell renders the page without its figures, which the script
	// loads from /ui/overview/panel: the first paint does not wait for
	// the day's audit events to be read and counted.
	Shell       bool
	AuditErr    *Problem
	SecurityErr *Problem
	Hour        counts
	Day         counts
	Partial     bool
	Scanned     int
	HourChart   chart
	DayChart    chart
	Security    []coffer.SecurityEvent
	SecCount    int
	Nodes       []nodeStatus
	// Verification is the outcome of "verify now", when just asked.
	Verification *verification
	VerifyErr    *Problem
}

type counts struct{ Requests, Denied, Failed int }

type nodeStatus struct {
	Node       string
	Seq        uint64
	Time       time.Time
	KeyVersion uint32
}

// overviewPages bounds how many audit pages (of audit.MaxListLimit) one
// overview reads per window.
const overviewPages = 3

// overview answers the page at once, without its figures (the script
// loads them from overviewPanel); ?full=1, for a browser without script,
// answers it with them.
func (con *Console) overview(w http.ResponseWriter, r *http.Request, s *session) {
	if r.URL.Query().Get("full") != "" {
		con.overviewWith(w, r, s, nil, nil)
		return
	}
	con.render(w, r, s, http.StatusOK, "overview", page{Title: "Overview", Nav: "overview", Data: overviewData{Shell: true}})
}

// overviewPanel answers the overview's figures alone, as an HTML fragment
// the page's script puts in place.
func (con *Console) overviewPanel(w http.ResponseWriter, r *http.Request, s *session) {
	con.overviewWith(w, r, s, nil, nil, true)
}

// verification is POST /v1/audit/verify's answer.
type verification struct {
	OK          bool      `json:"ok"`
	Nodes       int       `json:"nodes"`
	Events      int       `json:"events"`
	Checkpoints int       `json:"checkpoints"`
	Findings    []string  `json:"findings"`
	File        bool      `json:"file_compared"`
	Witness     bool      `json:"witness_compared"`
	VerifiedAt  time.Time `json:"verified_at"`
}

// verifyAudit verifies the audit log now, through the API (admin on audit).
func (con *Console) verifyAudit(w http.ResponseWriter, r *http.Request, s *session) {
	res := con.callJSON(r, s, http.MethodPost, "/v1/audit/verify", nil)
	if p := res.problem(); p != nil {
		con.overviewWith(w, r, s, nil, p)
		return
	}
	var v verification
	if err := res.decode(&v); err != nil {
		con.overviewWith(w, r, s, nil, &Problem{Status: 502, Detail: "the answer could not be read"})
		return
	}
	con.overviewWith(w, r, s, &v, nil)
}

func (con *Console) overviewWith(w http.ResponseWriter, r *http.Request, s *session, v *verification, vp *Problem, fragment ...bool) {
	now := con.c.Now()
	d := overviewData{Verification: v, VerifyErr: vp}
	var day []audit.Event
	f := auditFilter{Since: now.Add(-24 * time.Hour)}
	after := ""
	for i := 0; i < overviewPages; i++ {
		pg, p := con.fetchAudit(r, s, f, after, audit.MaxListLimit)
		if p != nil {
			d.AuditErr = p
			break
		}
		day = append(day, pg.Events...)
		if pg.Next == "" {
			break
		}
		if i == overviewPages-1 {
			d.Partial = true
		}
		after = pg.Next
	}
	d.Scanned = len(day)
	if d.AuditErr != nil && d.AuditErr.Status == http.StatusUnauthorized {
		http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
		return
	}
	if d.AuditErr == nil {
		hourBuckets := make([][2]int, 12) // 5-minute buckets
		dayBuckets := make([][2]int, 24)  // hours
		nodes := map[string]*nodeStatus{}
		var order []string
		for _, e := range day {
			denied := e.Decision == audit.DecisionDeny
			age := now.Sub(e.Time)
			add := func(c *counts) {
				c.Requests++
				if denied {
					c.Denied++
				}
				if e.Status >= 500 {
					c.Failed++
				}
			}
			add(&d.Day)
			if i := 23 - int(age/time.Hour); i >= 0 && i < 24 {
				dayBuckets[i][0]++
				if denied {
					dayBuckets[i][1]++
				}
			}
			if age <= time.Hour {
				add(&d.Hour)
				if i := 11 - int(age/(5*time.Minute)); i >= 0 && i < 12 {
					hourBuckets[i][0]++
					if denied {
						hourBuckets[i][1]++
					}
				}
			}
			ns, ok := nodes[e.Node]
			if !ok {
				ns = &nodeStatus{Node: e.Node}
				nodes[e.Node] = ns
				order = append(order, e.Node)
			}
			if e.Seq > ns.Seq {
				ns.Seq, ns.Time, ns.KeyVersion = e.Seq, e.Time, e.KeyVersion
			}
		}
		for _, n := range order {
			d.Nodes = append(d.Nodes, *nodes[n])
		}
		d.HourChart = makeChart("Requests per 5 minutes, last hour", hourBuckets, func(i int) string {
			return fmt.Sprintf("%d–%d min ago", (12-i)*5, (11-i)*5)
		})
		d.DayChart = makeChart("Requests per hour, last 24 hours", dayBuckets, func(i int) string {
			return fmt.Sprintf("%d–%d h ago", 24-i, 23-i)
		})
	}
	q := url.Values{}
	q.Set("since", now.Add(-24*time.Hour).UTC().Format(time.RFC3339Nano))
	q.Set("limit", "1000")
	res := con.callJSON(r, s, http.MethodGet, "/v1/security/events?"+q.Encode(), nil)
	if p := res.problem(); p != nil {
		d.SecurityErr = p
	} else {
		var out struct {
			Events []coffer.SecurityEvent `json:"events"`
		}
		if err := res.decode(&out); err == nil {
			d.SecCount = len(out.Events)
			// Newest first, five of them.
			for i := len(out.Events) - 1; i >= 0 && len(d.Security) < 5; i-- {
				d.Security = append(d.Security, out.Events[i])
			}
		}
	}
	if len(fragment) > 0 && fragment[0] {
		con.renderPart(w, r, s, "overview", "panel", page{Title: "Overview", Nav: "overview", Data: d})
		return
	}
	con.render(w, r, s, http.StatusOK, "overview", page{Title: "Overview", Nav: "overview", Data: d})
}

// makeChart lays out a bar chart of (total, denied) buckets: a grey bar for
// the requests and a red one over it for the denials.
func makeChart(title string, buckets [][2]int, label func(int) string) chart {
	const w, h, gap = 360, 100, 2
	c := chart{Title: title, Width: w, Height: h}
	for _, b := range buckets {
		if b[0] > c.Max {
			c.Max = b[0]
		}
	}
	bw := w/len(buckets) - gap
	for i, b := range buckets {
		x := i * (bw + gap)
		scale := func(n int) int {
			if c.Max == 0 {
				return 0
			}
			v := n * (h - 4) / c.Max
			if n > 0 && v == 0 {
				v = 1
			}
			return v
		}
		th := scale(b[0])
		c.Bars = append(c.Bars, bar{X: x, Y: h - th, W: bw, H: th,
			Label: fmt.Sprintf("%s: %d requests, %d denied", label(i), b[0], b[1])})
		if b[1] > 0 {
			dh := scale(b[1])
			c.Bars = append(c.Bars, bar{X: x, Y: h - dh, W: bw, H: dh, Deny: true,
				Label: fmt.Sprintf("%s: %d denied", label(i), b[1])})
		}
	}
	return c
}

// ---- audit explorer ----

type auditData struct {
	F       auditFilter
	Events  []audit.Event
	Scanned int
	Next    string
	Query   string
	Actions []string
}

// explorerPages bounds the API pages read to fill one explorer page when
// the console's own filters leave most events out.
const explorerPages = 5

func (con *Console) auditPage(w http.ResponseWriter, r *http.Request, s *session) {
	f, bad := con.parseAuditFilter(r.URL.Query())
	d := auditData{F: f, Query: f.query().Encode(), Actions: []string{"read", "create", "update", "delete", "search",
		"tokenize", "detokenize", "encrypt", "decrypt", "admin", "login", "request"}}
	pg := page{Title: "Audit log", Nav: "audit", Data: &d}
	if bad != "" {
		pg.Error = &Problem{Status: 422, Detail: bad}
		con.render(w, r, s, http.StatusUnprocessableEntity, "audit", pg)
		return
	}
	after := f.After
	for i := 0; i < explorerPages && len(d.Events) < 100; i++ {
		ap, p := con.fetchAudit(r, s, f, after, 200)
		if p != nil {
			pg.Error = p
			if p.Status == http.StatusUnauthorized {
				http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
				return
			}
			break
		}
		d.Scanned += len(ap.Events)
		for _, e := range ap.Events {
			if f.match(e) {
				d.Events = append(d.Events, e)
			}
		}
		d.Next = ap.Next
		if ap.Next == "" || (!f.Until.IsZero() && len(ap.Events) > 0 && ap.Events[len(ap.Events)-1].Time.After(f.Until)) {
			d.Next = ""
			break
		}
		after = ap.Next
	}
	status := http.StatusOK
	if pg.Error != nil {
		status = pg.Error.Status
	}
	con.render(w, r, s, status, "audit", pg)
}

// exportMax bounds one export (events scanned).
const exportMax = 100000

// auditExport streams the filtered events as JSON lines, each as the API
// returned it (hash and prev_hash included, so the export can be checked
// against the chain).
func (con *Console) auditExport(w http.ResponseWriter, r *http.Request, s *session) {
	f, bad := con.parseAuditFilter(r.URL.Query())
	if bad != "" {
		con.render(w, r, s, http.StatusUnprocessableEntity, "error", page{Title: "Export", Error: &Problem{Status: 422, Detail: bad}})
		return
	}
	first, p := con.fetchAudit(r, s, f, "", audit.MaxListLimit)
	if p != nil {
		con.render(w, r, s, p.Status, "error", page{Title: "Export", Error: p})
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/x-ndjson")
	h.Set("Content-Disposition", `attachment; filename="coffer-audit-`+con.c.Now().UTC().Format("20060102T150405Z")+`.jsonl"`)
	enc := json.NewEncoder(w)
	pg, scanned := first, 0
	for {
		for _, e := range pg.Events {
			if f.match(e) {
				if err := enc.Encode(e); err != nil {
					return
				}
			}
		}
		scanned += len(pg.Events)
		if pg.Next == "" || scanned >= exportMax || (!f.Until.IsZero() && len(pg.Events) > 0 && pg.Events[len(pg.Events)-1].Time.After(f.Until)) {
			return
		}
		if pg, p = con.fetchAudit(r, s, f, pg.Next, audit.MaxListLimit); p != nil {
			// The answer has begun: say so in the stream, as its last line.
			_ = enc.Encode(map[string]any{"export_error": p.Detail, "request_id": p.RequestID})
			return
		}
	}
}

// ---- security events ----

type securityData struct {
	Kind          string
	Range         string
	Events        []coffer.SecurityEvent
	Suspensions   []suspension
	SuspensionErr *Problem
}

type suspension struct {
	Principal string    `json:"principal"`
	Until     time.Time `json:"until"`
	Reason    string    `json:"reason"`
}

func (con *Console) securityPage(w http.ResponseWriter, r *http.Request, s *session) {
	d := securityData{Kind: strings.TrimSpace(r.URL.Query().Get("kind")), Range: r.URL.Query().Get("range")}
	since := map[string]time.Duration{"1h": time.Hour, "24h": 24 * time.Hour, "7d": 7 * 24 * time.Hour, "30d": 30 * 24 * time.Hour}
	dur, ok := since[d.Range]
	if !ok {
		d.Range, dur = "7d", 7*24*time.Hour
	}
	q := url.Values{}
	q.Set("since", con.c.Now().Add(-dur).UTC().Format(time.RFC3339Nano))
	q.Set("limit", "1000")
	if d.Kind != "" {
		q.Set("kind", d.Kind)
	}
	pg := page{Title: "Security events", Nav: "security", Data: &d}
	res := con.callJSON(r, s, http.MethodGet, "/v1/security/events?"+q.Encode(), nil)
	if p := res.problem(); p != nil {
		pg.Error = p
		con.render(w, r, s, p.Status, "security", pg)
		return
	}
	var out struct {
		Events []coffer.SecurityEvent `json:"events"`
	}
	if err := res.decode(&out); err != nil {
		pg.Error = &Problem{Status: 502, Detail: "the answer could not be read"}
	}
	for i := len(out.Events) - 1; i >= 0; i-- {
		d.Events = append(d.Events, out.Events[i])
	}
	res = con.callJSON(r, s, http.MethodGet, "/v1/security/suspensions", nil)
	if p := res.problem(); p != nil {
		d.SuspensionErr = p
	} else {
		var sus struct {
			Suspensions []suspension `json:"suspensions"`
		}
		if err := res.decode(&sus); err == nil {
			d.Suspensions = sus.Suspensions
		}
	}
	con.render(w, r, s, http.StatusOK, "security", pg)
}

// suspendPrincipal suspends a principal by hand through the API.
func (con *Console) suspendPrincipal(w http.ResponseWriter, r *http.Request, s *session) {
	id := strings.TrimSpace(r.PostFormValue("principal"))
	dur := r.PostFormValue("duration")
	if dur == "" {
		dur = "1h"
	}
	res := con.callJSON(r, s, http.MethodPut, apiPath("security", "suspensions", id), map[string]string{"duration": dur})
	if p := res.problem(); p != nil {
		con.render(w, r, s, p.Status, "error", page{Title: "Suspend a principal", Nav: "security", Error: p})
		return
	}
	var out struct {
		Until time.Time `json:"until"`
	}
	_ = res.decode(&out)
	con.sessions.setFlash(s, id+" is suspended until "+out.Until.UTC().Format("2006-01-02 15:04:05Z")+": every request of its is refused.")
	http.Redirect(w, r, Prefix+"security", http.StatusSeeOther)
}

func (con *Console) liftSuspension(w http.ResponseWriter, r *http.Request, s *session) {
	id := strings.TrimSpace(r.PostFormValue("principal"))
	res := con.callJSON(r, s, http.MethodDelete, apiPath("security", "suspensions", id), nil)
	if p := res.problem(); p != nil {
		con.render(w, r, s, p.Status, "error", page{Title: "Lift suspension", Nav: "security", Error: p})
		return
	}
	con.sessions.setFlash(s, "Any suspension of "+id+" is lifted.")
	http.Redirect(w, r, Prefix+"security", http.StatusSeeOther)
}
