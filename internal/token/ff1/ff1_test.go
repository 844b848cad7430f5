package ff1

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	capff1 "github.com/capitalone/fpe/ff1"
)

const alphabet36 = "0123456789abcdefghijklmnopqrstuvwxyz"

type sample struct {
	Sample int    `json:"sample"`
	AES    int    `json:"aes"`
	Key    string `json:"key"`
	Radix  int    `json:"radix"`
	Tweak  string `json:"tweak"`
	PT     string `json:"pt"`
	CT     string `json:"ct"`
}

func loadSamples(t *testing.T) []sample {
	t.Helper()
	raw, err := os.ReadFile("testdata/nist_ff1_samples.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Samples []sample `json:"samples"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Samples) != 9 {
		t.Fatalf("want the 9 NIST FF1 samples, got %d", len(doc.Samples))
	}
	return doc.Samples
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNISTSamples(t *testing.T) {
	for _, s := range loadSamples(t) {
		t.Run(fmt.Sprintf("sample%d/AES-%d/radix%d", s.Sample, s.AES, s.Radix), func(t *testing.T) {
			t.Parallel()
			key := mustHex(t, s.Key)
			if len(key)*8 != s.AES {
				t.Fatalf("key is %d bits, sample says AES-%d", len(key)*8, s.AES)
			}
			tweak := mustHex(t, s.Tweak)
			c, err := New(key, s.Radix)
			if err != nil {
				t.Fatal(err)
			}
			al := alphabet36[:s.Radix]
			ct, err := c.EncryptString(tweak, s.PT, al)
			if err != nil {
				t.Fatal(err)
			}
			if ct != s.CT {
				t.Errorf("Encrypt = %s, want %s", ct, s.CT)
			}
			pt, err := c.DecryptString(tweak, s.CT, al)
			if err != nil {
				t.Fatal(err)
			}
			if pt != s.PT {
				t.Errorf("Decrypt = %s, want %s", pt, s.PT)
			}
			// The numeral API gives the same answer as the string API.
			x := make([]uint16, len(s.PT))
			for i, r := range s.PT {
				x[i] = uint16(strings.IndexRune(al, r))
			}
			y, err := c.Encrypt(tweak, x)
			if err != nil {
				t.Fatal(err)
			}
			var sb strings.Builder
			for _, d := range y {
				sb.WriteByte(al[d])
			}
			if sb.String() != s.CT {
				t.Errorf("Encrypt numerals = %s, want %s", sb.String(), s.CT)
			}
		})
	}
}

// TestMatchesCapitalOne compares this implementation with
// github.com/capitalone/fpe/ff1 over random keys, tweaks, radixes and inputs,
// on both the uint64 and the big.Int paths.
func TestMatchesCapitalOne(t *testing.T) {
	rng := rand.New(rand.NewChaCha8([32]byte{'f', 'f', '1'}))
	iterations := 600
	if testing.Short() {
		iterations = 100
	}
	for it := range iterations {
		key := make([]byte, []int{16, 24, 32}[rng.IntN(3)])
		fillRand(rng, key)
		radix := 2 + rng.IntN(35)
		tweak := make([]byte, rng.IntN(40))
		fillRand(rng, tweak)
		c, err := New(key, radix)
		if err != nil {
			t.Fatal(err)
		}
		n := c.MinLen() + rng.IntN(70)
		al := alphabet36[:radix]
		buf := make([]byte, n)
		for i := range buf {
			buf[i] = al[rng.IntN(radix)]
		}
		pt := string(buf)

		ref, err := capff1.NewCipher(radix, len(tweak), key, tweak)
		if err != nil {
			t.Fatal(err)
		}
		want, err := ref.Encrypt(pt)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.EncryptString(tweak, pt, al)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("iteration %d (radix %d, n %d, t %d): got %s, capitalone %s", it, radix, n, len(tweak), got, want)
		}
		back, err := c.DecryptString(tweak, got, al)
		if err != nil {
			t.Fatal(err)
		}
		if back != pt {
			t.Fatalf("iteration %d: round trip gave %s, want %s", it, back, pt)
		}
	}
}

func fillRand(rng *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
}

// TestBigPathMatchesUint64Path runs inputs that fit in uint64 through the
// big.Int code too, so radixes above 36 (which capitalone cannot check) are
// covered by two independent arithmetic paths.
func TestBigPathMatchesUint64Path(t *testing.T) {
	rng := rand.New(rand.NewChaCha8([32]byte{'b', 'i', 'g'}))
	for it := range 300 {
		key := make([]byte, 32)
		fillRand(rng, key)
		radix := []int{2, 10, 26, 36, 62, 255, 256, 1000, 65535, 65536}[rng.IntN(10)]
		c, err := New(key, radix)
		if err != nil {
			t.Fatal(err)
		}
		// Lengths with radix^v < 2^64.
		maxN := c.MinLen()
		for {
			if _, ok := pow64(radix, (maxN+1)-(maxN+1)/2); !ok {
				break
			}
			maxN++
		}
		n := c.MinLen() + rng.IntN(maxN-c.MinLen()+1)
		x := make([]uint16, n)
		for i := range x {
			x[i] = uint16(rng.IntN(radix))
		}
		tweak := make([]byte, rng.IntN(33))
		fillRand(rng, tweak)
		fast, err := c.Encrypt(tweak, x)
		if err != nil {
			t.Fatal(err)
		}
		slow := c.cryptBig(tweak, x, true)
		if !slices.Equal(fast, slow) {
			t.Fatalf("iteration %d (radix %d, n %d): uint64 path %v, big path %v", it, radix, n, fast, slow)
		}
		if back := c.cryptBig(tweak, fast, false); !slices.Equal(back, x) {
			t.Fatalf("iteration %d: big path decrypt did not invert", it)
		}
	}
}

func TestNewRejects(t *testing.T) {
	key := make([]byte, 16)
	tests := []struct {
		name  string
		key   []byte
		radix int
		want  error
	}{
		{"fail/key-15-bytes", make([]byte, 15), 10, ErrKeySize},
		{"fail/key-empty", nil, 10, ErrKeySize},
		{"fail/key-33-bytes", make([]byte, 33), 10, ErrKeySize},
		{"fail/radix-1", key, 1, ErrRadix},
		{"fail/radix-0", key, 0, ErrRadix},
		{"fail/radix-65537", key, 65537, ErrRadix},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.key, tt.radix)
			if !errors.Is(err, tt.want) {
				t.Fatalf("New err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestMinLen(t *testing.T) {
	tests := []struct {
		radix, want int
	}{
		{2, 20}, {10, 6}, {26, 5}, {36, 4}, {62, 4}, {100, 3}, {1000, 2}, {1001, 2}, {65536, 2},
	}
	for _, tt := range tests {
		c, err := New(make([]byte, 16), tt.radix)
		if err != nil {
			t.Fatal(err)
		}
		if c.MinLen() != tt.want {
			t.Errorf("radix %d: MinLen = %d, want %d", tt.radix, c.MinLen(), tt.want)
		}
	}
}

func TestCryptRejects(t *testing.T) {
	c, err := New(make([]byte, 32), 10)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		x    []uint16
		want error
	}{
		{"fail/5-digits-below-domain", []uint16{1, 2, 3, 4, 5}, ErrLength},
		{"fail/empty", nil, ErrLength},
		{"fail/numeral-equal-radix", []uint16{1, 2, 3, 4, 5, 10}, ErrNumeral},
		{"fail/numeral-huge", []uint16{1, 2, 3, 4, 5, 65535}, ErrNumeral},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := c.Encrypt(nil, tt.x); !errors.Is(err, tt.want) {
				t.Errorf("Encrypt err = %v, want %v", err, tt.want)
			}
			if _, err := c.Decrypt(nil, tt.x); !errors.Is(err, tt.want) {
				t.Errorf("Decrypt err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestStringRejects(t *testing.T) {
	c, err := New(make([]byte, 16), 10)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, s, alphabet string
		want              error
	}{
		{"fail/alphabet-too-short", "123456", "012345678", ErrAlphabet},
		{"fail/alphabet-too-long", "123456", "0123456789a", ErrAlphabet},
		{"fail/alphabet-duplicate", "123456", "0123456780", ErrAlphabet},
		{"fail/alphabet-duplicate-unicode", "123456", "01234567éé", ErrAlphabet},
		{"fail/character-not-in-alphabet", "12345a", "0123456789", ErrNumeral},
		{"fail/too-short", "12345", "0123456789", ErrLength},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.EncryptString(nil, tt.s, tt.alphabet)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if strings.Contains(err.Error(), tt.s) {
				t.Fatalf("error %q contains the input", err)
			}
		})
	}
}

func TestStringUnicodeAlphabet(t *testing.T) {
	c, err := New(make([]byte, 16), 12)
	if err != nil {
		t.Fatal(err)
	}
	al := "αβγδεζηθικλμ"
	pt := "αββγδεζηθ"
	ct, err := c.EncryptString([]byte("t"), pt, al)
	if err != nil {
		t.Fatal(err)
	}
	if ct == pt || len([]rune(ct)) != len([]rune(pt)) {
		t.Fatalf("ciphertext %q: want a different string of %d runes", ct, len([]rune(pt)))
	}
	for _, r := range ct {
		if !strings.ContainsRune(al, r) {
			t.Fatalf("ciphertext has %q outside the alphabet", r)
		}
	}
	back, err := c.DecryptString([]byte("t"), ct, al)
	if err != nil || back != pt {
		t.Fatalf("DecryptString = %q, %v; want %q", back, err, pt)
	}
}

func TestTweakChangesCiphertext(t *testing.T) {
	c, err := New(bytes.Repeat([]byte{7}, 32), 10)
	if err != nil {
		t.Fatal(err)
	}
	x := []uint16{4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}
	a, _ := c.Encrypt([]byte("1111"), x)
	b, _ := c.Encrypt([]byte("1112"), x)
	if slices.Equal(a, b) {
		t.Fatal("different tweaks gave the same ciphertext")
	}
	if slices.Equal(a, x) {
		t.Fatal("ciphertext equals plaintext")
	}
}

func TestLongInputRoundTrips(t *testing.T) {
	c, err := New(make([]byte, 24), 65536)
	if err != nil {
		t.Fatal(err)
	}
	x := make([]uint16, 1000)
	for i := range x {
		x[i] = uint16(i * 7919)
	}
	tweak := make([]byte, 100)
	y, err := c.Encrypt(tweak, x)
	if err != nil {
		t.Fatal(err)
	}
	z, err := c.Decrypt(tweak, y)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(x, z) {
		t.Fatal("round trip failed")
	}
}

func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte("0123456789abcdef"), uint16(10), []byte{}, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte("0123456789abcdef01234567"), uint16(36), []byte("777pqr777"), []byte("0123456789abcdefghi"))
	f.Add(bytes.Repeat([]byte{1}, 32), uint16(65535), []byte("t"), []byte{0xff, 0xff, 0, 0, 1, 2, 3, 4})
	f.Add(bytes.Repeat([]byte{2}, 32), uint16(1), bytes.Repeat([]byte{9}, 40), bytes.Repeat([]byte{1}, 80))
	f.Fuzz(func(t *testing.T, keySeed []byte, radixSeed uint16, tweak, in []byte) {
		key := make([]byte, []int{16, 24, 32}[len(keySeed)%3])
		copy(key, keySeed)
		radix := int(radixSeed) + 1
		if radix < 2 {
			radix = 2
		}
		c, err := New(key, radix)
		if err != nil {
			t.Fatal(err)
		}
		// Two input bytes per numeral for large radixes, one otherwise.
		var x []uint16
		if radix > 256 {
			for i := 0; i+1 < len(in); i += 2 {
				pair := uint32(in[i])<<8 | uint32(in[i+1])
				x = append(x, uint16(pair%uint32(radix)))
			}
		} else {
			for _, b := range in {
				x = append(x, uint16(int(b)%radix))
			}
		}
		y, err := c.Encrypt(tweak, x)
		if len(x) < c.MinLen() {
			if !errors.Is(err, ErrLength) {
				t.Fatalf("short input: err = %v, want ErrLength", err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(y) != len(x) {
			t.Fatalf("length changed: %d → %d", len(x), len(y))
		}
		for _, d := range y {
			if int(d) >= radix {
				t.Fatalf("numeral %d ≥ radix %d", d, radix)
			}
		}
		z, err := c.Decrypt(tweak, y)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(x, z) {
			t.Fatal("decrypt(encrypt(x)) != x")
		}
	})
}

func BenchmarkEncryptCard16(b *testing.B) {
	c, err := New(bytes.Repeat([]byte{0x42}, 32), 10)
	if err != nil {
		b.Fatal(err)
	}
	x := []uint16{4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}
	tweak := []byte("1111")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Encrypt(tweak, x); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncryptString16(b *testing.B) {
	c, err := New(bytes.Repeat([]byte{0x42}, 32), 10)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.EncryptString([]byte("1111"), "4111111111111111", "0123456789"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncryptBig100(b *testing.B) {
	c, err := New(bytes.Repeat([]byte{0x42}, 32), 10)
	if err != nil {
		b.Fatal(err)
	}
	x := make([]uint16, 100)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Encrypt(nil, x); err != nil {
			b.Fatal(err)
		}
	}
}
