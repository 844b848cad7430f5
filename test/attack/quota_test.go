package attack

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Linkable tokenization (deterministic, format-preserving) answers "is
// this the value?" for every guess a caller tokenizes: a dictionary
// oracle for low-entropy values. The class: an attacker holding the right
// to tokenize gets no more than limits.tokenize_linkable_per_hour linkable
// answers per hour, however it shapes its requests.

// linkableItems is a tokenize body of n values of the given mode (the
// values carry the marker, which no answer or log line may repeat).
func linkableItems(mode string, from, n int) map[string]any {
	items := make([]map[string]string, n)
	for i := range items {
		items[i] = map[string]string{"value": fmt.Sprintf("%s-guess-%06d", marker, from+i), "type": "string", "mode": mode}
	}
	return map[string]any{"items": items}
}

// wantQuota checks a refusal by the tokenize_linkable quota: 429, a
// problem, a Retry-After of at least a second and at most the hour and a
// slice, and no echo of the guesses.
func wantQuota(t *testing.T, r reply) int {
	t.Helper()
	if r.status != 429 {
		t.Fatalf("got %s, want 429", r)
	}
	ra, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || ra < 1 || ra > 3660 {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
	wantProblem(t, r, 429, fmt.Sprintf("the principal's tokenize_linkable quota of 300 per 1h0m0s is used up; retry after %d seconds", ra))
	return ra
}

func TestLinkableTokenizeQuota(t *testing.T) {
	forEachBackend(t, setup{settings: map[string]string{"limits.tokenize_linkable_per_hour": "300"}}, func(t *testing.T, n *node) {
		var guesser struct {
			ClientID     string `json:"client_id"`
			ClientSecret string `json:"client_secret"`
		}
		n.must(t, 201, "POST", "/v1/clients", n.admin, map[string]any{"name": "guesser", "roles": []string{"admin"}}, &guesser)
		tok := n.Token(guesser.ClientID, guesser.ClientSecret)

		// 12 concurrent requests of 50 guesses: at most 6 get answers.
		var (
			answered atomic.Int64
			wg       sync.WaitGroup
		)
		for i := range 12 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := n.call(t, "POST", "/v1/tokenize", tok, linkableItems("deterministic", i*50, 50))
				switch r.status {
				case 200:
					answered.Add(50)
				case 429:
				default:
					t.Errorf("concurrent guesses: %s", r)
				}
			}()
		}
		wg.Wait()
		if got := answered.Load(); got != 300 {
			t.Fatalf("%d linkable answers under a quota of 300", got)
		}

		// Nothing gets past it: another token of the same client, the
		// other linkable mode, one guess hidden among random items.
		other := n.Token(guesser.ClientID, guesser.ClientSecret)
		for name, r := range map[string]reply{
			"deterministic":        n.call(t, "POST", "/v1/tokenize", tok, linkableItems("deterministic", 1000, 1)),
			"format preserving":    n.call(t, "POST", "/v1/tokenize", tok, linkableItems("format_preserving", 1000, 1)),
			"hidden among random":  n.call(t, "POST", "/v1/tokenize", tok, mixed(1, 99)),
			"another access token": n.call(t, "POST", "/v1/tokenize", other, linkableItems("deterministic", 2000, 1)),
		} {
			t.Run(name, func(t *testing.T) { wantQuota(t, r) })
		}
		// Random tokens answer nothing about the value: not under this quota.
		if r := n.call(t, "POST", "/v1/tokenize", tok, mixed(0, 100)); r.status != 200 {
			t.Fatalf("random items: %s", r)
		}
		// More than the whole quota at once: 413.
		wantProblem(t, n.call(t, "POST", "/v1/tokenize", n.admin, linkableItems("deterministic", 0, 301)), 413,
			"this request alone (301) is over the principal's tokenize_linkable quota of 300 per 1h0m0s")

		// The quota slides: once Retry-After has passed, answers come again.
		ra := wantQuota(t, n.call(t, "POST", "/v1/tokenize", tok, linkableItems("deterministic", 3000, 1)))
		n.Clock.Advance(time.Duration(ra) * time.Second)
		tok = n.Token(guesser.ClientID, guesser.ClientSecret) // the old one expired meanwhile
		if r := n.call(t, "POST", "/v1/tokenize", tok, linkableItems("deterministic", 3000, 50)); r.status != 200 {
			t.Fatalf("after Retry-After: %s", r)
		}
		noEchoInLog(t, n)
	})
}

// mixed is a tokenize body of linkable deterministic items and random ones.
func mixed(linkable, random int) map[string]any {
	body := linkableItems("deterministic", 5000, linkable+random)
	items := body["items"].([]map[string]string)
	for i := linkable; i < len(items); i++ {
		items[i]["mode"] = "random"
	}
	return body
}
