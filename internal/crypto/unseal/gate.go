package unseal

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/crypto/keyprovider"
	"github.com/cofferhq/coffer/internal/crypto/shamir"
	"github.com/cofferhq/coffer/internal/pki"
)

// Status is a sealed server's unseal progress.
type Status struct {
	Sealed    bool `json:"sealed"`
	Progress  int  `json:"progress"`
	Threshold int  `json:"threshold"`
}

// GateConfig configures a Gate.
type GateConfig struct {
	// Sealed is the deployment's provider, sealed (OpenSealed).
	Sealed *keyprovider.Sealed
	// CheckFile is the root key check file, upgraded in place with share
	// commitments when it has none.
	CheckFile string
	// ResetFile holds the reset token while sealed (ResetFile).
	ResetFile string
	Logger    *slog.Logger
	// Start builds the server once the root key is whole; Live reports
	// whether it serves.
	Start func(ctx context.Context) error
	Live  func() bool
}

// Gate takes the root key shares of a sealed server.
type Gate struct {
	c GateConfig
	// resetToken resets the unseal progress while sealed (see Reset).
	resetToken atomic.Pointer[[]byte]
}

// NewGate returns the gate of c.Sealed.
func NewGate(c GateConfig) *Gate {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return &Gate{c: c}
}

// Provider returns the gate's provider, unsealed once Status says so.
func (g *Gate) Provider() *keyprovider.Sealed { return g.c.Sealed }

// Wait announces that the server waits for shares and writes the reset
// token (from r) to the data directory.
func (g *Gate) Wait(r io.Reader) {
	if !g.c.Sealed.Committed() {
		g.c.Logger.Warn("the root key check file has no share commitments: forged shares can delay unsealing until it is upgraded, at this unseal",
			"file", g.c.CheckFile)
	}
	g.makeResetToken(r)
	_, need := g.c.Sealed.Progress()
	g.c.Logger.Warn("sealed: waiting for root key shares (POST /v1/sys/unseal or coffer unseal)", "threshold", need)
}

// Unseal takes one share and, once enough arrived, starts the server so
// it serves normally. It is the httpapi.SealedConfig.Unseal of a shamir
// deployment.
func (g *Gate) Unseal(ctx context.Context, share string) (Status, error) {
	if st := g.Status(); !st.Sealed {
		return st, nil
	}
	raw, err := shamir.DecodeShare(share)
	if err != nil {
		return g.Status(), coffer.Errorf(coffer.EINVALID, "not a root key share: check it for a typo")
	}
	sealed, log := g.c.Sealed, g.c.Logger
	replaced := sealed.Replaced()
	done, err := sealed.Unseal([][]byte{raw})
	clear(raw)
	if sealed.Replaced() > replaced {
		log.Warn("unseal: a share replaced a different one of the same number held before: " +
			"one of them was forged or mistyped (this check file has no share commitments)")
	}
	switch {
	case errors.Is(err, keyprovider.ErrUnknownShare):
		return g.Status(), coffer.Errorf(coffer.EINVALID, "not one of this deployment's root key shares")
	case errors.Is(err, keyprovider.ErrInvalidShare):
		return g.Status(), coffer.Errorf(coffer.EINVALID,
			"invalid share: malformed, or another share of that number is held; give the others, then this one again")
	case errors.Is(err, keyprovider.ErrWrongShares):
		log.Warn("unseal: the shares given do not make the root key; waiting for more")
		return g.Status(), coffer.Errorf(coffer.EINVALID, "the shares given so far do not make the root key: one of them is wrong; give another share")
	case err != nil:
		return g.Status(), err
	case !done:
		return g.Status(), nil
	}
	if err := g.c.Start(ctx); err != nil {
		log.Error("unsealed, but the server could not start", "error", err)
		return g.Status(), &coffer.Error{Code: coffer.EUNAVAILABLE,
			Message: "the root key is unsealed, but the server could not start: see its log", RetryAfterSeconds: 5}
	}
	g.DropResetToken()
	g.upgradeCheckFile()
	log.Info("unsealed: serving")
	return g.Status(), nil
}

// upgradeCheckFile stores, after unsealing a check file written before
// share commitments, the same check with a commitment to every share
// (derived from the right shares just given), so that from the next start
// on a forged share is refused on submission. The key and the shares do
// not change.
func (g *Gate) upgradeCheckFile() {
	up := g.c.Sealed.UpgradedCheck()
	if up == nil {
		return
	}
	path := g.c.CheckFile
	if err := pki.WriteAtomic(path, up, 0o600); err != nil {
		g.c.Logger.Error("root key check file has no share commitments and could not be upgraded: "+
			"until it is, forged shares can delay unsealing (coffer doctor)", "file", path, "error", err)
		return
	}
	g.c.Logger.Info("root key check file upgraded with a commitment to each share: forged shares are now refused", "file", path)
}

// resetFileName, in the data directory, holds the token that resets a
// sealed server's unseal progress (POST /v1/sys/unseal/reset, coffer
// unseal --reset): whoever can read the data directory can restart the
// server anyway, and the reset is that restart without the downtime.
const resetFileName = "unseal-reset.token"

// ResetFile returns the path of the unseal reset token of cfg's
// deployment.
func ResetFile(cfg *config.Config) string {
	return filepath.Join(cfg.DataDir, resetFileName)
}

// makeResetToken writes a new random reset token (0600) for this sealed
// run; without it (the data directory not writable) reset is refused.
func (g *Gate) makeResetToken(r io.Reader) {
	if r == nil {
		r = rand.Reader
	}
	var b [32]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		g.c.Logger.Error("unseal reset token", "error", err)
		return
	}
	tok := []byte(base64.RawURLEncoding.EncodeToString(b[:]))
	path := g.c.ResetFile
	if err := pki.WriteAtomic(path, append(tok, '\n'), 0o600); err != nil {
		g.c.Logger.Warn("unseal reset is unavailable: its token could not be written", "file", path, "error", err)
		return
	}
	g.resetToken.Store(&tok)
}

// DropResetToken forgets and removes the reset token: once unsealed or
// shut down there is nothing to reset.
func (g *Gate) DropResetToken() {
	if g.resetToken.Swap(nil) != nil {
		if err := os.Remove(g.c.ResetFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			g.c.Logger.Warn("removing the unseal reset token", "error", err)
		}
	}
}

// Reset drops the shares a sealed server holds, for a caller that shows
// the reset token of its data directory. It is the
// httpapi.SealedConfig.Reset of a shamir deployment.
func (g *Gate) Reset(_ context.Context, token string) (Status, error) {
	if st := g.Status(); !st.Sealed {
		return st, nil
	}
	want := g.resetToken.Load()
	if want == nil {
		return g.Status(), &coffer.Error{Code: coffer.EUNAVAILABLE, RetryAfterSeconds: resetRetry,
			Message: "unseal reset is unavailable: the server could not write its reset token (see its log); restart it instead"}
	}
	if subtle.ConstantTimeCompare([]byte(strings.TrimSpace(token)), *want) != 1 {
		return g.Status(), coffer.Errorf(coffer.EUNAUTHENTICATED,
			"a reset needs the token in the server's data directory (%s)", resetFileName)
	}
	g.c.Sealed.Reset()
	g.c.Logger.Warn("unseal: every share held was dropped by a reset; give the shares again")
	return g.Status(), nil
}

// resetRetry is the Retry-After of a reset that cannot be made.
const resetRetry = 60

// Status reports the unseal progress; Sealed stays true until the server
// is built and serving.
func (g *Gate) Status() Status {
	have, need := g.c.Sealed.Progress()
	return Status{Sealed: !g.c.Live(), Progress: have, Threshold: need}
}
