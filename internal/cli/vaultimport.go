package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/client"
)

// importVaultCmd is `coffer keys import-vault`: it reads a transit key's
// versions from HashiCorp Vault with a Vault token, wraps each for the
// Coffer deployment's BYOK wrapping key here, and has Coffer import them
// (POST /v1/keys/{name}/import_vault) with the profile's credentials.
// Coffer never talks to Vault and never sees the Vault token; the key
// bytes exist in this process only between Vault's answer and their wrap,
// and are zeroed then.
func (a *app) importVaultCmd() *cobra.Command {
	var vaultURL, caFile, tokenFile, key, name, mount string
	cmd := &cobra.Command{
		Use:   "import-vault --url VAULT_ADDR --key NAME [--name COFFER_NAME] [--token-file FILE] [--ca-file FILE] [--mount transit]",
		Short: "Import an exportable aes256-gcm96 transit key from HashiCorp Vault, every version, so Vault's vault:vN: ciphertexts decrypt in Coffer",
		Long: "Reads the key's info and GET MOUNT/export/encryption-key/NAME from Vault with a Vault token (VAULT_TOKEN, or\n" +
			"--token-file; never a flag value), wraps each version for Coffer's wrapping key and imports them through the API\n" +
			"with the profile in use (admin on keys/COFFER_NAME). Each version keeps its number, Vault's min_decryption_version\n" +
			"becomes the key's, and the latest version encrypts. Derived, convergent and non-exportable keys are refused.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if vaultURL == "" {
				return usageError(errors.New("--url (or VAULT_ADDR) is required: Vault's address"))
			}
			if err := vaultURLSafe(vaultURL); err != nil {
				return usageError(err)
			}
			if key == "" {
				return usageError(errors.New("--key is required: the transit key's name in Vault"))
			}
			if name == "" {
				name = key
			}
			token, err := a.vaultToken(tokenFile)
			if err != nil {
				return err
			}
			vc, err := vaultHTTP(caFile, a.timeout)
			if err != nil {
				return usageError(err)
			}
			v := vaultSource{hc: vc, base: strings.TrimRight(vaultURL, "/"), mount: strings.Trim(mount, "/"), token: token}
			return a.call(cmd, func(ctx context.Context, c *client.Client, o output) error {
				exp, err := v.export(ctx, key)
				if err != nil {
					return err
				}
				defer exp.zero()
				wk, err := c.WrappingKey(ctx)
				if err != nil {
					return fmt.Errorf("coffer: wrapping key: %w", err)
				}
				in := client.VaultImport{AutoRotatePeriod: exp.autoRotate}
				for i, m := range exp.keys {
					wrapped, err := client.WrapKey(wk, m)
					if err != nil {
						return err
					}
					in.Versions = append(in.Versions, client.VaultKeyVersion{Version: exp.min + uint32(i), Ciphertext: wrapped}) // #nosec G115 -- bounded by export
				}
				k, err := c.ImportVaultKey(ctx, name, in)
				if err != nil {
					return fmt.Errorf("coffer: import %s: %w", name, err)
				}
				fmt.Fprintf(a.env.Stderr, "imported %s from Vault as %s: versions %d to %d; Vault's vault:vN: ciphertexts of those versions decrypt in Coffer, version %d encrypts\n",
					key, k.Name, exp.min, k.LatestVersion, k.LatestVersion)
				return keyTable(o, k)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&vaultURL, "url", a.env.Getenv("VAULT_ADDR"), "Vault's address (env VAULT_ADDR)")
	f.StringVar(&caFile, "ca-file", a.env.Getenv("VAULT_CACERT"), "CA certificate to trust for Vault (PEM; env VAULT_CACERT; default the system roots)")
	f.StringVar(&tokenFile, "token-file", "", "read the Vault token from this file (- for standard input; default env VAULT_TOKEN)")
	f.StringVar(&key, "key", "", "the transit key's name in Vault")
	f.StringVar(&name, "name", "", "the transit key's name in Coffer (default: --key)")
	f.StringVar(&mount, "mount", "transit", "the path Vault's transit engine is mounted at")
	return cmd
}

// vaultToken reads the Vault token from file (- for standard input) or
// VAULT_TOKEN.
func (a *app) vaultToken(file string) (string, error) {
	var tok string
	switch file {
	case "":
		tok = a.env.Getenv("VAULT_TOKEN")
	case "-":
		b, err := io.ReadAll(io.LimitReader(a.env.Stdin, 64<<10))
		if err != nil {
			return "", fmt.Errorf("read the Vault token: %w", err)
		}
		tok = string(b)
	default:
		b, err := os.ReadFile(file) // #nosec G304 -- the user names the file
		if err != nil {
			return "", fmt.Errorf("read the Vault token: %w", err)
		}
		tok = string(b)
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", usageError(errors.New("a Vault token is required: set VAULT_TOKEN or give --token-file"))
	}
	return tok, nil
}

// vaultHTTP is an HTTPS client for Vault trusting caFile (or the system
// roots).
func vaultHTTP(caFile string, timeout time.Duration) (*http.Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile) // #nosec G304 -- the user names the CA file
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file: %s holds no certificate", caFile)
		}
		tc.RootCAs = pool
	}
	return &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: tc, Proxy: http.ProxyFromEnvironment},
		// The token travels in X-Vault-Token, which net/http forwards on
		// any redirect (it drops only the standard credential headers):
		// follow none, so the token and the exported keys go to the
		// address given and nowhere else.
		CheckRedirect: func(req *http.Request, _ []*http.Request) error {
			return fmt.Errorf("vault answered with a redirect to %s; not followed (give the address it redirects to with --url)", req.URL.Redacted())
		}}, nil
}

// vaultURLSafe refuses a Vault address the token and the exported keys
// would cross in the clear: https only, but for a loopback address.
func vaultURLSafe(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("--url %q is not an address like https://vault.example.com:8200", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if ip := net.ParseIP(u.Hostname()); u.Hostname() == "localhost" || (ip != nil && ip.IsLoopback()) {
			return nil
		}
		return errors.New("--url must be https: the Vault token and the exported keys would cross the network in the clear (plain http is taken on loopback only)")
	default:
		return fmt.Errorf("--url must be an https address, not %q", u.Scheme)
	}
}

// vaultSource reads one transit key from Vault.
type vaultSource struct {
	hc                 *http.Client
	base, mount, token string
}

// vaultExport is a key read from Vault: its versions' bytes, from min on.
type vaultExport struct {
	min        uint32
	keys       [][]byte
	autoRotate string
}

func (e *vaultExport) zero() {
	for _, k := range e.keys {
		clear(k)
	}
}

// maxVaultAnswer bounds one answer read from Vault.
const maxVaultAnswer = 4 << 20

// get GETs MOUNT/path from Vault and decodes its data into out; errors say
// what to do, never the token.
func (v vaultSource) get(ctx context.Context, path string, out any) error {
	u := v.base + "/v1/" + v.mount + "/" + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return usageError(fmt.Errorf("--url: %w", err))
	}
	req.Header.Set("X-Vault-Token", v.token)
	req.Header.Set("X-Vault-Request", "true")
	resp, err := v.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("cannot reach Vault at %s: %w", v.base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxVaultAnswer))
	if err != nil {
		return fmt.Errorf("vault: read %s: %w", path, err)
	}
	var env struct {
		Data   json.RawMessage `json:"data"`
		Errors []string        `json:"errors"`
	}
	_ = json.Unmarshal(body, &env)
	msg := strings.Join(env.Errors, "; ")
	switch {
	case resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("vault refused the token for GET %s/%s (403 %s): check VAULT_TOKEN, and that its policy grants read on %s/keys/NAME and %s/export/encryption-key/NAME",
			v.mount, path, msg, v.mount, v.mount)
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("vault has no %s/%s (404): check --key and --mount", v.mount, path)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("vault answered GET %s/%s with %d: %s", v.mount, path, resp.StatusCode, msg)
	case len(env.Data) == 0 || string(env.Data) == "null":
		return fmt.Errorf("vault answered GET %s/%s without data: is %s Vault's address?", v.mount, path, v.base)
	}
	clear(body)
	if err := json.Unmarshal(env.Data, out); err != nil {
		return fmt.Errorf("vault answered GET %s/%s with an unexpected shape", v.mount, path)
	}
	return nil
}

// export reads key's info and exports every version it still decrypts
// with, refusing the keys Coffer cannot take.
func (v vaultSource) export(ctx context.Context, key string) (*vaultExport, error) {
	esc := url.PathEscape(key)
	var info struct {
		Type                 string          `json:"type"`
		Derived              bool            `json:"derived"`
		Convergent           bool            `json:"convergent_encryption"`
		Exportable           bool            `json:"exportable"`
		MinDecryptionVersion uint32          `json:"min_decryption_version"`
		LatestVersion        uint32          `json:"latest_version"`
		AutoRotatePeriod     json.RawMessage `json:"auto_rotate_period"`
	}
	if err := v.get(ctx, "keys/"+esc, &info); err != nil {
		return nil, err
	}
	switch {
	case info.Type != "aes256-gcm96":
		return nil, fmt.Errorf("vault key %s is %s: Coffer imports aes256-gcm96 keys only", key, info.Type)
	case info.Derived || info.Convergent:
		return nil, fmt.Errorf("vault key %s is derived or convergent: Coffer imports neither (its ciphertexts depend on a per-context key Coffer does not make)", key)
	case !info.Exportable:
		return nil, fmt.Errorf("vault key %s is not exportable: Vault exports only keys with exportable=true "+
			"(`vault write %s/keys/%s/config exportable=true`, which cannot be undone, makes it so)", key, v.mount, key)
	case info.LatestVersion == 0 || info.MinDecryptionVersion == 0 || info.MinDecryptionVersion > info.LatestVersion:
		return nil, fmt.Errorf("vault key %s: versions %d to %d make no sense", key, info.MinDecryptionVersion, info.LatestVersion)
	case info.LatestVersion-info.MinDecryptionVersion >= 500:
		return nil, fmt.Errorf("vault key %s has %d versions that decrypt: Coffer imports at most 500; raise its min_decryption_version in Vault first",
			key, info.LatestVersion-info.MinDecryptionVersion+1)
	}
	var exp struct {
		Keys map[string]string `json:"keys"`
	}
	if err := v.get(ctx, "export/encryption-key/"+esc, &exp); err != nil {
		return nil, err
	}
	out := &vaultExport{min: info.MinDecryptionVersion, autoRotate: rotatePeriod(info.AutoRotatePeriod)}
	for n := info.MinDecryptionVersion; n <= info.LatestVersion; n++ {
		s, ok := exp.Keys[strconv.FormatUint(uint64(n), 10)]
		if !ok {
			out.zero()
			return nil, fmt.Errorf("vault's export of %s lacks version %d", key, n)
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) != 32 {
			clear(b)
			out.zero()
			return nil, fmt.Errorf("vault's export of %s: version %d is not a 32-byte key", key, n)
		}
		out.keys = append(out.keys, b)
	}
	for k := range exp.Keys {
		delete(exp.Keys, k)
	}
	return out, nil
}

// rotatePeriod turns Vault's auto_rotate_period (seconds, or a duration
// string) into Coffer's Go duration; "" for none.
func rotatePeriod(raw json.RawMessage) string {
	var secs int64
	if json.Unmarshal(raw, &secs) == nil {
		if secs <= 0 {
			return ""
		}
		return (time.Duration(secs) * time.Second).String()
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if d, err := time.ParseDuration(s); err == nil && d > 0 {
			return d.String()
		}
	}
	return ""
}
