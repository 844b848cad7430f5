package doctor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/pki"
)

// Certificate expiry thresholds.
const (
	expiryHigh   = 14 * 24 * time.Hour
	expiryMedium = 30 * 24 * time.Hour
)

// Key size floors.
const (
	minECDSABits = 256
	minRSABits   = 2048
)

// probeTimeout bounds each handshake of the live probe.
const probeTimeout = 5 * time.Second

// checkServerCert checks the server certificate's expiry and key, and the
// CA certificate's expiry.
func checkServerCert(st *state) []Finding {
	t := st.cfg.TLS
	ci, err := pki.CertInfo(t.CertFile)
	if err != nil {
		return []Finding{{
			ID: "tls.cert_unreadable", Severity: High,
			Title:  "the server certificate cannot be read",
			Detail: safeError(err),
			Fix:    "issue a server certificate (`coffer cert`) or point tls.cert_file at it",
		}}
	}
	out := expiryFindings("tls.cert_expiry", "the server certificate", t.CertFile, ci.NotAfter, st.now)
	switch {
	case ci.KeyAlgorithm == "ECDSA" && ci.KeyBits < minECDSABits,
		ci.KeyAlgorithm == "RSA" && ci.KeyBits < minRSABits:
		out = append(out, Finding{
			ID: "tls.weak_key", Severity: High,
			Title:  "the server certificate's key is too small",
			Detail: fmt.Sprintf("%s %d bits in %s; want ECDSA P-256 or RSA 2048 at least", ci.KeyAlgorithm, ci.KeyBits, t.CertFile),
			Fix:    "issue a new server certificate with an ECDSA P-256 key (`coffer cert`)",
		})
	case ci.KeyAlgorithm != "ECDSA" && ci.KeyAlgorithm != "RSA" && ci.KeyAlgorithm != "Ed25519":
		out = append(out, Finding{
			ID: "tls.weak_key", Severity: Medium,
			Title:  "the server certificate has an unusual key type",
			Detail: ci.KeyAlgorithm + " in " + t.CertFile,
			Fix:    "issue a new server certificate with an ECDSA P-256 key (`coffer cert`)",
		})
	}
	if ca, err := pki.CertInfo(t.CAFile); err == nil {
		out = append(out, expiryFindings("tls.ca_cert_expiry", "the CA certificate", t.CAFile, ca.NotAfter, st.now)...)
	}
	return out
}

// expiryFindings flags a certificate that has expired or expires soon.
func expiryFindings(id, what, path string, notAfter, now time.Time) []Finding {
	left := notAfter.Sub(now)
	var sev Severity
	var title string
	switch {
	case left <= 0:
		sev, title = High, what+" has expired"
	case left < expiryHigh:
		sev, title = High, what+" expires in less than 14 days"
	case left < expiryMedium:
		sev, title = Medium, what+" expires in less than 30 days"
	default:
		return nil
	}
	return []Finding{{
		ID: id, Severity: sev, Title: title,
		Detail: fmt.Sprintf("%s: not after %s", path, notAfter.UTC().Format(time.RFC3339)),
		Fix:    "renew it (`coffer cert`); the server picks up a renewed certificate without a restart",
	}}
}

// probeLive connects to a running server: once as a modern client, to
// report the version and suite it negotiates, then offering only TLS 1.0
// and 1.1, then only CBC suites over TLS 1.2. Either weak handshake
// succeeding is high.
func probeLive(ctx context.Context, rawURL, caFile string) []Finding {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" {
		return []Finding{{
			ID: "tls.live.unreachable", Severity: Medium,
			Title: "the live URL is not an https URL", Detail: "want https://HOST[:PORT]",
			Fix: "pass the server's https URL",
		}}
	}
	host := u.Hostname()
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(host, "443")
	}
	var out []Finding

	good := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		if pem, err := os.ReadFile(caFile); err == nil { // #nosec G304 -- the CA file the operator names
			pool := x509.NewCertPool()
			if pool.AppendCertsFromPEM(pem) {
				good.RootCAs = pool
			}
		}
	}
	state, err := handshake(ctx, addr, good)
	var verr *tls.CertificateVerificationError
	if errors.As(err, &verr) {
		out = append(out, Finding{
			ID: "tls.live.untrusted", Severity: Medium,
			Title:  "the server's certificate does not verify",
			Detail: addr + ": " + safeError(verr.Err),
			Fix:    "serve a certificate issued for this name by the CA clients trust (tls.ca_file)",
		})
		insecure := good.Clone()
		insecure.InsecureSkipVerify = true // #nosec G402 -- only to learn the version after reporting the certificate; no data is sent
		state, err = handshake(ctx, addr, insecure)
	}
	if err != nil {
		return append(out, Finding{
			ID: "tls.live.unreachable", Severity: Medium,
			Title:  "no TLS 1.2+ handshake with the server",
			Detail: addr + ": " + safeError(err),
			Fix:    "check the URL and that the server is running",
		})
	}
	out = append(out, Finding{
		ID: "tls.live.version", Severity: Info,
		Title:  "the server negotiates " + tls.VersionName(state.Version),
		Detail: addr + ": " + tls.CipherSuiteName(state.CipherSuite),
	})
	if state.Version < tls.VersionTLS13 {
		out = append(out, Finding{
			ID: "tls.live.no_tls13", Severity: Low,
			Title:  "the server does not negotiate TLS 1.3 with a client that offers it",
			Detail: addr,
			Fix:    "let Coffer terminate TLS, or enable TLS 1.3 on the proxy in front of it",
		})
	}

	all := append(suiteIDs(tls.CipherSuites()), suiteIDs(tls.InsecureCipherSuites())...)
	old := &tls.Config{
		ServerName: host,
		MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11,
		CipherSuites:       all,
		InsecureSkipVerify: true, // #nosec G402 -- probing which protocol the server accepts; no data is sent
	}
	if st, err := handshake(ctx, addr, old); err == nil {
		out = append(out, Finding{
			ID: "tls.live.old_protocol", Severity: High,
			Title:  "the server accepts " + tls.VersionName(st.Version),
			Detail: addr + ": " + tls.CipherSuiteName(st.CipherSuite),
			Fix:    "accept TLS 1.2 and 1.3 only (Coffer's own listener does; check any proxy in front of it)",
		})
	}
	cbc := &tls.Config{
		ServerName: host,
		MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12,
		CipherSuites:       cbcSuites(),
		InsecureSkipVerify: true, // #nosec G402 -- probing which suites the server accepts; no data is sent
	}
	if st, err := handshake(ctx, addr, cbc); err == nil {
		out = append(out, Finding{
			ID: "tls.live.cbc", Severity: High,
			Title:  "the server accepts a CBC cipher suite",
			Detail: addr + ": " + tls.CipherSuiteName(st.CipherSuite),
			Fix:    "allow only ECDHE with AES-GCM or ChaCha20-Poly1305 (Coffer's own listener does; check any proxy in front of it)",
		})
	}
	return out
}

// handshake dials addr and completes a TLS handshake with cfg, then
// closes the connection without sending anything.
func handshake(ctx context.Context, addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	d := tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer func() { _ = c.Close() }() // nothing was written: a Close error loses nothing
	tc, ok := c.(*tls.Conn)
	if !ok {
		return tls.ConnectionState{}, errors.New("not a TLS connection")
	}
	return tc.ConnectionState(), nil
}

func suiteIDs(ss []*tls.CipherSuite) []uint16 {
	out := make([]uint16, 0, len(ss))
	for _, s := range ss {
		out = append(out, s.ID)
	}
	return out
}

// cbcSuites returns every TLS 1.2 CBC suite Go can offer.
func cbcSuites() []uint16 {
	var out []uint16
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if strings.Contains(s.Name, "_CBC_") {
			out = append(out, s.ID)
		}
	}
	return out
}
