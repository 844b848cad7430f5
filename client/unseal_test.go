package client_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/config"
)

// A sealed server is unsealed through the client alone, as `coffer
// unseal` does: SealStatus, Unseal with a refused share (a problem, the
// progress kept), UnsealReset with the data directory's token, and
// Unseal again until it serves. None of it needs credentials.
func TestUnsealThroughClient(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	res, err := app.Init(ctx, app.InitOptions{DataDir: dir, Listen: "127.0.0.1:0", Shares: 3, Threshold: 2})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := app.Open(ctx, cfg, app.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	c, err := client.New("https://"+ln.Addr().String(), client.WithCAFile(res.CACert))
	if err != nil {
		t.Fatal(err)
	}
	want := func(st *client.UnsealStatus, err error, sealed bool, progress int) {
		t.Helper()
		if err != nil || st.Sealed != sealed || st.Progress != progress || st.Threshold != 2 {
			t.Fatalf("status %+v, %v; want sealed %v, progress %d of 2", st, err, sealed, progress)
		}
	}
	st, err := c.SealStatus(ctx)
	want(st, err, true, 0)
	st, err = c.Unseal(ctx, res.UnsealShares[0])
	want(st, err, true, 1)
	if _, err := c.Unseal(ctx, "not a share"); client.StatusCode(err) != http.StatusUnprocessableEntity ||
		!strings.Contains(err.Error(), "not a root key share") {
		t.Fatalf("a malformed share: %v, want a 422 problem", err)
	}
	st, err = c.SealStatus(ctx)
	want(st, err, true, 1)
	tok, err := os.ReadFile(filepath.Join(dir, "unseal-reset.token"))
	if err != nil {
		t.Fatal(err)
	}
	st, err = c.UnsealReset(ctx, strings.TrimSpace(string(tok)))
	want(st, err, true, 0)
	st, err = c.Unseal(ctx, res.UnsealShares[2])
	want(st, err, true, 1)
	// The fifth attempt: the sealed routes allow a burst of five.
	if st, err = c.Unseal(ctx, res.UnsealShares[1]); err != nil || st.Sealed {
		t.Fatalf("the second share after the reset: %+v, %v; want unsealed", st, err)
	}
}
