package token

import (
	"bytes"
	"math/big"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBase62RoundTrip(t *testing.T) {
	for _, b := range [][]byte{
		bytes.Repeat([]byte{0}, 16),
		bytes.Repeat([]byte{0xff}, 16),
		[]byte("0123456789abcdef"),
	} {
		s := base62(b)
		if len(s) != 22 {
			t.Fatalf("base62(%x) = %q: want 22 characters", b, s)
		}
		got, ok := unbase62(s)
		if !ok || !bytes.Equal(got[:], b) {
			t.Fatalf("unbase62(base62(%x)) = %x, %v", b, got, ok)
		}
	}
	for _, bad := range []string{"", "short", strings.Repeat("z", 22), strings.Repeat("0", 21) + "!", strings.Repeat("0", 23)} {
		if _, ok := unbase62(bad); ok {
			t.Errorf("unbase62(%q) accepted", bad)
		}
	}
}

func FuzzUnbase62(f *testing.F) {
	f.Add("0000000000000000000000")
	f.Add("7N42dgm5tFLK9N8MT7fHC7")
	f.Add(strings.Repeat("z", 22))
	f.Fuzz(func(t *testing.T, s string) {
		b, ok := unbase62(s)
		if !ok {
			return
		}
		if back := base62(b[:]); back != s {
			t.Fatalf("unbase62(%q) = %x, which encodes as %q", s, b, back)
		}
	})
}

// Order prefixes grow strictly, across goroutines and with a clock that
// stands still or goes back.
func TestNextSeqStrictlyIncreases(t *testing.T) {
	clock := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	s := New(Config{Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }})
	var (
		wg   sync.WaitGroup
		seen sync.Map
	)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := uint64(0)
			for i := range 1000 {
				if g == 0 && i == 500 {
					mu.Lock()
					clock = clock.Add(-time.Hour) // a clock step back
					mu.Unlock()
				}
				n := s.nextSeq()
				if n <= last {
					t.Errorf("nextSeq went from %d to %d", last, n)
					return
				}
				if _, dup := seen.LoadOrStore(n, true); dup {
					t.Errorf("nextSeq gave %d twice", n)
					return
				}
				last = n
			}
		}()
	}
	wg.Wait()
}

// base62 must write what the big-integer definition writes: deterministic
// tokens already issued depend on it.
func TestBase62MatchesBigIntDefinition(t *testing.T) {
	r := mrand.New(mrand.NewPCG(3, 4))
	for range 10000 {
		var b [16]byte
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		n := new(big.Int).SetBytes(b[:])
		want := make([]byte, 22)
		for i := 21; i >= 0; i-- {
			m := new(big.Int)
			n.DivMod(n, big.NewInt(62), m)
			want[i] = alphabet62[m.Int64()]
		}
		if got := base62(b[:]); got != string(want) {
			t.Fatalf("base62(%x) = %q, want %q", b, got, want)
		}
	}
}
