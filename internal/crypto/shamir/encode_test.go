package shamir

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
)

func TestEncodeShareKnownAnswer(t *testing.T) {
	// 33 bytes of share and 4 of checksum: 60 letters in 12 groups.
	share := append([]byte{3}, bytes.Repeat([]byte{0xa5}, 32)...)
	text := EncodeShare(share)
	if !strings.HasPrefix(text, "cs1-") || len(text) != 4+60+11 || strings.Count(text, "-") != 12 {
		t.Fatalf("EncodeShare = %q: want cs1- and 12 groups of 5", text)
	}
	if text != EncodeShare(share) {
		t.Fatal("EncodeShare is not deterministic")
	}
	got, err := DecodeShare(text)
	if err != nil || !bytes.Equal(got, share) {
		t.Fatalf("DecodeShare = %x, %v", got, err)
	}
}

func TestDecodeShareTolerance(t *testing.T) {
	share := append([]byte{7}, random(t, 32)...)
	text := EncodeShare(share)
	for _, in := range []string{text, strings.ToUpper(text), "  " + text + "\n", "\t" + strings.ToUpper(text[:20]) + text[20:] + "\r\n"} {
		got, err := DecodeShare(in)
		if err != nil || !bytes.Equal(got, share) {
			t.Errorf("DecodeShare(variant) = %v", err)
		}
	}
}

// Every single-letter typo, every swap of neighbouring letters and every
// dropped letter is caught.
func TestDecodeShareCatchesTypos(t *testing.T) {
	share := append([]byte{2}, random(t, 32)...)
	text := EncodeShare(share)
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	check := func(what, typo string) {
		t.Helper()
		got, err := DecodeShare(typo)
		if err == nil {
			t.Fatalf("%s: DecodeShare accepted a typo (got %x)", what, got)
		}
		if !errors.Is(err, ErrShareChecksum) && !errors.Is(err, ErrShareFormat) {
			t.Fatalf("%s: err = %v", what, err)
		}
		if strings.Contains(err.Error(), text[4:14]) {
			t.Fatalf("%s: error %q echoes the share", what, err)
		}
	}
	checksumErrors := 0
	for i := 4; i < len(text); i++ {
		if text[i] == '-' {
			continue
		}
		for _, c := range alphabet {
			if byte(c) == text[i] {
				continue
			}
			typo := text[:i] + string(c) + text[i+1:]
			check("substitution", typo)
			if _, err := DecodeShare(typo); errors.Is(err, ErrShareChecksum) {
				checksumErrors++
			}
		}
		if j := i + 1; j < len(text) && text[j] != '-' && text[i] != text[j] {
			check("swap", text[:i]+text[j:j+1]+text[i:i+1]+text[j+1:])
		}
		check("drop", text[:i]+text[i+1:])
	}
	if checksumErrors == 0 {
		t.Fatal("no substitution was reported as a checksum mismatch")
	}
}

func TestDecodeShareRefusesMalformed(t *testing.T) {
	good := EncodeShare(append([]byte{1}, random(t, 32)...))
	tests := []struct {
		name string
		text string
	}{
		{"refused/empty", ""},
		{"refused/prefix only", "cs1-"},
		{"refused/other prefix", "cs2-" + good[4:]},
		{"refused/no prefix", good[4:]},
		{"refused/missing dashes", "cs1-" + strings.ReplaceAll(good[4:], "-", "")},
		{"refused/dash moved", good[:8] + "-" + good[8:9] + good[10:]},
		{"refused/trailing dash", good + "-"},
		{"refused/double dash", good[:9] + "-" + good[9:]},
		{"refused/inner space", good[:10] + " " + good[10:]},
		{"refused/digit 1", good[:5] + "1" + good[6:]},
		{"refused/padding", good + "="},
		{"refused/too short", "cs1-aaaaa-a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := DecodeShare(tt.text); err == nil {
				t.Fatalf("DecodeShare accepted it: %x", got)
			}
		})
	}
}

func TestDecodeShareRefusesStrayBits(t *testing.T) {
	// 37 bytes take 60 letters, the last of which carries 1 bit of data
	// and 4 unused bits: setting one must not decode to the same share.
	share := append([]byte{1}, random(t, 32)...)
	text := EncodeShare(share)
	last := strings.IndexByte("abcdefghijklmnopqrstuvwxyz234567", text[len(text)-1])
	stray := "abcdefghijklmnopqrstuvwxyz234567"[last^1]
	if _, err := DecodeShare(text[:len(text)-1] + string(stray)); !errors.Is(err, ErrShareFormat) {
		t.Fatalf("err = %v, want ErrShareFormat", err)
	}
}

func FuzzDecodeShare(f *testing.F) {
	f.Add(EncodeShare([]byte{1, 2, 3}))
	f.Add(EncodeShare(append([]byte{5}, make([]byte, 32)...)))
	f.Add("cs1-aaaaa-aaaaa-a")
	f.Add("CS1-")
	f.Fuzz(func(t *testing.T, s string) {
		share, err := DecodeShare(s)
		if err != nil {
			return
		}
		// One text per share: encoding gives back the input, up to case
		// and surrounding white space.
		if enc := EncodeShare(share); enc != strings.ToLower(strings.TrimSpace(s)) {
			t.Fatalf("DecodeShare(%q) re-encodes as %q", s, enc)
		}
	})
}

func FuzzEncodeShare(f *testing.F) {
	f.Add([]byte{1, 2})
	f.Fuzz(func(t *testing.T, share []byte) {
		if len(share) < 2 {
			t.Skip()
		}
		got, err := DecodeShare(EncodeShare(share))
		if err != nil || !bytes.Equal(got, share) {
			t.Fatalf("round trip of %x: %x, %v", share, got, err)
		}
	})
}

func TestShareTextRoundTripThroughCombine(t *testing.T) {
	secret := random(t, 32)
	shares, err := Split(secret, 3, 2, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var back [][]byte
	for _, s := range shares[1:] {
		d, err := DecodeShare(EncodeShare(s))
		if err != nil {
			t.Fatal(err)
		}
		back = append(back, d)
	}
	if got, _ := Combine(back); !bytes.Equal(got, secret) {
		t.Fatal("shares through text did not recover the secret")
	}
}

func TestChecksumKnownAnswer(t *testing.T) {
	// Expected values from Python: zlib.crc32(b"coffer/shamir/share/v1" + share),
	// big-endian — the checksum printed shares already carry.
	tests := []struct {
		name  string
		share []byte
		want  [4]byte
	}{
		{"empty share", nil, [4]byte{0x0f, 0x99, 0x81, 0x9a}},
		{"bytes 0 to 32", func() []byte {
			b := make([]byte, 33)
			for i := range b {
				b[i] = byte(i)
			}
			return b
		}(), [4]byte{0x5b, 0x65, 0xb5, 0x4b}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := checksum(tt.share); got != tt.want {
				t.Fatalf("checksum = %x, want %x", got, tt.want)
			}
		})
	}
}
