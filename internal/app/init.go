package app

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"time"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/crypto/unseal"
	"github.com/cofferhq/coffer/internal/pki"
)

// ErrInitialised is returned by Init for a directory that already holds a
// Coffer deployment.
var ErrInitialised = config.ErrInitialised

// InitOptions are the inputs of Init.
type InitOptions struct {
	DataDir string
	// Listen is written to the config (default 127.0.0.1:8443).
	Listen string
	// DatabaseURL, if set, puts the store in PostgreSQL.
	DatabaseURL string
	// Hosts are extra DNS names or IPs for the server certificate.
	Hosts []string
	Rand  io.Reader
	Now   func() time.Time
	Dev   bool
	// RootKeyProvider is file (default), shamir or pkcs11. Shares > 0
	// implies shamir.
	RootKeyProvider string
	// Shares and Threshold split a shamir root key: any Threshold of the
	// Shares unseal it. The key is never written to disk.
	Shares, Threshold int
	// PKCS11 locates the root key on a PKCS#11 token (pkcs11 provider);
	// init creates the key there.
	PKCS11 config.RootKeyPKCS11
}

// InitResult is what `coffer init --json` prints.
type InitResult struct {
	URL          string `json:"url"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	CACert       string `json:"ca_cert"`
	// UnsealShares are the root key shares of a shamir deployment, shown
	// only here: give each to a different key holder.
	UnsealShares []string `json:"unseal_shares,omitempty"`
}

// Init creates a new deployment in opts.DataDir: directory (0700), config,
// root key (0600), CA and server certificate, migrated database and the
// first admin client, whose credentials it returns (and nowhere stores).
func Init(ctx context.Context, opts InitOptions) (InitResult, error) {
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	dir, err := config.CreateDataDir(opts.DataDir)
	if err != nil {
		return InitResult{}, err
	}
	cfg, err := config.Load(dir, nil)
	if err != nil {
		return InitResult{}, err
	}
	if opts.Listen != "" {
		if err := cfg.Set("listen", opts.Listen); err != nil {
			return InitResult{}, err
		}
	}
	if opts.DatabaseURL != "" {
		if err := cfg.Set("database_url", opts.DatabaseURL); err != nil {
			return InitResult{}, err
		}
	}
	cfg.Dev = opts.Dev
	rk := unseal.CreateOptions{Rand: opts.Rand, Provider: opts.RootKeyProvider, Shares: opts.Shares, Threshold: opts.Threshold, PKCS11: opts.PKCS11}
	if err := unseal.Configure(cfg, rk); err != nil {
		return InitResult{}, err
	}
	provider, shares, err := unseal.Create(cfg, rk)
	if err != nil {
		return InitResult{}, err
	}
	if err := pki.CreateDeploymentTLS(cfg.TLS.CAFile, cfg.TLS.CertFile, cfg.TLS.KeyFile, opts.Rand, opts.Now(), opts.Hosts); err != nil {
		return InitResult{}, err
	}
	if err := config.Write(dir, cfg); err != nil {
		return InitResult{}, fmt.Errorf("write config: %w", err)
	}

	c, err := open(ctx, cfg, Options{Rand: opts.Rand, Now: opts.Now, Migrate: true, provider: provider})
	if err != nil {
		return InitResult{}, err
	}
	defer c.Close()
	nc, err := c.identity.CreateClient(ctx, "bootstrap-admin", []string{"admin"}, nil)
	if err != nil {
		return InitResult{}, fmt.Errorf("create admin client: %w", err)
	}
	return InitResult{URL: cfg.PublicURL, ClientID: nc.ClientID, ClientSecret: nc.ClientSecret, CACert: cfg.TLS.CAFile,
		UnsealShares: shares}, nil
}
