//go:build !pkcs11

package keyprovider

import (
	"context"
	"errors"
	"strings"
	"testing"
)

var _ Provider = (*PKCS11)(nil)

func TestPKCS11StubSaysHowToGetSupport(t *testing.T) {
	cfg := PKCS11Config{Module: "/usr/lib/softhsm/libsofthsm2.so", TokenLabel: "t", PIN: "1234", KeyLabel: "k"}
	p, err := OpenPKCS11(cfg)
	if !errors.Is(err, ErrPKCS11Unsupported) || p != nil {
		t.Fatalf("OpenPKCS11 = %v, %v; want ErrPKCS11Unsupported", p, err)
	}
	if !strings.Contains(err.Error(), "built without PKCS#11 support: rebuild with -tags pkcs11") {
		t.Fatalf("error %q does not say how to get PKCS#11 support", err)
	}
	if err := CreatePKCS11Key(cfg); !errors.Is(err, ErrPKCS11Unsupported) {
		t.Fatalf("CreatePKCS11Key = %v", err)
	}
	var stub *PKCS11
	if _, err := stub.Wrap(context.Background(), []byte("k"), nil); !errors.Is(err, ErrPKCS11Unsupported) {
		t.Fatalf("Wrap = %v", err)
	}
	if _, err := stub.Unwrap(context.Background(), []byte("k"), nil); !errors.Is(err, ErrPKCS11Unsupported) || errors.Is(err, ErrUnwrap) {
		t.Fatalf("Unwrap = %v", err)
	}
}
