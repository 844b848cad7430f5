package pki

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// CipherSuites returns the TLS 1.2 cipher suites Coffer allows: ECDHE key
// exchange with an AEAD (AES-GCM or ChaCha20-Poly1305), for ECDSA and RSA
// certificates. TLS 1.3 suites are all AEAD and are not configurable.
func CipherSuites() []uint16 {
	return []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
}

// CurvePreferences returns the key exchanges Coffer offers: the hybrid
// post-quantum X25519MLKEM768 (TLS 1.3 only), X25519 and P-256.
func CurvePreferences() []tls.CurveID {
	return []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256}
}

// TLSOptions tunes ServerTLSConfig.
type TLSOptions struct {
	// ClientCAs verifies client certificates; required when
	// VerifyClientCerts is set.
	ClientCAs *x509.CertPool
	// VerifyClientCerts asks clients for a certificate and verifies one if
	// given. A connection without one is still accepted (bearer tokens
	// authenticate it); a bad one fails the handshake.
	VerifyClientCerts bool
	// OnReloadError, if set, is told when the certificate files changed but
	// could not be loaded; the previous certificate stays in use. It must
	// not block. The error names files, never key material.
	OnReloadError func(error)
}

// ServerTLSConfig returns the server's TLS configuration: TLS 1.2 at least,
// ECDHE+AEAD suites only (see CipherSuites), CurvePreferences, ALPN h2 and
// http/1.1, and optional client certificate verification. The certificate
// is loaded now (an error if it cannot be) and re-loaded on a handshake
// after certFile or keyFile change on disk, so a renewal needs no restart.
func ServerTLSConfig(certFile, keyFile string, opts TLSOptions) (*tls.Config, error) {
	if opts.VerifyClientCerts && opts.ClientCAs == nil {
		return nil, errors.New("pki: client certificate verification needs ClientCAs")
	}
	rl := &reloader{certFile: certFile, keyFile: keyFile, onErr: opts.OnReloadError}
	if err := rl.load(); err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:       tls.VersionTLS12,
		CipherSuites:     CipherSuites(),
		CurvePreferences: CurvePreferences(),
		NextProtos:       []string{"h2", "http/1.1"},
		GetCertificate:   rl.getCertificate,
		ClientAuth:       tls.NoClientCert,
	}
	if opts.VerifyClientCerts {
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		cfg.ClientCAs = opts.ClientCAs
	}
	return cfg, nil
}

// ClientTLSConfig returns a client TLS configuration that trusts only the
// CA certificates in caFile, with the same floor as the server. Set
// Certificates on the result to present a client certificate.
func ClientTLSConfig(caFile string) (*tls.Config, error) {
	b, err := os.ReadFile(caFile) // #nosec G304 -- the CA file the operator names (config or --ca flag)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("pki: %s: no PEM certificate", caFile)
	}
	return &tls.Config{
		MinVersion:       tls.VersionTLS12,
		CipherSuites:     CipherSuites(),
		CurvePreferences: CurvePreferences(),
		RootCAs:          pool,
	}, nil
}

// fileStamp identifies a version of a file on disk.
type fileStamp struct {
	info os.FileInfo
}

func (s fileStamp) same(fi os.FileInfo) bool {
	return s.info != nil && os.SameFile(s.info, fi) &&
		s.info.ModTime().Equal(fi.ModTime()) && s.info.Size() == fi.Size()
}

// reloader caches a key pair and re-reads it when its files change.
type reloader struct {
	certFile, keyFile string
	onErr             func(error)

	mu         sync.RWMutex
	cert       *tls.Certificate
	certStamp  fileStamp
	keyStamp   fileStamp
	failedCert fileStamp // the pair last seen broken, not retried until it changes
	failedKey  fileStamp
}

// load reads the pair unconditionally.
func (rl *reloader) load() error {
	cs, err := os.Stat(rl.certFile)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	ks, err := os.Stat(rl.keyFile)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	pair, err := loadPair(rl.certFile, rl.keyFile)
	if err != nil {
		return err
	}
	rl.mu.Lock()
	rl.cert, rl.certStamp, rl.keyStamp = pair, fileStamp{cs}, fileStamp{ks}
	rl.mu.Unlock()
	return nil
}

func (rl *reloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	cs, err1 := os.Stat(rl.certFile)
	ks, err2 := os.Stat(rl.keyFile)
	rl.mu.RLock()
	cur := rl.cert
	unchanged := err1 != nil || err2 != nil || // files gone for a moment: keep serving
		(rl.certStamp.same(cs) && rl.keyStamp.same(ks)) ||
		(rl.failedCert.same(cs) && rl.failedKey.same(ks))
	rl.mu.RUnlock()
	if unchanged {
		return cur, nil
	}
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if (rl.certStamp.same(cs) && rl.keyStamp.same(ks)) || (rl.failedCert.same(cs) && rl.failedKey.same(ks)) {
		return rl.cert, nil // another handshake got here first
	}
	pair, err := loadPair(rl.certFile, rl.keyFile)
	if err != nil {
		rl.failedCert, rl.failedKey = fileStamp{cs}, fileStamp{ks}
		if rl.onErr != nil {
			rl.onErr(err)
		}
		return rl.cert, nil
	}
	rl.cert, rl.certStamp, rl.keyStamp = pair, fileStamp{cs}, fileStamp{ks}
	rl.failedCert, rl.failedKey = fileStamp{}, fileStamp{}
	return rl.cert, nil
}

// loadPair loads and checks a key pair; the key file must be 0600 or tighter.
func loadPair(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile) // #nosec G304 -- the operator's configured tls.cert_file
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	keyPEM, err := readPrivate(keyFile)
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// tls errors do not include key bytes, but keep the message our own.
		return nil, fmt.Errorf("pki: load %s with %s: %w", certFile, keyFile, ErrKeyMismatch)
	}
	return &pair, nil
}

// CertSummary describes a certificate for `coffer doctor`.
type CertSummary struct {
	Subject            string
	Issuer             string
	SerialHex          string
	NotBefore          time.Time
	NotAfter           time.Time
	KeyAlgorithm       string // "ECDSA", "RSA", "Ed25519"
	KeyBits            int
	SignatureAlgorithm string
	IsCA               bool
	DNSNames           []string
	IPAddresses        []net.IP
	URIs               []string
}

// CertInfo reads the first certificate of a PEM file and summarises it.
func CertInfo(certFile string) (*CertSummary, error) {
	c, err := readCert(certFile)
	if err != nil {
		return nil, err
	}
	s := &CertSummary{
		Subject:            c.Subject.String(),
		Issuer:             c.Issuer.String(),
		SerialHex:          fmt.Sprintf("%x", c.SerialNumber),
		NotBefore:          c.NotBefore,
		NotAfter:           c.NotAfter,
		SignatureAlgorithm: c.SignatureAlgorithm.String(),
		IsCA:               c.IsCA,
		DNSNames:           c.DNSNames,
		IPAddresses:        c.IPAddresses,
	}
	for _, u := range c.URIs {
		s.URIs = append(s.URIs, u.String())
	}
	switch k := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		s.KeyAlgorithm, s.KeyBits = "ECDSA", k.Curve.Params().BitSize
	case *rsa.PublicKey:
		s.KeyAlgorithm, s.KeyBits = "RSA", k.N.BitLen()
	case ed25519.PublicKey:
		s.KeyAlgorithm, s.KeyBits = "Ed25519", 256
	default:
		s.KeyAlgorithm = c.PublicKeyAlgorithm.String()
	}
	return s, nil
}
