//go:build pkcs11

package keyprovider

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/cofferhq/coffer/internal/crypto/keyprovider/softhsmtest"
	"github.com/cofferhq/coffer/internal/secret"
)

var _ Provider = (*PKCS11)(nil)

const (
	testToken  = "coffer-test"
	otherToken = "coffer-other"
	testPIN    = softhsmtest.PIN
)

// softhsm is the SoftHSM2 set up by TestMain: one token directory for the
// whole test binary, since the module reads SOFTHSM2_CONF once per process.
var softhsm struct {
	module  string
	missing bool  // the module file is not there
	err     error // why SoftHSM2 cannot be used
}

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "coffer-softhsm-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		softhsm.module, softhsm.err = setupSoftHSM(dir)
		return m.Run()
	}())
}

func setupSoftHSM(dir string) (string, error) {
	module, err := softhsmtest.Setup(dir, testToken, otherToken)
	softhsm.missing = errors.Is(err, softhsmtest.ErrMissing)
	return module, err
}

// hsmConfig returns the config of a key on the test token. Without
// SoftHSM2 it skips, except in CI, where it fails.
func hsmConfig(t testing.TB, keyLabel string) PKCS11Config {
	t.Helper()
	switch {
	case softhsm.err == nil:
	case softhsm.missing && os.Getenv("CI") == "":
		t.Skipf("no SoftHSM2: %v", softhsm.err)
	case softhsm.missing:
		t.Fatalf("CI is set but SoftHSM2 is not installed: %v", softhsm.err)
	default:
		t.Fatalf("SoftHSM2 is installed but cannot be set up: %v", softhsm.err)
	}
	return PKCS11Config{Module: softhsm.module, TokenLabel: testToken, PIN: testPIN, KeyLabel: keyLabel}
}

// openHSM creates the key if needed and opens a provider over it, closed
// when the test ends.
func openHSM(t testing.TB, cfg PKCS11Config) *PKCS11 {
	t.Helper()
	if err := CreatePKCS11Key(cfg); err != nil && !errors.Is(err, fs.ErrExist) {
		t.Fatal(err)
	}
	p, err := OpenPKCS11(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func TestPKCS11WrapUnwrap(t *testing.T) {
	ctx := context.Background()
	cfg := hsmConfig(t, "root-roundtrip")
	if err := CreatePKCS11Key(cfg); err != nil {
		t.Fatal(err)
	}
	if err := CreatePKCS11Key(cfg); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second CreatePKCS11Key = %v, want fs.ErrExist", err)
	}
	p := openHSM(t, cfg)
	if want := "pkcs11:token=" + testToken + ";object=root-roundtrip"; p.Name() != want {
		t.Errorf("Name = %q, want %q", p.Name(), want)
	}
	for _, s := range []string{fmt.Sprint(p), fmt.Sprintf("%+v", p), fmt.Sprintf("%#v", p)} {
		if strings.Contains(s, testPIN) {
			t.Errorf("printing the provider shows the PIN: %s", s)
		}
	}
	dk := bytes.Repeat([]byte{0x42}, 32)
	aad := []byte("collection/customers|1")
	w, err := p.Wrap(ctx, dk, aad)
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != 1+12+32+16 || bytes.Contains(w, dk[:8]) {
		t.Fatalf("wrapped blob is %d bytes or shows the key", len(w))
	}
	w2, _ := p.Wrap(ctx, dk, aad)
	if bytes.Equal(w[1:13], w2[1:13]) {
		t.Fatal("two wraps used the same IV")
	}
	got, err := p.Unwrap(ctx, w, aad)
	if err != nil || !bytes.Equal(got, dk) {
		t.Fatalf("Unwrap = %x, %v", got, err)
	}
	// Another provider over the same key (another process, say) opens it.
	again, err := OpenPKCS11(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if got, err := again.Unwrap(ctx, w, aad); err != nil || !bytes.Equal(got, dk) {
		t.Fatalf("Unwrap by a second provider = %x, %v", got, err)
	}
	local, _ := NewLocal("local", secret.NewKey(dk), nil)
	localBlob, _ := local.Wrap(ctx, dk, aad)
	tests := []struct {
		name    string
		wrapped []byte
		aad     []byte
	}{
		{"fail/wrong aad", w, []byte("collection/customers|2")},
		{"fail/no aad", w, nil},
		{"fail/iv flipped", flip(w, 3), aad},
		{"fail/ciphertext flipped", flip(w, 20), aad},
		{"fail/tag flipped", flip(w, len(w)-1), aad},
		{"fail/format", flip(w, 0), aad},
		{"fail/truncated", w[:len(w)-1], aad},
		{"fail/too short", w[:28], aad},
		{"fail/empty", nil, aad},
		{"fail/a Local's blob", localBlob, aad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := p.Unwrap(ctx, tt.wrapped, tt.aad); !errors.Is(err, ErrUnwrap) || got != nil {
				t.Fatalf("Unwrap = %x, %v; want ErrUnwrap", got, err)
			}
		})
	}
	// The session survived the failures.
	if got, err := p.Unwrap(ctx, w, aad); err != nil || !bytes.Equal(got, dk) {
		t.Fatalf("Unwrap after failures = %x, %v", got, err)
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x01
	return c
}

func TestPKCS11SecondKeyCannotUnwrap(t *testing.T) {
	ctx := context.Background()
	a := openHSM(t, hsmConfig(t, "root-a"))
	b := openHSM(t, hsmConfig(t, "root-b"))
	w, err := a.Wrap(ctx, []byte("data key"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.Unwrap(ctx, w, []byte("aad")); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("another key's Unwrap = %x, %v; want ErrUnwrap", got, err)
	}
	// Same label on another token: another key.
	cfg := hsmConfig(t, "root-a")
	cfg.TokenLabel = otherToken
	c := openHSM(t, cfg)
	if _, err := c.Unwrap(ctx, w, []byte("aad")); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("other token's Unwrap: %v; want ErrUnwrap", err)
	}
}

func TestPKCS11KeyNeverLeavesTheToken(t *testing.T) {
	p := openHSM(t, hsmConfig(t, "root-sealed-in"))
	s, err := p.acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer p.release(s, false)
	v, err := p.ctx.GetAttributeValue(s.h, s.key, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
	if err == nil {
		t.Fatalf("CKA_VALUE was read: %d attributes", len(v))
	}
	if !isCKR(err, pkcs11.CKR_ATTRIBUTE_SENSITIVE) {
		t.Errorf("CKA_VALUE refused with %v, want CKR_ATTRIBUTE_SENSITIVE", err)
	}
	attrs, err := p.ctx.GetAttributeValue(s.h, s.key, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_NEVER_EXTRACTABLE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, nil),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, nil),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint]bool{
		pkcs11.CKA_SENSITIVE: true, pkcs11.CKA_EXTRACTABLE: false, pkcs11.CKA_NEVER_EXTRACTABLE: true,
		pkcs11.CKA_TOKEN: true, pkcs11.CKA_PRIVATE: true,
	}
	for _, a := range attrs {
		if boolAttr(a.Value) != want[a.Type] {
			t.Errorf("attribute %#x = %v, want %v", a.Type, boolAttr(a.Value), want[a.Type])
		}
	}
	// Wrapping the key out under another key is refused too.
	wrapKey, err := p.ctx.GenerateKey(s.h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)},
		[]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
		})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := p.ctx.WrapKey(s.h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP, nil)}, wrapKey, s.key); err == nil {
		t.Fatalf("the root key was wrapped out: %d bytes", len(out))
	}
}

func TestPKCS11RefusesAnExtractableKey(t *testing.T) {
	p := openHSM(t, hsmConfig(t, "root-helper"))
	h, err := p.ctx.OpenSession(p.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	defer p.ctx.CloseSession(h)
	_, err = p.ctx.GenerateKey(h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)},
		[]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, "root-extractable"),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
		})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenPKCS11(hsmConfig(t, "root-extractable")); err == nil || !strings.Contains(err.Error(), "not extractable") {
		t.Fatalf("OpenPKCS11 of an extractable key = %v", err)
	}
}

func TestOpenPKCS11Failures(t *testing.T) {
	ctx := context.Background()
	base := hsmConfig(t, "root-failures")
	if err := CreatePKCS11Key(base); err != nil && !errors.Is(err, fs.ErrExist) {
		t.Fatal(err)
	}
	with := func(f func(*PKCS11Config)) PKCS11Config {
		c := base
		f(&c)
		return c
	}
	tests := []struct {
		name string
		cfg  PKCS11Config
		is   error
	}{
		{"refused/no such key", with(func(c *PKCS11Config) { c.KeyLabel = "never-made" }), fs.ErrNotExist},
		{"refused/no such token", with(func(c *PKCS11Config) { c.TokenLabel = "no-such-token" }), fs.ErrNotExist},
		{"refused/wrong PIN", with(func(c *PKCS11Config) { c.PIN = "999999" }), nil},
		{"refused/no PIN", with(func(c *PKCS11Config) { c.PIN = "" }), nil},
		{"refused/PIN and PINEnv", with(func(c *PKCS11Config) { c.PINEnv = "COFFER_TEST_PIN" }), nil},
		{"refused/unset PINEnv", with(func(c *PKCS11Config) { c.PIN, c.PINEnv = "", "COFFER_TEST_SURELY_UNSET" }), nil},
		{"refused/no module", with(func(c *PKCS11Config) { c.Module = filepath.Join(t.TempDir(), "missing.so") }), nil},
		{"refused/no key label", with(func(c *PKCS11Config) { c.KeyLabel = "" }), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := OpenPKCS11(tt.cfg)
			if err == nil {
				p.Close()
				t.Fatal("OpenPKCS11 succeeded")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("err = %v, want %v", err, tt.is)
			}
			if strings.Contains(err.Error(), testPIN) || strings.Contains(err.Error(), "999999") {
				t.Fatalf("error %q shows a PIN", err)
			}
		})
	}
	t.Run("ok/PINEnv", func(t *testing.T) {
		t.Setenv("COFFER_TEST_PIN", testPIN)
		p, err := OpenPKCS11(with(func(c *PKCS11Config) { c.PIN, c.PINEnv = "", "COFFER_TEST_PIN" }))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if _, err := p.Wrap(ctx, []byte("k"), nil); err != nil {
			t.Fatal(err)
		}
	})
}

func TestPKCS11ConcurrentUseAndClose(t *testing.T) {
	ctx := context.Background()
	cfg := hsmConfig(t, "root-concurrent")
	cfg.MaxSessions = 2
	p := openHSM(t, cfg)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 25 {
				dk := []byte(fmt.Sprintf("data key %d/%d", g, i))
				aad := []byte(fmt.Sprint(g, i))
				w, err := p.Wrap(ctx, dk, aad)
				if err != nil {
					t.Error(err)
					return
				}
				if got, err := p.Unwrap(ctx, w, aad); err != nil || !bytes.Equal(got, dk) {
					t.Errorf("Unwrap = %q, %v", got, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := len(p.sem); n > 2 {
		t.Fatalf("%d sessions open, MaxSessions is 2", n)
	}
	// A cancelled call waiting for a session gives up.
	busy := make([]*p11Session, 0, 2)
	for range 2 {
		s, err := p.acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		busy = append(busy, s)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := p.Wrap(cctx, []byte("k"), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wrap with a cancelled context and no free session = %v", err)
	}
	for _, s := range busy {
		p.release(s, false)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if _, err := p.Wrap(ctx, []byte("k"), nil); err == nil || errors.Is(err, ErrUnwrap) {
		t.Fatalf("Wrap after Close = %v", err)
	}
	if len(p.sem) != 0 {
		t.Fatalf("%d sessions still open after Close", len(p.sem))
	}
}

// A session closed under the provider is replaced.
func TestPKCS11ReplacesALostSession(t *testing.T) {
	ctx := context.Background()
	p := openHSM(t, hsmConfig(t, "root-lost"))
	s, err := p.acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.ctx.CloseSession(s.h); err != nil {
		t.Fatal(err)
	}
	p.release(s, false)
	if _, err := p.Wrap(ctx, []byte("k"), nil); err != nil {
		t.Fatalf("Wrap after the pooled session was lost = %v", err)
	}
}

func BenchmarkPKCS11(b *testing.B) {
	ctx := context.Background()
	p := openHSM(b, hsmConfig(b, "root-bench"))
	dk := make([]byte, 32)
	_, _ = rand.Read(dk)
	w, err := p.Wrap(ctx, dk, []byte("aad"))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Wrap", func(b *testing.B) {
		for b.Loop() {
			if _, err := p.Wrap(ctx, dk, []byte("aad")); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Unwrap", func(b *testing.B) {
		for b.Loop() {
			if _, err := p.Unwrap(ctx, w, []byte("aad")); err != nil {
				b.Fatal(err)
			}
		}
	})
}
