package console

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// handler is a console page handler with the caller's session.
type handler func(w http.ResponseWriter, r *http.Request, s *session)

// maxForm bounds a console form (a policy document is the largest).
const maxForm = 1 << 20

// authed wraps h: a session signed in is required (otherwise to the
// sign-in page, coming back here afterwards), and a POST must carry the
// session's CSRF token.
func (con *Console) authed(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := con.lookup(r)
		if !s.signedIn() {
			if r.Method != http.MethodGet {
				con.forbidden(w, r, nil, "Your session has ended. Sign in again.")
				return
			}
			next := r.URL.Path
			if r.URL.RawQuery != "" && !strings.HasSuffix(r.URL.Path, "/export") {
				next += "?" + r.URL.RawQuery
			}
			http.Redirect(w, r, Prefix+"login?next="+url.QueryEscape(next), http.StatusSeeOther)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if err := r.ParseForm(); err != nil {
				con.forbidden(w, r, s, "The form could not be read.")
				return
			}
			if !checkCSRF(r, s) {
				con.forbidden(w, r, s, "This form is stale or did not come from this console (CSRF check failed). Reload the page and try again.")
				return
			}
		}
		h(w, r, s)
	}
}

// forbidden answers 403 with a page that says why.
func (con *Console) forbidden(w http.ResponseWriter, r *http.Request, s *session, msg string) {
	con.render(w, r, s, http.StatusForbidden, "error", page{Title: "Refused", Error: &Problem{Status: 403, Detail: msg}})
}

// localNext returns next when it is a path of this console, else the overview.
func localNext(next string) string {
	if strings.HasPrefix(next, Prefix) && !strings.Contains(next, "//") && !strings.ContainsAny(next, "\\\r\n") {
		if u, err := url.Parse(next); err == nil && u.Host == "" && u.Scheme == "" {
			return next
		}
	}
	return Prefix + "overview"
}

type loginData struct {
	Next     string
	Username string
	Reauth   bool
}

func (con *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	s, err := con.anonymous(w, r)
	if err != nil {
		http.Error(w, "the console is busy; try again later", http.StatusServiceUnavailable)
		return
	}
	if s.signedIn() {
		// #nosec G710 -- localNext keeps only a path of this console.
		http.Redirect(w, r, localNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	con.render(w, r, s, http.StatusOK, "login", page{Title: "Sign in", Data: loginData{Next: localNext(r.URL.Query().Get("next"))}})
}

// tokenAnswer is the API's login answer: a token, or a second step.
type tokenAnswer struct {
	AccessToken string `json:"access_token"`
	MFARequired bool   `json:"mfa_required"`
	MFAToken    string `json:"mfa_token"`
}

func (con *Console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		con.forbidden(w, r, nil, "The form could not be read.")
		return
	}
	s := con.lookup(r)
	if s == nil || !checkCSRF(r, s) {
		con.c.Logger.Info("console: sign-in form refused", "session", s != nil, "same_origin", sameOrigin(r),
			"origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"))
		con.forbidden(w, r, nil, "This sign-in form is stale or did not come from this console. Reload the page and try again.")
		return
	}
	reauth := s.signedIn()
	next := localNext(r.PostFormValue("next"))
	user := r.PostFormValue("username")
	if reauth {
		user = s.username
	}
	body, _ := json.Marshal(map[string]string{"username": user, "password": r.PostFormValue("password")})
	res := con.call(r, "", http.MethodPost, "/v1/auth/login", "application/json", body)
	data := loginData{Next: next, Username: user, Reauth: reauth}
	if p := res.problem(); p != nil {
		con.render(w, r, s, p.Status, "login", page{Title: "Sign in", Error: signInProblem(p, res), Data: data})
		return
	}
	var ta tokenAnswer
	if err := res.decode(&ta); err != nil {
		con.render(w, r, s, http.StatusBadGateway, "login", page{Title: "Sign in", Error: &Problem{Status: 502, Detail: "unexpected answer"}, Data: data})
		return
	}
	if ta.MFARequired {
		// A fresh id for the second step; a re-authentication that stops
		// here leaves the user signed out, the safe side.
		ns := &session{mfaToken: ta.MFAToken, username: user}
		if err := con.start(w, s, ns); err != nil {
			http.Error(w, "the console is busy; try again later", http.StatusServiceUnavailable)
			return
		}
		http.Redirect(w, r, Prefix+"mfa?next="+url.QueryEscape(next), http.StatusSeeOther)
		return
	}
	con.signIn(w, r, s, user, ta.AccessToken, next)
}

// signInProblem words a sign-in failure for the page (never which of the
// username or password was wrong).
func signInProblem(p *Problem, res apiResult) *Problem {
	switch p.Status {
	case http.StatusTooManyRequests:
		msg := "Too many attempts: sign-in is locked for now."
		if ra := res.Header.Get("Retry-After"); ra != "" {
			if n, err := strconv.Atoi(ra); err == nil {
				msg += " Try again in " + strconv.Itoa(n) + " s."
			}
		}
		return &Problem{Status: p.Status, Detail: msg, RequestID: p.RequestID}
	case http.StatusUnauthorized, http.StatusUnprocessableEntity, http.StatusBadRequest:
		return &Problem{Status: p.Status, Detail: "Invalid username, password or code.", RequestID: p.RequestID}
	}
	return p
}

func (con *Console) mfaPage(w http.ResponseWriter, r *http.Request) {
	s := con.lookup(r)
	if s == nil || s.mfaToken == "" {
		http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
		return
	}
	con.render(w, r, s, http.StatusOK, "mfa", page{Title: "Second factor", Data: loginData{Next: localNext(r.URL.Query().Get("next")), Username: s.username}})
}

func (con *Console) mfaSubmit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		con.forbidden(w, r, nil, "The form could not be read.")
		return
	}
	s := con.lookup(r)
	if s == nil || s.mfaToken == "" || !checkCSRF(r, s) {
		con.forbidden(w, r, nil, "This form is stale or did not come from this console. Sign in again.")
		return
	}
	next := localNext(r.PostFormValue("next"))
	code := strings.TrimSpace(r.PostFormValue("code"))
	body, _ := json.Marshal(map[string]string{"mfa_token": s.mfaToken, "code": code})
	res := con.call(r, "", http.MethodPost, "/v1/auth/mfa", "application/json", body)
	if p := res.problem(); p != nil {
		con.render(w, r, s, p.Status, "mfa", page{Title: "Second factor", Error: signInProblem(p, res), Data: loginData{Next: next, Username: s.username}})
		return
	}
	var ta tokenAnswer
	if err := res.decode(&ta); err != nil || ta.AccessToken == "" {
		con.render(w, r, s, http.StatusBadGateway, "mfa", page{Title: "Second factor", Error: &Problem{Status: 502, Detail: "unexpected answer"}})
		return
	}
	con.signIn(w, r, s, s.username, ta.AccessToken, next)
}

// signIn starts a signed-in session for token under a fresh id.
func (con *Console) signIn(w http.ResponseWriter, r *http.Request, old *session, username, token, next string) {
	p, err := con.c.Authenticate(r.Context(), token)
	if err != nil {
		con.forbidden(w, r, nil, "The sign-in could not be completed.")
		return
	}
	ns := &session{token: token, principal: p.ID, kind: p.Kind, roles: p.Roles, attrs: p.Attributes, mfa: p.MFA, username: username,
		authAt: p.AuthTime, expires: p.TokenExpiry}
	if ns.authAt.IsZero() {
		ns.authAt = con.c.Now()
	}
	if err := con.start(w, old, ns); err != nil {
		http.Error(w, "the console is busy; try again later", http.StatusServiceUnavailable)
		return
	}
	// #nosec G710 -- every caller passes next through localNext: a path of this console.
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (con *Console) logout(w http.ResponseWriter, r *http.Request, s *session) {
	// Revoke the token: it is of no use to anyone once the user has left.
	form := "token=" + url.QueryEscape(s.token)
	res := con.call(r, "", http.MethodPost, "/v1/oauth/revoke", "application/x-www-form-urlencoded", []byte(form))
	if res.Status >= 400 {
		con.c.Logger.Warn("console: token revocation on sign-out failed", "status", res.Status)
	}
	con.sessions.drop(s)
	clearCookie(w)
	ns := &session{flash: "Signed out."}
	if err := con.start(w, nil, ns); err != nil {
		clearCookie(w)
	}
	http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
}

// fresh reports whether s signed in recently enough for a destructive
// action; if not, it sends the browser to sign in again and returns false.
func (con *Console) fresh(w http.ResponseWriter, r *http.Request, s *session, back string) bool {
	if con.c.Now().Sub(s.authAt) <= con.c.ReauthMaxAge {
		return true
	}
	con.sessions.setFlash(s, "This action needs a recent sign-in: confirm it's you, then submit it again.")
	http.Redirect(w, r, Prefix+"reauth?next="+url.QueryEscape(localNext(back)), http.StatusSeeOther)
	return false
}

func (con *Console) reauthPage(w http.ResponseWriter, r *http.Request, s *session) {
	con.render(w, r, s, http.StatusOK, "login", page{Title: "Confirm it's you",
		Data: loginData{Next: localNext(r.URL.Query().Get("next")), Username: s.username, Reauth: true}})
}
