package console

import (
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/boombuler/barcode/qr"
)

type clientRow struct {
	ClientID   string            `json:"client_id"`
	Name       string            `json:"name"`
	Roles      []string          `json:"roles"`
	Attributes map[string]string `json:"attributes"`
	CreatedAt  time.Time         `json:"created_at"`
}

// secretShown is a client secret the API just made: shown on this one
// answer (no-store), never kept by the console.
type secretShown struct {
	ClientID string `json:"client_id"`
	Name     string `json:"name"`
	Secret   string `json:"client_secret"`
}

// userRow is a user as GET /v1/users lists it (never a secret).
type userRow struct {
	ID        string    `json:"id"`
	Username  string    `json:"username"`
	Roles     []string  `json:"roles"`
	MFA       bool      `json:"mfa_enrolled"`
	Disabled  bool      `json:"disabled"`
	CreatedAt time.Time `json:"created_at"`
}

// jobRow is a background job's progress as GET /v1/admin/jobs reports it.
type jobRow struct {
	Name  string `json:"name"`
	State string `json:"state"`
	Done  int64  `json:"done"`
	Total int64  `json:"total"`
	Node  string `json:"node"`
}

// Percent is how far the job has come, 0 to 100.
func (j jobRow) Percent() int64 {
	if j.Total <= 0 {
		return 100
	}
	return min(j.Done*100/j.Total, 100)
}

type adminData struct {
	Clients    []clientRow
	ClientsErr *Problem
	Users      []userRow
	UsersErr   *Problem
	Jobs       []jobRow
	JobsErr    *Problem
	Secret     *secretShown
	User       *struct {
		ID       string `json:"id"`
		Username string `json:"username"`
	}
	KeyResult string
}

func (con *Console) loadClients(r *http.Request, s *session, d *adminData) {
	res := con.callJSON(r, s, http.MethodGet, "/v1/clients", nil)
	if p := res.problem(); p != nil {
		d.ClientsErr = p
		return
	}
	var out struct {
		Clients []clientRow `json:"clients"`
	}
	if err := res.decode(&out); err != nil {
		d.ClientsErr = &Problem{Status: 502, Detail: "the answer could not be read"}
		return
	}
	d.Clients = out.Clients
}

// loadUsers lists the users through the API (read on users).
func (con *Console) loadUsers(r *http.Request, s *session, d *adminData) {
	res := con.callJSON(r, s, http.MethodGet, "/v1/users", nil)
	if p := res.problem(); p != nil {
		d.UsersErr = p
		return
	}
	var out struct {
		Users []userRow `json:"users"`
	}
	if err := res.decode(&out); err != nil {
		d.UsersErr = &Problem{Status: 502, Detail: "the answer could not be read"}
		return
	}
	d.Users = out.Users
}

// loadJobs reads the background jobs' progress through the API (read on
// system/jobs).
func (con *Console) loadJobs(r *http.Request, s *session, d *adminData) {
	res := con.callJSON(r, s, http.MethodGet, "/v1/admin/jobs", nil)
	if p := res.problem(); p != nil {
		d.JobsErr = p
		return
	}
	var out struct {
		Jobs []jobRow `json:"jobs"`
	}
	if err := res.decode(&out); err != nil {
		d.JobsErr = &Problem{Status: 502, Detail: "the answer could not be read"}
		return
	}
	d.Jobs = out.Jobs
}

// jobsJSON answers the admin page's script, which polls the rewrap's
// progress: GET /v1/admin/jobs's answer, as the signed-in user.
func (con *Console) jobsJSON(w http.ResponseWriter, r *http.Request, s *session) {
	d := &adminData{}
	con.loadJobs(r, s, d)
	w.Header().Set("Content-Type", "application/json")
	if d.JobsErr != nil {
		w.WriteHeader(d.JobsErr.Status)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": d.JobsErr.Detail})
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"jobs": d.Jobs})
}

func (con *Console) adminPage(w http.ResponseWriter, r *http.Request, s *session) {
	d := &adminData{}
	con.loadClients(r, s, d)
	con.loadUsers(r, s, d)
	con.loadJobs(r, s, d)
	con.render(w, r, s, http.StatusOK, "admin", page{Title: "Clients, users and keys", Nav: "admin", Data: d})
}

// adminResult renders the admin page after an action, with its outcome.
func (con *Console) adminResult(w http.ResponseWriter, r *http.Request, s *session, d *adminData, p *Problem) {
	con.loadClients(r, s, d)
	con.loadUsers(r, s, d)
	con.loadJobs(r, s, d)
	status := http.StatusOK
	if p != nil {
		status = p.Status
	}
	con.render(w, r, s, status, "admin", page{Title: "Clients, users and keys", Nav: "admin", Data: d, Error: p})
}

func parseAttrs(s string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && strings.TrimSpace(k) != "" {
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out
}

func (con *Console) createClient(w http.ResponseWriter, r *http.Request, s *session) {
	body := map[string]any{"name": strings.TrimSpace(r.PostFormValue("name")), "roles": splitList(r.PostFormValue("roles")),
		"attributes": parseAttrs(r.PostFormValue("attributes"))}
	res := con.callJSON(r, s, http.MethodPost, "/v1/clients", body)
	d := &adminData{}
	if p := res.problem(); p != nil {
		con.adminResult(w, r, s, d, p)
		return
	}
	var sec secretShown
	if err := res.decode(&sec); err == nil {
		d.Secret = &sec
	}
	con.adminResult(w, r, s, d, nil)
}

func (con *Console) rotateClient(w http.ResponseWriter, r *http.Request, s *session) {
	id := strings.TrimSpace(r.PostFormValue("client_id"))
	res := con.callJSON(r, s, http.MethodPost, apiPath("clients", id, "rotate"), nil)
	d := &adminData{}
	if p := res.problem(); p != nil {
		con.adminResult(w, r, s, d, p)
		return
	}
	var sec secretShown
	if err := res.decode(&sec); err == nil {
		d.Secret = &sec
	}
	con.adminResult(w, r, s, d, nil)
}

func (con *Console) createUser(w http.ResponseWriter, r *http.Request, s *session) {
	body := map[string]any{"username": strings.TrimSpace(r.PostFormValue("username")), "password": r.PostFormValue("password"),
		"roles": splitList(r.PostFormValue("roles")), "attributes": parseAttrs(r.PostFormValue("attributes"))}
	res := con.callJSON(r, s, http.MethodPost, "/v1/users", body)
	d := &adminData{}
	if p := res.problem(); p != nil {
		con.adminResult(w, r, s, d, p)
		return
	}
	d.User = &struct {
		ID       string `json:"id"`
		Username string `json:"username"`
	}{}
	_ = res.decode(d.User)
	con.adminResult(w, r, s, d, nil)
}

// keyAction rotates a key, or retires, unretires or destroys one of its
// versions (those need a recent sign-in). A retire refused while values
// are still sealed under the version says how many: the rewrap's progress.
func (con *Console) keyAction(w http.ResponseWriter, r *http.Request, s *session) {
	op := r.PostFormValue("op")
	keyID := strings.TrimSpace(r.PostFormValue("key_id"))
	body := map[string]any{"key_id": keyID}
	d := &adminData{}
	switch op {
	case "rotate":
	case "retire", "unretire", "destroy":
		v, err := strconv.ParseUint(strings.TrimSpace(r.PostFormValue("version")), 10, 32)
		if err != nil || v == 0 {
			con.adminResult(w, r, s, d, &Problem{Status: 422, Detail: "The version must be a number, 1 or more."})
			return
		}
		if op == "destroy" && r.PostFormValue("confirm") != keyID {
			con.adminResult(w, r, s, d, &Problem{Status: 422, Detail: "Type the key id exactly in the confirmation box to destroy a version."})
			return
		}
		if !con.fresh(w, r, s, Prefix+"admin") {
			return
		}
		body["version"] = v
	default:
		con.adminResult(w, r, s, d, &Problem{Status: 422, Detail: "Unknown key operation."})
		return
	}
	res := con.callJSON(r, s, http.MethodPost, "/v1/admin/keys/"+op, body)
	if p := res.problem(); p != nil {
		con.adminResult(w, r, s, d, p)
		return
	}
	var out map[string]any
	_ = res.decode(&out)
	switch op {
	case "rotate":
		d.KeyResult = fmt.Sprintf("%s rotated to version %v; rewrap scheduled: %v. Old versions still decrypt until retired.", keyID, out["version"], out["rewrap_scheduled"])
	default:
		d.KeyResult = fmt.Sprintf("%s version %v is now %v.", keyID, out["version"], out["state"])
	}
	con.adminResult(w, r, s, d, nil)
}

// ---- the signed-in user's own account: TOTP enrolment ----

type accountData struct {
	Enrolment *enrolmentView
	Confirmed bool
}

type enrolmentView struct {
	Secret        string
	URL           string
	RecoveryCodes []string
	QR            template.HTML
}

func (con *Console) accountPage(w http.ResponseWriter, r *http.Request, s *session) {
	con.render(w, r, s, http.StatusOK, "account", page{Title: "Your account", Nav: "account", Data: &accountData{}})
}

func (con *Console) mfaStart(w http.ResponseWriter, r *http.Request, s *session) {
	var body any
	if c := strings.TrimSpace(r.PostFormValue("enrolment_code")); c != "" {
		body = map[string]string{"enrolment_code": c}
	}
	res := con.callJSON(r, s, http.MethodPost, "/v1/auth/mfa/totp", body)
	d := &accountData{}
	pg := page{Title: "Your account", Nav: "account", Data: d}
	if p := res.problem(); p != nil {
		pg.Error = p
		con.render(w, r, s, p.Status, "account", pg)
		return
	}
	var en struct {
		Secret        string   `json:"secret"`
		URL           string   `json:"otpauth_url"`
		RecoveryCodes []string `json:"recovery_codes"`
	}
	if err := res.decode(&en); err != nil {
		pg.Error = &Problem{Status: 502, Detail: "the answer could not be read"}
		con.render(w, r, s, http.StatusBadGateway, "account", pg)
		return
	}
	svg, err := qrSVG(en.URL)
	if err != nil {
		con.c.Logger.Warn("console: QR code failed", "error", err)
	}
	d.Enrolment = &enrolmentView{Secret: en.Secret, URL: en.URL, RecoveryCodes: en.RecoveryCodes, QR: svg}
	con.render(w, r, s, http.StatusOK, "account", pg)
}

func (con *Console) mfaConfirm(w http.ResponseWriter, r *http.Request, s *session) {
	res := con.callJSON(r, s, http.MethodPost, "/v1/auth/mfa/totp/confirm", map[string]string{"code": strings.TrimSpace(r.PostFormValue("code"))})
	d := &accountData{}
	pg := page{Title: "Your account", Nav: "account", Data: d}
	if p := res.problem(); p != nil {
		pg.Error = p
		con.render(w, r, s, p.Status, "account", pg)
		return
	}
	d.Confirmed = true
	con.render(w, r, s, http.StatusOK, "account", pg)
}

// qrSVG draws text as a QR code (error correction M) in SVG: one path of
// dark modules inside a four-module quiet zone. No script, no image URL:
// the secret never leaves this page.
func qrSVG(text string) (template.HTML, error) {
	code, err := qr.Encode(text, qr.M, qr.Auto)
	if err != nil {
		return "", fmt.Errorf("console: QR encode: %w", err)
	}
	b := code.Bounds()
	n := b.Dx()
	var sb strings.Builder
	// A whole number of pixels per module keeps every module the same size.
	px := (n + 8) * 5
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" class="qr" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="QR code of the TOTP secret" shape-rendering="crispEdges">`, n+8, n+8, px, px)
	fmt.Fprintf(&sb, `<rect width="%d" height="%d" fill="#fff"/><path fill="#000" d="`, n+8, n+8)
	for y := 0; y < n; y++ {
		for x := 0; x < n; x++ {
			if cr, _, _, _ := code.At(b.Min.X+x, b.Min.Y+y).RGBA(); cr == 0 {
				fmt.Fprintf(&sb, "M%d %dh1v1h-1z", x+4, y+4)
			}
		}
	}
	sb.WriteString(`"/></svg>`)
	// #nosec G203 -- built here from numbers only; no text of the caller's is in it.
	return template.HTML(sb.String()), nil
}
