package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

// ClientURIPrefix is the URI SAN prefix of a client certificate; the rest
// of the URI is the client's name.
const ClientURIPrefix = "spiffe://coffer/client/"

// maxNameLen bounds a client name.
const maxNameLen = 128

// ErrBadName is returned for a client name or host name that may not go
// into a certificate.
var ErrBadName = errors.New("pki: invalid name")

// DefaultHosts returns the names a local server certificate covers:
// 127.0.0.1, ::1, localhost and, if it can be found, this machine's host name.
func DefaultHosts() []string {
	hosts := []string{"127.0.0.1", "::1", "localhost"}
	if h, err := os.Hostname(); err == nil && validDNSName(strings.ToLower(h)) && h != "localhost" {
		hosts = append(hosts, strings.ToLower(h))
	}
	return hosts
}

// IssueServer issues a server certificate for hosts (IP addresses and DNS
// names; see DefaultHosts) valid for ttl from now (DefaultServerTTL when
// ttl is 0), never beyond the CA's own expiry. It returns the certificate
// and its new ECDSA P-256 key, PEM-encoded; r supplies the serial number.
func (ca *CA) IssueServer(r io.Reader, now time.Time, hosts []string, ttl time.Duration) (certPEM, keyPEM []byte, err error) {
	if len(hosts) == 0 {
		return nil, nil, fmt.Errorf("%w: no host names for a server certificate", ErrBadName)
	}
	if ttl == 0 {
		ttl = DefaultServerTTL
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0], Organization: []string{"Coffer"}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			continue
		}
		name := strings.ToLower(strings.TrimSuffix(h, "."))
		if !validDNSName(name) {
			return nil, nil, fmt.Errorf("%w: host %q", ErrBadName, h)
		}
		tmpl.DNSNames = append(tmpl.DNSNames, name)
	}
	return ca.issue(r, now, tmpl, ttl)
}

// IssueClient issues a client certificate for the client name, valid for
// ttl from now (DefaultClientTTL when ttl is 0). It carries CN=name and the
// URI SAN spiffe://coffer/client/NAME, and is good for client
// authentication only. Names are 1 to 128 characters of A-Z a-z 0-9 . _ -.
func (ca *CA) IssueClient(r io.Reader, now time.Time, name string, ttl time.Duration) (certPEM, keyPEM []byte, err error) {
	if !validClientName(name) {
		return nil, nil, fmt.Errorf("%w: client name must be 1-%d characters of A-Z a-z 0-9 . _ -", ErrBadName, maxNameLen)
	}
	if ttl == 0 {
		ttl = DefaultClientTTL
	}
	u, err := url.Parse(ClientURIPrefix + name)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadName, err)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: name, Organization: []string{"Coffer"}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{u},
	}
	return ca.issue(r, now, tmpl, ttl)
}

func (ca *CA) issue(r io.Reader, now time.Time, tmpl *x509.Certificate, ttl time.Duration) (certPEM, keyPEM []byte, err error) {
	if ttl < 0 {
		return nil, nil, errors.New("pki: negative certificate lifetime")
	}
	if ca == nil || ca.key == nil {
		return nil, nil, errors.New("pki: CA has no key")
	}
	if now.Before(ca.Cert.NotBefore) || !now.Before(ca.Cert.NotAfter) {
		return nil, nil, errors.New("pki: CA certificate is not valid now")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: generate key: %w", err)
	}
	serial, err := newSerial(r)
	if err != nil {
		return nil, nil, err
	}
	skid, err := subjectKeyID(&key.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.SubjectKeyId = skid
	tmpl.BasicConstraintsValid = true
	tmpl.NotBefore = now.Add(-backdate).UTC()
	tmpl.NotAfter = now.Add(ttl).UTC()
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	if tmpl.NotBefore.Before(ca.Cert.NotBefore) {
		tmpl.NotBefore = ca.Cert.NotBefore
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: sign certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: encode key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}

// ClientName returns the client name of a client certificate issued by
// IssueClient: the NAME of its single spiffe://coffer/client/NAME URI SAN.
// Call it only on the leaf of a chain that crypto/tls has verified against
// Coffer's CA; it checks the form of the name, not the signature. It
// reports false when the certificate has no such URI, several of them, or
// a malformed name.
func ClientName(cert *x509.Certificate) (string, bool) {
	if cert == nil {
		return "", false
	}
	name, found := "", 0
	for _, u := range cert.URIs {
		if u.Scheme != "spiffe" || u.Host != "coffer" {
			continue
		}
		found++
		// Only the exact canonical form counts: no user, port, query,
		// fragment or escapes.
		n, ok := strings.CutPrefix(u.String(), ClientURIPrefix)
		if !ok || !validClientName(n) || u.Path != "/client/"+n {
			return "", false
		}
		name = n
	}
	if found != 1 {
		return "", false
	}
	return name, true
}

func validClientName(n string) bool {
	if len(n) == 0 || len(n) > maxNameLen || n == "." || n == ".." {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// validDNSName accepts lower-case LDH names with labels of 1-63 characters
// and a total of at most 253; no wildcards.
func validDNSName(n string) bool {
	if len(n) == 0 || len(n) > 253 {
		return false
	}
	for _, label := range strings.Split(n, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
