package keyprovider

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/cofferhq/coffer/internal/crypto/shamir"
	"github.com/cofferhq/coffer/internal/secret"
)

var _ Provider = (*Sealed)(nil)

// split makes a 3-of-5 root key and returns the decoded shares, the share
// texts and a fresh sealed provider.
func split(t *testing.T) ([][]byte, []string, []byte) {
	t.Helper()
	texts, check, err := SplitRootKey(rand.Reader, 5, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(texts) != 5 {
		t.Fatalf("%d shares, want 5", len(texts))
	}
	shares := make([][]byte, len(texts))
	for i, tx := range texts {
		if shares[i], err = shamir.DecodeShare(tx); err != nil {
			t.Fatal(err)
		}
	}
	return shares, texts, check
}

// legacy returns the shares and the check blob (format 1, without share
// commitments) of a 3-of-5 split made by an earlier release: the
// deployments that exist.
func legacy(t *testing.T) ([][]byte, []string, []byte) {
	t.Helper()
	b, err := os.ReadFile("testdata/check-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Shares []string `json:"shares"`
		Check  []byte   `json:"check"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	shares := make([][]byte, len(v.Shares))
	for i, tx := range v.Shares {
		if shares[i], err = shamir.DecodeShare(tx); err != nil {
			t.Fatal(err)
		}
	}
	return shares, v.Shares, v.Check
}

// forged returns a share numbered x that no split made, with a valid
// checksum once encoded: what a stranger can post.
func forged(t *testing.T, x byte) []byte {
	t.Helper()
	sh := make([]byte, shareSize)
	if _, err := rand.Read(sh[1:]); err != nil {
		t.Fatal(err)
	}
	sh[0] = x
	return sh
}

func newSealed(t *testing.T, check []byte) *Sealed {
	t.Helper()
	s, err := NewSealed(check, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSealedUnsealsWithThresholdShares(t *testing.T) {
	ctx := context.Background()
	shares, _, check := split(t)
	s := newSealed(t, check)
	if !s.Sealed() || s.Name() != "shamir:3-of-5" {
		t.Fatalf("Sealed = %v, Name = %q", s.Sealed(), s.Name())
	}
	if _, err := s.Wrap(ctx, []byte("dk"), nil); !errors.Is(err, ErrSealed) {
		t.Fatalf("Wrap while sealed: %v, want ErrSealed", err)
	}
	if _, err := s.Unwrap(ctx, []byte("anything at all, long enough"), nil); !errors.Is(err, ErrSealed) || errors.Is(err, ErrUnwrap) {
		t.Fatalf("Unwrap while sealed: %v, want ErrSealed only", err)
	}
	if have, need := s.Progress(); have != 0 || need != 3 {
		t.Fatalf("Progress = %d/%d, want 0/3", have, need)
	}
	// Shares come one holder at a time, in any order.
	for i, sh := range [][]byte{shares[4], shares[1]} {
		done, err := s.Unseal([][]byte{sh})
		if done || err != nil {
			t.Fatalf("share %d: done = %v, err = %v", i+1, done, err)
		}
		if have, _ := s.Progress(); have != i+1 {
			t.Fatalf("Progress after %d shares = %d", i+1, have)
		}
	}
	done, err := s.Unseal([][]byte{shares[2]})
	if !done || err != nil || s.Sealed() {
		t.Fatalf("third share: done = %v, err = %v, sealed = %v", done, err, s.Sealed())
	}
	if have, need := s.Progress(); have != 3 || need != 3 {
		t.Fatalf("Progress once unsealed = %d/%d", have, need)
	}
	w, err := s.Wrap(ctx, []byte("data key"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Unwrap(ctx, w, []byte("aad")); err != nil || string(got) != "data key" {
		t.Fatalf("Unwrap = %q, %v", got, err)
	}
	if _, err := s.Unwrap(ctx, w, []byte("other")); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("Unwrap with other aad: %v, want ErrUnwrap", err)
	}
	// The key is the one the shares make: a Local over it opens the blob.
	raw, err := shamir.Combine(shares[:3])
	if err != nil {
		t.Fatal(err)
	}
	l, _ := NewLocal("direct", secret.NewKey(raw), nil)
	if got, err := l.Unwrap(ctx, w, []byte("aad")); err != nil || string(got) != "data key" {
		t.Fatalf("Local over the combined key: %q, %v", got, err)
	}
	// Further shares are ignored.
	if done, err := s.Unseal([][]byte{{1}}); !done || err != nil {
		t.Fatalf("Unseal once unsealed: %v, %v", done, err)
	}
}

func TestSealedUnsealsWithAllSharesInOneCall(t *testing.T) {
	shares, _, check := split(t)
	s := newSealed(t, check)
	if done, err := s.Unseal(shares); !done || err != nil {
		t.Fatalf("Unseal(all 5) = %v, %v", done, err)
	}
}

// Without commitments (a format 1 blob) a wrong share is held until the
// combination fails; the right ones then get past it.
func TestSealedWrongSharesKeepProgress(t *testing.T) {
	shares, texts, check := legacy(t)
	s := newSealed(t, check)
	bad := bytes.Clone(shares[1])
	bad[7] ^= 0x40
	if done, err := s.Unseal([][]byte{shares[0], bad}); done || err != nil {
		t.Fatalf("two shares: %v, %v", done, err)
	}
	done, err := s.Unseal([][]byte{shares[2]})
	if done || !errors.Is(err, ErrWrongShares) || !s.Sealed() {
		t.Fatalf("with a wrong share: done = %v, err = %v, sealed = %v", done, err, s.Sealed())
	}
	for _, tx := range texts {
		if strings.Contains(err.Error(), tx[4:14]) {
			t.Fatalf("error %q shows a share", err)
		}
	}
	if have, need := s.Progress(); have != 3 || need != 3 {
		t.Fatalf("Progress after wrong shares = %d/%d, want 3/3 kept", have, need)
	}
	if _, err := s.Wrap(context.Background(), []byte("dk"), nil); !errors.Is(err, ErrSealed) {
		t.Fatalf("Wrap after wrong shares: %v", err)
	}
	// One more right share: a subset of three right ones unseals.
	if done, err := s.Unseal([][]byte{shares[3]}); !done || err != nil {
		t.Fatalf("fourth share: %v, %v", done, err)
	}
}

func TestSealedSharesOfAnotherSplitFail(t *testing.T) {
	_, _, check := split(t)
	other, _, _ := split(t)
	s := newSealed(t, check)
	if done, err := s.Unseal(other[:3]); done || !errors.Is(err, ErrUnknownShare) {
		t.Fatalf("shares of another split: %v, %v; want ErrUnknownShare", done, err)
	}
	if have, _ := s.Progress(); have != 0 {
		t.Fatalf("Progress after shares of another split = %d, want 0", have)
	}
	// Without commitments they are only refuted together.
	_, _, legacyCheck := legacy(t)
	s = newSealed(t, legacyCheck)
	if done, err := s.Unseal(other[:3]); done || !errors.Is(err, ErrWrongShares) {
		t.Fatalf("shares of another split, format 1: %v, %v", done, err)
	}
	s.Reset()
	if have, _ := s.Progress(); have != 0 {
		t.Fatalf("Progress after Reset = %d", have)
	}
}

// #16.3: a stranger posts a forged share for every number before the key
// holders come. With commitments in the check blob none is held, and the
// right shares unseal.
func TestSealedRefusesForgedSharesForEveryNumber(t *testing.T) {
	shares, _, check := split(t)
	s := newSealed(t, check)
	if !s.Committed() {
		t.Fatal("a new split's check blob holds no commitments")
	}
	for x := byte(1); x <= 5; x++ {
		if done, err := s.Unseal([][]byte{forged(t, x)}); done || !errors.Is(err, ErrUnknownShare) {
			t.Fatalf("forged share %d: %v, %v; want ErrUnknownShare", x, done, err)
		}
	}
	if have, _ := s.Progress(); have != 0 {
		t.Fatalf("Progress after forged shares = %d, want 0", have)
	}
	for i, sh := range [][]byte{shares[4], shares[0], shares[2]} {
		if done, err := s.Unseal([][]byte{sh}); err != nil || done != (i == 2) {
			t.Fatalf("right share %d: %v, %v", i+1, done, err)
		}
	}
	if s.UpgradedCheck() != nil {
		t.Fatal("a committed check blob was upgraded")
	}
}

// #16.3 for deployments made before commitments: forged shares for every
// number are held (nothing can tell them yet), the combination fails, and
// the right shares, given next, replace them and unseal. The provider then
// offers a committed check blob for the same key, which refuses the forged
// shares and accepts the right ones.
func TestSealedLegacyForgedSharesGiveWayAndUpgrade(t *testing.T) {
	ctx := context.Background()
	shares, _, check := legacy(t)
	s := newSealed(t, check)
	if s.Committed() {
		t.Fatal("a format 1 blob reported commitments")
	}
	fakes := make([][]byte, 5)
	for x := range fakes {
		fakes[x] = forged(t, byte(x+1))
		if _, err := s.Unseal([][]byte{fakes[x]}); err != nil && !errors.Is(err, ErrWrongShares) {
			t.Fatalf("forged share %d: %v", x+1, err)
		}
	}
	for i, sh := range [][]byte{shares[3], shares[1], shares[0]} {
		done, err := s.Unseal([][]byte{sh})
		if i < 2 && (done || !errors.Is(err, ErrWrongShares)) {
			t.Fatalf("right share %d among forged ones: %v, %v", i+1, done, err)
		}
		if i == 2 && (!done || err != nil) {
			t.Fatalf("third right share: %v, %v; want unsealed", done, err)
		}
	}
	if got := s.Replaced(); got != 3 {
		t.Fatalf("Replaced = %d, want 3", got)
	}
	upgraded := s.UpgradedCheck()
	if upgraded == nil || upgraded[0] != checkFormat {
		t.Fatalf("no committed check blob after unsealing a format 1 one: %x", upgraded)
	}
	u := newSealed(t, upgraded)
	for x, f := range fakes {
		if _, err := u.Unseal([][]byte{f}); !errors.Is(err, ErrUnknownShare) {
			t.Fatalf("forged share %d against the upgraded blob: %v", x+1, err)
		}
	}
	if done, err := u.Unseal([][]byte{shares[2], shares[4], shares[1]}); !done || err != nil {
		t.Fatalf("right shares against the upgraded blob: %v, %v", done, err)
	}
	w, err := s.Wrap(ctx, []byte("dk"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := u.Unwrap(ctx, w, nil); err != nil || string(got) != "dk" {
		t.Fatalf("the upgraded blob's key differs: %q, %v", got, err)
	}
}

// Without commitments, a different share for a number already held is
// refused while the shares held have not failed to combine: a stranger
// cannot replace a holder's right share.
func TestSealedLegacyConflictRefusedBeforeFailure(t *testing.T) {
	shares, _, check := legacy(t)
	s := newSealed(t, check)
	if _, err := s.Unseal([][]byte{shares[0]}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Unseal([][]byte{forged(t, 1)}); !errors.Is(err, ErrInvalidShare) {
		t.Fatalf("a forged share for a held number: %v, want ErrInvalidShare", err)
	}
	if done, err := s.Unseal([][]byte{shares[1], shares[2]}); !done || err != nil {
		t.Fatalf("right shares: %v, %v", done, err)
	}
}

func TestSealedRefusesInvalidShares(t *testing.T) {
	shares, _, check := split(t)
	conflicting := bytes.Clone(shares[0])
	conflicting[5] ^= 1
	tests := []struct {
		name  string
		share []byte
	}{
		{"refused/short", shares[1][:32]},
		{"refused/long", append(bytes.Clone(shares[1]), 0)},
		{"refused/x = 0", append([]byte{0}, shares[1][1:]...)},
		{"refused/x above n", append([]byte{6}, shares[1][1:]...)},
		{"refused/empty", nil},
		{"refused/conflicts with a held share", conflicting},
		{"refused/not the committed share", forged(t, 2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSealed(t, check)
			if _, err := s.Unseal([][]byte{shares[0]}); err != nil {
				t.Fatal(err)
			}
			// The call is all or nothing: the good share beside the bad
			// one is not taken either.
			done, err := s.Unseal([][]byte{shares[2], tt.share})
			if done || !(errors.Is(err, ErrInvalidShare) || errors.Is(err, ErrUnknownShare)) {
				t.Fatalf("Unseal = %v, %v; want ErrInvalidShare or ErrUnknownShare", done, err)
			}
			if have, _ := s.Progress(); have != 1 {
				t.Fatalf("Progress = %d, want 1 (kept, nothing added)", have)
			}
		})
	}
}

func TestSealedIgnoresARepeatedShare(t *testing.T) {
	shares, _, check := split(t)
	s := newSealed(t, check)
	for range 3 {
		if done, err := s.Unseal([][]byte{shares[0], shares[0]}); done || err != nil {
			t.Fatalf("Unseal = %v, %v", done, err)
		}
	}
	if have, _ := s.Progress(); have != 1 {
		t.Fatalf("Progress = %d, want 1", have)
	}
}

func TestNewSealedRefusesBadCheck(t *testing.T) {
	_, _, check := split(t)
	tests := []struct {
		name  string
		check []byte
	}{
		{"refused/empty", nil},
		{"refused/truncated", check[:10]},
		{"refused/other format", append([]byte{3}, check[1:]...)},
		{"refused/commitments cut short", check[:3+5*32]},
		{"refused/threshold 1", append([]byte{1, 1}, check[2:]...)},
		{"refused/threshold above n", append([]byte{1, 6}, check[2:]...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewSealed(tt.check, nil); !errors.Is(err, ErrInvalidCheck) {
				t.Fatalf("err = %v, want ErrInvalidCheck", err)
			}
		})
	}
}

// A check blob whose threshold was lowered does not let fewer shares in,
// nor the right ones: the header is authenticated.
func TestSealedTamperedCheckNeverUnseals(t *testing.T) {
	shares, _, check := split(t)
	lowered := bytes.Clone(check)
	lowered[1] = 2
	s := newSealed(t, lowered)
	if done, err := s.Unseal(shares[:2]); done || !errors.Is(err, ErrWrongShares) {
		t.Fatalf("two shares with a lowered threshold: %v, %v", done, err)
	}
	if done, _ := s.Unseal(shares[2:]); done {
		t.Fatal("a tampered check blob accepted the key")
	}
}

func TestSplitRootKeyRefusesBadParameters(t *testing.T) {
	for _, p := range []struct{ n, t int }{{5, 1}, {2, 3}, {256, 2}} {
		if _, _, err := SplitRootKey(rand.Reader, p.n, p.t); !errors.Is(err, shamir.ErrParams) {
			t.Errorf("SplitRootKey(%d, %d): %v, want shamir.ErrParams", p.n, p.t, err)
		}
	}
	if _, _, err := SplitRootKey(bytes.NewReader(make([]byte, 40)), 5, 3); err == nil {
		t.Error("SplitRootKey with a short reader succeeded")
	}
}

func TestSealedConcurrentUse(t *testing.T) {
	shares, _, check := split(t)
	s := newSealed(t, check)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			_, _ = s.Unseal([][]byte{shares[i%5]})
			_, _ = s.Progress()
			if _, err := s.Wrap(ctx, []byte("dk"), nil); err != nil && !errors.Is(err, ErrSealed) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if s.Sealed() {
		t.Fatal("still sealed after every share was given")
	}
}

func BenchmarkSealedUnseal(b *testing.B) {
	texts, check, err := SplitRootKey(rand.Reader, 5, 3)
	if err != nil {
		b.Fatal(err)
	}
	var shares [][]byte
	for _, tx := range texts[:3] {
		sh, _ := shamir.DecodeShare(tx)
		shares = append(shares, sh)
	}
	for b.Loop() {
		s, _ := NewSealed(check, nil)
		if done, err := s.Unseal(shares); !done || err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzNewSealed(f *testing.F) {
	_, real, err := SplitRootKey(rand.Reader, 3, 2)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(real, []byte{1, 2, 3})
	f.Add([]byte{1, 2, 2}, []byte{})
	f.Fuzz(func(t *testing.T, check, seed []byte) {
		s, err := NewSealed(check, nil)
		if err != nil {
			if !errors.Is(err, ErrInvalidCheck) {
				t.Fatalf("err = %v", err)
			}
			return
		}
		if have, need := s.Progress(); have != 0 || need < 2 {
			t.Fatalf("Progress = %d/%d", have, need)
		}
		// Shares made up from seed unseal nothing real, and never panic.
		var shares [][]byte
		for x := 1; x <= 3 && len(seed) > 0; x++ {
			sh := make([]byte, shareSize)
			sh[0] = byte(x)
			for i := 1; i < shareSize; i++ {
				sh[i] = seed[(i+x)%len(seed)]
			}
			shares = append(shares, sh)
		}
		done, _ := s.Unseal(shares)
		if done && bytes.Equal(check, real) {
			t.Fatal("made-up shares unsealed a real check blob")
		}
	})
}
