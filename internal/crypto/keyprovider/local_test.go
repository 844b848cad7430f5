package keyprovider

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/secret"
)

var _ Provider = (*Local)(nil)

// keyBytes is the root key the tests write; its base64 must never show up
// in an error.
var keyBytes = bytes.Repeat([]byte{0x5a, 0xc3}, RootKeySize/2)

var keyText = base64.StdEncoding.EncodeToString(keyBytes)

func writeFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "root.key")
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // WriteFile's mode passes the umask
		t.Fatal(err)
	}
	return path
}

func TestCreateFileThenOpenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "root.key")
	if err := CreateFile(path, bytes.NewReader(keyBytes)); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %04o, want 0600", fi.Mode().Perm())
	}
	content, _ := os.ReadFile(path)
	if string(content) != keyText+"\n" {
		t.Errorf("file holds %q, want the base64 key and a newline", content)
	}
	p, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if p.Name() != "file:"+path {
		t.Errorf("Name = %q", p.Name())
	}
	// The key read back is the key written: a provider over the same bytes
	// opens what the file provider wraps.
	direct, _ := NewLocal("direct", secret.NewKey(keyBytes), nil)
	ctx := context.Background()
	w, err := p.Wrap(ctx, []byte("data key"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := direct.Unwrap(ctx, w, []byte("aad")); err != nil || string(got) != "data key" {
		t.Fatalf("Unwrap = %q, %v", got, err)
	}
}

func TestCreateFileNeverOverwrites(t *testing.T) {
	path := writeFile(t, "precious\n", 0o600)
	err := CreateFile(path, rand.Reader)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("err = %v, want fs.ErrExist", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "precious\n" {
		t.Fatalf("existing file now holds %q", got)
	}
}

func TestCreateFileLeavesNothingWhenRandFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "root.key")
	if err := CreateFile(path, bytes.NewReader(make([]byte, 10))); err == nil {
		t.Fatal("CreateFile with a short reader succeeded")
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a key file was left behind: %v", err)
	}
}

func TestOpenFileChecksMode(t *testing.T) {
	tests := []struct {
		name string
		mode os.FileMode
		ok   bool
	}{
		{"ok/0600", 0o600, true},
		{"ok/0400", 0o400, true},
		{"refused/group read 0640", 0o640, false},
		{"refused/world read 0644", 0o644, false},
		{"refused/other read 0604", 0o604, false},
		{"refused/group write 0620", 0o620, false},
		{"refused/other write 0602", 0o602, false},
		{"refused/everyone 0666", 0o666, false},
		{"refused/group execute 0610", 0o610, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, keyText+"\n", tt.mode)
			p, err := OpenFile(path)
			if tt.ok {
				if err != nil || p == nil {
					t.Fatalf("OpenFile = %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInsecureFile) {
				t.Fatalf("err = %v, want ErrInsecureFile", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, path) || !strings.Contains(msg, octal(tt.mode)) {
				t.Errorf("error %q does not name the path and mode %s", msg, octal(tt.mode))
			}
			if strings.Contains(msg, keyText) || strings.Contains(msg, keyText[:8]) {
				t.Errorf("error %q shows the key", msg)
			}
		})
	}
}

func octal(m os.FileMode) string {
	const digits = "01234567"
	p := uint32(m.Perm())
	return string([]byte{'0', digits[p>>6&7], digits[p>>3&7], digits[p&7]})
}

func TestOpenFileRefusesBadContent(t *testing.T) {
	tests := []struct {
		name    string
		content string
	}{
		{"refused/empty", ""},
		{"refused/16-byte key", base64.StdEncoding.EncodeToString(keyBytes[:16])},
		{"refused/33-byte key", base64.StdEncoding.EncodeToString(append(bytes.Clone(keyBytes), 1))},
		{"refused/not base64", strings.Repeat("!", 44)},
		{"refused/url base64", base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32))},
		{"refused/raw key bytes", string(keyBytes)},
		{"refused/two keys", keyText + "\n" + keyText + "\n"},
		{"refused/huge file", strings.Repeat("A", 1<<20)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.content, 0o600)
			_, err := OpenFile(path)
			if !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("err = %v, want ErrInvalidKey", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the path", err)
			}
			if len(tt.content) >= 8 && strings.Contains(err.Error(), tt.content[:8]) {
				t.Errorf("error %q shows the file's contents", err)
			}
		})
	}
}

func TestOpenFileAcceptsSurroundingWhitespace(t *testing.T) {
	if _, err := OpenFile(writeFile(t, "  "+keyText+"\r\n\n", 0o600)); err != nil {
		t.Fatal(err)
	}
}

func TestOpenFileRefusesDirectoryAndMissingFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFile(dir); !errors.Is(err, ErrInsecureFile) {
		t.Errorf("directory: err = %v, want ErrInsecureFile", err)
	}
	if _, err := OpenFile(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: err = %v, want fs.ErrNotExist", err)
	}
}

func TestFromEnv(t *testing.T) {
	const name = "COFFER_TEST_ROOT_KEY"
	t.Run("ok/base64 key", func(t *testing.T) {
		t.Setenv(name, keyText)
		p, err := FromEnv(name)
		if err != nil {
			t.Fatal(err)
		}
		if p.Name() != "env:"+name {
			t.Errorf("Name = %q", p.Name())
		}
		file, err := OpenFile(writeFile(t, keyText, 0o600))
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		w, _ := file.Wrap(ctx, []byte("dk"), nil)
		if got, err := p.Unwrap(ctx, w, nil); err != nil || string(got) != "dk" {
			t.Fatalf("env provider does not open the file provider's blob: %q, %v", got, err)
		}
	})
	t.Run("refused/unset", func(t *testing.T) {
		if _, err := FromEnv("COFFER_TEST_SURELY_UNSET"); err == nil || !strings.Contains(err.Error(), "COFFER_TEST_SURELY_UNSET") {
			t.Fatalf("err = %v, want one naming the variable", err)
		}
	})
	t.Run("refused/wrong length", func(t *testing.T) {
		short := base64.StdEncoding.EncodeToString(keyBytes[:31])
		t.Setenv(name, short)
		_, err := FromEnv(name)
		if !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), name) {
			t.Fatalf("err = %v, want ErrInvalidKey naming %s", err, name)
		}
		if strings.Contains(err.Error(), short[:8]) {
			t.Fatalf("error %q shows the value", err)
		}
	})
}

func TestUnwrapFailsWithErrUnwrap(t *testing.T) {
	ctx := context.Background()
	p, _ := NewLocal("a", secret.NewKey(keyBytes), nil)
	otherKey, _ := secret.Random(rand.Reader, RootKeySize)
	other, _ := NewLocal("b", otherKey, nil)
	w, err := p.Wrap(ctx, []byte("data key"), []byte("customers/1"))
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(w)
	tampered[len(tampered)-1] ^= 1
	tests := []struct {
		name    string
		p       *Local
		wrapped []byte
		aad     string
	}{
		{"fail/wrong root key", other, w, "customers/1"},
		{"fail/aad of another key", p, w, "customers/2"},
		{"fail/tampered", p, tampered, "customers/1"},
		{"fail/truncated", p, w[:len(w)-1], "customers/1"},
		{"fail/empty", p, nil, "customers/1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.p.Unwrap(ctx, tt.wrapped, []byte(tt.aad))
			if !errors.Is(err, ErrUnwrap) || got != nil {
				t.Fatalf("Unwrap = %q, %v; want ErrUnwrap", got, err)
			}
		})
	}
	if got, err := p.Unwrap(ctx, w, []byte("customers/1")); err != nil || string(got) != "data key" {
		t.Fatalf("genuine Unwrap = %q, %v", got, err)
	}
}

func TestCancelledContext(t *testing.T) {
	p, _ := NewLocal("a", secret.NewKey(keyBytes), nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Wrap(ctx, []byte("x"), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Wrap: err = %v, want context.Canceled", err)
	}
	if _, err := p.Unwrap(ctx, []byte("x"), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Unwrap: err = %v, want context.Canceled", err)
	}
}

func TestNewLocalRefusesWrongKeySize(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33} {
		if _, err := NewLocal("x", secret.NewKey(make([]byte, n)), nil); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("%d bytes: err = %v, want ErrInvalidKey", n, err)
		}
	}
}

func FuzzDecodeKey(f *testing.F) {
	f.Add([]byte(keyText))
	f.Add([]byte(keyText + "\n"))
	f.Add([]byte(""))
	f.Add([]byte(keyText[:43] + "="))
	f.Fuzz(func(t *testing.T, text []byte) {
		k, err := decodeKey(text)
		if err != nil {
			if !errors.Is(err, ErrInvalidKey) || err.Error() != ErrInvalidKey.Error() {
				t.Fatalf("err = %v, want ErrInvalidKey alone", err)
			}
			return
		}
		// Only one text (up to surrounding space) means a given key.
		if k.Len() != RootKeySize {
			t.Fatalf("accepted a %d-byte key", k.Len())
		}
		if base64.StdEncoding.EncodeToString(k.Bytes()) != string(bytes.TrimSpace(text)) {
			t.Fatalf("accepted %q, which is not the canonical text of its key", text)
		}
	})
}
