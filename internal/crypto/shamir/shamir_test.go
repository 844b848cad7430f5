package shamir

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"testing"
)

// slowMul is schoolbook multiplication with branches, to check mul.
func slowMul(a, b byte) byte {
	var p uint16
	for i := range 8 {
		if b>>i&1 == 1 {
			p ^= uint16(a) << i
		}
	}
	for i := 15; i >= 8; i-- {
		if p>>i&1 == 1 {
			p ^= 0x11b << (i - 8)
		}
	}
	return byte(p)
}

func TestMulMatchesFIPS197(t *testing.T) {
	// FIPS-197 §4.2 and §4.2.1.
	tests := []struct{ a, b, want byte }{
		{0x57, 0x83, 0xc1},
		{0x57, 0x13, 0xfe},
		{0x57, 0x02, 0xae},
		{0x57, 0x04, 0x47},
		{0x57, 0x08, 0x8e},
		{0x57, 0x10, 0x07},
	}
	for _, tt := range tests {
		if got := mul(tt.a, tt.b); got != tt.want {
			t.Errorf("mul(%#02x, %#02x) = %#02x, want %#02x", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestMulAndInvOverTheWholeField(t *testing.T) {
	for a := range 256 {
		for b := range 256 {
			if got, want := mul(byte(a), byte(b)), slowMul(byte(a), byte(b)); got != want {
				t.Fatalf("mul(%#02x, %#02x) = %#02x, want %#02x", a, b, got, want)
			}
		}
		if a == 0 {
			if inv(0) != 0 {
				t.Fatalf("inv(0) = %#02x", inv(0))
			}
			continue
		}
		if p := mul(byte(a), inv(byte(a))); p != 1 {
			t.Fatalf("a·inv(a) = %#02x for a = %#02x", p, a)
		}
	}
}

func TestSplitKnownAnswer(t *testing.T) {
	// Threshold 2, coefficient 0x57: share x holds 0x42 ^ 0x57·x, and
	// FIPS-197 gives 0x57·{01,02,04,08,10}.
	shares, err := Split([]byte{0x42}, 16, 2, bytes.NewReader([]byte{0x57}))
	if err != nil {
		t.Fatal(err)
	}
	want := map[byte]byte{1: 0x42 ^ 0x57, 2: 0x42 ^ 0xae, 4: 0x42 ^ 0x47, 8: 0x42 ^ 0x8e, 16: 0x42 ^ 0x07}
	for i, s := range shares {
		if s[0] != byte(i+1) || len(s) != 2 {
			t.Fatalf("share %d = %x: want x = %d and one byte", i, s, i+1)
		}
		if y, ok := want[s[0]]; ok && s[1] != y {
			t.Errorf("share x=%d holds %#02x, want %#02x", s[0], s[1], y)
		}
	}
}

func random(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// subsets calls fn with every subset of shares of size k.
func subsets(shares [][]byte, k int, fn func([][]byte)) {
	var rec func(start int, cur [][]byte)
	rec = func(start int, cur [][]byte) {
		if len(cur) == k {
			fn(append([][]byte(nil), cur...))
			return
		}
		for i := start; i < len(shares); i++ {
			rec(i+1, append(cur, shares[i]))
		}
	}
	rec(0, nil)
}

func TestEveryThresholdSubsetRecovers(t *testing.T) {
	secret := random(t, 32)
	shares, err := Split(secret, 5, 3, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for k := 3; k <= 5; k++ {
		subsets(shares, k, func(sub [][]byte) {
			count++
			got, err := Combine(sub)
			if err != nil || !bytes.Equal(got, secret) {
				t.Errorf("Combine of %d shares %v: %v, recovered the secret: %v", k, xs(sub), err, bytes.Equal(got, secret))
			}
			// Order does not matter.
			rev := append([][]byte(nil), sub...)
			for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
				rev[i], rev[j] = rev[j], rev[i]
			}
			if got, _ := Combine(rev); !bytes.Equal(got, secret) {
				t.Errorf("Combine of %v reversed did not recover the secret", xs(sub))
			}
		})
	}
	if count != 10+5+1 {
		t.Fatalf("tried %d subsets, want 16", count)
	}
}

// Any threshold of right shares give back every other share Split made,
// and a wrong one among them gives none of them back.
func TestEvaluateGivesEveryShare(t *testing.T) {
	shares, err := Split(random(t, 32), 6, 3, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	subsets(shares, 3, func(sub [][]byte) {
		for _, want := range shares {
			got, err := Evaluate(sub, want[0])
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("Evaluate(%v, %d) = %x, %v; want share %d", xs(sub), want[0], got, err, want[0])
			}
		}
	})
	bad := [][]byte{shares[0], shares[1], append([]byte(nil), shares[2]...)}
	bad[2][5] ^= 1
	for _, want := range shares[3:] {
		if got, _ := Evaluate(bad, want[0]); bytes.Equal(got, want) {
			t.Fatalf("a wrong share still gave back share %d", want[0])
		}
	}
	if _, err := Evaluate(shares[:3], 0); err != ErrInvalidShares {
		t.Fatalf("Evaluate at 0: %v, want ErrInvalidShares", err)
	}
	if _, err := Evaluate(shares[:1], 4); err != ErrInvalidShares {
		t.Fatalf("Evaluate of one share: %v, want ErrInvalidShares", err)
	}
}

func TestFewerThanThresholdGiveAWrongSecret(t *testing.T) {
	secret := random(t, 32)
	shares, err := Split(secret, 5, 3, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	subsets(shares, 2, func(sub [][]byte) {
		got, err := Combine(sub)
		if err != nil {
			t.Fatalf("Combine of %v: %v", xs(sub), err)
		}
		if bytes.Equal(got, secret) {
			t.Errorf("two shares %v recovered a threshold-3 secret", xs(sub))
		}
	})
}

// Two shares of a threshold-3 split are consistent with every secret, each
// through exactly one third share: they say nothing about it.
func TestTwoSharesDoNotDetermineTheSecret(t *testing.T) {
	shares, err := Split([]byte{0x9c}, 3, 3, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var reached [256]int
	for c := range 256 {
		got, err := Combine([][]byte{shares[0], shares[1], {3, byte(c)}})
		if err != nil {
			t.Fatal(err)
		}
		reached[got[0]]++
	}
	for s, n := range reached {
		if n != 1 {
			t.Fatalf("secret %#02x is reached by %d third shares, want exactly 1", s, n)
		}
	}
}

// One share of a threshold-2 split is equally likely for every secret:
// over all coefficients, each (secret, share) pair occurs exactly once.
func TestOneShareIsUniformForEverySecret(t *testing.T) {
	for _, x := range []int{1, 2, 255} {
		var seen [256][256]bool
		for s := range 256 {
			for c := range 256 {
				shares, err := Split([]byte{byte(s)}, max(x, 2), 2, bytes.NewReader([]byte{byte(c)}))
				if err != nil {
					t.Fatal(err)
				}
				y := shares[x-1][1]
				if seen[s][y] {
					t.Fatalf("x=%d: secret %#02x gives share %#02x for two coefficients", x, s, y)
				}
				seen[s][y] = true
			}
		}
	}
}

func xs(shares [][]byte) []byte {
	out := make([]byte, len(shares))
	for i, s := range shares {
		out[i] = s[0]
	}
	return out
}

func TestSplitRefusesBadParameters(t *testing.T) {
	tests := []struct {
		name      string
		secret    []byte
		n, thresh int
	}{
		{"refused/threshold 1", []byte{1}, 3, 1},
		{"refused/threshold 0", []byte{1}, 3, 0},
		{"refused/threshold above n", []byte{1}, 3, 4},
		{"refused/256 shares", []byte{1}, 256, 3},
		{"refused/negative n", []byte{1}, -1, 2},
		{"refused/empty secret", nil, 3, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Split(tt.secret, tt.n, tt.thresh, rand.Reader); !errors.Is(err, ErrParams) {
				t.Fatalf("err = %v, want ErrParams", err)
			}
		})
	}
	t.Run("ok/255 shares threshold 255", func(t *testing.T) {
		secret := random(t, 4)
		shares, err := Split(secret, 255, 255, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := Combine(shares); !bytes.Equal(got, secret) {
			t.Fatal("255 of 255 did not recover the secret")
		}
		if got, _ := Combine(shares[1:]); bytes.Equal(got, secret) {
			t.Fatal("254 of a threshold-255 split recovered the secret")
		}
	})
	t.Run("fail/short random reader", func(t *testing.T) {
		if _, err := Split(random(t, 32), 5, 3, bytes.NewReader(make([]byte, 63))); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
		}
	})
}

func TestCombineRefusesInvalidSets(t *testing.T) {
	shares, err := Split(random(t, 8), 4, 2, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	zeroX := append([]byte{0}, shares[1][1:]...)
	sameX := append([]byte{shares[0][0]}, shares[1][1:]...)
	tests := []struct {
		name   string
		shares [][]byte
	}{
		{"refused/no shares", nil},
		{"refused/one share", shares[:1]},
		{"refused/duplicate share", [][]byte{shares[0], shares[0]}},
		{"refused/two shares with the same x", [][]byte{shares[0], sameX}},
		{"refused/x = 0", [][]byte{shares[0], zeroX}},
		{"refused/mismatched lengths", [][]byte{shares[0], shares[1][:5]}},
		{"refused/no data", [][]byte{{1}, {2}}},
		{"refused/empty shares", [][]byte{{}, {}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := Combine(tt.shares); !errors.Is(err, ErrInvalidShares) || got != nil {
				t.Fatalf("Combine = %x, %v; want ErrInvalidShares", got, err)
			}
		})
	}
}

func FuzzSplitCombine(f *testing.F) {
	f.Add([]byte("root key"), uint8(5), uint8(3), []byte("seed"))
	f.Add([]byte{0}, uint8(2), uint8(2), []byte{})
	f.Fuzz(func(t *testing.T, secret []byte, n, threshold uint8, seed []byte) {
		if len(secret) == 0 || len(secret) > 64 || threshold < 2 || threshold > n {
			t.Skip()
		}
		// A deterministic stream from seed, long enough for any split.
		r := bytes.NewReader(bytes.Repeat(append(seed, 1), 64*255/(len(seed)+1)+1))
		shares, err := Split(secret, int(n), int(threshold), r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Combine(shares[len(shares)-int(threshold):])
		if err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("last %d shares: %x, %v", threshold, got, err)
		}
		got, err = Combine(shares)
		if err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("all shares: %x, %v", got, err)
		}
	})
}

func FuzzCombine(f *testing.F) {
	f.Add([]byte{1, 2, 3}, []byte{2, 4, 5}, []byte{3, 6, 7})
	f.Fuzz(func(t *testing.T, a, b, c []byte) {
		got, err := Combine([][]byte{a, b, c})
		if err == nil && len(got) != len(a)-1 {
			t.Fatalf("secret of %d bytes from shares of %d", len(got), len(a))
		}
	})
}

func BenchmarkSplit(b *testing.B) {
	secret := make([]byte, 32)
	for _, p := range []struct{ n, t int }{{5, 3}, {255, 128}} {
		b.Run(fmt.Sprintf("32B/%dof%d", p.t, p.n), func(b *testing.B) {
			for b.Loop() {
				if _, err := Split(secret, p.n, p.t, rand.Reader); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkCombine(b *testing.B) {
	shares, err := Split(make([]byte, 32), 5, 3, rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Combine(shares[:3]); err != nil {
			b.Fatal(err)
		}
	}
}
