package keyprovider

import (
	"errors"
	"io"
)

// PKCS11Config says where a PKCS#11 root key lives. The same type exists
// in every build, so configuration code need not know whether PKCS#11
// support was built in.
type PKCS11Config struct {
	// Module is the path of the token's PKCS#11 library, e.g.
	// /usr/lib/softhsm/libsofthsm2.so.
	Module string
	// TokenLabel names the token (exactly one initialised token must
	// carry it).
	TokenLabel string
	// PIN is the user PIN. Set PIN or PINEnv, not both.
	PIN string `json:"-" yaml:"-"`
	// PINEnv names an environment variable holding the user PIN.
	PINEnv string
	// KeyLabel is the CKA_LABEL of the AES-256 root key object.
	KeyLabel string
	// MaxSessions bounds the sessions held open; 0 or less means 4.
	MaxSessions int
	// Rand supplies GCM nonces; nil means crypto/rand.Reader. It must be
	// safe for concurrent use.
	Rand io.Reader `json:"-" yaml:"-"`
}

// ErrPKCS11Unsupported is returned by OpenPKCS11 and CreatePKCS11Key in a
// binary built without the pkcs11 build tag (the default, cgo-free build).
var ErrPKCS11Unsupported = errors.New("keyprovider: built without PKCS#11 support: rebuild with -tags pkcs11")
