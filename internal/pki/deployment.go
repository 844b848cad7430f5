package pki

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// CreateDeploymentTLS makes a new deployment's CA (certificate and key in
// caFile's directory, 0700) and a server certificate it issues for the
// default hosts and hosts, valid a year, written to certFile and keyFile.
func CreateDeploymentTLS(caFile, certFile, keyFile string, r io.Reader, now time.Time, hosts []string) error {
	tlsDir := filepath.Dir(caFile)
	if err := os.MkdirAll(tlsDir, 0o700); err != nil {
		return fmt.Errorf("create TLS directory: %w", err)
	}
	ca, err := CreateCA(r, now, "Coffer CA")
	if err != nil {
		return fmt.Errorf("create CA: %w", err)
	}
	if err := ca.Save(tlsDir); err != nil {
		return fmt.Errorf("save CA: %w", err)
	}
	certPEM, keyPEM, err := ca.IssueServer(r, now, append(DefaultHosts(), hosts...), 365*24*time.Hour)
	if err != nil {
		return fmt.Errorf("issue server certificate: %w", err)
	}
	if err := WriteKeyPair(certFile, keyFile, certPEM, keyPEM); err != nil {
		return fmt.Errorf("write server certificate: %w", err)
	}
	return nil
}
