package keyprovider

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cofferhq/coffer/internal/crypto/envelope"
	"github.com/cofferhq/coffer/internal/secret"
)

// RootKeySize is the length of a local root key: AES-256.
const RootKeySize = envelope.KeySize

// localKeyVersion is the key version written into a Local's wrapped blobs.
const localKeyVersion = 1

// maxKeyFileSize bounds what OpenFile reads: a key file is one short line.
const maxKeyFileSize = 1024

// wrapLabel binds every blob a Local wraps to its purpose, so nothing else
// sealed under the same root key can pass for a wrapped key.
var wrapLabel = envelope.AAD("coffer/keyprovider/wrap/v1")

// Local is a Provider whose root key is held in this process: read from a
// key file or an environment variable. It is safe for concurrent use.
type Local struct {
	name string
	aead *envelope.AEAD
	rand io.Reader
}

// NewLocal returns a Local provider called name over a 32-byte root key.
// Nonces are read from r, which must be safe for concurrent use; nil means
// crypto/rand.Reader. The caller may zero key afterwards.
func NewLocal(name string, key secret.Key, r io.Reader) (*Local, error) {
	if key.Len() != RootKeySize {
		return nil, ErrInvalidKey
	}
	a, err := envelope.New(key, localKeyVersion)
	if err != nil {
		return nil, fmt.Errorf("keyprovider: %w", err)
	}
	if r == nil {
		r = rand.Reader
	}
	return &Local{name: name, aead: a, rand: r}, nil
}

// Name implements Provider: "file:PATH" or "env:VAR" for the constructors
// of this package.
func (l *Local) Name() string { return l.name }

// Wrap implements Provider.
func (l *Local) Wrap(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	w, err := l.aead.Seal(l.rand, plaintext, bindLabel(aad))
	if err != nil {
		return nil, fmt.Errorf("keyprovider: wrap: %w", err)
	}
	return w, nil
}

// Unwrap implements Provider. Every blob that does not open returns ErrUnwrap.
func (l *Local) Unwrap(ctx context.Context, wrapped, aad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	pt, err := l.aead.Open(wrapped, bindLabel(aad))
	if err != nil {
		return nil, ErrUnwrap
	}
	return pt, nil
}

func bindLabel(aad []byte) []byte {
	ad := make([]byte, 0, len(wrapLabel)+len(aad))
	return append(append(ad, wrapLabel...), aad...)
}

// CreateFile writes a new random 32-byte root key read from r (use
// crypto/rand.Reader) to path as base64 text, mode 0600. It never
// overwrites: if path exists it fails with an error wrapping fs.ErrExist.
func CreateFile(path string, r io.Reader) (err error) {
	key, err := secret.Random(r, RootKeySize)
	if err != nil {
		return fmt.Errorf("keyprovider: create root key %s: %w", path, err)
	}
	defer key.Zero()
	raw := key.Bytes()
	defer clear(raw)
	text := make([]byte, base64.StdEncoding.EncodedLen(len(raw))+1)
	defer clear(text)
	base64.StdEncoding.Encode(text, raw)
	text[len(text)-1] = '\n'

	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) // #nosec G304 -- the operator's configured root key file, created exclusively with mode 0600
	if err != nil {
		return fmt.Errorf("keyprovider: create root key: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("keyprovider: create root key %s: %w", path, cerr)
		}
		if err != nil {
			_ = os.Remove(path)
		}
	}()
	if _, err := f.Write(text); err != nil {
		return fmt.Errorf("keyprovider: create root key %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("keyprovider: create root key %s: %w", path, err)
	}
	// Make the new name durable too; best effort, as not every system can
	// sync a directory.
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// OpenFile reads the root key at path and returns a Local provider named
// "file:PATH". It refuses a file that its group or others may access (the
// error, wrapping ErrInsecureFile, names the path and the mode), one that is
// not a regular file, and one that does not hold exactly 32 bytes in
// standard base64 (ErrInvalidKey). Errors never include the file's contents.
func OpenFile(path string) (*Local, error) {
	f, err := os.Open(path) // #nosec G304 -- the operator's configured root key file; mode and type checked below
	if err != nil {
		return nil, fmt.Errorf("keyprovider: open root key: %w", err)
	}
	defer func() { _ = f.Close() }() // read-only: a Close error cannot lose data
	// Stat the open file, not the path, so the file checked is the file read.
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keyprovider: open root key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file (mode %s)", ErrInsecureFile, path, fi.Mode())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o, which lets group or others access it; want 0600 (chmod 600 %s)",
			ErrInsecureFile, path, perm, path)
	}
	buf := make([]byte, maxKeyFileSize+1)
	defer clear(buf)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("keyprovider: read root key %s: %w", path, err)
	}
	if n > maxKeyFileSize {
		return nil, fmt.Errorf("%w: %s is longer than a key file", ErrInvalidKey, path)
	}
	key, err := decodeKey(buf[:n])
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, path)
	}
	defer key.Zero()
	return NewLocal("file:"+path, key, nil)
}

// FromEnv reads a base64 32-byte root key from the environment variable
// name and returns a Local provider named "env:NAME". Errors name the
// variable, never its value.
func FromEnv(name string) (*Local, error) {
	v, ok := os.LookupEnv(name)
	if !ok {
		return nil, fmt.Errorf("keyprovider: environment variable %s is not set", name)
	}
	key, err := decodeKey([]byte(v))
	if err != nil {
		return nil, fmt.Errorf("%w: environment variable %s", err, name)
	}
	defer key.Zero()
	return NewLocal("env:"+name, key, nil)
}

// decodeKey parses a base64 root key, surrounding whitespace allowed. Its
// error is ErrInvalidKey alone: the decoder's message could echo input.
func decodeKey(text []byte) (secret.Key, error) {
	text = bytes.TrimSpace(text)
	// The decoder skips CR and LF anywhere in its input, even in strict
	// mode: a key has exactly one text, so refuse them inside it.
	if bytes.ContainsAny(text, "\r\n") {
		return secret.Key{}, ErrInvalidKey
	}
	raw := make([]byte, base64.StdEncoding.DecodedLen(len(text)))
	defer clear(raw)
	n, err := base64.StdEncoding.Strict().Decode(raw, text)
	if err != nil || n != RootKeySize {
		return secret.Key{}, ErrInvalidKey
	}
	return secret.NewKey(raw[:n]), nil
}
