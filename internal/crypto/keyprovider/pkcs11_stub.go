//go:build !pkcs11

package keyprovider

import "context"

// PKCS11 is a Provider whose root key stays on a PKCS#11 token. This build
// has no PKCS#11 support (build with -tags pkcs11 and cgo): every method
// returns ErrPKCS11Unsupported.
type PKCS11 struct{}

// OpenPKCS11 returns ErrPKCS11Unsupported in this build.
func OpenPKCS11(PKCS11Config) (*PKCS11, error) { return nil, ErrPKCS11Unsupported }

// CreatePKCS11Key returns ErrPKCS11Unsupported in this build.
func CreatePKCS11Key(PKCS11Config) error { return ErrPKCS11Unsupported }

// Name implements Provider.
func (*PKCS11) Name() string { return "pkcs11:unsupported" }

// Wrap implements Provider; it returns ErrPKCS11Unsupported.
func (*PKCS11) Wrap(context.Context, []byte, []byte) ([]byte, error) {
	return nil, ErrPKCS11Unsupported
}

// Unwrap implements Provider; it returns ErrPKCS11Unsupported.
func (*PKCS11) Unwrap(context.Context, []byte, []byte) ([]byte, error) {
	return nil, ErrPKCS11Unsupported
}

// Close does nothing.
func (*PKCS11) Close() error { return nil }
