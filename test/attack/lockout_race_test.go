package attack

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/cofferhq/coffer/internal/store/storetest"
)

// Class: lockout races and hashing exhaustion. Concurrent attempts get no
// more than an account's budget between them (the attempt is reserved in
// the store before the credential is checked); password hashing, 64 MiB
// of argon2id each, runs through a bounded gate, so unauthenticated logins
// cannot exhaust memory; an mfa_token and a recovery code each complete
// one login, however many requests race with them (#15.8, #16.5).

// concurrently runs n calls of fn at once and counts their statuses.
func concurrently(n int, fn func(i int) reply) map[int]int {
	var wg sync.WaitGroup
	var mu sync.Mutex
	count := map[int]int{}
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r := fn(i)
			mu.Lock()
			count[r.status]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	return count
}

// TestConcurrentGuessesStayWithinBudget: 30 concurrent wrong secrets and
// 12 concurrent wrong passwords for one account, each from its own
// address, check no more than the budget (4); the rest are 429.
func TestConcurrentGuessesStayWithinBudget(t *testing.T) {
	forEachBackend(t, setup{settings: lockoutSettings}, func(t *testing.T, n *node) {
		id, _ := n.newClientSecret(t, "target", "support")
		ips := make([]string, 30)
		for i := range ips {
			ips[i] = n.freshIP()
		}
		got := concurrently(30, func(i int) reply { return n.guessSecret(t, id, "cs_wrong"+marker, ips[i]) })
		if got[401] > 4 || got[401]+got[429] != 30 {
			t.Fatalf("30 concurrent wrong secrets answered %v: more than the budget of 4 were checked", got)
		}
		n.must(t, 201, "POST", "/v1/users", n.admin, map[string]any{"username": "racer", "password": alicePassword}, nil)
		got = concurrently(12, func(i int) reply { return n.loginFrom(t, "racer", "wrong password "+marker, ips[i]) })
		if got[401] > 4 || got[401]+got[429]+got[503] != 12 {
			t.Fatalf("12 concurrent wrong passwords answered %v: more than the budget of 4 were checked", got)
		}
		noEchoInLog(t, n)
	})
}

// TestPasswordHashingMemoryBound: 12 concurrent logins with wrong
// passwords (each 64 MiB of argon2id) keep the server's heap within the
// hashing gate's bound (2 slots); without it they took 12 × 64 MiB at
// once. The garbage collector runs at GOGC=10 meanwhile, so the heap
// follows what is live.
func TestPasswordHashingMemoryBound(t *testing.T) {
	n := start(t, storetest.Backend{Name: "sqlite", DSN: storetest.SQLiteDSN}, setup{settings: map[string]string{
		"auth.hashing.max_concurrent": "2", "auth.hashing.queue_timeout": "2m"}})
	const logins = 12
	ips := make([]string, logins)
	for i := range ips {
		ips[i] = n.freshIP()
	}
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
		}
	}()
	got := concurrently(logins, func(i int) reply {
		via := n.From(ips[i])
		via.Timeout = 5 * time.Minute // 12 hashes through 2 slots, slowly under -race
		return n.send(t, req{method: "POST", path: "/v1/auth/login", contentType: "application/json",
			body: []byte(fmt.Sprintf(`{"username":"user%d%s","password":"wrong password %s"}`, i, marker, marker)), via: via})
	})
	close(stop)
	<-sampled
	growth := int64(peak.Load()) - int64(base)
	t.Logf("%d concurrent wrong logins: %v; heap grew by %d MiB at most (2 hashing slots)", logins, got, growth>>20)
	if got[401] != logins {
		t.Errorf("answers %v, want %d × 401", got, logins)
	}
	if growth > 512<<20 {
		t.Fatalf("heap grew by %d MiB under %d concurrent logins: password hashing is not bounded", growth>>20, logins)
	}
}

// TestPasswordHashingQueueFull: a login that finds no hashing slot within
// the queue timeout is answered 503 with Retry-After, not queued forever.
func TestPasswordHashingQueueFull(t *testing.T) {
	n := start(t, storetest.Backend{Name: "sqlite", DSN: storetest.SQLiteDSN}, setup{settings: map[string]string{
		"auth.hashing.max_concurrent": "1", "auth.hashing.queue_timeout": "1ms"}})
	ips := make([]string, 8)
	for i := range ips {
		ips[i] = n.freshIP()
	}
	var busy atomic.Pointer[reply]
	got := concurrently(8, func(i int) reply {
		r := n.loginFrom(t, fmt.Sprintf("user%d%s", i, marker), "wrong password "+marker, ips[i])
		if r.status == 503 {
			busy.Store(&r)
		}
		return r
	})
	if got[503] == 0 || got[401]+got[503] != 8 {
		t.Fatalf("8 concurrent logins with one slot and a 1ms queue: %v, want some 503", got)
	}
	r := *busy.Load()
	wantProblem(t, r, 503, "too many sign-ins at once; try again shortly")
	if r.header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
}

// mfaUser makes a user with TOTP and returns its TOTP secret and
// recovery codes.
func mfaUser(t *testing.T, n *node, name string) (string, []string) {
	t.Helper()
	n.must(t, 201, "POST", "/v1/users", n.admin, map[string]any{"username": name, "password": alicePassword}, nil)
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	n.must(t, 200, "POST", "/v1/auth/login", "", map[string]string{"username": name, "password": alicePassword}, &tr)
	var en struct {
		Secret        string   `json:"secret"`
		RecoveryCodes []string `json:"recovery_codes"`
	}
	n.must(t, 200, "POST", "/v1/auth/mfa/totp", tr.AccessToken, map[string]any{}, &en)
	code, err := totp.GenerateCode(en.Secret, n.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	n.must(t, 204, "POST", "/v1/auth/mfa/totp/confirm", tr.AccessToken, map[string]string{"code": code}, nil)
	return en.Secret, en.RecoveryCodes
}

// mfaToken logs name in and returns the mfa_token of the second step.
func mfaToken(t *testing.T, n *node, name string) string {
	t.Helper()
	var tr struct {
		MFAToken string `json:"mfa_token"`
	}
	n.must(t, 200, "POST", "/v1/auth/login", "", map[string]string{"username": name, "password": alicePassword}, &tr)
	if tr.MFAToken == "" {
		t.Fatal("no mfa_token")
	}
	return tr.MFAToken
}

func mfaBody(token, code string) []byte {
	b, _ := json.Marshal(map[string]string{"mfa_token": token, "code": code})
	return b
}

// TestMFATokenRace: one mfa_token raced with a TOTP code and recovery
// codes completes exactly one login.
func TestMFATokenRace(t *testing.T) {
	forEachBackend(t, setup{}, func(t *testing.T, n *node) {
		secret, codes := mfaUser(t, n, "mallory")
		tok := mfaToken(t, n, "mallory")
		code, err := totp.GenerateCode(secret, n.Clock.Now().Add(30*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		guesses := append([]string{code}, codes[:5]...)
		got := concurrently(len(guesses), func(i int) reply {
			return n.send(t, req{method: "POST", path: "/v1/auth/mfa", contentType: "application/json", body: mfaBody(tok, guesses[i])})
		})
		if got[200] != 1 || got[401] != len(guesses)-1 {
			t.Fatalf("one mfa_token raced with %d right codes: %v, want exactly one 200", len(guesses), got)
		}
	})
}

// TestRecoveryCodeRace: one recovery code raced through eight logins
// (each with its own mfa_token), on any backend, completes exactly one.
func TestRecoveryCodeRace(t *testing.T) {
	forEachBackend(t, setup{}, func(t *testing.T, n *node) {
		_, codes := mfaUser(t, n, "trent")
		toks := make([]string, 8)
		for i := range toks {
			toks[i] = mfaToken(t, n, "trent")
		}
		got := concurrently(len(toks), func(i int) reply {
			return n.send(t, req{method: "POST", path: "/v1/auth/mfa", contentType: "application/json", body: mfaBody(toks[i], codes[0])})
		})
		if got[200] != 1 || got[401] != len(toks)-1 {
			t.Fatalf("one recovery code raced through 8 logins: %v, want exactly one 200", got)
		}
	})
}
