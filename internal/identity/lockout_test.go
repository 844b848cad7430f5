package identity

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestHashGateBoundsConcurrency: however many callers arrive, no more
// than the gate's capacity hold a slot at once, and never two for one
// account.
func TestHashGateBoundsConcurrency(t *testing.T) {
	g := newHashGate(3, time.Minute)
	var inFlight, peak atomic.Int32
	perAccount := map[string]*atomic.Int32{"a": {}, "b": {}, "c": {}, "d": {}}
	var wg sync.WaitGroup
	for i := range 64 {
		acct := []string{"a", "b", "c", "d"}[i%4]
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := g.acquire(context.Background(), acct)
			if err != nil {
				t.Error(err)
				return
			}
			defer release()
			if n := perAccount[acct].Add(1); n > 1 {
				t.Errorf("%d hashes at once for account %s", n, acct)
			}
			n := inFlight.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(time.Millisecond) // hold the slot so that others queue
			inFlight.Add(-1)
			perAccount[acct].Add(-1)
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > 3 || p < 1 {
		t.Fatalf("peak of %d hashes at once with capacity 3", p)
	}
}

// TestHashGateTimesOut: a caller that finds no slot within the timeout
// gets an error instead of waiting on; its account is free afterwards.
func TestHashGateTimesOut(t *testing.T) {
	g := newHashGate(1, 10*time.Millisecond)
	release, err := g.acquire(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.acquire(context.Background(), "b"); err == nil {
		t.Fatal("a second account got the only slot")
	}
	if _, err := g.acquire(context.Background(), "a"); err == nil {
		t.Fatal("a second hash for a busy account did not wait")
	}
	release()
	r2, err := g.acquire(context.Background(), "b")
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	r2()
	if len(g.busy) != 0 {
		t.Fatalf("accounts left busy: %v", g.busy)
	}
}

func TestDefaultHashConcurrency(t *testing.T) {
	if n := DefaultHashConcurrency(); n < 1 || n > 64 {
		t.Fatalf("DefaultHashConcurrency() = %d", n)
	}
}

func TestLockoutDelays(t *testing.T) {
	l := Lockout{MaxFailures: 3, Base: time.Minute, Max: 10 * time.Minute, AddressMaxFailures: 20}
	for n, want := range map[int]time.Duration{1: 0, 2: 0, 3: time.Minute, 4: 2 * time.Minute, 7: 10 * time.Minute, 1000: 10 * time.Minute} {
		if got := l.delay(n); got != want {
			t.Errorf("delay(%d) = %v, want %v", n, got, want)
		}
	}
	for n, want := range map[int]time.Duration{3: 0, 19: 0, 20: time.Minute, 21: 2 * time.Minute} {
		if got := l.addressDelay(n); got != want {
			t.Errorf("addressDelay(%d) = %v, want %v", n, got, want)
		}
	}
	if got := (Lockout{}).addressDelay(DefaultAddressMaxFailures - 1); got != 0 {
		t.Errorf("default address budget: %v after %d failures", got, DefaultAddressMaxFailures-1)
	}
}
