package identity

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/cofferhq/coffer/internal/coffer"
)

// metaIssuer is the meta key of the deployment's token issuer.
const metaIssuer = "auth.issuer"

// IssuerStore keeps the deployment's issuer (the store's meta table).
type IssuerStore interface {
	// Meta returns a value (ENOTFOUND when unset).
	Meta(ctx context.Context, key string) (string, error)
	// AddMeta sets key to value unless it has one, and returns what it
	// holds afterwards.
	AddMeta(ctx context.Context, key, value string) (string, error)
}

// IssuerSetting is this node's auth.issuer: its value and whether the
// configuration set it (rather than deriving it from public_url).
type IssuerSetting struct {
	Value string
	Set   bool
}

// DeploymentIssuer returns the iss this node issues and the others it
// accepts. The deployment's issuer is kept in the store: the first node
// that serves records its own (auth.issuer, or public_url), and every node
// without an auth.issuer setting issues and accepts that one, so a token
// from any node verifies on every node. A node with auth.issuer set issues
// with it and accepts both. An offline command only reads what is kept
// (and falls back to its own setting).
func DeploymentIssuer(ctx context.Context, db IssuerStore, own IssuerSetting, offline bool, log *slog.Logger) (string, []string, error) {
	var (
		dep string
		err error
	)
	if offline {
		dep, err = db.Meta(ctx, metaIssuer)
		if coffer.ErrorCode(err) == coffer.ENOTFOUND {
			return own.Value, nil, nil
		}
	} else {
		dep, err = db.AddMeta(ctx, metaIssuer, own.Value)
	}
	if err != nil {
		return "", nil, fmt.Errorf("deployment issuer: %w", err)
	}
	if !own.Set || dep == own.Value {
		return dep, nil, nil
	}
	log.Warn("auth.issuer differs from the deployment's issuer: tokens this node issues verify only on nodes with the same setting; remove it to use the deployment's",
		"issuer", own.Value, "deployment_issuer", dep)
	return own.Value, []string{dep}, nil
}
