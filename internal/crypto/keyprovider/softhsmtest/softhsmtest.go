package softhsmtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// DefaultModule is where Debian's softhsm2 package puts the library.
const DefaultModule = "/usr/lib/softhsm/libsofthsm2.so"

// Test PINs of the tokens Setup makes.
const (
	PIN   = "246810"
	SOPIN = "13579111"
)

// ErrMissing: the SoftHSM2 module is not installed.
var ErrMissing = errors.New("softhsmtest: SoftHSM2 is not installed (apt-get install -y softhsm2)")

// Setup points SoftHSM2 at a token directory under dir (through
// SOFTHSM2_CONF, which the module reads once per process: call Setup before
// the module is first loaded) and initialises one token per label, each
// with PIN and SOPIN. It returns the module path (COFFER_TEST_PKCS11_MODULE
// or DefaultModule), or ErrMissing.
func Setup(dir string, labels ...string) (string, error) {
	module := os.Getenv("COFFER_TEST_PKCS11_MODULE")
	if module == "" {
		module = DefaultModule
	}
	// #nosec G703 -- test support: the path is the test runner's own setting
	if _, err := os.Stat(module); err != nil {
		return module, fmt.Errorf("%w: %v", ErrMissing, err)
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		return module, fmt.Errorf("softhsmtest: %w", err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	text := "directories.tokendir = " + tokens + "\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return module, fmt.Errorf("softhsmtest: %w", err)
	}
	if err := os.Setenv("SOFTHSM2_CONF", conf); err != nil {
		return module, fmt.Errorf("softhsmtest: %w", err)
	}
	for _, label := range labels {
		// #nosec G204 -- fixed program; the label comes from the test itself
		out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label,
			"--pin", PIN, "--so-pin", SOPIN).CombinedOutput()
		if err != nil {
			return module, fmt.Errorf("softhsmtest: softhsm2-util --init-token: %v: %s", err, out)
		}
	}
	return module, nil
}
