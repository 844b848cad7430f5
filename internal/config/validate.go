package config

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ValidationError lists every problem of a configuration, each starting
// with the key it concerns. No problem repeats a secret.
type ValidationError struct {
	Problems []string
}

// Error implements error.
func (e *ValidationError) Error() string {
	return "invalid configuration: " + strings.Join(e.Problems, "; ")
}

// Validate checks c and returns a *ValidationError listing every problem,
// or nil.
func (c *Config) Validate() error {
	var p []string
	add := func(key, format string, args ...any) {
		p = append(p, key+": "+fmt.Sprintf(format, args...))
	}

	if c.DataDir == "" || !filepath.IsAbs(c.DataDir) {
		add("data_dir", "must be set")
	}
	if c.TransitCompat {
		if msg := checkMount(c.TransitCompatMount); msg != "" {
			add("transit_compat_mount", "%s", msg)
		}
	}
	if err := checkAddr(c.Listen); err != nil {
		add("listen", "%v", err)
	}
	if c.MetricsListen != "" {
		if err := checkAddr(c.MetricsListen); err != nil {
			add("metrics_listen", "%v", err)
		} else if c.MetricsListen == c.Listen {
			add("metrics_listen", "must differ from listen")
		}
	}
	if err := checkHTTPSURL(c.PublicURL); err != nil {
		add("public_url", "%v", err)
	}
	if c.DatabaseURL != "" {
		u, err := url.Parse(c.DatabaseURL)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			add("database_url", "must be empty (SQLite in data_dir) or a postgres:// URL")
		}
	}

	switch c.RootKey.Provider {
	case ProviderFile:
		if c.RootKey.File == "" {
			add("root_key.file", "must be set for the file provider")
		}
	case ProviderEnv:
		if !validEnvName(c.RootKey.Env) {
			add("root_key.env", "must name an environment variable ([A-Za-z_][A-Za-z0-9_]*)")
		}
	case ProviderShamir:
		if c.RootKey.CheckFile == "" {
			add("root_key.check_file", "must be set for the shamir provider")
		}
	case ProviderPKCS11:
		k := c.RootKey.PKCS11
		if k.Module == "" || !filepath.IsAbs(k.Module) {
			add("root_key.pkcs11.module", "must be the absolute path of the token's PKCS#11 library")
		}
		if strings.TrimSpace(k.TokenLabel) == "" || len(k.TokenLabel) > 32 {
			add("root_key.pkcs11.token_label", "must be 1 to 32 bytes (the token's label)")
		}
		if strings.TrimSpace(k.KeyLabel) == "" || len(k.KeyLabel) > 256 {
			add("root_key.pkcs11.key_label", "must be 1 to 256 bytes (the root key object's label)")
		}
		if !validEnvName(k.PINEnv) {
			add("root_key.pkcs11.pin_env", "must name an environment variable ([A-Za-z_][A-Za-z0-9_]*); the PIN is never kept in the file")
		}
	default:
		add("root_key.provider", "unknown provider %q (want file, env, shamir or pkcs11)", printable(c.RootKey.Provider))
	}

	for key, f := range map[string]string{
		"tls.cert_file": c.TLS.CertFile, "tls.key_file": c.TLS.KeyFile,
		"tls.ca_file": c.TLS.CAFile, "tls.ca_key_file": c.TLS.CAKeyFile,
	} {
		if f == "" {
			add(key, "must be set")
		}
	}

	if err := checkHTTPSURL(c.Auth.Issuer); err != nil {
		add("auth.issuer", "%v", err)
	}
	if strings.TrimSpace(c.Auth.Audience) == "" {
		add("auth.audience", "must be set")
	}
	positive(add, "auth.token_ttl", c.Auth.TokenTTL)
	if c.Auth.TokenTTL.Duration > MaxTokenTTL {
		add("auth.token_ttl", "%s is over the %s maximum for access tokens", c.Auth.TokenTTL, Duration{MaxTokenTTL})
	}
	atLeastOne(add, "auth.lockout.max_failures", int64(c.Auth.Lockout.MaxFailures))
	positive(add, "auth.lockout.window", c.Auth.Lockout.Window)
	positive(add, "auth.lockout.base", c.Auth.Lockout.Base)
	positive(add, "auth.lockout.max", c.Auth.Lockout.Max)
	if c.Auth.Lockout.Max.Duration < c.Auth.Lockout.Base.Duration {
		add("auth.lockout.max", "must not be less than auth.lockout.base")
	}
	atLeastOne(add, "auth.lockout.address_max_failures", int64(c.Auth.Lockout.AddressMaxFailures))
	if c.Auth.Lockout.AddressMaxFailures < c.Auth.Lockout.MaxFailures {
		add("auth.lockout.address_max_failures", "must not be less than auth.lockout.max_failures")
	}
	if c.Auth.Hashing.MaxConcurrent < 0 || c.Auth.Hashing.MaxConcurrent > 64 {
		add("auth.hashing.max_concurrent", "must be 0 (automatic) to 64")
	}
	positive(add, "auth.hashing.queue_timeout", c.Auth.Hashing.QueueTimeout)
	positive(add, "auth.mfa_enrolment_code_ttl", c.Auth.MFAEnrolmentCodeTTL)
	positive(add, "auth.reauth_max_age", c.Auth.ReauthMaxAge)
	if d := c.Console.IdleTimeout.Duration; d < 0 || d > 24*time.Hour {
		add("console.idle_timeout", "%s must be from 0 (the default, 10m) to 24h", c.Console.IdleTimeout)
	}
	c.validateExternal(add)

	atLeastOne(add, "limits.max_body_bytes", c.Limits.MaxBodyBytes)
	atLeastOne(add, "limits.max_batch_items", int64(c.Limits.MaxBatchItems))
	if c.Limits.RateLimit < 0 {
		add("limits.rate_limit", "must not be negative (0 disables rate limiting)")
	}
	if c.Limits.RateLimit > 0 && c.Limits.RateBurst < 1 {
		add("limits.rate_burst", "must be at least 1")
	}

	for key, n := range map[string]int{"limits.tokenize_per_hour": c.Limits.TokenizePerHour,
		"limits.tokenize_linkable_per_hour": c.Limits.TokenizeLinkablePerHour} {
		if n < 0 {
			add(key, "must not be negative (0: no quota)")
		}
	}
	for role, l := range c.Limits.Roles {
		if l.TokenizePerHour < 0 || l.TokenizeLinkablePerHour < 0 {
			add("limits.roles."+printable(role), "quotas must not be negative (0 or left out: the default)")
		}
	}

	positive(add, "timeouts.read_header", c.Timeouts.ReadHeader)
	positive(add, "timeouts.read", c.Timeouts.Read)
	positive(add, "timeouts.write", c.Timeouts.Write)
	positive(add, "timeouts.idle", c.Timeouts.Idle)
	positive(add, "timeouts.shutdown", c.Timeouts.Shutdown)

	if c.Audit.CheckpointEvery < 0 {
		add("audit.checkpoint_every", "must not be negative")
	}
	if c.Audit.CheckpointInterval.Duration < 0 {
		add("audit.checkpoint_interval", "must not be negative")
	}
	switch w := c.Audit.Witness; {
	case w == "":
		if c.Audit.WitnessSecret != "" {
			add("audit.witness_secret", "is set but audit.witness is not")
		}
	case strings.Contains(w, "://"):
		if err := checkHTTPSURL(w); err != nil {
			add("audit.witness", "%v (or an absolute file path)", err)
		}
		if c.Audit.WitnessSecret == "" {
			add("audit.witness_secret", "must be set for an https witness (it signs each checkpoint sent)")
		}
	case !filepath.IsAbs(w):
		add("audit.witness", "must be an https:// URL or an absolute file path")
	case c.Audit.WitnessSecret != "":
		add("audit.witness_secret", "is only for an https witness")
	}
	positive(add, "audit.witness_max_lag", c.Audit.WitnessMaxLag)
	switch c.Audit.Durability {
	case "", AuditDurable:
	case AuditInterval:
		positive(add, "audit.flush_interval", c.Audit.FlushInterval)
		if c.Audit.FlushInterval.Duration > time.Second {
			add("audit.flush_interval", "must be at most 1s (it is what a crash may lose), got %s", c.Audit.FlushInterval)
		}
	default:
		add("audit.durability", "must be %q (the default) or %q", AuditDurable, AuditInterval)
	}
	positive(add, "audit.retain_in_db", c.Audit.RetainInDB)
	positive(add, "audit.archive_every", c.Audit.ArchiveEvery)
	atLeastOne(add, "audit.archive_segment_events", int64(c.Audit.ArchiveSegmentEvents))

	positive(add, "detect.window", c.Detect.Window)
	atLeastOne(add, "detect.bulk_read_values", int64(c.Detect.BulkReadValues))
	atLeastOne(add, "detect.bulk_tokenize_values", int64(c.Detect.BulkTokenizeValues))
	atLeastOne(add, "detect.bulk_tokenize_linkable", int64(c.Detect.BulkTokenizeLinkable))
	atLeastOne(add, "detect.failed_auth_burst", int64(c.Detect.FailedAuthBurst))
	atLeastOne(add, "detect.denied_burst", int64(c.Detect.DeniedBurst))
	atLeastOne(add, "detect.enumeration", int64(c.Detect.Enumeration))
	for i, w := range c.Detect.Webhooks {
		key := fmt.Sprintf("detect.webhooks[%d]", i)
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			add(key+".url", "must be an http:// or https:// URL")
		}
		if w.Secret == "" {
			add(key+".secret", "must be set (it signs each delivery)")
		}
	}

	if c.Keys.RotateAfter.Duration < 0 {
		add("keys.rotate_after", "must not be negative (0: never rotate by age)")
	}
	switch {
	case c.Keys.RotateAfterUses < 0:
		add("keys.rotate_after_uses", "must not be negative (0: never rotate by use count)")
	case c.Keys.RotateAfterUses > MaxRotateAfterUses:
		add("keys.rotate_after_uses", "%d is over 2^32 (%d): AES-GCM with random nonces must rotate before that", c.Keys.RotateAfterUses, int64(MaxRotateAfterUses))
	}
	positive(add, "keys.rotate_check_interval", c.Keys.RotateCheckInterval)

	b := c.Transit.BYOK
	switch {
	case b.WrappingKeyRotateAfter.Duration < 0:
		add("transit.byok.wrapping_key_rotate_after", "must not be negative (0: never rotate)")
	case b.WrappingKeyRotateAfter.Duration > 0 && b.WrappingKeyRotateAfter.Duration < time.Hour:
		add("transit.byok.wrapping_key_rotate_after", "must be at least 1h (an RSA-4096 key takes seconds to make)")
	}
	switch {
	case b.WrappingKeyGrace.Duration < 0 || b.WrappingKeyGrace.Duration > MaxWrappingKeyGrace:
		add("transit.byok.wrapping_key_grace", "must be between 0 and 24h: the old key is kept only for imports already wrapped for it")
	case b.WrappingKeyRotateAfter.Duration > 0 && b.WrappingKeyGrace.Duration >= b.WrappingKeyRotateAfter.Duration:
		add("transit.byok.wrapping_key_grace", "must be shorter than transit.byok.wrapping_key_rotate_after")
	}

	c.validateRelay(add)

	if c.Node == "" || len(c.Node) > 128 || strings.ContainsFunc(c.Node, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		add("node", "must be 1-128 characters without spaces")
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		add("log_level", "unknown level %q (want debug, info, warn or error)", printable(c.LogLevel))
	}

	if len(p) > 0 {
		return &ValidationError{Problems: p}
	}
	return nil
}

// validateExternal checks auth.external: each issuer once, https URLs,
// asymmetric algorithms only, and subject prefixes that can collide
// neither with Coffer's own ids nor with each other.
func (c *Config) validateExternal(add func(string, string, ...any)) {
	seen := map[string]int{}
	prefixes := make([]string, len(c.Auth.External))
	for i, x := range c.Auth.External {
		key := fmt.Sprintf("auth.external[%d]", i)
		if err := checkHTTPSURL(x.Issuer); err != nil {
			add(key+".issuer", "%v", err)
		} else if j, dup := seen[x.Issuer]; dup {
			add(key+".issuer", "same issuer as auth.external[%d]", j)
		} else {
			seen[x.Issuer] = i
		}
		if strings.TrimSpace(x.Audience) == "" {
			add(key+".audience", "must be set")
		}
		if x.JWKSURL != "" {
			if err := checkHTTPSURL(x.JWKSURL); err != nil {
				add(key+".jwks_url", "%v", err)
			}
		}
		if x.CAFile != "" && !filepath.IsAbs(x.CAFile) {
			add(key+".ca_file", "must be an absolute path")
		}
		for _, a := range x.Algorithms {
			if !slices.Contains(ExternalAlgorithms(), a) {
				add(key+".algorithms", "%q is not allowed (want some of %s)", printable(a), strings.Join(ExternalAlgorithms(), ", "))
			}
		}
		for from, to := range x.RoleMap {
			if strings.TrimSpace(from) == "" || strings.TrimSpace(to) == "" {
				add(key+".role_map", "external and Coffer role names must not be empty")
				break
			}
		}
		for _, a := range x.AttributeClaims {
			if strings.TrimSpace(a) == "" {
				add(key+".attribute_claims", "claim names must not be empty")
				break
			}
		}
		for _, typ := range x.TokenTypes {
			if strings.TrimSpace(typ) == "" {
				add(key+".token_types", "types must not be empty")
				break
			}
		}
		prefixes[i] = x.EffectiveSubjectPrefix()
		if !strings.Contains(prefixes[i], ":") {
			add(key+".subject_prefix", "must contain a ':' so that external ids never look like Coffer's own")
		}
	}
	for i := range prefixes {
		for j := range prefixes {
			if i != j && strings.HasPrefix(prefixes[j], prefixes[i]) && (i < j || prefixes[i] != prefixes[j]) {
				add(fmt.Sprintf("auth.external[%d].subject_prefix", j),
					"%q starts with the prefix of auth.external[%d]: their subjects could collide; set distinct subject_prefix values",
					printable(prefixes[j]), i)
			}
		}
	}
}

func positive(add func(string, string, ...any), key string, d Duration) {
	switch {
	case d.Duration < 0:
		add(key, "must not be negative, got %s", d)
	case d.Duration == 0:
		add(key, "must be positive")
	}
}

func atLeastOne(add func(string, string, ...any), key string, n int64) {
	if n < 1 {
		add(key, "must be at least 1, got %d", n)
	}
}

// checkAddr checks a host:port listen address.
func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port (e.g. 127.0.0.1:8443)", printable(addr))
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port must be a number 0-65535", printable(addr))
	}
	if host != "" && net.ParseIP(host) == nil && !validHostname(host) {
		return fmt.Errorf("%q: bad host", printable(addr))
	}
	return nil
}

// checkHTTPSURL checks an absolute https URL without credentials, query
// or fragment.
func checkHTTPSURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || s == "" {
		return fmt.Errorf("must be an https:// URL")
	}
	switch {
	case u.Scheme != "https":
		return fmt.Errorf("must be an https:// URL")
	case u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("must have a host")
	case u.User != nil:
		return fmt.Errorf("must not contain credentials")
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return fmt.Errorf("must not have a query or fragment")
	}
	return nil
}

func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// printable bounds a non-secret value quoted into a message.
func printable(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

// coffersPaths are the first segments under /v1/ that Coffer's own API
// uses: the Vault-compatible surface may not be mounted on one.
var coffersPaths = []string{"oauth", "auth", "clients", "users", "policy", "collections", "subjects", "tokenize",
	"detokenize", "inspect", "redact", "keys", "audit", "security", "admin", "sys", "openapi.json", "ui"}

// checkMount checks a mount path of the Vault-compatible surface: one or
// more segments of a-z 0-9 _ -, not one of Coffer's own paths.
func checkMount(m string) string {
	if m == "" {
		return "must be set while transit_compat is on"
	}
	segs := strings.Split(m, "/")
	for _, s := range segs {
		if s == "" || len(s) > 64 || strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") != "" {
			return "must be path segments of 1 to 64 of a-z 0-9 _ -, without a leading or trailing slash, like \"transit\""
		}
	}
	if slices.Contains(coffersPaths, segs[0]) {
		return fmt.Sprintf("%q is one of Coffer's own API paths", segs[0])
	}
	return ""
}
