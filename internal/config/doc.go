// Package config owns the server's configuration: the Config type, its
// defaults, reading DIR/coffer.yaml, COFFER_* environment overrides,
// validation, and writing the file for `coffer init`.
//
// # Precedence
//
// Defaults < DIR/coffer.yaml < COFFER_* environment variables < flags.
// Load applies the first three; the caller applies flags afterwards with
// [Config.Set] and calls [Config.Validate] again.
//
// # Keys and environment variables
//
// Every scalar setting has a key: its YAML path joined with dots, e.g.
// "listen", "auth.token_ttl", "limits.rate_limit.rps". Its environment
// variable is "COFFER_" followed by the key upper-cased with every "." turned
// into "_": COFFER_LISTEN, COFFER_DATABASE_URL, COFFER_METRICS_LISTEN,
// COFFER_LOG_LEVEL, COFFER_AUTH_TOKEN_TTL, COFFER_ROOT_KEY_PROVIDER,
// COFFER_TLS_CLIENT_CERTS, COFFER_LIMITS_RATE_LIMIT_RPS, and so on; [Keys]
// lists them all and [EnvName] maps one. An empty variable counts as unset.
// Lists and maps (detect.webhooks, detect.suspend_on, detect.hours,
// auth.external) come only from the file.
// [Config.Set] takes the same keys, so a flag --auth-token-ttl can call
// Set("auth.token_ttl", v).
//
// Values are parsed by type: booleans as strconv.ParseBool, numbers in
// decimal, durations as Go durations ("15m", "720h"; a bare number other
// than 0 is an error, never nanoseconds).
//
// # Paths
//
// Relative paths (data_dir, root_key.file, tls.*_file, audit.file), whether
// from the file, the environment or Set, are resolved against the
// configuration directory DIR. Settings left empty that derive from others
// (public_url from listen, auth.issuer from public_url, the key and TLS
// files from data_dir, node from the host name) follow their source when it
// changes later through Set, and are not written back by [Write].
//
// # What it must never do
//
// It must never put a secret (a DSN password, a webhook secret) into an
// error message or into String/Redacted output, never accept an unknown key
// silently, and never write the file readable by group or others. It reads
// no environment of its own: the caller passes os.Environ().
package config
