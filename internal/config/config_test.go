package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// writeFile writes coffer.yaml into a new directory and returns it.
func writeFile(t testing.TB, yaml string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func mustLoad(t testing.TB, dir string, env ...string) *Config {
	t.Helper()
	c, err := Load(dir, env)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDefaults(t *testing.T) {
	dir := t.TempDir() // no coffer.yaml: defaults alone
	c := mustLoad(t, dir)
	host, _ := os.Hostname()
	checks := []struct {
		name      string
		got, want any
	}{
		{"data_dir", c.DataDir, dir},
		{"listen", c.Listen, "127.0.0.1:8443"},
		{"metrics_listen", c.MetricsListen, "127.0.0.1:9464"},
		{"public_url", c.PublicURL, "https://127.0.0.1:8443"},
		{"database_url", c.DatabaseURL, ""},
		{"root_key.provider", c.RootKey.Provider, "file"},
		{"root_key.file", c.RootKey.File, filepath.Join(dir, "root.key")},
		{"root_key.env", c.RootKey.Env, DefaultRootKeyEnv},
		{"tls.cert_file", c.TLS.CertFile, filepath.Join(dir, "tls", "server.pem")},
		{"tls.key_file", c.TLS.KeyFile, filepath.Join(dir, "tls", "server-key.pem")},
		{"tls.ca_file", c.TLS.CAFile, filepath.Join(dir, "tls", "ca.pem")},
		{"tls.ca_key_file", c.TLS.CAKeyFile, filepath.Join(dir, "tls", "ca-key.pem")},
		{"tls.client_certs", c.TLS.ClientCerts, false},
		{"auth.issuer", c.Auth.Issuer, "https://127.0.0.1:8443"},
		{"auth.audience", c.Auth.Audience, "coffer"},
		{"auth.token_ttl", c.Auth.TokenTTL.Duration, 15 * time.Minute},
		{"auth.lockout.max_failures", c.Auth.Lockout.MaxFailures, 5},
		{"limits.max_body_bytes", c.Limits.MaxBodyBytes, int64(1 << 20)},
		{"limits.max_batch_items", c.Limits.MaxBatchItems, 10000},
		{"limits.rate_limit", c.Limits.RateLimit, 1000.0},
		{"limits.rate_burst", c.Limits.RateBurst, 2000},
		{"timeouts.read_header", c.Timeouts.ReadHeader.Duration, 5 * time.Second},
		{"timeouts.read", c.Timeouts.Read.Duration, 30 * time.Second},
		{"timeouts.write", c.Timeouts.Write.Duration, 30 * time.Second},
		{"timeouts.idle", c.Timeouts.Idle.Duration, 120 * time.Second},
		{"timeouts.shutdown", c.Timeouts.Shutdown.Duration, 30 * time.Second},
		{"audit.file", c.Audit.File, ""},
		{"audit.stdout", c.Audit.Stdout, false},
		{"detect.window", c.Detect.Window.Duration, time.Minute},
		{"detect.bulk_read_values", c.Detect.BulkReadValues, 500},
		{"detect.failed_auth_burst", c.Detect.FailedAuthBurst, 10},
		{"detect.denied_burst", c.Detect.DeniedBurst, 20},
		{"detect.enumeration", c.Detect.Enumeration, 20},
		{"keys.rotate_after", c.Keys.RotateAfter.Duration, 2160 * time.Hour},
		{"keys.rotate_after_uses", c.Keys.RotateAfterUses, int64(1 << 30)},
		{"transit.byok.wrapping_key_rotate_after", c.Transit.BYOK.WrappingKeyRotateAfter.Duration, 30 * 24 * time.Hour},
		{"transit.byok.wrapping_key_grace", c.Transit.BYOK.WrappingKeyGrace.Duration, time.Hour},
		{"transit.byok.allow_sha1", c.Transit.BYOK.AllowSHA1, false},
		{"tokens.card_keep_first_six", c.Tokens.CardKeepFirstSix, false},
		{"keys.rotate_check_interval", c.Keys.RotateCheckInterval.Duration, 10 * time.Minute},
		{"dev", c.Dev, false},
		{"node", c.Node, host},
		{"log_level", c.LogLevel, "info"},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	if kind, dsn := c.Database(); kind != DatabaseSQLite || dsn != filepath.Join(dir, "coffer.db") {
		t.Errorf("Database() = %s %s", kind, dsn)
	}
	if c.Dir() != dir {
		t.Errorf("Dir() = %s", c.Dir())
	}
}

func TestEmptyFileGivesDefaults(t *testing.T) {
	for _, body := range []string{"", "# only a comment\n", "~\n", "---\n"} {
		dir := writeFile(t, body)
		c := mustLoad(t, dir)
		if c.Listen != DefaultListen || c.Auth.TokenTTL.Duration != 15*time.Minute {
			t.Errorf("%q: listen %s ttl %s", body, c.Listen, c.Auth.TokenTTL)
		}
	}
}

func TestPrecedence(t *testing.T) {
	dir := writeFile(t, `
listen: 127.0.0.1:9000
database_url: postgres://coffer@db.internal/coffer
auth:
  token_ttl: 10m
  audience: from-file
limits:
  rate_limit: 5
`)
	// File over defaults.
	c := mustLoad(t, dir)
	if c.Listen != "127.0.0.1:9000" || c.Auth.TokenTTL.Duration != 10*time.Minute || c.Limits.RateLimit != 5 {
		t.Fatalf("file not applied: %s %s %v", c.Listen, c.Auth.TokenTTL, c.Limits.RateLimit)
	}
	if c.Limits.MaxBatchItems != 10000 || c.Timeouts.Read.Duration != 30*time.Second {
		t.Error("keys absent from the file lost their defaults")
	}
	if c.PublicURL != "https://127.0.0.1:9000" || c.Auth.Issuer != c.PublicURL {
		t.Errorf("derived URLs = %s %s", c.PublicURL, c.Auth.Issuer)
	}
	if kind, dsn := c.Database(); kind != DatabasePostgres || dsn != "postgres://coffer@db.internal/coffer" {
		t.Errorf("Database() = %s %s", kind, dsn)
	}

	// Env over file; empty variables and unrelated ones are ignored.
	c = mustLoad(t, dir,
		"COFFER_LISTEN=127.0.0.1:9100",
		"COFFER_AUTH_TOKEN_TTL=5m",
		"COFFER_AUTH_AUDIENCE=",
		"COFFER_METRICS_LISTEN=127.0.0.1:9200",
		"COFFER_LOG_LEVEL=debug",
		"COFFER_TLS_CLIENT_CERTS=true",
		"COFFER_LIMITS_RATE_BURST=7",
		"COFFER_DATA_DIRX=ignored",
		"PATH=/usr/bin",
		"COFFER_LISTEN=127.0.0.1:9101", // the last one wins
	)
	if c.Listen != "127.0.0.1:9101" || c.Auth.TokenTTL.Duration != 5*time.Minute || c.MetricsListen != "127.0.0.1:9200" ||
		c.LogLevel != "debug" || !c.TLS.ClientCerts || c.Limits.RateBurst != 7 {
		t.Errorf("env not applied: %+v", c.Redacted())
	}
	if c.Auth.Audience != "from-file" {
		t.Errorf("empty env var overrode the file: audience %q", c.Auth.Audience)
	}
	if c.PublicURL != "https://127.0.0.1:9101" {
		t.Errorf("public_url did not follow env listen: %s", c.PublicURL)
	}

	// Flags (Set) over env; derived settings follow.
	if err := c.Set("listen", "0.0.0.0:9300"); err != nil {
		t.Fatal(err)
	}
	if err := c.Set("auth.token_ttl", "2m"); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Listen != "0.0.0.0:9300" || c.Auth.TokenTTL.Duration != 2*time.Minute {
		t.Errorf("Set not applied: %s %s", c.Listen, c.Auth.TokenTTL)
	}
	if c.PublicURL != "https://localhost:9300" || c.Auth.Issuer != "https://localhost:9300" {
		t.Errorf("derived after Set: public_url %s issuer %s", c.PublicURL, c.Auth.Issuer)
	}
}

func TestExplicitSettingsDoNotFollow(t *testing.T) {
	dir := writeFile(t, "public_url: https://vault.example.com\ntls:\n  cert_file: /etc/coffer/cert.pem\n")
	c := mustLoad(t, dir)
	if err := c.Set("listen", "127.0.0.1:9999"); err != nil {
		t.Fatal(err)
	}
	if err := c.Set("data_dir", "/var/lib/coffer"); err != nil {
		t.Fatal(err)
	}
	if c.PublicURL != "https://vault.example.com" {
		t.Errorf("explicit public_url changed to %s", c.PublicURL)
	}
	if c.Auth.Issuer != "https://vault.example.com" {
		t.Errorf("issuer = %s, want the explicit public_url", c.Auth.Issuer)
	}
	if c.TLS.CertFile != "/etc/coffer/cert.pem" {
		t.Errorf("explicit cert_file changed to %s", c.TLS.CertFile)
	}
	if c.TLS.KeyFile != "/var/lib/coffer/tls/server-key.pem" || c.RootKey.File != "/var/lib/coffer/root.key" {
		t.Errorf("derived paths did not follow data_dir: %s %s", c.TLS.KeyFile, c.RootKey.File)
	}
	// Setting a derived key to empty makes it derived again.
	if err := c.Set("public_url", ""); err != nil {
		t.Fatal(err)
	}
	if c.PublicURL != "https://127.0.0.1:9999" {
		t.Errorf("public_url after reset = %s", c.PublicURL)
	}
}

func TestRelativePaths(t *testing.T) {
	dir := writeFile(t, "data_dir: data\nroot_key:\n  file: keys/root.key\naudit:\n  file: audit.jsonl\n")
	c := mustLoad(t, dir, "COFFER_TLS_CA_FILE=ca/ca.pem")
	want := map[string]string{
		"data_dir":      filepath.Join(dir, "data"),
		"root_key.file": filepath.Join(dir, "keys", "root.key"),
		"audit.file":    filepath.Join(dir, "audit.jsonl"),
		"tls.ca_file":   filepath.Join(dir, "ca", "ca.pem"),
		"tls.cert_file": filepath.Join(dir, "data", "tls", "server.pem"),
	}
	got := map[string]string{
		"data_dir": c.DataDir, "root_key.file": c.RootKey.File, "audit.file": c.Audit.File,
		"tls.ca_file": c.TLS.CAFile, "tls.cert_file": c.TLS.CertFile,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("paths = %v\nwant %v", got, want)
	}
	if err := c.Set("tls.key_file", "k.pem"); err != nil {
		t.Fatal(err)
	}
	if c.TLS.KeyFile != filepath.Join(dir, "k.pem") {
		t.Errorf("Set relative path = %s", c.TLS.KeyFile)
	}
}

func TestEnvNames(t *testing.T) {
	for key, want := range map[string]string{
		"listen":                  "COFFER_LISTEN",
		"database_url":            "COFFER_DATABASE_URL",
		"metrics_listen":          "COFFER_METRICS_LISTEN",
		"log_level":               "COFFER_LOG_LEVEL",
		"auth.token_ttl":          "COFFER_AUTH_TOKEN_TTL",
		"root_key.provider":       "COFFER_ROOT_KEY_PROVIDER",
		"limits.rate_limit":       "COFFER_LIMITS_RATE_LIMIT",
		"auth.lockout.max":        "COFFER_AUTH_LOCKOUT_MAX",
		"detect.bulk_read_values": "COFFER_DETECT_BULK_READ_VALUES",
	} {
		if got := EnvName(key); got != want {
			t.Errorf("EnvName(%s) = %s, want %s", key, got, want)
		}
	}
	seen := map[string]string{}
	keys := Keys()
	if len(keys) < 40 {
		t.Errorf("only %d keys", len(keys))
	}
	for _, k := range keys {
		n := EnvName(k)
		if prev, dup := seen[n]; dup {
			t.Errorf("keys %s and %s share %s", prev, k, n)
		}
		seen[n] = k
		if _, ok := lookupKey(k); !ok {
			t.Errorf("key %s not settable", k)
		}
	}
	for _, k := range []string{"detect.webhooks", "auth.external"} {
		if _, ok := lookupKey(k); ok {
			t.Errorf("list %s is listed as a scalar key", k)
		}
	}
}

// TestEveryKeyFromEnv sets every key through its variable and checks that
// it arrived, so no key is silently missing from the mapping.
func TestEveryKeyFromEnv(t *testing.T) {
	dir := t.TempDir()
	base := defaults(dir)
	root := reflect.ValueOf(base).Elem()
	for _, k := range keyTable() {
		f := root.FieldByIndex(k.index)
		var value string
		switch {
		case f.Type() == durationType:
			value = "7s"
		case f.Kind() == reflect.String:
			value = "set-by-env"
		case f.Kind() == reflect.Bool:
			value = "true"
		default:
			value = "3"
		}
		t.Run(k.name, func(t *testing.T) {
			c := defaults(dir)
			if err := c.applyEnv([]string{EnvName(k.name) + "=" + value}); err != nil {
				t.Fatal(err)
			}
			got := reflect.ValueOf(c).Elem().FieldByIndex(k.index)
			if fmt.Sprint(got.Interface()) == fmt.Sprint(root.FieldByIndex(k.index).Interface()) && value != "true" {
				t.Errorf("%s unchanged by %s", k.name, EnvName(k.name))
			}
			if s := fmt.Sprint(got.Interface()); !strings.Contains(s, strings.TrimSuffix(value, "s")) && value != "true" {
				t.Errorf("%s = %s, want %s", k.name, s, value)
			}
			if value == "true" && !got.Bool() {
				t.Errorf("%s not set", k.name)
			}
		})
	}
}

func TestUnknownKeys(t *testing.T) {
	tests := []struct {
		name, yaml, wantKey string
		wantLine            int
	}{
		{"fail/top level", "listen: 127.0.0.1:1\nlisten_addr: x\n", `"listen_addr"`, 2},
		{"fail/nested", "auth:\n  audience: a\n  token_tll: 5m\n", `"auth.token_tll"`, 3},
		{"fail/deeply nested", "auth:\n  lockout:\n    maximum: 1h\n", `"auth.lockout.maximum"`, 3},
		{"fail/in a list", "detect:\n  webhooks:\n    - url: https://h.example/x\n      secret: s\n      sekret: s\n", `"detect.webhooks[0].sekret"`, 5},
		{"fail/scalar key given a map", "limits:\n  rate_limit: {rps: 1}\n", "", 0},
		{"fail/merge key", "base: &b {listen: x}\n", `"base"`, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(writeFile(t, tt.yaml), nil)
			if err == nil {
				t.Fatal("loaded")
			}
			if tt.wantKey == "" {
				return
			}
			if !errors.Is(err, ErrUnknownKey) {
				t.Errorf("err = %v, want ErrUnknownKey", err)
			}
			if !strings.Contains(err.Error(), tt.wantKey) || !strings.Contains(err.Error(), fmt.Sprintf("line %d", tt.wantLine)) {
				t.Errorf("err = %q, want key %s on line %d", err, tt.wantKey, tt.wantLine)
			}
		})
	}
	c := mustLoad(t, t.TempDir())
	if err := c.Set("no.such.key", "1"); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Set unknown key: err = %v", err)
	}
	if err := c.Set("detect.webhooks", "x"); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Set list key: err = %v", err)
	}
}

func TestInvalid(t *testing.T) {
	ext := func(more string) string {
		return "auth:\n  external:\n    - issuer: https://idp.example\n      audience: coffer\n" + more
	}
	tests := []struct {
		name string
		yaml string
		env  []string
		want string // substring of the error
	}{
		{"fail/listen without port", "listen: 127.0.0.1\n", nil, `listen: "127.0.0.1" is not host:port`},
		{"fail/listen bad port", "listen: 127.0.0.1:99999\n", nil, "listen: \"127.0.0.1:99999\": port must be"},
		{"fail/listen bad host", "listen: 'bad host:80'\n", nil, "listen: \"bad host:80\": bad host"},
		{"fail/metrics same as listen", "metrics_listen: 127.0.0.1:8443\n", nil, "metrics_listen: must differ from listen"},
		{"fail/public url http", "public_url: http://vault.example.com\n", nil, "public_url: must be an https:// URL"},
		{"fail/public url no host", "public_url: 'https://'\n", nil, "public_url: must have a host"},
		{"fail/public url with query", "public_url: https://h.example/?a=b\n", nil, "public_url: must not have a query"},
		{"fail/issuer with credentials", "auth:\n  issuer: https://u:p@h.example\n", nil, "auth.issuer: must not contain credentials"},
		{"fail/database url mysql", "database_url: mysql://u:hunter2@h/db\n", nil, "database_url: must be empty"},
		{"fail/unknown provider", "root_key:\n  provider: kms\n", nil, `root_key.provider: unknown provider "kms"`},
		{"fail/env provider bad name", "root_key:\n  provider: env\n  env: 'A-B'\n", nil, "root_key.env: must name"},
		{"fail/negative token ttl", "auth:\n  token_ttl: -5m\n", nil, "auth.token_ttl: must not be negative"},
		{"fail/zero token ttl", "auth:\n  token_ttl: 0s\n", nil, "auth.token_ttl: must be positive"},
		{"fail/token ttl over a day", "auth:\n  token_ttl: 48h\n", nil, "auth.token_ttl: 48h is over the 24h maximum"},
		{"fail/bare number duration", "auth:\n  token_ttl: 900\n", nil, "line 2: auth.token_ttl: want a Go duration"},
		{"fail/duration as list", "timeouts:\n  read: [1s]\n", nil, "want a Go duration"},
		{"fail/negative timeout", "timeouts:\n  write: -1s\n", nil, "timeouts.write: must not be negative"},
		{"fail/negative timeout from env", "", []string{"COFFER_TIMEOUTS_IDLE=-2s"}, "timeouts.idle: must not be negative"},
		{"fail/lockout max below base", "auth:\n  lockout:\n    base: 2h\n", nil, "auth.lockout.max: must not be less than"},
		{"fail/zero body limit", "limits:\n  max_body_bytes: 0\n", nil, "limits.max_body_bytes: must be at least 1"},
		{"fail/negative rate", "limits:\n  rate_limit: -1\n", nil, "limits.rate_limit: must not be negative"},
		{"fail/negative checkpoint", "audit:\n  checkpoint_every: -1\n", nil, "audit.checkpoint_every: must not be negative"},
		{"fail/audit durability unknown", "audit:\n  durability: relaxed\n", nil, `audit.durability: must be "durable" (the default) or "interval"`},
		{"fail/audit flush interval zero", "audit:\n  durability: interval\n  flush_interval: 0s\n", nil, "audit.flush_interval: must be positive"},
		{"fail/audit flush interval too long", "", []string{"COFFER_AUDIT_DURABILITY=interval", "COFFER_AUDIT_FLUSH_INTERVAL=5s"}, "audit.flush_interval: must be at most 1s"},
		{"fail/zero detect window", "detect:\n  window: 0s\n", nil, "detect.window: must be positive"},
		{"fail/webhook without secret", "detect:\n  webhooks:\n    - url: https://hooks.example/x\n", nil, "detect.webhooks[0].secret: must be set"},
		{"fail/webhook bad url", "detect:\n  webhooks:\n    - url: ftp://hooks.example/x\n      secret: s\n", nil, "detect.webhooks[0].url"},
		{"fail/external issuer http", "auth:\n  external:\n    - issuer: http://idp.example\n      audience: coffer\n", nil, "auth.external[0].issuer"},
		{"fail/external jwks url http", ext("      jwks_url: http://idp.example/keys\n"), nil, "auth.external[0].jwks_url: must be an https:// URL"},
		{"fail/external ca file relative", ext("      ca_file: idp-ca.pem\n"), nil, "auth.external[0].ca_file: must be an absolute path"},
		{"fail/external algorithm HS256", ext("      algorithms: [RS256, HS256]\n"), nil, `auth.external[0].algorithms: "HS256" is not allowed`},
		{"fail/external algorithm none", ext("      algorithms: [none]\n"), nil, `auth.external[0].algorithms: "none" is not allowed`},
		{"fail/external empty role name", ext("      role_map: {admins: ''}\n"), nil, "auth.external[0].role_map: external and Coffer role names must not be empty"},
		{"fail/external empty attribute claim", ext("      attribute_claims: ['']\n"), nil, "auth.external[0].attribute_claims"},
		{"fail/external prefix without colon", ext("      subject_prefix: cl_\n"), nil, "auth.external[0].subject_prefix: must contain a ':'"},
		{"fail/external duplicate issuer", ext("    - issuer: https://idp.example\n      audience: other\n"), nil, "auth.external[1].issuer: same issuer as auth.external[0]"},
		{"fail/external same host same prefix", ext("    - issuer: https://idp.example/realms/b\n      audience: coffer\n"), nil, "auth.external[1].subject_prefix: \"ext:idp.example:\" starts with the prefix of auth.external[0]"},
		{"fail/external prefix starts another", ext("      subject_prefix: 'ext:a:'\n    - issuer: https://idp2.example\n      audience: coffer\n      subject_prefix: 'ext:a:b:'\n"), nil, "auth.external[1].subject_prefix"},
		{"fail/external role map not a mapping", ext("      role_map: [a, b]\n"), nil, "auth.external[0].role_map: want a mapping"},
		{"fail/negative rotate after", "keys:\n  rotate_after: -1h\n", nil, "keys.rotate_after: must not be negative"},
		{"fail/rotate after uses over 2^32", "keys:\n  rotate_after_uses: 4294967297\n", nil, "keys.rotate_after_uses: 4294967297 is over 2^32"},
		{"fail/negative rotate after uses", "", []string{"COFFER_KEYS_ROTATE_AFTER_USES=-1"}, "keys.rotate_after_uses: must not be negative"},
		{"fail/wrapping key rotated too often", "transit:\n  byok:\n    wrapping_key_rotate_after: 10m\n", nil, "transit.byok.wrapping_key_rotate_after: must be at least 1h"},
		{"fail/wrapping key grace too long", "", []string{"COFFER_TRANSIT_BYOK_WRAPPING_KEY_GRACE=48h"}, "transit.byok.wrapping_key_grace: must be between 0 and 24h"},
		{"fail/wrapping key grace past rotation", "transit:\n  byok:\n    wrapping_key_rotate_after: 2h\n    wrapping_key_grace: 3h\n", nil, "transit.byok.wrapping_key_grace: must be shorter"},
		{"fail/zero rotate check interval", "keys:\n  rotate_check_interval: 0s\n", nil, "keys.rotate_check_interval: must be positive"},
		{"fail/log level", "log_level: loud\n", nil, `log_level: unknown level "loud"`},
		{"fail/node with space", "node: 'a b'\n", nil, "node: must be"},
		{"fail/env bool", "", []string{"COFFER_DEV=yes please"}, "COFFER_DEV: want true or false"},
		{"fail/env int", "", []string{"COFFER_LIMITS_MAX_BATCH_ITEMS=10k"}, "COFFER_LIMITS_MAX_BATCH_ITEMS: want a whole number"},
		{"fail/env float", "", []string{"COFFER_LIMITS_RATE_LIMIT=NaN"}, "COFFER_LIMITS_RATE_LIMIT: want a number"},
		{"fail/env duration", "", []string{"COFFER_AUTH_TOKEN_TTL=15"}, "COFFER_AUTH_TOKEN_TTL: want a Go duration"},
		{"fail/yaml int", "limits:\n  max_batch_items: lots\n", nil, "line 2: limits.max_batch_items: want a whole number"},
		{"fail/yaml bool", "dev: maybe\n", nil, "line 1: dev: want true or false"},
		{"fail/yaml float", "limits:\n  rate_limit: fast\n", nil, "line 2: limits.rate_limit: want a number"},
		{"fail/yaml string given a map", "listen: {a: b}\n", nil, "line 1: listen: want a string"},
		{"fail/yaml section given a scalar", "auth: yes\n", nil, "line 1: auth: want a mapping"},
		{"fail/yaml list given a mapping", "detect:\n  webhooks: {url: x}\n", nil, "line 2: detect.webhooks: want a list"},
		{"fail/two documents", "listen: 127.0.0.1:1\n---\nlisten: 127.0.0.1:2\n", nil, "more than one YAML document"},
		{"fail/duplicate key", "listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n", nil, "already defined"},
		{"fail/not a mapping", "- a\n- b\n", nil, "want a mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(writeFile(t, tt.yaml), tt.env)
			if err == nil {
				t.Fatal("loaded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q\nwant it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error leaks the DSN password: %q", err)
			}
		})
	}
}

func TestValidationErrorListsEveryProblem(t *testing.T) {
	_, err := Load(writeFile(t, "listen: nope\nlog_level: loud\ntimeouts:\n  read: -1s\n"), nil)
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v, want *ValidationError", err)
	}
	if len(ve.Problems) != 3 {
		t.Errorf("problems = %q, want 3", ve.Problems)
	}
}

func TestSetErrorsDoNotEchoValue(t *testing.T) {
	c := mustLoad(t, t.TempDir())
	for key, value := range map[string]string{
		"dev": "s3cr3t-value", "limits.rate_burst": "s3cr3t-value",
		"limits.rate_limit": "s3cr3t-value", "auth.token_ttl": "s3cr3t-value",
	} {
		err := c.Set(key, value)
		if err == nil {
			t.Errorf("Set(%s) accepted a bad value", key)
			continue
		}
		if strings.Contains(err.Error(), "s3cr3t") || !strings.HasPrefix(err.Error(), key+": ") {
			t.Errorf("Set(%s) error = %q", key, err)
		}
	}
}

func TestWriteLoadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	c := mustLoad(t, dir, "COFFER_LISTEN=127.0.0.1:8500")
	for k, v := range map[string]string{
		"database_url":            "postgres://coffer:pw@db.internal:5432/coffer?sslmode=verify-full",
		"auth.token_ttl":          "5m",
		"tls.client_certs":        "true",
		"audit.file":              "audit/events.jsonl",
		"audit.stdout":            "true",
		"detect.bulk_read_values": "250",
		"limits.rate_limit":       "12.5",
		"dev":                     "true",
		"root_key.provider":       "env",
		"root_key.env":            "MY_ROOT_KEY",
		"tls.ca_key_file":         "/etc/coffer/ca-key.pem",
	} {
		if err := c.Set(k, v); err != nil {
			t.Fatalf("Set(%s): %v", k, err)
		}
	}
	c.Detect.Webhooks = []Webhook{{URL: "https://hooks.example/coffer", Secret: "whsec"}}
	c.Auth.External = []ExternalIssuer{{Issuer: "https://idp.example", Audience: "coffer", RolesClaim: "groups"}}
	if err := Write(dir, c); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, FileName)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %04o, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	text := string(b)
	for _, absent := range []string{"public_url", "issuer: https://127", "node:", dir, "cert_file"} {
		if strings.Contains(text, absent) {
			t.Errorf("written file contains %q:\n%s", absent, text)
		}
	}
	for _, present := range []string{"listen: 127.0.0.1:8500", "token_ttl: 5m", "file: audit/events.jsonl", "ca_key_file: /etc/coffer/ca-key.pem"} {
		if !strings.Contains(text, present) {
			t.Errorf("written file lacks %q:\n%s", present, text)
		}
	}

	got := mustLoad(t, dir)
	if !reflect.DeepEqual(got, c) {
		t.Errorf("round trip differs:\n got %#v\nwant %#v", got, c)
	}

	if err := Write(dir, c); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second Write: err = %v, want fs.ErrExist", err)
	}
}

func TestWriteRefusesInvalid(t *testing.T) {
	dir := t.TempDir()
	c := mustLoad(t, dir)
	c.Listen = "nope"
	if err := Write(dir, c); err == nil {
		t.Fatal("wrote an invalid config")
	}
	if _, err := os.Stat(filepath.Join(dir, FileName)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("file exists after a refused Write: %v", err)
	}
}

func TestDirectoryMoves(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, mustLoad(t, dir)); err != nil {
		t.Fatal(err)
	}
	moved := filepath.Join(t.TempDir(), "moved")
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	c := mustLoad(t, moved)
	if c.DataDir != moved || c.TLS.CAFile != filepath.Join(moved, "tls", "ca.pem") {
		t.Errorf("after move: data_dir %s ca_file %s", c.DataDir, c.TLS.CAFile)
	}
}

func TestRedacted(t *testing.T) {
	c := mustLoad(t, t.TempDir(),
		"COFFER_DATABASE_URL=postgres://coffer:hunter2@db:5432/coffer?sslmode=require&sslpassword=hunter3")
	c.Detect.Webhooks = []Webhook{{URL: "https://u:hunter4@hooks.example/x?token=hunter5", Secret: "hunter6"}}
	outputs := map[string]string{
		"String":      c.String(),
		"%v pointer":  fmt.Sprintf("%v", c),
		"%+v pointer": fmt.Sprintf("%+v", c),
		"%#v pointer": fmt.Sprintf("%#v", c),
		"%v value":    fmt.Sprintf("%v", *c),
		"%+v value":   fmt.Sprintf("%+v", *c),
		"%s value":    c.String(),
		"Redacted":    fmt.Sprintf("%s %s %s", c.Redacted().DatabaseURL, c.Redacted().Detect.Webhooks[0].URL, c.Redacted().Detect.Webhooks[0].Secret),
	}
	for name, out := range outputs {
		if strings.Contains(out, "hunter") {
			t.Errorf("%s leaks a secret: %s", name, out)
		}
	}
	if !strings.Contains(outputs["String"], "postgres://coffer:REDACTED@db:5432/coffer") || !strings.Contains(outputs["String"], "sslmode=require") {
		t.Errorf("String lost the non-secret DSN parts:\n%s", outputs["String"])
	}
	if c.DatabaseURL != "postgres://coffer:hunter2@db:5432/coffer?sslmode=require&sslpassword=hunter3" || c.Detect.Webhooks[0].Secret != "hunter6" {
		t.Error("Redacted modified the original")
	}
}

func TestRedactDSN(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"ok/empty", "", ""},
		{"ok/no password", "postgres://coffer@db/coffer", "postgres://coffer@db/coffer"},
		{"ok/user password", "postgres://u:p%40ss@db/x", "postgres://u:REDACTED@db/x"},
		{"ok/query password", "postgres://db/x?password=p", "postgres://db/x?password=REDACTED"},
		{"ok/keyword form", "host=db password=secret user=u", "host=db password=REDACTED user=u"},
		{"ok/keyword quoted", "host=db password='a b\\' c' user=u", "host=db password=REDACTED user=u"},
		{"ok/unparsable", "postgres://u:p@[bad/x", "REDACTED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := redactDSN(tt.in); got != tt.want {
				t.Errorf("redactDSN(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"15m", 15 * time.Minute, true},
		{"1h30m", 90 * time.Minute, true},
		{"0", 0, true},
		{"-1s", -time.Second, true},
		{"900", 0, false},
		{"", 0, false},
		{"15 minutes", 0, false},
	}
	for _, tt := range tests {
		d, err := ParseDuration(tt.in)
		if (err == nil) != tt.ok || d.Duration != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v", tt.in, d, err)
		}
		var u Duration
		if err := u.UnmarshalText([]byte(tt.in)); (err == nil) != tt.ok || u.Duration != tt.want {
			t.Errorf("UnmarshalText(%q) = %v, %v", tt.in, u, err)
		}
	}
	for d, want := range map[time.Duration]string{
		15 * time.Minute: "15m", time.Hour: "1h", 90 * time.Minute: "1h30m", 90 * time.Second: "1m30s",
		0: "0s", 5 * time.Second: "5s", 1500 * time.Millisecond: "1.5s", 2*time.Hour + time.Second: "2h0m1s",
	} {
		b, _ := Duration{d}.MarshalText()
		back, err := ParseDuration(string(b))
		if string(b) != want || err != nil || back.Duration != d {
			t.Errorf("MarshalText(%v) = %s (back %v, %v), want %s", d, b, back, err, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("listen: 127.0.0.1:1\nauth:\n  token_ttl: 5m\n"))
	f.Add([]byte("detect:\n  webhooks:\n    - url: https://h/x\n      secret: s\n"))
	f.Add([]byte("a: &x {b: *x}\n"))
	f.Add([]byte("limits: {max_body_bytes: 10, rate_limit: 1.5}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		c := defaults(dir)
		if err := c.parse(b); err != nil {
			return
		}
		c.finish()
		if c.Validate() != nil {
			return
		}
		// What parses and validates writes back and re-reads to the same.
		out, err := c.forFile(dir).marshal()
		if err != nil {
			t.Fatal(err)
		}
		c2 := defaults(dir)
		if err := c2.parse(out); err != nil {
			t.Fatalf("re-parse of %q: %v", out, err)
		}
		c2.finish()
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip differs for %q", b)
		}
	})
}

func BenchmarkLoad(b *testing.B) {
	dir := writeFile(b, "listen: 127.0.0.1:9000\nauth:\n  token_ttl: 10m\ndetect:\n  webhooks:\n    - url: https://h.example/x\n      secret: s\n")
	env := []string{"COFFER_LOG_LEVEL=debug", "PATH=/usr/bin"}
	for b.Loop() {
		if _, err := Load(dir, env); err != nil {
			b.Fatal(err)
		}
	}
}

func TestDetectListsAndMapsFromFile(t *testing.T) {
	dir := t.TempDir()
	doc := "detect:\n  suspend_on: [data.canary, data.bulk_read]\n  suspend_for: 2h\n  hours:\n    support: \"08:00-18:00 Europe/Berlin\"\n    \"*\": \"00:00-24:00\"\n"
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Detect.SuspendOn) != 2 || c.Detect.SuspendFor.Duration != 2*time.Hour || c.Detect.Hours["support"] != "08:00-18:00 Europe/Berlin" {
		t.Fatalf("detect settings: %+v", c.Detect)
	}
	bad := "detect:\n  hours:\n    support: [1, 2]\n"
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir, nil); err == nil {
		t.Fatal("a list accepted as an hours value")
	}
}

func TestExternalIssuersFromFile(t *testing.T) {
	doc := `auth:
  external:
    - issuer: https://idp.example/realms/a
      audience: coffer
      roles_claim: realm_access.roles
      jwks_url: https://idp.example/realms/a/certs
      ca_file: /etc/coffer/idp-ca.pem
      role_map: {vault-admins: admin, support-staff: support}
      subject_prefix: "kc-a:"
      algorithms: [RS256, PS256]
      attribute_claims: [email]
      mfa_acr_values: [gold]
    - issuer: https://idp.example/realms/b
      audience: coffer
`
	c := mustLoad(t, writeFile(t, doc))
	if len(c.Auth.External) != 2 {
		t.Fatalf("external = %+v", c.Auth.External)
	}
	want := ExternalIssuer{
		Issuer: "https://idp.example/realms/a", Audience: "coffer", RolesClaim: "realm_access.roles",
		JWKSURL: "https://idp.example/realms/a/certs", CAFile: "/etc/coffer/idp-ca.pem",
		RoleMap:       map[string]string{"vault-admins": "admin", "support-staff": "support"},
		SubjectPrefix: "kc-a:", Algorithms: []string{"RS256", "PS256"},
		AttributeClaims: []string{"email"}, MFAACRValues: []string{"gold"},
	}
	if !reflect.DeepEqual(c.Auth.External[0], want) {
		t.Errorf("external[0] = %+v\nwant %+v", c.Auth.External[0], want)
	}
	if got := c.Auth.External[0].EffectiveSubjectPrefix(); got != "kc-a:" {
		t.Errorf("explicit prefix = %q", got)
	}
	if got := c.Auth.External[1].EffectiveSubjectPrefix(); got != "ext:idp.example:" {
		t.Errorf("default prefix = %q, want ext:idp.example:", got)
	}
	if got := DefaultSubjectPrefix("https://idp.example:8443/x"); got != "ext:idp.example:8443:" {
		t.Errorf("default prefix with port = %q", got)
	}
	for _, a := range DefaultExternalAlgorithms() {
		if !slices.Contains(ExternalAlgorithms(), a) {
			t.Errorf("default algorithm %s is not allowed", a)
		}
	}
	for _, a := range ExternalAlgorithms() {
		if strings.HasPrefix(a, "HS") || strings.EqualFold(a, "none") {
			t.Errorf("symmetric or no algorithm allowed: %s", a)
		}
	}
}

// TestKeyRotationSettings: keys.* from the file and the environment,
// 0 turning a rule off, 2^32 the highest use count accepted.
func TestKeyRotationSettings(t *testing.T) {
	c := mustLoad(t, writeFile(t, "keys:\n  rotate_after: 720h\n  rotate_after_uses: 0\n"),
		"COFFER_KEYS_ROTATE_CHECK_INTERVAL=30s")
	if c.Keys.RotateAfter.Duration != 720*time.Hour || c.Keys.RotateAfterUses != 0 || c.Keys.RotateCheckInterval.Duration != 30*time.Second {
		t.Fatalf("keys = %+v", c.Keys)
	}
	c = mustLoad(t, t.TempDir(), "COFFER_KEYS_ROTATE_AFTER=0", "COFFER_KEYS_ROTATE_AFTER_USES=4294967296")
	if c.Keys.RotateAfter.Duration != 0 || c.Keys.RotateAfterUses != 1<<32 {
		t.Fatalf("keys = %+v", c.Keys)
	}
}
