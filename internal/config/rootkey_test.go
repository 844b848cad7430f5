package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRootKeyProviders(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		env  []string
		want string // substring of the error; "" for a valid config
	}{
		{"ok/shamir with default check file", "root_key:\n  provider: shamir\n", nil, ""},
		{"ok/pkcs11", "root_key:\n  provider: pkcs11\n  pkcs11:\n    module: /usr/lib/softhsm/libsofthsm2.so\n    token_label: coffer\n    key_label: root\n", nil, ""},
		{"ok/pkcs11 from env", "", []string{"COFFER_ROOT_KEY_PROVIDER=pkcs11", "COFFER_ROOT_KEY_PKCS11_MODULE=/opt/hsm.so",
			"COFFER_ROOT_KEY_PKCS11_TOKEN_LABEL=t", "COFFER_ROOT_KEY_PKCS11_KEY_LABEL=k", "COFFER_ROOT_KEY_PKCS11_PIN_ENV=HSM_PIN"}, ""},
		{"fail/pkcs11 without settings", "root_key:\n  provider: pkcs11\n", nil, "root_key.pkcs11.module: must be the absolute path"},
		{"fail/pkcs11 relative module", "root_key:\n  provider: pkcs11\n  pkcs11:\n    module: lib.so\n    token_label: t\n    key_label: k\n", nil, "root_key.pkcs11.module"},
		{"fail/pkcs11 no token label", "root_key:\n  provider: pkcs11\n  pkcs11:\n    module: /x.so\n    key_label: k\n", nil, "root_key.pkcs11.token_label"},
		{"fail/pkcs11 token label too long", "root_key:\n  provider: pkcs11\n  pkcs11:\n    module: /x.so\n    token_label: " + strings.Repeat("t", 33) + "\n    key_label: k\n", nil, "root_key.pkcs11.token_label"},
		{"fail/pkcs11 no key label", "root_key:\n  provider: pkcs11\n  pkcs11:\n    module: /x.so\n    token_label: t\n", nil, "root_key.pkcs11.key_label"},
		{"fail/pkcs11 bad pin env", "root_key:\n  provider: pkcs11\n  pkcs11:\n    module: /x.so\n    token_label: t\n    key_label: k\n    pin_env: 'A-B'\n", nil, "root_key.pkcs11.pin_env: must name"},
		{"fail/pkcs11 pin in file", "root_key:\n  provider: pkcs11\n  pkcs11:\n    pin: '1234'\n", nil, `unknown key "root_key.pkcs11.pin"`},
		{"fail/unknown provider lists all", "root_key:\n  provider: vault\n", nil, "want file, env, shamir or pkcs11"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(writeFile(t, tt.yaml), tt.env)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if c.RootKey.Provider == ProviderShamir && c.RootKey.CheckFile != filepath.Join(c.DataDir, "root-key.check") {
					t.Errorf("check file = %q", c.RootKey.CheckFile)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestReplaceOverwritesAtomically(t *testing.T) {
	dir := t.TempDir()
	c := mustLoad(t, dir)
	if err := Write(dir, c); err != nil {
		t.Fatal(err)
	}
	if err := c.Set("root_key.file", "root.key.new"); err != nil {
		t.Fatal(err)
	}
	if err := Write(dir, c); err == nil {
		t.Fatal("Write overwrote an existing config")
	}
	if err := Replace(dir, c); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("replaced config mode: %v %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(dir, FileName+".tmp")); !os.IsNotExist(err) {
		t.Errorf("temporary file left behind: %v", err)
	}
	back := mustLoad(t, dir)
	if back.RootKey.File != filepath.Join(dir, "root.key.new") {
		t.Errorf("root_key.file after Replace = %s", back.RootKey.File)
	}
	c.Listen = "nope"
	if err := Replace(dir, c); err == nil {
		t.Fatal("Replace wrote an invalid config")
	}
	if again := mustLoad(t, dir); again.Listen == "nope" {
		t.Error("an invalid Replace changed the file")
	}
}
