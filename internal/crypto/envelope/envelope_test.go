package envelope

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"testing"
	"testing/iotest"

	"github.com/cofferhq/coffer/internal/secret"
)

func testAEAD(tb testing.TB, version uint32) *AEAD {
	tb.Helper()
	k, err := secret.Random(rand.Reader, KeySize)
	if err != nil {
		tb.Fatal(err)
	}
	a, err := New(k, version)
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

func mustSeal(tb testing.TB, a *AEAD, pt, aad []byte) []byte {
	tb.Helper()
	env, err := a.Seal(rand.Reader, pt, aad)
	if err != nil {
		tb.Fatal(err)
	}
	return env
}

func unhex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestVectors checks envelopes made by an independent implementation of the
// documented format (testdata/gen_vectors.py, pyca/cryptography), so the
// format cannot drift without this test failing.
func TestVectors(t *testing.T) {
	raw, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vectors []struct {
		Name      string   `json:"name"`
		Key       string   `json:"key"`
		Version   uint32   `json:"version"`
		Nonce     string   `json:"nonce"`
		Plaintext string   `json:"plaintext"`
		AADParts  []string `json:"aad_parts"`
		AAD       string   `json:"aad"`
		Envelope  string   `json:"envelope"`
	}
	if err := json.Unmarshal(raw, &vectors); err != nil {
		t.Fatal(err)
	}
	if len(vectors) == 0 {
		t.Fatal("no vectors")
	}
	for _, v := range vectors {
		t.Run(v.Name, func(t *testing.T) {
			t.Parallel()
			a, err := New(secret.NewKey(unhex(t, v.Key)), v.Version)
			if err != nil {
				t.Fatal(err)
			}
			aad := AAD(v.AADParts...)
			if want := unhex(t, v.AAD); !bytes.Equal(aad, want) {
				t.Fatalf("AAD = %x, want %x", aad, want)
			}
			pt, want := unhex(t, v.Plaintext), unhex(t, v.Envelope)
			got, err := a.Seal(bytes.NewReader(unhex(t, v.Nonce)), pt, aad)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("Seal = %x\nwant   %x", got, want)
			}
			opened, err := a.Open(want, aad)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(opened, pt) {
				t.Fatalf("Open = %x, want %x", opened, pt)
			}
			if ver, err := KeyVersion(want); err != nil || ver != v.Version {
				t.Fatalf("KeyVersion = %d, %v; want %d", ver, err, v.Version)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	a := testAEAD(t, 3)
	for _, n := range []int{0, 1, 15, 16, 17, 100, 64 << 10} {
		pt := make([]byte, n)
		_, _ = rand.Read(pt)
		aad := AAD("customers", "rec_1", "email", "3")
		env := mustSeal(t, a, pt, aad)
		if len(env) != n+Overhead {
			t.Errorf("len(env) = %d for %d bytes, want %d", len(env), n, n+Overhead)
		}
		got, err := a.Open(env, aad)
		if err != nil {
			t.Fatalf("Open of %d bytes: %v", n, err)
		}
		if !bytes.Equal(got, pt) {
			t.Fatalf("round trip of %d bytes changed the plaintext", n)
		}
		if a.Version() != 3 {
			t.Fatalf("Version = %d", a.Version())
		}
	}
}

func TestSealUsesFreshNonces(t *testing.T) {
	a := testAEAD(t, 1)
	e1, e2 := mustSeal(t, a, []byte("same"), nil), mustSeal(t, a, []byte("same"), nil)
	if bytes.Equal(e1, e2) {
		t.Fatal("two seals of the same plaintext gave the same envelope")
	}
}

func TestSealFailsWhenRandFails(t *testing.T) {
	a := testAEAD(t, 1)
	boom := errors.New("no entropy")
	for name, r := range map[string]io.Reader{
		"error":  iotest.ErrReader(boom),
		"short":  bytes.NewReader(make([]byte, NonceSize-1)),
		"closed": bytes.NewReader(nil),
	} {
		t.Run(name, func(t *testing.T) {
			env, err := a.Seal(r, []byte("x"), nil)
			if err == nil || env != nil {
				t.Fatalf("Seal = %x, %v; want an error", env, err)
			}
		})
	}
}

func TestOpenFailsWithErrDecrypt(t *testing.T) {
	a := testAEAD(t, 1)
	aad := AAD("customers", "rec_1", "email", "1")
	env := mustSeal(t, a, []byte("alice@example.com"), aad)

	otherKey := testAEAD(t, 1)
	// Two AEADs over the same key bytes with different versions: a rewritten
	// key version byte must still fail, because the header is authenticated.
	kb, _ := secret.Random(rand.Reader, KeySize)
	v1, _ := New(kb, 1)
	v2, _ := New(kb, 2)
	envV1 := mustSeal(t, v1, []byte("x"), aad)
	relabelled := bytes.Clone(envV1)
	binary.BigEndian.PutUint32(relabelled[1:], 2)

	tests := []struct {
		name string
		a    *AEAD
		env  []byte
		aad  []byte
	}{
		{"fail/wrong key", otherKey, env, aad},
		{"fail/wrong aad", a, env, AAD("customers", "rec_2", "email", "1")},
		{"fail/no aad", a, env, nil},
		{"fail/aad moved between parts", a, env, AAD("customers", "rec_1email", "", "1")},
		{"fail/truncated by one byte", a, env[:len(env)-1], aad},
		{"fail/truncated to overhead", a, env[:Overhead], aad},
		{"fail/header only", a, env[:HeaderSize], aad},
		{"fail/extra byte appended", a, append(bytes.Clone(env), 0), aad},
		{"fail/empty", a, []byte{}, aad},
		{"fail/nil", a, nil, aad},
		{"fail/unknown format version", a, append([]byte{0x02}, env[1:]...), aad},
		{"fail/envelope of another version", v2, envV1, aad},
		{"fail/key version relabelled under the same key bytes", v2, relabelled, aad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pt, err := tt.a.Open(tt.env, tt.aad)
			if err != ErrDecrypt || pt != nil { //nolint:errorlint // exactly the one opaque error, not a wrapper
				t.Fatalf("Open = %q, %v; want nil, ErrDecrypt itself", pt, err)
			}
		})
	}
}

func TestEveryBitFlipFails(t *testing.T) {
	a := testAEAD(t, 0x01020304)
	aad := AAD("c", "r", "f", "16909060")
	env := mustSeal(t, a, bytes.Repeat([]byte("sensitive"), 11), aad)
	for i := range len(env) * 8 {
		flipped := bytes.Clone(env)
		flipped[i/8] ^= 1 << (i % 8)
		if pt, err := a.Open(flipped, aad); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("flipping bit %d: Open = %q, %v; want ErrDecrypt", i, pt, err)
		}
	}
	for i := range len(aad) * 8 {
		flipped := bytes.Clone(aad)
		flipped[i/8] ^= 1 << (i % 8)
		if _, err := a.Open(env, flipped); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("flipping aad bit %d opened", i)
		}
	}
}

func TestNewRejectsKeySizes(t *testing.T) {
	for _, n := range []int{0, 16, 24, 31, 33, 64} {
		if _, err := New(secret.NewKey(make([]byte, n)), 1); !errors.Is(err, ErrKeySize) {
			t.Errorf("New with a %d-byte key: err = %v, want ErrKeySize", n, err)
		}
	}
	if _, err := New(secret.Key{}, 1); !errors.Is(err, ErrKeySize) {
		t.Errorf("New with a zero Key: err = %v, want ErrKeySize", err)
	}
}

func TestNewCopiesTheKey(t *testing.T) {
	k, _ := secret.Random(rand.Reader, KeySize)
	a, err := New(k, 1)
	if err != nil {
		t.Fatal(err)
	}
	env := mustSeal(t, a, []byte("x"), nil)
	k.Zero()
	if _, err := a.Open(env, nil); err != nil {
		t.Fatalf("Open after zeroing the caller's key: %v", err)
	}
}

func TestKeyVersion(t *testing.T) {
	good := make([]byte, Overhead)
	good[0] = FormatVersion
	binary.BigEndian.PutUint32(good[1:], 0xCAFE)
	tests := []struct {
		name    string
		env     []byte
		want    uint32
		wantErr error
	}{
		{"ok/minimum length", good, 0xCAFE, nil},
		{"ok/with plaintext", append(bytes.Clone(good), 1, 2, 3), 0xCAFE, nil},
		{"fail/nil", nil, 0, ErrMalformed},
		{"fail/header only", good[:HeaderSize], 0, ErrMalformed},
		{"fail/one byte short", good[:Overhead-1], 0, ErrMalformed},
		{"fail/format version 0", append([]byte{0}, good[1:]...), 0, ErrMalformed},
		{"fail/format version 2", append([]byte{2}, good[1:]...), 0, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := KeyVersion(tt.env)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Fatalf("KeyVersion = %d, %v; want %d, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestAADIsUnambiguous(t *testing.T) {
	tests := []struct {
		name string
		a, b []string
	}{
		{"differ/separator moved", []string{"a|b", "c"}, []string{"a", "b|c"}},
		{"differ/split vs joined", []string{"ab"}, []string{"a", "b"}},
		{"differ/none vs one empty", nil, []string{""}},
		{"differ/one vs two empty", []string{""}, []string{"", ""}},
		{"differ/length byte lookalike", []string{"\x01a"}, []string{"a"}},
		{"differ/order", []string{"a", "b"}, []string{"b", "a"}},
		{"differ/long part", []string{string(make([]byte, 200))}, []string{string(make([]byte, 199)), ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if bytes.Equal(AAD(tt.a...), AAD(tt.b...)) {
				t.Fatalf("AAD(%q) == AAD(%q)", tt.a, tt.b)
			}
		})
	}
	if !bytes.Equal(AAD("c", "r"), AAD("c", "r")) {
		t.Fatal("AAD is not deterministic")
	}
}

func FuzzOpen(f *testing.F) {
	k := secret.NewKey(bytes.Repeat([]byte{7}, KeySize))
	a, err := New(k, 5)
	if err != nil {
		f.Fatal(err)
	}
	aad := AAD("c", "r", "f", "5")
	genuine, err := a.Seal(bytes.NewReader(make([]byte, NonceSize)), []byte("genuine"), aad)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(genuine, aad)
	f.Add(genuine[:Overhead], aad)
	f.Add([]byte{}, []byte{})
	f.Add([]byte{1, 0, 0, 0, 5}, aad)
	f.Fuzz(func(t *testing.T, env, ad []byte) {
		pt, err := a.Open(env, ad)
		if err != nil {
			if !errors.Is(err, ErrDecrypt) || pt != nil {
				t.Fatalf("Open = %q, %v; want nil, ErrDecrypt", pt, err)
			}
			return
		}
		// Only the genuine envelope, byte for byte, with its own aad opens:
		// the format is not malleable.
		if !bytes.Equal(env, genuine) || !bytes.Equal(ad, aad) || string(pt) != "genuine" {
			t.Fatalf("forged envelope %x with aad %x opened to %q", env, ad, pt)
		}
	})
}

func FuzzKeyVersion(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, Overhead))
	f.Add(append([]byte{1, 0, 0, 0, 9}, make([]byte, 28)...))
	f.Fuzz(func(t *testing.T, env []byte) {
		v, err := KeyVersion(env)
		valid := len(env) >= Overhead && env[0] == FormatVersion
		switch {
		case valid && err != nil:
			t.Fatalf("KeyVersion rejected a well-formed header: %v", err)
		case !valid && !errors.Is(err, ErrMalformed):
			t.Fatalf("KeyVersion(%x) = %d, %v; want ErrMalformed", env, v, err)
		case valid && v != binary.BigEndian.Uint32(env[1:5]):
			t.Fatalf("KeyVersion = %d, want %d", v, binary.BigEndian.Uint32(env[1:5]))
		}
	})
}

func FuzzRoundTrip(f *testing.F) {
	k := secret.NewKey(bytes.Repeat([]byte{9}, KeySize))
	f.Add([]byte("alice@example.com"), []byte("aad"), uint32(1), uint(0))
	f.Add([]byte{}, []byte{}, uint32(0), uint(200))
	f.Fuzz(func(t *testing.T, pt, aad []byte, version uint32, bit uint) {
		a, err := New(k, version)
		if err != nil {
			t.Fatal(err)
		}
		env, err := a.Seal(rand.Reader, pt, aad)
		if err != nil {
			t.Fatal(err)
		}
		if v, err := KeyVersion(env); err != nil || v != version {
			t.Fatalf("KeyVersion = %d, %v; want %d", v, err, version)
		}
		got, err := a.Open(env, aad)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("round trip: %q, %v", got, err)
		}
		bit %= uint(len(env) * 8)
		env[bit/8] ^= 1 << (bit % 8)
		if _, err := a.Open(env, aad); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("envelope with bit %d flipped: err = %v, want ErrDecrypt", bit, err)
		}
	})
}

func FuzzAAD(f *testing.F) {
	f.Add("a|b", "c", "a", "b|c")
	f.Add("", "", "", "")
	f.Fuzz(func(t *testing.T, a, b, c, d string) {
		same := a == c && b == d
		if got := bytes.Equal(AAD(a, b), AAD(c, d)); got != same {
			t.Fatalf("AAD(%q,%q) == AAD(%q,%q) is %v, want %v", a, b, c, d, got, same)
		}
	})
}

func BenchmarkSealOpen100(b *testing.B) {
	a := testAEAD(b, 1)
	pt := make([]byte, 100)
	aad := AAD("customers", "0190f1b2-7c1e-7d4a-9f3e-2b1c0d9e8f7a", "email", "1")
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		env, err := a.Seal(rand.Reader, pt, aad)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := a.Open(env, aad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSeal100(b *testing.B) {
	a := testAEAD(b, 1)
	pt := make([]byte, 100)
	aad := AAD("customers", "0190f1b2-7c1e-7d4a-9f3e-2b1c0d9e8f7a", "email", "1")
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Seal(rand.Reader, pt, aad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen100(b *testing.B) {
	a := testAEAD(b, 1)
	aad := AAD("customers", "0190f1b2-7c1e-7d4a-9f3e-2b1c0d9e8f7a", "email", "1")
	env := mustSeal(b, a, make([]byte, 100), aad)
	b.SetBytes(100)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Open(env, aad); err != nil {
			b.Fatal(err)
		}
	}
}
