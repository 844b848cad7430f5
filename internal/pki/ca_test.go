package pki

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newCA(tb testing.TB) *CA {
	tb.Helper()
	ca, err := CreateCA(rand.Reader, t0, "Coffer test CA")
	if err != nil {
		tb.Fatal(err)
	}
	return ca
}

// privateHex returns the CA's private scalar in lower-case hex, to look for
// in output that must not hold it.
func privateHex(tb testing.TB, ca *CA) string {
	tb.Helper()
	b, err := ca.key.Bytes()
	if err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func TestCreateCA(t *testing.T) {
	ca := newCA(t)
	c := ca.Cert
	if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("basic constraints: IsCA=%v valid=%v MaxPathLen=%d zero=%v", c.IsCA, c.BasicConstraintsValid, c.MaxPathLen, c.MaxPathLenZero)
	}
	if c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("key usage = %v", c.KeyUsage)
	}
	if c.PublicKeyAlgorithm != x509.ECDSA || c.SignatureAlgorithm != x509.ECDSAWithSHA256 {
		t.Errorf("algorithms = %v / %v", c.PublicKeyAlgorithm, c.SignatureAlgorithm)
	}
	if got := c.NotAfter.Sub(t0); got != CALifetime {
		t.Errorf("lifetime = %v, want %v", got, CALifetime)
	}
	if len(c.SubjectKeyId) != 20 {
		t.Errorf("SubjectKeyId length = %d", len(c.SubjectKeyId))
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
		t.Errorf("serial = %v", c.SerialNumber)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	other := newCA(t)
	if other.Cert.SerialNumber.Cmp(c.SerialNumber) == 0 {
		t.Error("two CAs share a serial")
	}
}

func TestCreateCASerialFromReader(t *testing.T) {
	r := bytes.NewReader(bytes.Repeat([]byte{0xab}, 16))
	ca, err := CreateCA(r, t0, "x")
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("%x", ca.Cert.SerialNumber); got != strings.Repeat("ab", 16) {
		t.Errorf("serial = %s, want the reader's bytes", got)
	}
	if _, err := CreateCA(bytes.NewReader(nil), t0, "x"); err == nil {
		t.Error("CreateCA with an empty reader succeeded")
	}
}

func TestCAStringHidesKey(t *testing.T) {
	ca := newCA(t)
	d := privateHex(t, ca)
	for _, s := range []string{ca.String(), fmt.Sprintf("%v", ca), fmt.Sprintf("%+v", ca), fmt.Sprintf("%#v", ca)} {
		if strings.Contains(s, d) {
			t.Errorf("formatted CA contains the private scalar: %q", s)
		}
	}
}

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{CACertFile: 0o644, CAKeyFile: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&^want != 0 {
			t.Errorf("%s mode = %04o, want at most %04o", name, fi.Mode().Perm(), want)
		}
	}
	got, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Cert.Equal(ca.Cert) || !got.key.Equal(ca.key) {
		t.Error("loaded CA differs from saved")
	}
	// The loaded CA issues certificates that chain to the original.
	certPEM, _, err := got.IssueServer(rand.Reader, t0, []string{"localhost"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := ParseCertPEM(certPEM)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), CurrentTime: t0, DNSName: "localhost"}); err != nil {
		t.Errorf("leaf from loaded CA does not verify: %v", err)
	}
}

func TestSaveRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	first := newCA(t)
	if err := first.Save(dir); err != nil {
		t.Fatal(err)
	}
	if err := newCA(t).Save(dir); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second Save: err = %v, want fs.ErrExist", err)
	}
	got, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Cert.Equal(first.Cert) {
		t.Error("second Save replaced the first CA")
	}

	// A key file alone (e.g. a half-finished earlier Save) also blocks.
	dir2 := t.TempDir()
	os.WriteFile(filepath.Join(dir2, CAKeyFile), []byte("x"), 0o600)
	if err := newCA(t).Save(dir2); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Save over a lone key: err = %v, want fs.ErrExist", err)
	}
}

func TestLoadCAFailures(t *testing.T) {
	ca := newCA(t)
	other := newCA(t)
	certPEM, keyPEM, err := ca.IssueServer(rand.Reader, t0, []string{"localhost"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		setup func(dir string)
		want  error
	}{
		{"fail/key readable by group", func(dir string) {
			os.Chmod(filepath.Join(dir, CAKeyFile), 0o640)
		}, ErrKeyPermissions},
		{"fail/key readable by others", func(dir string) {
			os.Chmod(filepath.Join(dir, CAKeyFile), 0o604)
		}, ErrKeyPermissions},
		{"fail/key of another CA", func(dir string) {
			os.Remove(filepath.Join(dir, CAKeyFile))
			otherDir := t.TempDir()
			other.Save(otherDir)
			b, _ := os.ReadFile(filepath.Join(otherDir, CAKeyFile))
			os.WriteFile(filepath.Join(dir, CAKeyFile), b, 0o600)
		}, ErrKeyMismatch},
		{"fail/leaf certificate", func(dir string) {
			os.WriteFile(filepath.Join(dir, CACertFile), certPEM, 0o644)
			os.WriteFile(filepath.Join(dir, CAKeyFile), keyPEM, 0o600)
		}, ErrNotCA},
		{"fail/missing key", func(dir string) {
			os.Remove(filepath.Join(dir, CAKeyFile))
		}, fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := ca.Save(dir); err != nil {
				t.Fatal(err)
			}
			tt.setup(dir)
			_, err := LoadCA(dir)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if k := privateHex(t, ca); strings.Contains(err.Error(), k) {
				t.Error("error contains key material")
			}
		})
	}
}

func TestIssueServer(t *testing.T) {
	ca := newCA(t)
	certPEM, keyPEM, err := ca.IssueServer(rand.Reader, t0, []string{"127.0.0.1", "::1", "localhost", "Vault.Example."}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(keyPEM, []byte("PRIVATE KEY")) {
		t.Error("key is not PEM")
	}
	c, err := ParseCertPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if c.IsCA || len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("IsCA=%v ExtKeyUsage=%v", c.IsCA, c.ExtKeyUsage)
	}
	if c.NotAfter.Sub(t0) != DefaultServerTTL {
		t.Errorf("lifetime = %v", c.NotAfter.Sub(t0))
	}
	if !bytes.Equal(c.AuthorityKeyId, ca.Cert.SubjectKeyId) || len(c.SubjectKeyId) == 0 {
		t.Error("key identifiers not set")
	}
	for _, host := range []string{"127.0.0.1", "::1", "localhost", "vault.example"} {
		opts := x509.VerifyOptions{Roots: ca.Pool(), CurrentTime: t0.Add(time.Hour), DNSName: host}
		if _, err := c.Verify(opts); err != nil {
			t.Errorf("verify for %s: %v", host, err)
		}
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool(), CurrentTime: t0, DNSName: "other.example"}); err == nil {
		t.Error("certificate verifies for a name it does not hold")
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool(), CurrentTime: t0,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("server certificate is good for client auth")
	}
}

func TestIssueServerClampsToCAExpiry(t *testing.T) {
	ca := newCA(t)
	late := ca.Cert.NotAfter.Add(-24 * time.Hour)
	certPEM, _, err := ca.IssueServer(rand.Reader, late, []string{"localhost"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := ParseCertPEM(certPEM)
	if c.NotAfter.After(ca.Cert.NotAfter) {
		t.Errorf("leaf outlives CA: %v > %v", c.NotAfter, ca.Cert.NotAfter)
	}
}

func TestIssueFailures(t *testing.T) {
	ca := newCA(t)
	tests := []struct {
		name string
		run  func() error
	}{
		{"fail/no hosts", func() error { _, _, err := ca.IssueServer(rand.Reader, t0, nil, 0); return err }},
		{"fail/wildcard host", func() error {
			_, _, err := ca.IssueServer(rand.Reader, t0, []string{"*.example.com"}, 0)
			return err
		}},
		{"fail/host with space", func() error {
			_, _, err := ca.IssueServer(rand.Reader, t0, []string{"a b"}, 0)
			return err
		}},
		{"fail/negative ttl", func() error {
			_, _, err := ca.IssueServer(rand.Reader, t0, []string{"localhost"}, -time.Hour)
			return err
		}},
		{"fail/CA expired", func() error {
			_, _, err := ca.IssueClient(rand.Reader, ca.Cert.NotAfter.Add(time.Hour), "svc", 0)
			return err
		}},
		{"fail/client name with slash", func() error {
			_, _, err := ca.IssueClient(rand.Reader, t0, "a/b", 0)
			return err
		}},
		{"fail/empty client name", func() error { _, _, err := ca.IssueClient(rand.Reader, t0, "", 0); return err }},
		{"fail/client name too long", func() error {
			_, _, err := ca.IssueClient(rand.Reader, t0, strings.Repeat("a", 129), 0)
			return err
		}},
		{"fail/CA without key", func() error {
			_, _, err := (&CA{Cert: ca.Cert}).IssueClient(rand.Reader, t0, "svc", 0)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.run(); err == nil {
				t.Fatal("succeeded")
			}
		})
	}
}

func TestIssueClient(t *testing.T) {
	ca := newCA(t)
	certPEM, _, err := ca.IssueClient(rand.Reader, t0, "billing-service", 0)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := ParseCertPEM(certPEM)
	if c.Subject.CommonName != "billing-service" {
		t.Errorf("CN = %q", c.Subject.CommonName)
	}
	if len(c.URIs) != 1 || c.URIs[0].String() != "spiffe://coffer/client/billing-service" {
		t.Errorf("URIs = %v", c.URIs)
	}
	if c.NotAfter.Sub(t0) != DefaultClientTTL {
		t.Errorf("lifetime = %v, want %v", c.NotAfter.Sub(t0), DefaultClientTTL)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool(), CurrentTime: t0,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("verify for client auth: %v", err)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool(), CurrentTime: t0}); err == nil {
		t.Error("client certificate is good for server auth")
	}
	if name, ok := ClientName(c); !ok || name != "billing-service" {
		t.Errorf("ClientName = %q, %v", name, ok)
	}
}

func TestClientName(t *testing.T) {
	u := func(s ...string) []*url.URL {
		var out []*url.URL
		for _, x := range s {
			p, err := url.Parse(x)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, p)
		}
		return out
	}
	tests := []struct {
		name string
		uris []*url.URL
		want string
		ok   bool
	}{
		{"ok/plain", u("spiffe://coffer/client/svc-1"), "svc-1", true},
		{"ok/other URIs ignored", u("https://example.com/x", "spiffe://coffer/client/svc"), "svc", true},
		{"fail/no URI", nil, "", false},
		{"fail/other trust domain", u("spiffe://evil/client/svc"), "", false},
		{"fail/not a client", u("spiffe://coffer/server/svc"), "", false},
		{"fail/two client URIs", u("spiffe://coffer/client/a", "spiffe://coffer/client/b"), "", false},
		{"fail/nested path", u("spiffe://coffer/client/a/b"), "", false},
		{"fail/empty name", u("spiffe://coffer/client/"), "", false},
		{"fail/dot dot", u("spiffe://coffer/client/.."), "", false},
		{"fail/query", u("spiffe://coffer/client/a?x=1"), "", false},
		{"fail/escaped slash", u("spiffe://coffer/client/a%2Fb"), "", false},
		{"fail/userinfo", u("spiffe://u@coffer/client/a"), "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ClientName(&x509.Certificate{URIs: tt.uris})
			if got != tt.want || ok != tt.ok {
				t.Errorf("ClientName = %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
	if _, ok := ClientName(nil); ok {
		t.Error("ClientName(nil) ok")
	}
}

func TestDefaultHosts(t *testing.T) {
	h := DefaultHosts()
	if len(h) < 3 || h[0] != "127.0.0.1" || h[1] != "::1" || h[2] != "localhost" {
		t.Fatalf("DefaultHosts = %v", h)
	}
	ca := newCA(t)
	if _, _, err := ca.IssueServer(rand.Reader, t0, h, 0); err != nil {
		t.Errorf("DefaultHosts not issuable: %v", err)
	}
}

func TestCertInfo(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	certPEM, keyPEM, err := ca.IssueServer(rand.Reader, t0, []string{"127.0.0.1", "localhost"}, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cf, kf := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	if err := WriteKeyPair(cf, kf, certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(kf); fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode = %04o", fi.Mode().Perm())
	}
	s, err := CertInfo(cf)
	if err != nil {
		t.Fatal(err)
	}
	if !s.NotAfter.Equal(t0.Add(48*time.Hour)) || s.KeyAlgorithm != "ECDSA" || s.KeyBits != 256 || s.IsCA {
		t.Errorf("CertInfo = %+v", s)
	}
	if len(s.DNSNames) != 1 || len(s.IPAddresses) != 1 || !s.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("names = %v %v", s.DNSNames, s.IPAddresses)
	}
	if _, err := CertInfo(kf); err == nil {
		t.Error("CertInfo of a key file succeeded")
	}
}

func FuzzParseCertPEM(f *testing.F) {
	ca := newCA(f)
	f.Add(ca.CertPEM())
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCertPEM(b)
		if err != nil {
			return
		}
		// Whatever parses re-parses to the same certificate from its DER.
		c2, err := x509.ParseCertificate(c.Raw)
		if err != nil || !c2.Equal(c) {
			t.Fatalf("re-parse: %v", err)
		}
		ClientName(c)
	})
}

func FuzzClientName(f *testing.F) {
	f.Add("spiffe://coffer/client/svc")
	f.Add("spiffe://coffer/client/a%2Fb")
	f.Add("spiffe://coffer/client/..")
	f.Fuzz(func(t *testing.T, s string) {
		u, err := url.Parse(s)
		if err != nil {
			return
		}
		name, ok := ClientName(&x509.Certificate{URIs: []*url.URL{u}})
		if !ok {
			return
		}
		// A name accepted is one IssueClient would issue, and it round-trips.
		if !validClientName(name) || u.String() != ClientURIPrefix+name {
			t.Fatalf("accepted %q from %q", name, s)
		}
	})
}

func BenchmarkIssueClient(b *testing.B) {
	ca := newCA(b)
	for b.Loop() {
		if _, _, err := ca.IssueClient(rand.Reader, t0, "svc", 0); err != nil {
			b.Fatal(err)
		}
	}
}
