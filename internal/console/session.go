package console

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// CookieName is the session cookie: the __Host- prefix makes the browser
// refuse it unless Secure, Path=/ and without Domain, so no other host or
// path can plant or read it.
const CookieName = "__Host-coffer_console"

// CSRFField is the form field (and header, X-CSRF-Token) that carries a
// session's CSRF token on every state change.
const CSRFField = "csrf"

// session is one browser's state, server-side. Once stored, its fields
// change only under the store's mutex; handlers work on copies.
type session struct {
	key  string // hex SHA-256 of the cookie value
	csrf string

	// Between the password and the second factor.
	mfaToken string
	username string

	// Signed in.
	token     string
	principal string
	kind      string
	roles     []string
	attrs     map[string]string
	mfa       bool
	authAt    time.Time // when the token was issued: the sign-in's age
	expires   time.Time // the absolute end: the token's expiry

	created  time.Time
	lastSeen time.Time
	flash    string
}

func (s *session) signedIn() bool { return s != nil && s.token != "" }

type sessionStore struct {
	mu  sync.Mutex
	m   map[string]*session
	max int
}

func newSessionStore(max int) *sessionStore {
	return &sessionStore{m: map[string]*session{}, max: max}
}

func keyOf(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

func randomString(r io.Reader) (string, error) {
	var b [32]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// end returns when s ends: its idle timeout, its absolute end, or the
// pending bound for a session not signed in.
func (con *Console) end(s *session) time.Time {
	if !s.signedIn() {
		return s.created.Add(pendingTimeout)
	}
	idle := s.lastSeen.Add(con.c.IdleTimeout)
	if s.expires.Before(idle) {
		return s.expires
	}
	return idle
}

// lookup returns the live session named by r's cookie, touching it, or nil.
func (con *Console) lookup(r *http.Request) *session {
	ck, err := r.Cookie(CookieName)
	if err != nil || ck.Value == "" || len(ck.Value) > 128 {
		return nil
	}
	st := con.sessions
	now := con.c.Now()
	st.mu.Lock()
	defer st.mu.Unlock()
	s, ok := st.m[keyOf(ck.Value)]
	if !ok {
		return nil
	}
	if !now.Before(con.end(s)) {
		delete(st.m, s.key)
		return nil
	}
	if s.signedIn() {
		s.lastSeen = now
	}
	cp := *s // handlers read a copy; changes go through the store
	return &cp
}

// start stores a new session under a fresh id, ending old (the id a
// session had before signing in never names it afterwards), and sets the
// cookie.
func (con *Console) start(w http.ResponseWriter, old *session, s *session) error {
	id, err := randomString(con.c.Rand)
	if err != nil {
		return err
	}
	csrf, err := randomString(con.c.Rand)
	if err != nil {
		return err
	}
	now := con.c.Now()
	s.key, s.csrf, s.created, s.lastSeen = keyOf(id), csrf, now, now
	st := con.sessions
	st.mu.Lock()
	if old != nil {
		delete(st.m, old.key)
	}
	if len(st.m) >= st.max {
		for k, v := range st.m {
			if !now.Before(con.end(v)) {
				delete(st.m, k)
			}
		}
		if len(st.m) >= st.max {
			// Drop sessions not signed in first: they cost nobody a sign-in.
			for k, v := range st.m {
				if !v.signedIn() {
					delete(st.m, k)
				}
			}
		}
	}
	full := len(st.m) >= st.max
	if !full {
		st.m[s.key] = s
	}
	st.mu.Unlock()
	if full {
		return errTooManySessions
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: id, Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode})
	return nil
}

type consoleError string

func (e consoleError) Error() string { return string(e) }

const errTooManySessions = consoleError("console: too many sessions")

// drop ends s.
func (st *sessionStore) drop(s *session) {
	st.mu.Lock()
	delete(st.m, s.key)
	st.mu.Unlock()
}

func clearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
}

func (st *sessionStore) setFlash(s *session, msg string) {
	st.mu.Lock()
	if cur, ok := st.m[s.key]; ok {
		cur.flash = msg
	}
	st.mu.Unlock()
}

func (st *sessionStore) takeFlash(s *session) string {
	st.mu.Lock()
	defer st.mu.Unlock()
	cur, ok := st.m[s.key]
	if !ok {
		return ""
	}
	f := cur.flash
	cur.flash = ""
	return f
}

// anonymous returns r's session or starts one that only holds a CSRF
// token, for the sign-in form.
func (con *Console) anonymous(w http.ResponseWriter, r *http.Request) (*session, error) {
	if s := con.lookup(r); s != nil {
		return s, nil
	}
	s := &session{}
	if err := con.start(w, nil, s); err != nil {
		return nil, err
	}
	return s, nil
}

// sameOrigin refuses a cross-site request: a browser sends Origin (or
// Sec-Fetch-Site) on every POST, and it must be this very origin.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		// No Origin (not a browser), or "null": under Referrer-Policy
		// no-referrer a browser sends that even from this very page.
		// Sec-Fetch-Site above and the CSRF token decide.
		return true
	}
	u, err := url.Parse(o)
	if err != nil {
		return false
	}
	return u.Scheme == "https" && u.Host == r.Host
}

// checkCSRF reports whether r carries s's CSRF token (form field or
// X-CSRF-Token header) and comes from this origin. r's form must be parsed.
func checkCSRF(r *http.Request, s *session) bool {
	if s == nil || s.csrf == "" || !sameOrigin(r) {
		return false
	}
	got := r.Header.Get("X-CSRF-Token")
	if got == "" {
		got = r.PostFormValue(CSRFField)
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) == 1
}
