package transit

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/crypto/envelope"
)

// fakeEnvelope is an envelope-shaped byte string of version v.
func fakeEnvelope(v uint32, body int) []byte {
	env := make([]byte, envelope.Overhead+body)
	env[0] = envelope.FormatVersion
	env[1], env[2], env[3], env[4] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
	for i := envelope.HeaderSize; i < len(env); i++ {
		env[i] = byte(i)
	}
	return env
}

func TestCiphertextFormat(t *testing.T) {
	env := fakeEnvelope(7, 3)
	s, err := FormatCiphertext(env)
	if err != nil {
		t.Fatal(err)
	}
	want := "coffer:v7:" + base64.StdEncoding.EncodeToString(env)
	if s != want {
		t.Fatalf("FormatCiphertext = %q, want %q", s, want)
	}
	v, back, err := ParseCiphertext(s)
	if err != nil || v != 7 || !bytes.Equal(back, env) {
		t.Fatalf("ParseCiphertext = %d, %x, %v", v, back, err)
	}
	max, err := FormatCiphertext(fakeEnvelope(1<<32-1, 0))
	if err != nil || !strings.HasPrefix(max, "coffer:v4294967295:") {
		t.Fatalf("largest version: %q, %v", max, err)
	}
	for name, env := range map[string][]byte{
		"short":     env[:envelope.Overhead-1],
		"version 0": fakeEnvelope(0, 1),
		"format 2":  append([]byte{2}, env[1:]...),
	} {
		if _, err := FormatCiphertext(env); !errors.Is(err, ErrMalformedCiphertext) {
			t.Errorf("FormatCiphertext(%s): err = %v", name, err)
		}
	}
}

func TestParseCiphertextRefuses(t *testing.T) {
	env := fakeEnvelope(3, 4)
	body := base64.StdEncoding.EncodeToString(env)
	raw := base64.RawStdEncoding.EncodeToString(env)
	tests := []struct {
		name, in string
		want     error
	}{
		{"malformed/empty", "", ErrMalformedCiphertext},
		{"malformed/other prefix", "vaults:v3:" + body, ErrMalformedCiphertext},
		{"malformed/upper-case vault prefix", "VAULT:v3:" + body, ErrMalformedCiphertext},
		{"malformed/vault prefix, leading zero", "vault:v03:" + body, ErrMalformedCiphertext},
		{"mismatch/vault prefix newer than header", "vault:v4:" + body, ErrVersionMismatch},
		{"malformed/no version", "coffer:v:" + body, ErrMalformedCiphertext},
		{"malformed/version 0", "coffer:v0:" + body, ErrMalformedCiphertext},
		{"malformed/leading zero", "coffer:v03:" + body, ErrMalformedCiphertext},
		{"malformed/sign", "coffer:v+3:" + body, ErrMalformedCiphertext},
		{"malformed/over 32 bits", "coffer:v4294967296:" + body, ErrMalformedCiphertext},
		{"malformed/no body separator", "coffer:v3", ErrMalformedCiphertext},
		{"malformed/unpadded", "coffer:v3:" + raw, ErrMalformedCiphertext},
		{"malformed/url alphabet", "coffer:v3:" + strings.NewReplacer("+", "-", "/", "_").Replace(body) + "-_", ErrMalformedCiphertext},
		{"malformed/newline", "coffer:v3:" + body[:8] + "\n" + body[8:], ErrMalformedCiphertext},
		{"malformed/carriage return", "coffer:v3:" + body + "\r", ErrMalformedCiphertext},
		{"malformed/space", "coffer:v3: " + body, ErrMalformedCiphertext},
		{"malformed/short envelope", "coffer:v3:" + base64.StdEncoding.EncodeToString(env[:envelope.Overhead-1]), ErrMalformedCiphertext},
		{"malformed/unknown format", "coffer:v3:" + base64.StdEncoding.EncodeToString(append([]byte{9}, env[1:]...)), ErrMalformedCiphertext},
		{"mismatch/prefix newer than header", "coffer:v4:" + body, ErrVersionMismatch},
		{"mismatch/prefix older than header", "coffer:v2:" + body, ErrVersionMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := ParseCiphertext(tt.in); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// FuzzParseCiphertext: the parser never panics, accepts only what
// FormatCiphertext writes (no second text for one envelope), and its
// envelope's version is the prefix's.
func FuzzParseCiphertext(f *testing.F) {
	env := fakeEnvelope(2, 5)
	good, _ := FormatCiphertext(env)
	f.Add(good)
	f.Add("coffer:v1:" + base64.StdEncoding.EncodeToString(fakeEnvelope(1, 0)))
	f.Add("coffer:v2:" + base64.StdEncoding.EncodeToString(env)[:20] + "\n" + base64.StdEncoding.EncodeToString(env)[20:])
	f.Add("coffer:v4294967295:AAAA")
	f.Add("coffer:v1:")
	f.Add(VaultCiphertext(good))
	f.Add("coffer:v")
	f.Fuzz(func(t *testing.T, s string) {
		v, env, err := ParseCiphertext(s)
		if err != nil {
			if !errors.Is(err, ErrMalformedCiphertext) && !errors.Is(err, ErrVersionMismatch) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		hv, herr := envelope.KeyVersion(env)
		if herr != nil || hv != v || v == 0 {
			t.Fatalf("parsed version %d, header %d (%v)", v, hv, herr)
		}
		again, err := FormatCiphertext(env)
		if strings.HasPrefix(s, "vault:") {
			again = VaultCiphertext(again)
		}
		if err != nil || again != s {
			t.Fatalf("%q parses but formats back as %q (%v)", s, again, err)
		}
	})
}
