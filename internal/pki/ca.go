package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// File names of a CA inside its directory.
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca-key.pem"
)

// Lifetimes.
const (
	// CALifetime is how long a new CA is valid.
	CALifetime = 10 * 365 * 24 * time.Hour
	// DefaultServerTTL is the lifetime of a server certificate when none is given.
	DefaultServerTTL = 365 * 24 * time.Hour
	// DefaultClientTTL is the lifetime of a client certificate when none is
	// given: client certificates are short-lived.
	DefaultClientTTL = 24 * time.Hour
	// backdate is how far before now a certificate starts, for clock skew.
	backdate = 5 * time.Minute
)

// Errors callers branch on.
var (
	// ErrKeyPermissions is returned when a private key file may be read by
	// group or others.
	ErrKeyPermissions = errors.New("pki: private key file is readable by group or others")
	// ErrKeyMismatch is returned when a key does not belong to its certificate.
	ErrKeyMismatch = errors.New("pki: private key does not match certificate")
	// ErrNotCA is returned when a loaded CA certificate is not a CA.
	ErrNotCA = errors.New("pki: certificate is not a CA")
)

// CA is Coffer's certificate authority: its certificate and signing key.
// The key never leaves the value except through Save.
type CA struct {
	// Cert is the CA certificate.
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// String describes the CA without its key.
func (ca *CA) String() string {
	if ca == nil || ca.Cert == nil {
		return "CA(<nil>)"
	}
	return fmt.Sprintf("CA(%s, serial %x, until %s)", ca.Cert.Subject.CommonName,
		ca.Cert.SerialNumber, ca.Cert.NotAfter.UTC().Format(time.RFC3339))
}

// GoString is like String so that %#v cannot print the key either.
func (ca *CA) GoString() string { return ca.String() }

// CertPEM returns the CA certificate PEM-encoded.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// Pool returns a certificate pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// CreateCA makes a new self-signed ECDSA P-256 CA named name, valid for
// CALifetime from now. r supplies the serial number.
func CreateCA(r io.Reader, now time.Time, name string) (*CA, error) {
	if name == "" {
		return nil, errors.New("pki: CA name is empty")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generate CA key: %w", err)
	}
	serial, err := newSerial(r)
	if err != nil {
		return nil, err
	}
	skid, err := subjectKeyID(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Coffer"}},
		NotBefore:             now.Add(-backdate).UTC(),
		NotAfter:              now.Add(CALifetime).UTC(),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		SubjectKeyId:          skid,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("pki: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parse CA certificate: %w", err)
	}
	return &CA{Cert: cert, key: key}, nil
}

// Save writes the CA into dir as ca.pem (0644) and ca-key.pem (0600). It
// never overwrites: if either file exists it fails with an error wrapping
// fs.ErrExist and leaves the existing files alone.
func (ca *CA) Save(dir string) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		return fmt.Errorf("pki: encode CA key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	keyPath := filepath.Join(dir, CAKeyFile)
	certPath := filepath.Join(dir, CACertFile)
	if _, err := os.Lstat(certPath); err == nil {
		return fmt.Errorf("pki: save CA: %s: %w", certPath, fs.ErrExist)
	}
	if err := writeNew(keyPath, keyPEM, 0o600); err != nil {
		return fmt.Errorf("pki: save CA key: %w", err)
	}
	if err := writeNew(certPath, ca.CertPEM(), 0o644); err != nil {
		_ = os.Remove(keyPath) // we created it just now
		return fmt.Errorf("pki: save CA certificate: %w", err)
	}
	return nil
}

// LoadCA reads a CA saved by Save from dir. It refuses a key file that group
// or others may read (ErrKeyPermissions), a certificate that is not a CA
// (ErrNotCA) and a key that does not match it (ErrKeyMismatch).
func LoadCA(dir string) (*CA, error) {
	certPath := filepath.Join(dir, CACertFile)
	keyPath := filepath.Join(dir, CAKeyFile)
	cert, err := readCert(certPath)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA || !cert.BasicConstraintsValid || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%s: %w", certPath, ErrNotCA)
	}
	keyPEM, err := readPrivate(keyPath)
	if err != nil {
		return nil, err
	}
	key, err := parseECKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("%s: %w", keyPath, ErrKeyMismatch)
	}
	return &CA{Cert: cert, key: key}, nil
}

// readPrivate reads a private key file after checking its permissions.
func readPrivate(path string) ([]byte, error) {
	f, err := os.Open(path) // #nosec G304 -- the operator's configured key file (tls.key_file or the CA key in the data directory)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	defer func() { _ = f.Close() }() // read-only: a Close error cannot lose data
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s (mode %04o): %w", path, st.Mode().Perm(), ErrKeyPermissions)
	}
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("pki: read %s: %w", path, err)
	}
	return b, nil
}

// parseECKey decodes a PEM PKCS#8 or SEC 1 ECDSA private key. Its errors
// never include key bytes.
func parseECKey(b []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("pki: no PEM private key")
	}
	var k any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("pki: unexpected PEM block %q", block.Type)
	}
	if err != nil {
		return nil, errors.New("pki: malformed private key")
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("pki: private key is not ECDSA")
	}
	return ek, nil
}

// readCert reads the first certificate of a PEM file.
func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path) // #nosec G304 -- the operator's configured certificate file (tls.cert_file, tls.ca_file or the data directory)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	c, err := ParseCertPEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseCertPEM parses the first CERTIFICATE block of b.
func ParseCertPEM(b []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, errors.New("pki: no PEM certificate")
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("pki: parse certificate: %w", err)
		}
		return c, nil
	}
}

// writeNew creates path with perm, failing if it exists, and syncs it.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm) // #nosec G304 -- a file in the operator's data directory, created exclusively
	if err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil { // umask may have narrowed 0644; never widen 0600
		return abandon(f, path, err)
	}
	if _, err := f.Write(data); err != nil {
		return abandon(f, path, err)
	}
	if err := f.Sync(); err != nil {
		return abandon(f, path, err)
	}
	if err := f.Close(); err != nil {
		return removeAfter(path, err)
	}
	return nil
}

// abandon closes and removes path, a file this package created whose write
// failed, and returns err, joined with a failure to remove the partial file
// (which the operator must then delete by hand).
func abandon(f *os.File, path string, err error) error {
	_ = f.Close() // the write already failed; its error is the one to report
	return removeAfter(path, err)
}

// removeAfter removes path after err and returns err, joined with the
// removal's own failure if the file is still there.
func removeAfter(path string, err error) error {
	if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
		return errors.Join(err, rerr)
	}
	return err
}

// WriteKeyPair writes a certificate and its key, each atomically (a
// temporary file renamed into place), the key with mode 0600 and the
// certificate with 0644. It replaces existing files: use it for renewal.
// The key is written first, then the certificate, so a server watching
// the pair sees a mismatch at worst for a moment and keeps its old pair.
func WriteKeyPair(certFile, keyFile string, certPEM, keyPEM []byte) error {
	if err := writeAtomic(keyFile, keyPEM, 0o600); err != nil {
		return fmt.Errorf("pki: write key: %w", err)
	}
	if err := writeAtomic(certFile, certPEM, 0o644); err != nil {
		return fmt.Errorf("pki: write certificate: %w", err)
	}
	return nil
}

// WriteAtomic replaces path with data (mode perm) through a synced
// temporary file in the same directory renamed over it: a crash leaves the
// old file or the new one, never half of one.
func WriteAtomic(path string, data []byte, perm os.FileMode) error {
	return writeAtomic(path, data, perm)
}

func writeAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if err := f.Chmod(perm); err != nil {
		return abandon(f, tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		return abandon(f, tmp, err)
	}
	if err := f.Sync(); err != nil {
		return abandon(f, tmp, err)
	}
	if err := f.Close(); err != nil {
		return removeAfter(tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return removeAfter(tmp, err)
	}
	return nil
}

// newSerial returns a random positive 128-bit serial number read from r.
func newSerial(r io.Reader) (*big.Int, error) {
	var b [16]byte
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, fmt.Errorf("pki: serial: %w", err)
		}
		n := new(big.Int).SetBytes(b[:])
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// subjectKeyID is RFC 7093 method 1: the leftmost 160 bits of the SHA-256
// of the subjectPublicKey bit string.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("pki: marshal public key: %w", err)
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, fmt.Errorf("pki: parse public key: %w", err)
	}
	sum := sha256.Sum256(spki.PublicKey.Bytes)
	return sum[:20], nil
}
