package app

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/pki"
)

// IssueClientCert issues a short-lived mTLS client certificate from the
// deployment's CA for an existing service client (by id). The certificate
// names the client in its URI SAN; a request presenting it authenticates as
// that client when tls.client_certs is on.
func IssueClientCert(ctx context.Context, cfg *config.Config, clientID string, ttl time.Duration) (certPEM, keyPEM []byte, err error) {
	if _, err := offline(ctx, cfg, Options{}, func(c *components) (coffer.Client, error) {
		return c.db.Client(ctx, clientID)
	}); err != nil {
		if coffer.ErrorCode(err) == coffer.ENOTFOUND {
			return nil, nil, fmt.Errorf("no client %q: create it first (POST /v1/clients)", clientID)
		}
		return nil, nil, err
	}
	ca, err := pki.LoadCA(filepath.Dir(cfg.TLS.CAFile))
	if err != nil {
		return nil, nil, fmt.Errorf("load CA (its key must be on this machine to issue): %w", err)
	}
	return ca.IssueClient(rand.Reader, time.Now(), clientID, ttl)
}
