package unseal

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/crypto/keyprovider"
	"github.com/cofferhq/coffer/internal/crypto/shamir"
)

// Open opens the root key provider cfg names. A shamir deployment opens
// only with cfg.RootKey.UnsealShares (an offline command given the
// shares); a server gathers them with a Gate instead.
func Open(cfg *config.Config) (keyprovider.Provider, error) {
	switch cfg.RootKey.Provider {
	case "", "file":
		p, err := keyprovider.OpenFile(cfg.RootKey.File)
		if err != nil {
			return nil, fmt.Errorf("root key: %w", err)
		}
		return p, nil
	case "env":
		p, err := keyprovider.FromEnv(cfg.RootKey.Env)
		if err != nil {
			return nil, fmt.Errorf("root key: %w", err)
		}
		return p, nil
	case config.ProviderPKCS11, config.ProviderShamir:
		return openOther(cfg)
	}
	return nil, fmt.Errorf("root key: unknown provider %q", cfg.RootKey.Provider)
}

// CreateOptions are init's choices for a new root key.
type CreateOptions struct {
	Rand io.Reader
	// Provider is file (default), shamir or pkcs11. Shares > 0 implies
	// shamir.
	Provider string
	// Shares and Threshold split a shamir root key: any Threshold of the
	// Shares unseal it.
	Shares, Threshold int
	// PKCS11 locates the root key on a PKCS#11 token.
	PKCS11 config.RootKeyPKCS11
}

// ErrSealedOffline: an offline command (backup, keys rotate, audit verify…)
// was run against a deployment whose root key is split into shares. Only a
// serving node gathers shares (POST /v1/sys/unseal).
var ErrSealedOffline = errors.New("root key: this deployment's root key is split into shares (provider shamir): " +
	"give enough shares on standard input, one per line, with --unseal-shares-stdin")

// openOther opens the root key providers other than file and env.
func openOther(cfg *config.Config) (keyprovider.Provider, error) {
	switch cfg.RootKey.Provider {
	case config.ProviderPKCS11:
		p, err := keyprovider.OpenPKCS11(pkcs11Config(cfg))
		if err != nil {
			return nil, fmt.Errorf("root key: %w", err)
		}
		return p, nil
	case config.ProviderShamir:
		if len(cfg.RootKey.UnsealShares) == 0 {
			return nil, ErrSealedOffline
		}
		// An offline command given the shares: unseal here, for this
		// process only; the key is never written anywhere.
		p, err := OpenSealed(cfg, rand.Reader)
		if err != nil {
			return nil, err
		}
		if err := With(p, cfg.RootKey.UnsealShares); err != nil {
			return nil, err
		}
		return p, nil
	}
	return nil, fmt.Errorf("root key: unknown provider %q", cfg.RootKey.Provider)
}

func pkcs11Config(cfg *config.Config) keyprovider.PKCS11Config {
	k := cfg.RootKey.PKCS11
	return keyprovider.PKCS11Config{Module: k.Module, TokenLabel: k.TokenLabel, KeyLabel: k.KeyLabel, PINEnv: k.PINEnv}
}

// OpenSealed reads the deployment's check blob and returns its
// provider, sealed.
func OpenSealed(cfg *config.Config, r io.Reader) (*keyprovider.Sealed, error) {
	check, err := os.ReadFile(cfg.RootKey.CheckFile)
	if err != nil {
		return nil, fmt.Errorf("root key check file: %w", err)
	}
	p, err := keyprovider.NewSealed(check, r)
	if err != nil {
		return nil, fmt.Errorf("root key check file %s: %w", cfg.RootKey.CheckFile, err)
	}
	return p, nil
}

// Create makes the root key of a new deployment as cfg's provider
// says. For the file provider it writes the key file and returns a nil
// provider (open reads the file). For shamir it splits a new key into
// opts.Shares shares, saves the check blob (0600) and returns the shares
// with the provider already unsealed: the key is never written to disk.
// For pkcs11 it makes the key on the token.
func Create(cfg *config.Config, opts CreateOptions) (keyprovider.Provider, []string, error) {
	switch cfg.RootKey.Provider {
	case config.ProviderFile:
		if err := keyprovider.CreateFile(cfg.RootKey.File, opts.Rand); err != nil {
			return nil, nil, fmt.Errorf("create root key: %w", err)
		}
		return nil, nil, nil
	case config.ProviderShamir:
		shares, check, err := keyprovider.SplitRootKey(opts.Rand, opts.Shares, opts.Threshold)
		if err != nil {
			return nil, nil, fmt.Errorf("split root key (want 2 ≤ threshold ≤ shares ≤ 255): %w", err)
		}
		if err := WriteNew(cfg.RootKey.CheckFile, check); err != nil {
			return nil, nil, fmt.Errorf("save root key check: %w", err)
		}
		p, err := keyprovider.NewSealed(check, opts.Rand)
		if err != nil {
			return nil, nil, err
		}
		if err := With(p, shares[:opts.Threshold]); err != nil {
			return nil, nil, err
		}
		return p, shares, nil
	case config.ProviderPKCS11:
		pc := pkcs11Config(cfg)
		if err := keyprovider.CreatePKCS11Key(pc); err != nil {
			return nil, nil, fmt.Errorf("create root key on the PKCS#11 token: %w", err)
		}
		return nil, nil, nil
	}
	return nil, nil, fmt.Errorf("init: root key provider %q cannot be created by init", cfg.RootKey.Provider)
}

// With gives p the shares in text form.
func With(p *keyprovider.Sealed, shares []string) error {
	raw := make([][]byte, 0, len(shares))
	defer func() {
		for _, r := range raw {
			clear(r)
		}
	}()
	for _, s := range shares {
		b, err := shamir.DecodeShare(s)
		if err != nil {
			return fmt.Errorf("root key share: %w", err)
		}
		raw = append(raw, b)
	}
	done, err := p.Unseal(raw)
	if err != nil {
		return err
	}
	if !done {
		return errors.New("root key: not enough shares to unseal")
	}
	return nil
}

// WriteNew writes data to a new file (never overwriting) with mode 0600.
func WriteNew(path string, data []byte) (err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) // #nosec G304 -- a path in the operator's data directory
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(path)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Sync()
}

// Configure puts init's root key choice into cfg.
func Configure(cfg *config.Config, opts CreateOptions) error {
	p := opts.Provider
	if p == "" && opts.Shares > 0 {
		p = config.ProviderShamir
	}
	switch p {
	case "", config.ProviderFile:
		if opts.Shares > 0 || opts.Threshold > 0 {
			return errors.New("init: --shares and --threshold split the root key: they go with the shamir provider")
		}
		return nil
	case config.ProviderShamir:
		if opts.Shares < 2 || opts.Threshold < 2 || opts.Threshold > opts.Shares || opts.Shares > shamir.MaxShares {
			return errors.New("init: a shamir root key needs 2 ≤ --threshold ≤ --shares ≤ 255")
		}
	case config.ProviderPKCS11:
		k := opts.PKCS11
		for key, v := range map[string]string{"root_key.pkcs11.module": k.Module, "root_key.pkcs11.token_label": k.TokenLabel,
			"root_key.pkcs11.key_label": k.KeyLabel, "root_key.pkcs11.pin_env": k.PINEnv} {
			if v == "" {
				continue
			}
			if err := cfg.Set(key, v); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("init: root key provider %q cannot be created by init (want file, shamir or pkcs11)", p)
	}
	if err := cfg.Set("root_key.provider", p); err != nil {
		return err
	}
	return cfg.Validate()
}
