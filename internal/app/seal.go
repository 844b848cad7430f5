package app

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/crypto/keyprovider"
	"github.com/cofferhq/coffer/internal/crypto/shamir"
	"github.com/cofferhq/coffer/internal/httpapi"
	"github.com/cofferhq/coffer/internal/pki"
)

// ErrSealedOffline: an offline command (backup, keys rotate, audit verify…)
// was run against a deployment whose root key is split into shares. Only a
// serving node gathers shares (POST /v1/sys/unseal).
var ErrSealedOffline = errors.New("root key: this deployment's root key is split into shares (provider shamir): " +
	"give enough shares on standard input, one per line, with --unseal-shares-stdin")

// openOtherProvider opens the root key providers other than file and env.
func openOtherProvider(cfg *config.Config) (keyprovider.Provider, error) {
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
		p, err := openSealedProvider(cfg, rand.Reader)
		if err != nil {
			return nil, err
		}
		if err := unsealWith(p, cfg.RootKey.UnsealShares); err != nil {
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

// openSealedProvider reads the deployment's check blob and returns its
// provider, sealed.
func openSealedProvider(cfg *config.Config, r io.Reader) (*keyprovider.Sealed, error) {
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

// createRootKey makes the root key of a new deployment as cfg's provider
// says. For the file provider it writes the key file and returns a nil
// provider (open reads the file). For shamir it splits a new key into
// opts.Shares shares, saves the check blob (0600) and returns the shares
// with the provider already unsealed: the key is never written to disk.
// For pkcs11 it makes the key on the token.
func createRootKey(cfg *config.Config, opts InitOptions) (keyprovider.Provider, []string, error) {
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
		if err := writeNew(cfg.RootKey.CheckFile, check); err != nil {
			return nil, nil, fmt.Errorf("save root key check: %w", err)
		}
		p, err := keyprovider.NewSealed(check, opts.Rand)
		if err != nil {
			return nil, nil, err
		}
		if err := unsealWith(p, shares[:opts.Threshold]); err != nil {
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

// unsealWith gives p the shares in text form.
func unsealWith(p *keyprovider.Sealed, shares []string) error {
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

// writeNew writes data to a new file (never overwriting) with mode 0600.
func writeNew(path string, data []byte) (err error) {
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

// unseal takes one share for a sealed server and, once enough arrived,
// builds the server's components so it serves normally. It is the
// httpapi.SealedConfig.Unseal of a shamir deployment.
func (s *Server) unseal(ctx context.Context, share string) (httpapi.UnsealStatus, error) {
	if st := s.sealStatus(); !st.Sealed {
		return st, nil
	}
	raw, err := shamir.DecodeShare(share)
	if err != nil {
		return s.sealStatus(), coffer.Errorf(coffer.EINVALID, "not a root key share: check it for a typo")
	}
	replaced := s.sealed.Replaced()
	done, err := s.sealed.Unseal([][]byte{raw})
	clear(raw)
	if s.sealed.Replaced() > replaced {
		s.log.Warn("unseal: a share replaced a different one of the same number held before: " +
			"one of them was forged or mistyped (this check file has no share commitments)")
	}
	switch {
	case errors.Is(err, keyprovider.ErrUnknownShare):
		return s.sealStatus(), coffer.Errorf(coffer.EINVALID, "not one of this deployment's root key shares")
	case errors.Is(err, keyprovider.ErrInvalidShare):
		return s.sealStatus(), coffer.Errorf(coffer.EINVALID,
			"invalid share: malformed, or another share of that number is held; give the others, then this one again")
	case errors.Is(err, keyprovider.ErrWrongShares):
		s.log.Warn("unseal: the shares given do not make the root key; waiting for more")
		return s.sealStatus(), coffer.Errorf(coffer.EINVALID, "the shares given so far do not make the root key: one of them is wrong; give another share")
	case err != nil:
		return s.sealStatus(), err
	case !done:
		return s.sealStatus(), nil
	}
	if err := s.start(ctx); err != nil {
		s.log.Error("unsealed, but the server could not start", "error", err)
		return s.sealStatus(), &coffer.Error{Code: coffer.EUNAVAILABLE,
			Message: "the root key is unsealed, but the server could not start: see its log", RetryAfterSeconds: 5}
	}
	s.dropResetToken()
	s.upgradeCheckFile()
	s.log.Info("unsealed: serving")
	return s.sealStatus(), nil
}

// upgradeCheckFile stores, after unsealing a check file written before
// share commitments, the same check with a commitment to every share
// (derived from the right shares just given), so that from the next start
// on a forged share is refused on submission. The key and the shares do
// not change.
func (s *Server) upgradeCheckFile() {
	up := s.sealed.UpgradedCheck()
	if up == nil {
		return
	}
	path := s.cfg.RootKey.CheckFile
	if err := pki.WriteAtomic(path, up, 0o600); err != nil {
		s.log.Error("root key check file has no share commitments and could not be upgraded: "+
			"until it is, forged shares can delay unsealing (coffer doctor)", "file", path, "error", err)
		return
	}
	s.log.Info("root key check file upgraded with a commitment to each share: forged shares are now refused", "file", path)
}

// unsealResetFile, in the data directory, holds the token that resets a
// sealed server's unseal progress (POST /v1/sys/unseal/reset, coffer
// unseal --reset): whoever can read the data directory can restart the
// server anyway, and the reset is that restart without the downtime.
const unsealResetFile = "unseal-reset.token"

// UnsealResetFile returns the path of the unseal reset token of cfg's
// deployment.
func UnsealResetFile(cfg *config.Config) string {
	return filepath.Join(cfg.DataDir, unsealResetFile)
}

// makeResetToken writes a new random reset token (0600) for this sealed
// run; without it (the data directory not writable) reset is refused.
func (s *Server) makeResetToken(r io.Reader) {
	if r == nil {
		r = rand.Reader
	}
	var b [32]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		s.log.Error("unseal reset token", "error", err)
		return
	}
	tok := []byte(base64.RawURLEncoding.EncodeToString(b[:]))
	path := UnsealResetFile(s.cfg)
	if err := pki.WriteAtomic(path, append(tok, '\n'), 0o600); err != nil {
		s.log.Warn("unseal reset is unavailable: its token could not be written", "file", path, "error", err)
		return
	}
	s.resetToken.Store(&tok)
}

// dropResetToken forgets and removes the reset token: once unsealed or
// shut down there is nothing to reset.
func (s *Server) dropResetToken() {
	if s.resetToken.Swap(nil) != nil {
		if err := os.Remove(UnsealResetFile(s.cfg)); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("removing the unseal reset token", "error", err)
		}
	}
}

// unsealReset drops the shares a sealed server holds, for a caller that
// shows the reset token of its data directory. It is the
// httpapi.SealedConfig.Reset of a shamir deployment.
func (s *Server) unsealReset(_ context.Context, token string) (httpapi.UnsealStatus, error) {
	if st := s.sealStatus(); !st.Sealed {
		return st, nil
	}
	want := s.resetToken.Load()
	if want == nil {
		return s.sealStatus(), &coffer.Error{Code: coffer.EUNAVAILABLE, RetryAfterSeconds: sealedResetRetry,
			Message: "unseal reset is unavailable: the server could not write its reset token (see its log); restart it instead"}
	}
	if subtle.ConstantTimeCompare([]byte(strings.TrimSpace(token)), *want) != 1 {
		return s.sealStatus(), coffer.Errorf(coffer.EUNAUTHENTICATED,
			"a reset needs the token in the server's data directory (%s)", unsealResetFile)
	}
	s.sealed.Reset()
	s.log.Warn("unseal: every share held was dropped by a reset; give the shares again")
	return s.sealStatus(), nil
}

// sealedResetRetry is the Retry-After of a reset that cannot be made.
const sealedResetRetry = 60

// sealStatus reports the unseal progress; Sealed stays true until the
// components are built and serving.
func (s *Server) sealStatus() httpapi.UnsealStatus {
	have, need := s.sealed.Progress()
	return httpapi.UnsealStatus{Sealed: s.live.Load() == nil, Progress: have, Threshold: need}
}

// start builds the components of a sealed server once its provider is
// unsealed. It runs once; later calls return at once.
func (s *Server) start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("shutting down")
	}
	if s.live.Load() != nil {
		return nil
	}
	o := s.opts
	o.provider = s.sealed
	return s.build(ctx, o)
}

// setRootKeyProvider puts init's root key choice into cfg.
func setRootKeyProvider(cfg *config.Config, opts *InitOptions) error {
	p := opts.RootKeyProvider
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
