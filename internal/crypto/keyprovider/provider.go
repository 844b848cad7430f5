package keyprovider

import (
	"context"
	"errors"
)

// Provider wraps and unwraps data keys under a root key it may never reveal.
//
// Wrap encrypts plaintext (a data key) bound to aad and returns an opaque
// blob. Unwrap reverses it; it must return an error wrapping ErrUnwrap when
// the blob does not open under this root key with this aad (wrong root key,
// aad of another key, tampered or truncated blob), and another error for
// failures worth retrying (a KMS that cannot be reached, a cancelled ctx).
// Name identifies the provider in logs and diagnostics ("file:/path",
// "env:VAR", …) and never includes key material.
//
// Implementations must be safe for concurrent use.
type Provider interface {
	Wrap(ctx context.Context, plaintext, aad []byte) ([]byte, error)
	Unwrap(ctx context.Context, wrapped, aad []byte) ([]byte, error)
	Name() string
}

// ErrUnwrap is the one error by which a Provider reports a wrapped key that
// does not open: most often, a root key other than the one that wrapped it.
var ErrUnwrap = errors.New("keyprovider: wrapped key does not open under this root key")

// ErrInsecureFile is wrapped by OpenFile's error for a key file that its
// group or others may access, or that is not a regular file.
var ErrInsecureFile = errors.New("keyprovider: insecure root key file")

// ErrInvalidKey is wrapped by the error for a root key that is not standard
// base64 text of exactly 32 bytes.
var ErrInvalidKey = errors.New("keyprovider: root key must be 32 bytes in standard base64")
