package attack

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pquerna/otp/totp"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/keyadmin"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/transit/transittest"
)

// The class: a write committed without its audit event. A caller that
// hangs up right after sending must not be able to make the server do
// something and leave no trace of it, on any route that changes state.

// stormSize is how many abrupt closes each write route gets (argon2id
// routes get fewer: each costs a password hash).
const (
	stormSize     = 12
	stormSizeSlow = 5
)

// stormReq is one raw request of a storm.
type stormReq struct {
	method, path, token, contentType string
	body                             []byte
}

func jsonReq(method, path, token string, body any) stormReq {
	r := stormReq{method: method, path: path, token: token}
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			panic(err)
		}
		r.body, r.contentType = b, "application/json"
	}
	return r
}

func formReq(path, body string) stormReq {
	return stormReq{method: "POST", path: path, contentType: "application/x-www-form-urlencoded", body: []byte(body)}
}

// storm fires requests at n's handler, each on a raw TLS connection that
// the client closes 0 to 3 ms after sending it, and remembers which
// requests the server handled.
type storm struct {
	t *testing.T
	n *node
	// handled maps each handled request's id to its phase; sent counts
	// the requests sent.
	handled map[string]string
	sent    int
	// values are submitted values (and secrets the server made) that no
	// audit event may carry.
	values []string
}

// run fires reqs at a listener of its own that serves n's handler, and
// returns when every handler it started has returned: the listener's
// http.Server is shut down, and Shutdown waits for the handlers. It
// returns how many requests the server handled.
func (s *storm) run(phase string, reqs []stormReq) int {
	t := s.t
	t.Helper()
	began := time.Now()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		ids []string
	)
	api := s.n.Srv.Handler()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			api.ServeHTTP(w, r)
			if id := w.Header().Get("X-Request-Id"); id != "" {
				mu.Lock()
				ids = append(ids, id)
				mu.Unlock()
			}
		}),
		TLSConfig:         s.n.Srv.TLSConfig(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() { _ = srv.Serve(tls.NewListener(ln, srv.TLSConfig)) }()
	addr := ln.Addr().String()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, r := range reqs {
		wg.Add(1)
		delay := time.Duration(rand.IntN(3001)) * time.Microsecond // #nosec G404 -- test timing, not a secret
		if i%5 == 4 {
			// One in five hangs up later, so that even on a loaded host,
			// where a 3 ms close can beat the handshake every time, each
			// phase has requests the server reads (and its check has
			// something to compare).
			delay = 250 * time.Millisecond
		}
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			s.fire(addr, r, delay)
		}()
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("%s: handlers still running: %v", phase, err)
	}
	for _, id := range ids {
		s.handled[id] = phase
	}
	s.sent += len(reqs)
	if len(ids) == 0 {
		t.Errorf("%s: the server handled none of %d requests", phase, len(reqs))
	}
	t.Logf("%s: %d of %d requests handled (%v)", phase, len(ids), len(reqs), time.Since(began).Round(time.Millisecond))
	return len(ids)
}

// fire sends r on a new TLS connection and closes it after delay, without
// reading the answer.
func (s *storm) fire(addr string, r stormReq, delay time.Duration) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr,
		&tls.Config{RootCAs: s.n.CAPool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
	if err != nil {
		s.t.Errorf("dial: %v", err)
		return
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", r.method, r.path, addr)
	if r.token != "" {
		fmt.Fprintf(&b, "Authorization: Bearer %s\r\n", r.token)
	}
	if r.contentType != "" {
		fmt.Fprintf(&b, "Content-Type: %s\r\n", r.contentType)
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", len(r.body))
	b.Write(r.body)
	if _, err := c.Write(b.Bytes()); err != nil {
		s.t.Errorf("send: %v", err)
	}
	time.Sleep(delay)
	_ = c.Close()
}

// value remembers a submitted value and returns it.
func (s *storm) value(v string) string {
	s.values = append(s.values, v)
	return v
}

// stormStore opens n's store beside its server.
func stormStore(t *testing.T, n *node) *store.DB {
	t.Helper()
	_, dsn := n.config(setup{}).Database()
	db, err := store.Open(context.Background(), dsn, store.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// phaseEvents are the audit events of one phase's handled requests.
type phaseEvents []audit.Event

// ok returns the events of requests that succeeded.
func (p phaseEvents) ok() phaseEvents {
	var out phaseEvents
	for _, e := range p {
		if e.Status >= 200 && e.Status < 300 {
			out = append(out, e)
		}
	}
	return out
}

// count sums the events' counts.
func (p phaseEvents) count() int {
	n := 0
	for _, e := range p {
		n += e.Count
	}
	return n
}

// targets returns the set of the events' targets; an event that names
// none is an error (every one of a storm phase changed something).
func (p phaseEvents) targets(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, e := range p {
		if len(e.Targets) == 0 {
			t.Errorf("event %s (%s %s, status %d) names no target", e.ID, e.Action, e.Resource, e.Status)
		}
		for _, x := range e.Targets {
			if out[x] {
				t.Errorf("two events name %s", x)
			}
			out[x] = true
		}
	}
	return out
}

// sameSet fails unless the state and the events name the same things.
func sameSet(t *testing.T, what string, state []string, events map[string]bool) {
	t.Helper()
	in := map[string]bool{}
	for _, s := range state {
		in[s] = true
		if !events[s] {
			t.Errorf("%s: %s changed, but no audit event of a successful request says so", what, s)
		}
	}
	for e := range events {
		if !in[e] {
			t.Errorf("%s: an audit event says %s changed, but it did not", what, e)
		}
	}
}

// wantCount fails unless state changes and events agree in number.
func wantCount(t *testing.T, what string, state, events int) {
	t.Helper()
	if state != events {
		t.Errorf("%s: %d changed in the store, %d in the audit log of successful requests", what, state, events)
	}
}

// TestDisconnectStorm closes hundreds of connections abruptly, 0 to 3 ms
// after sending a request, across every route that changes state, and
// checks that the audit log and the state match one to one: every request
// the server handled has exactly one audit event, every change in the
// store has the event of a successful request and every such event a
// change; the chain verifies, no audit write failed, and no event holds a
// submitted value.
func TestDisconnectStorm(t *testing.T) {
	forEachBackend(t, setup{}, func(t *testing.T, n *node) {
		s := &storm{t: t, n: n, handled: map[string]string{}}
		db := stormStore(t, n)
		ctx := context.Background()
		admin := n.admin
		var checks []func(t *testing.T, events map[string]phaseEvents)
		check := func(phase string, f func(t *testing.T, ev phaseEvents)) {
			checks = append(checks, func(t *testing.T, events map[string]phaseEvents) {
				t.Run(phase, func(t *testing.T) { f(t, events[phase]) })
			})
		}
		idOf := func(b []byte, field string) string {
			var m map[string]any
			mustJSON(t, b, &m)
			v, _ := m[field].(string)
			if v == "" {
				t.Fatalf("no %s in %s", field, b)
			}
			return v
		}
		create := func(path string, body any) []byte {
			r := n.call(t, "POST", path, admin, body)
			if r.status != 201 && r.status != 200 {
				t.Fatalf("POST %s: %s", path, r)
			}
			return r.body
		}
		names := func(prefix string, k int) []string {
			out := make([]string, k)
			for i := range out {
				out[i] = fmt.Sprintf("%s%02d", prefix, i)
			}
			return out
		}

		// Collections and records.
		fields := []map[string]any{{"name": "note", "type": "string"}, {"name": "email", "type": "email", "searchable": true}}
		for _, c := range []string{"storm", "storm_new", "storm_keys"} {
			create("/v1/collections", map[string]any{"name": c, "fields": fields})
		}
		record := func(collection, subject string) string {
			return idOf(create("/v1/collections/"+collection+"/records", map[string]any{"owner": "o", "subject": subject,
				"data": map[string]any{"note": s.value("planted " + marker + " " + subject), "email": "x@example.com"}}), "id")
		}
		cols := names("storm_c", stormSize)
		var reqs []stormReq
		for _, c := range cols {
			reqs = append(reqs, jsonReq("POST", "/v1/collections", admin, map[string]any{"name": c, "fields": fields}))
		}
		s.run("collections", reqs)
		check("collections", func(t *testing.T, ev phaseEvents) {
			var made []string
			for _, c := range cols {
				if _, err := db.Collection(ctx, c); err == nil {
					made = append(made, coffer.CollectionTarget(c))
				}
			}
			sameSet(t, "collections", made, ev.ok().targets(t))
		})

		reqs = nil
		for i := range stormSize {
			reqs = append(reqs, jsonReq("POST", "/v1/collections/storm_new/records", admin, map[string]any{"owner": "o",
				"data": map[string]any{"note": s.value(fmt.Sprintf("created %s %d", marker, i))}}))
		}
		s.run("records create", reqs)
		check("records create", func(t *testing.T, ev phaseEvents) {
			recs, err := db.RecordsAfter(ctx, "storm_new", "", 1000)
			if err != nil {
				t.Fatal(err)
			}
			var made []string
			for _, r := range recs {
				if r.Collection == "storm_new" {
					made = append(made, coffer.RecordTarget(r.Collection, r.ID))
				}
			}
			sameSet(t, "records created", made, ev.ok().targets(t))
		})

		patched := make([]string, stormSize)
		reqs = nil
		for i := range patched {
			patched[i] = record("storm", "")
			reqs = append(reqs, jsonReq("PATCH", "/v1/collections/storm/records/"+patched[i], admin,
				map[string]any{"data": map[string]any{"note": s.value(fmt.Sprintf("patched %s %d", marker, i))}}))
		}
		s.run("records patch", reqs)
		check("records patch", func(t *testing.T, ev phaseEvents) {
			var changed []string
			for _, id := range patched {
				r, err := db.Record(ctx, "storm", id)
				if err != nil {
					t.Fatal(err)
				}
				if r.UpdatedAt.After(r.CreatedAt) {
					changed = append(changed, coffer.RecordTarget("storm", id))
				}
			}
			sameSet(t, "records patched", changed, ev.ok().targets(t))
		})

		deleted := make([]string, stormSize)
		reqs = nil
		for i := range deleted {
			deleted[i] = record("storm", "")
			reqs = append(reqs, jsonReq("DELETE", "/v1/collections/storm/records/"+deleted[i], admin, nil))
		}
		s.run("records delete", reqs)
		check("records delete", func(t *testing.T, ev phaseEvents) {
			var gone []string
			for _, id := range deleted {
				if _, err := db.Record(ctx, "storm", id); coffer.ErrorCode(err) == coffer.ENOTFOUND {
					gone = append(gone, coffer.RecordTarget("storm", id))
				}
			}
			sameSet(t, "records deleted", gone, ev.ok().targets(t))
		})

		subjects := names("storm-subject-", stormSize)
		subjectRecs := map[string]string{}
		reqs = nil
		for _, sub := range subjects {
			subjectRecs[sub] = record("storm", sub)
			reqs = append(reqs, jsonReq("DELETE", "/v1/subjects/"+sub, admin, nil))
		}
		s.run("subject erasure", reqs)
		check("subject erasure", func(t *testing.T, ev phaseEvents) {
			var gone []string
			for _, sub := range subjects {
				if _, err := db.Record(ctx, "storm", subjectRecs[sub]); coffer.ErrorCode(err) == coffer.ENOTFOUND {
					gone = append(gone, coffer.SubjectTarget(sub))
				}
			}
			sameSet(t, "subjects erased", gone, ev.ok().targets(t))
		})

		// Tokens.
		reqs = nil
		for i := range stormSize {
			reqs = append(reqs, jsonReq("POST", "/v1/tokenize", admin, map[string]any{"items": []map[string]any{
				{"value": s.value(fmt.Sprintf("tokenized %s %d", marker, i)), "type": "string"},
				{"value": s.value(fmt.Sprintf("tokenized %s %d b", marker, i)), "type": "string"}}}))
		}
		s.run("tokenize", reqs)
		check("tokenize", func(t *testing.T, ev phaseEvents) {
			// Every token of the deployment is the storm's, each named once
			// (under the audit-only token key, which only the server holds:
			// so by number).
			stored := 0
			stormSQL(t, n, `SELECT count(*) FROM tokens`, func(scan func(...any) error) {
				if err := scan(&stored); err != nil {
					t.Fatal(err)
				}
			})
			wantCount(t, "tokens stored", stored, ev.ok().count())
			wantCount(t, "tokens named", stored, len(ev.ok().targets(t)))
		})

		// Transit keys.
		keys := names("storm-k", stormSize)
		reqs = nil
		for _, k := range keys {
			reqs = append(reqs, jsonReq("POST", "/v1/keys", admin, map[string]any{"name": k}))
		}
		s.run("transit create", reqs)
		// firstVersions names the first version of each key of names that
		// exists.
		firstVersions := func(names []string) []string {
			var made []string
			for _, k := range names {
				if _, err := db.TransitKey(ctx, k); err == nil {
					made = append(made, coffer.KeyVersionTarget(k, 1))
				}
			}
			return made
		}
		check("transit create", func(t *testing.T, ev phaseEvents) {
			sameSet(t, "transit keys created", firstVersions(keys), ev.ok().targets(t))
		})

		create("/v1/keys", map[string]any{"name": "storm-rot"})
		reqs = nil
		for range stormSize {
			reqs = append(reqs, jsonReq("POST", "/v1/keys/storm-rot/rotate", admin, nil))
		}
		s.run("transit rotate", reqs)
		check("transit rotate", func(t *testing.T, ev phaseEvents) {
			sameSet(t, "transit rotations", laterVersions(t, db, "storm-rot"), ev.ok().targets(t))
		})

		cfgKeys, delKeys := names("storm-cfg", stormSize), names("storm-del", stormSize)
		reqs = nil
		for i := range cfgKeys {
			create("/v1/keys", map[string]any{"name": cfgKeys[i]})
			create("/v1/keys", map[string]any{"name": delKeys[i], "deletable": true})
			reqs = append(reqs, jsonReq("POST", "/v1/keys/"+cfgKeys[i]+"/config", admin, map[string]any{"deletable": true}))
		}
		s.run("transit config", reqs)
		check("transit config", func(t *testing.T, ev phaseEvents) {
			var changed []string
			for _, k := range cfgKeys {
				tk, err := db.TransitKey(ctx, k)
				if err != nil {
					t.Fatal(err)
				}
				if tk.Deletable {
					changed = append(changed, coffer.KeyTarget(k))
				}
			}
			sameSet(t, "transit keys configured", changed, ev.ok().targets(t))
		})
		reqs = nil
		for _, k := range delKeys {
			reqs = append(reqs, jsonReq("DELETE", "/v1/keys/"+k, admin, nil))
		}
		s.run("transit delete", reqs)
		check("transit delete", func(t *testing.T, ev phaseEvents) {
			var gone []string
			for _, k := range delKeys {
				if _, err := db.TransitKey(ctx, k); coffer.ErrorCode(err) == coffer.ENOTFOUND {
					gone = append(gone, coffer.KeyTarget(k))
				}
			}
			sameSet(t, "transit keys deleted", gone, ev.ok().targets(t))
		})

		create("/v1/keys", map[string]any{"name": "storm-enc"})
		create("/v1/keys", map[string]any{"name": "storm-rewrap"})
		var ct struct {
			Ciphertext string `json:"ciphertext"`
		}
		mustJSON(t, create("/v1/keys/storm-rewrap/encrypt", map[string]any{"plaintext": s.value(base64Std("rewrap " + marker))}), &ct)
		reqs = nil
		for i := range stormSize {
			pt := s.value(base64Std(fmt.Sprintf("encrypted %s %d", marker, i)))
			reqs = append(reqs, jsonReq("POST", "/v1/keys/storm-enc/encrypt", admin, map[string]any{"items": []map[string]any{
				{"plaintext": pt}, {"plaintext": pt}}}))
		}
		s.run("transit encrypt", reqs)
		reqs = nil
		for range stormSize {
			reqs = append(reqs, jsonReq("POST", "/v1/keys/storm-rewrap/rewrap", admin, map[string]any{"ciphertext": ct.Ciphertext}))
		}
		s.run("transit rewrap", reqs)
		encryptions := func(name string) int {
			k, err := db.TransitKey(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			return int(k.EncryptionsSinceRotate)
		}
		usedVersion := func(t *testing.T, ev phaseEvents, name string) {
			t.Helper()
			for _, e := range ev.ok() {
				if want := coffer.KeyVersionTarget(name, 1); len(e.Targets) != 1 || e.Targets[0] != want {
					t.Errorf("event %s names %q, want %s", e.ID, e.Targets, want)
				}
			}
		}
		check("transit encrypt", func(t *testing.T, ev phaseEvents) {
			wantCount(t, "transit encryptions", encryptions("storm-enc"), ev.ok().count())
			usedVersion(t, ev, "storm-enc")
		})
		check("transit rewrap", func(t *testing.T, ev phaseEvents) {
			wantCount(t, "transit rewraps", encryptions("storm-rewrap")-1, ev.ok().count())
			usedVersion(t, ev, "storm-rewrap")
		})

		var wk struct {
			PublicKey string `json:"public_key"`
		}
		// The first call makes the RSA wrapping key: under the race
		// detector on a busy machine it may outlast the server's write
		// timeout, and the answer is lost; the key is made all the same.
		for try := 0; ; try++ {
			hr, err := http.NewRequest("GET", n.URL+"/v1/keys/wrapping_key", nil)
			if err != nil {
				t.Fatal(err)
			}
			hr.Header.Set("Authorization", "Bearer "+admin)
			hc := n.From("127.0.0.1")
			hc.Timeout = 5 * time.Minute
			resp, err := hc.Do(hr)
			if err != nil && try < 3 {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("wrapping key: %d %s %v", resp.StatusCode, b, err)
			}
			mustJSON(t, b, &wk)
			break
		}
		pub, err := transittest.ParsePublicKey(wk.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		wrapped := func() string {
			key := make([]byte, 32)
			for i := range key {
				key[i] = byte(rand.IntN(256)) // #nosec G404 -- test key material, never used for secrets
			}
			w, err := transittest.Wrap(pub, sha256.New(), key)
			if err != nil {
				t.Fatal(err)
			}
			return s.value(base64.StdEncoding.EncodeToString(w))
		}
		imports := names("storm-imp", stormSize)
		reqs = nil
		for _, k := range imports {
			reqs = append(reqs, jsonReq("POST", "/v1/keys/"+k+"/import", admin, map[string]any{"ciphertext": wrapped()}))
		}
		s.run("transit import", reqs)
		check("transit import", func(t *testing.T, ev phaseEvents) {
			sameSet(t, "transit keys imported", firstVersions(imports), ev.ok().targets(t))
		})
		create("/v1/keys/storm-impv/import", map[string]any{"ciphertext": wrapped()})
		reqs = nil
		for range stormSize {
			reqs = append(reqs, jsonReq("POST", "/v1/keys/storm-impv/import_version", admin, map[string]any{"ciphertext": wrapped()}))
		}
		s.run("transit import_version", reqs)
		check("transit import_version", func(t *testing.T, ev phaseEvents) {
			sameSet(t, "transit versions imported", laterVersions(t, db, "storm-impv"), ev.ok().targets(t))
		})

		// Coffer's own keys: rotate, then retire, unretire and destroy
		// old versions of a collection key that seals nothing.
		const ownKey = "collection/storm_keys"
		idOwn := record("storm_keys", "")
		n.must(t, 204, "DELETE", "/v1/collections/storm_keys/records/"+idOwn, admin, nil, nil)
		versionsOf := func() []coffer.DataKey {
			rows, err := db.DataKeys(ctx, ownKey)
			if err != nil {
				t.Fatal(err)
			}
			return rows
		}
		before := versionsOf()
		reqs = nil
		for range stormSize {
			reqs = append(reqs, jsonReq("POST", "/v1/admin/keys/rotate", admin, map[string]any{"key_id": ownKey}))
		}
		s.run("key rotate", reqs)
		check("key rotate", func(t *testing.T, ev phaseEvents) {
			var made []string
			for _, r := range versionsOf()[len(before):] {
				made = append(made, coffer.SystemKeyVersionTarget(ownKey, r.Version))
			}
			sameSet(t, "key versions made", made, ev.ok().targets(t))
		})
		// Every version but the newest may be retired once no node can
		// still seal under it.
		n.Clock.Advance(keyadmin.DefaultRetireAfter + time.Minute)
		admin = n.Token(n.Init.ClientID, n.Init.ClientSecret)
		rows := versionsOf()
		old := rows[:len(rows)-1]
		reqs = nil
		for _, r := range old {
			reqs = append(reqs, jsonReq("POST", "/v1/admin/keys/retire", admin, map[string]any{"key_id": ownKey, "version": r.Version}))
		}
		s.run("key retire", reqs)
		var retired []uint32
		for _, r := range versionsOf() {
			if r.State == coffer.KeyRetired {
				retired = append(retired, r.Version)
			}
		}
		if len(retired) < 2 {
			t.Errorf("only %d versions retired; the storm needs two", len(retired))
		}
		unretire, destroy := retired[:len(retired)/2], retired[len(retired)/2:]
		reqs = nil
		for _, v := range unretire {
			reqs = append(reqs, jsonReq("POST", "/v1/admin/keys/unretire", admin, map[string]any{"key_id": ownKey, "version": v}))
		}
		s.run("key unretire", reqs)
		reqs = nil
		for _, v := range destroy {
			reqs = append(reqs, jsonReq("POST", "/v1/admin/keys/destroy", admin, map[string]any{"key_id": ownKey, "version": v}))
		}
		s.run("key destroy", reqs)
		stateAfter := map[string]map[uint32]string{} // phase → version → state the event says it left
		for _, p := range []struct{ phase, state string }{{"key retire", coffer.KeyRetired},
			{"key unretire", coffer.KeyActive}, {"key destroy", coffer.KeyDestroyed}} {
			check(p.phase, func(t *testing.T, ev phaseEvents) {
				stateAfter[p.phase] = map[uint32]string{}
				named := ev.ok().targets(t)
				for _, r := range old {
					if named[coffer.SystemKeyVersionTarget(ownKey, r.Version)] {
						stateAfter[p.phase][r.Version] = p.state
					}
				}
			})
		}
		check("key versions replayed", func(t *testing.T, _ phaseEvents) {
			// Replay the events: each version ends as the last event says.
			for _, r := range versionsOf() {
				want := coffer.KeyActive
				for _, p := range []string{"key retire", "key unretire", "key destroy"} {
					if st, ok := stateAfter[p][r.Version]; ok {
						want = st
					}
				}
				if r.State != want {
					t.Errorf("version %d of %s is %s; its audit events say %s", r.Version, ownKey, r.State, want)
				}
			}
		})

		// Identity: clients, users, MFA.
		clientNames := names("storm-client-", stormSize)
		reqs = nil
		for _, c := range clientNames {
			reqs = append(reqs, jsonReq("POST", "/v1/clients", admin, map[string]any{"name": c}))
		}
		s.run("clients create", reqs)
		check("clients create", func(t *testing.T, ev phaseEvents) {
			cs, err := db.Clients(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var made []string
			for _, c := range cs {
				if strings.HasPrefix(c.Name, "storm-client-") {
					made = append(made, coffer.ClientTarget(c.ID))
				}
			}
			sameSet(t, "clients created", made, ev.ok().targets(t))
		})
		type client struct{ id, secret, hash string }
		newClients := func(prefix string) []client {
			out := make([]client, stormSize)
			for i := range out {
				b := create("/v1/clients", map[string]any{"name": fmt.Sprintf("%s%02d", prefix, i)})
				out[i].id, out[i].secret = idOf(b, "client_id"), s.value(idOf(b, "client_secret"))
				c, err := db.Client(ctx, out[i].id)
				if err != nil {
					t.Fatal(err)
				}
				out[i].hash = c.SecretHash
			}
			return out
		}
		rotated, removed := newClients("storm-rot-"), newClients("storm-del-")
		reqs = nil
		for _, c := range rotated {
			reqs = append(reqs, jsonReq("POST", "/v1/clients/"+c.id+"/rotate", admin, nil))
		}
		s.run("clients rotate", reqs)
		check("clients rotate", func(t *testing.T, ev phaseEvents) {
			var changed []string
			for _, c := range rotated {
				got, err := db.Client(ctx, c.id)
				if err != nil {
					t.Fatal(err)
				}
				if got.SecretHash != c.hash {
					changed = append(changed, coffer.ClientTarget(c.id))
				}
			}
			sameSet(t, "client secrets rotated", changed, ev.ok().targets(t))
		})
		reqs = nil
		for _, c := range removed {
			reqs = append(reqs, jsonReq("DELETE", "/v1/clients/"+c.id, admin, nil))
		}
		s.run("clients delete", reqs)
		check("clients delete", func(t *testing.T, ev phaseEvents) {
			var gone []string
			for _, c := range removed {
				if _, err := db.Client(ctx, c.id); coffer.ErrorCode(err) == coffer.ENOTFOUND {
					gone = append(gone, coffer.ClientTarget(c.id))
				}
			}
			sameSet(t, "clients deleted", gone, ev.ok().targets(t))
		})
		reqs = nil
		for _, c := range removed[:stormSizeSlow] {
			reqs = append(reqs, formReq("/v1/oauth/token", "grant_type=client_credentials&client_id="+c.id+"&client_secret="+c.secret))
		}
		for _, c := range rotated {
			reqs = append(reqs, formReq("/v1/oauth/token", "grant_type=client_credentials&client_id="+c.id+"&client_secret="+c.secret))
		}
		s.run("oauth token", reqs)

		// Tokens to revoke, each a client's own.
		var revoked []string
		reqs = nil
		for _, c := range newClients("storm-rev-") {
			tok := s.value(n.Token(c.id, c.secret))
			_, claims, _ := jwtParts(t, tok)
			revoked = append(revoked, claims["jti"].(string))
			reqs = append(reqs, formReq("/v1/oauth/revoke", "token="+tok))
		}
		s.run("oauth revoke", reqs)
		check("oauth revoke", func(t *testing.T, ev phaseEvents) {
			var done []string
			for _, jti := range revoked {
				ok, err := db.IsRevoked(ctx, jti)
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					done = append(done, coffer.AccessTokenTarget(jti))
				}
			}
			sameSet(t, "tokens revoked", done, ev.ok().targets(t))
		})

		const password = "storm password that is long enough 42"
		users := names("storm-user-", stormSizeSlow)
		reqs = nil
		for _, u := range users {
			reqs = append(reqs, jsonReq("POST", "/v1/users", admin, map[string]any{"username": u, "password": s.value(password + " " + marker)}))
		}
		s.run("users create", reqs)
		check("users create", func(t *testing.T, ev phaseEvents) {
			var made []string
			for _, u := range users {
				if got, err := db.UserByName(ctx, "", u); err == nil {
					made = append(made, coffer.UserTarget(got.ID))
				}
			}
			sameSet(t, "users created", made, ev.ok().targets(t))
		})
		type user struct{ id, token, secret string }
		newUsers := func(prefix string) []user {
			out := make([]user, stormSizeSlow)
			for i := range out {
				name := fmt.Sprintf("%s%02d", prefix, i)
				out[i].id = idOf(create("/v1/users", map[string]any{"username": name, "password": password}), "id")
				var tr struct {
					AccessToken string `json:"access_token"`
				}
				n.must(t, 200, "POST", "/v1/auth/login", "", map[string]any{"username": name, "password": password}, &tr)
				out[i].token = s.value(tr.AccessToken)
			}
			return out
		}
		enrolling, confirming := newUsers("storm-mfa-"), newUsers("storm-cfm-")
		reqs = nil
		for _, u := range enrolling {
			reqs = append(reqs, jsonReq("POST", "/v1/auth/mfa/totp", u.token, map[string]any{}))
		}
		s.run("totp start", reqs)
		check("totp start", func(t *testing.T, ev phaseEvents) {
			var started []string
			for _, u := range enrolling {
				got, err := db.User(ctx, u.id)
				if err != nil {
					t.Fatal(err)
				}
				if len(got.TOTPSecret) > 0 {
					started = append(started, coffer.UserTarget(u.id))
				}
			}
			sameSet(t, "TOTP enrolments started", started, ev.ok().targets(t))
		})
		reqs = nil
		for i := range confirming {
			var en struct {
				Secret string `json:"secret"`
			}
			n.must(t, 200, "POST", "/v1/auth/mfa/totp", confirming[i].token, map[string]any{}, &en)
			confirming[i].secret = s.value(en.Secret)
			code, err := totp.GenerateCode(en.Secret, n.Clock.Now())
			if err != nil {
				t.Fatal(err)
			}
			reqs = append(reqs, jsonReq("POST", "/v1/auth/mfa/totp/confirm", confirming[i].token, map[string]any{"code": code}))
		}
		s.run("totp confirm", reqs)
		check("totp confirm", func(t *testing.T, ev phaseEvents) {
			var confirmed []string
			for _, u := range confirming {
				got, err := db.User(ctx, u.id)
				if err != nil {
					t.Fatal(err)
				}
				if got.TOTPConfirmed {
					confirmed = append(confirmed, coffer.UserTarget(u.id))
				}
			}
			sameSet(t, "TOTP enrolments confirmed", confirmed, ev.ok().targets(t))
		})
		reqs = nil
		for range stormSizeSlow {
			reqs = append(reqs, jsonReq("POST", "/v1/auth/login", "", map[string]any{"username": "storm-mfa-00", "password": password}))
			reqs = append(reqs, jsonReq("POST", "/v1/auth/mfa", "", map[string]any{"mfa_token": "bm90LWEtdG9rZW4", "code": "123456"}))
		}
		s.run("login", reqs)

		// Policy and suspensions.
		v0, err := db.PolicyVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		reqs = nil
		for i := range stormSize {
			doc := fmt.Sprintf("roles:\n  admin:\n    - resources: [\"*\"]\n      actions: [\"*\"]\n  storm_%02d:\n    - resources: [\"collections/storm\"]\n      actions: [read]\n", i)
			reqs = append(reqs, stormReq{method: "PUT", path: "/v1/policy", token: admin, contentType: "application/yaml", body: []byte(doc)})
		}
		s.run("policy", reqs)
		check("policy", func(t *testing.T, ev phaseEvents) {
			v, err := db.PolicyVersion(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var saved []string
			for x := v0 + 1; x <= v; x++ {
				saved = append(saved, coffer.PolicyTarget(x))
			}
			sameSet(t, "policies saved", saved, ev.ok().targets(t))
		})

		suspended := names("storm-p-", stormSize)
		reqs = nil
		for _, p := range suspended {
			if err := db.SuspendPrincipal(ctx, p, n.Clock.Now().Add(time.Hour), "data.bulk_read"); err != nil {
				t.Fatal(err)
			}
			reqs = append(reqs, jsonReq("DELETE", "/v1/security/suspensions/"+p, admin, nil))
		}
		s.run("suspensions lift", reqs)
		check("suspensions lift", func(t *testing.T, ev phaseEvents) {
			list, err := db.Suspensions(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var lifted []string
			for _, sp := range list {
				if strings.HasPrefix(sp.Principal, "storm-p-") && !sp.Until.After(n.Clock.Now()) {
					lifted = append(lifted, coffer.SuspensionTarget(sp.Principal))
				}
			}
			sameSet(t, "suspensions lifted", lifted, ev.ok().targets(t))
		})

		// Every handler has returned; the server flushes its audit log
		// and transit counts as it stops.
		failures := auditFailures(t, n)
		n.Stop()
		if failures != 0 {
			t.Errorf("coffer_audit_write_failures_total = %v, want 0", failures)
		}
		if s.sent < 300 {
			t.Errorf("only %d abrupt closes", s.sent)
		}
		t.Logf("%d requests closed abruptly, %d handled", s.sent, len(s.handled))

		byRequest := map[string][]audit.Event{}
		cfg := n.config(setup{})
		err = audit.OnRows(db).ScanAudit(ctx, cfg.Node, 0, func(e audit.Event) error {
			byRequest[e.RequestID] = append(byRequest[e.RequestID], e)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		events := map[string]phaseEvents{}
		for id, phase := range s.handled {
			switch evs := byRequest[id]; len(evs) {
			case 1:
				events[phase] = append(events[phase], evs[0])
			case 0:
				t.Errorf("%s: request %s was handled, and has no audit event", phase, id)
			default:
				t.Errorf("%s: request %s has %d audit events", phase, id, len(evs))
			}
		}
		for _, c := range checks {
			c(t, events)
		}
		for _, evs := range byRequest {
			for _, e := range evs {
				b, err := json.Marshal(e)
				if err != nil {
					t.Fatal(err)
				}
				for _, v := range s.values {
					if strings.Contains(string(b), v) {
						t.Errorf("audit event %s holds the submitted value %q", e.ID, v)
					}
				}
			}
		}
		got, err := app.VerifyAudit(ctx, cfg)
		if err != nil || got == 0 {
			t.Fatalf("audit verify: %d events, %v", got, err)
		}
	})
}

// auditFailures reads coffer_audit_write_failures_total from n's metrics.
func auditFailures(t *testing.T, n *node) float64 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = n.Srv.ServeMetrics(ln) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "coffer_audit_write_failures_total "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatal("no coffer_audit_write_failures_total in the metrics")
	return 0
}

// laterVersions names every version of transit key name after the first.
func laterVersions(t *testing.T, db *store.DB, name string) []string {
	t.Helper()
	k, err := db.TransitKey(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for v := uint32(2); v <= k.LatestVersion; v++ {
		out = append(out, coffer.KeyVersionTarget(name, v))
	}
	return out
}

// stormSQL runs query on n's database directly (past the store, as an
// operator could) and hands fn each row's scan.
func stormSQL(t *testing.T, n *node, query string, fn func(scan func(...any) error)) {
	t.Helper()
	ctx := context.Background()
	kind, dsn := n.config(setup{}).Database()
	var (
		rows interface {
			Next() bool
			Scan(...any) error
			Err() error
		}
		err error
	)
	if kind == config.DatabaseSQLite {
		db, oerr := sql.Open("sqlite", dsn)
		if oerr != nil {
			t.Fatal(oerr)
		}
		defer db.Close()
		var r *sql.Rows
		if r, err = db.QueryContext(ctx, query); err == nil {
			defer r.Close()
			rows = r
		}
	} else {
		conn, cerr := pgx.Connect(ctx, dsn)
		if cerr != nil {
			t.Fatal(cerr)
		}
		defer conn.Close(ctx)
		var r pgx.Rows
		if r, err = conn.Query(ctx, query); err == nil {
			defer r.Close()
			rows = r
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		fn(rows.Scan)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}
