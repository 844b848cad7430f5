package app

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/cofferhq/coffer/internal/auditadmin"
	"github.com/cofferhq/coffer/internal/auth"
	"github.com/cofferhq/coffer/internal/cluster"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/crypto/keyprovider"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
	"github.com/cofferhq/coffer/internal/crypto/unseal"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/lifecycle"
	"github.com/cofferhq/coffer/internal/mask"
	"github.com/cofferhq/coffer/internal/policystore"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/token"
	"github.com/cofferhq/coffer/internal/transit"
	"github.com/cofferhq/coffer/internal/vault"
)

// Options are process-level inputs that tests pin.
type Options struct {
	Rand    io.Reader
	Now     func() time.Time
	Logger  *slog.Logger
	Migrate bool // apply pending migrations on open (init, dev)
	// Offline marks administrative commands (audit verify, cert issue)
	// that may run as the database owner; serving may not (see
	// database_allow_superuser).
	Offline bool
	// ReindexAfter overrides how old a new index key version must be
	// before the reindex moves entries to it (default 0 on SQLite, the key
	// cache time and a margin on PostgreSQL); negative moves at once.
	// Tests set it.
	ReindexAfter time.Duration
	// RetireAfter overrides how long a key version must have had a newer
	// version before it may be retired (default DefaultRetireAfter: the
	// key cache time and a margin, on every backend); negative means at
	// once. Tests set it.
	RetireAfter time.Duration
	// AuditMaxBatch, when above 0, caps the events of one audit append; 1
	// turns group commit off (one transaction and sync per event). Only
	// benchmarks set it, to compare the two; it is not configurable.
	AuditMaxBatch int
	// AuditGatherGap, when not 0, replaces the audit writer's gather gap
	// (audit.WriterConfig.GatherGap; negative turns gathering off): for
	// the benchmarks that compare the two.
	AuditGatherGap time.Duration
	// AuditDiscard answers requests without writing their audit events:
	// no chaining, no append, no wait (the detectors and metrics still see
	// every request). Only the benchmark that measures what auditing costs
	// sets it, as its baseline; no configuration, flag or environment
	// variable can.
	AuditDiscard bool
	// AuditFlushFloor writes each audit batch to a preallocated scratch
	// file in the data directory and fdatasyncs it, and stores nothing
	// else (no database append, no checkpoints): the floor any audit log
	// durable before the answer pays on the host. Only the benchmark that
	// measures what auditing costs sets it, to tell the host's flush from
	// Coffer's own work; no configuration, flag or environment variable
	// can.
	AuditFlushFloor bool
	// Version is this binary's version, shown by GET /v1/sys/nodes
	// (default "dev").
	Version string
	// NodeLeaseTTL and NodeHeartbeat override the node lease's length and
	// renewal period (cluster.DefaultLeaseTTL, DefaultHeartbeat). Tests
	// shorten them.
	NodeLeaseTTL, NodeHeartbeat time.Duration
	// PollInterval, when above 0, replaces how often a node polls the
	// store for what other nodes changed (policy, revocations, signing
	// keys: 2s; suspensions: 15s), the fallback of change notifications.
	// Tests lengthen it to show that notifications alone propagate.
	PollInterval time.Duration
	// provider, if set, is the root key provider already opened (an
	// unsealed Shamir provider); nil opens the one cfg names.
	provider keyprovider.Provider
}

// components are the built parts shared by init, migrate and serve.
type components struct {
	cfg      *config.Config
	opts     Options
	provider keyprovider.Provider
	db       *store.DB
	keys     *keyring.Keyring
	jwt      *auth.Tokens
	external *auth.External
	identity *identity.Service
	policies *policystore.Holder
	vault    *vault.Vault
	tokens   *token.Service
	transit  *transit.Service
	// issuer is the iss of the tokens this node issues (deploymentIssuer).
	issuer string
	// schema is the schema version this binary was built for.
	schema int64
}

// ErrPendingMigrations: the database schema is older than this binary.
var ErrPendingMigrations = store.ErrPendingMigrations

// Close releases the store and the root key provider's resources.
func (c *components) Close() {
	c.external.Close()
	if c.db != nil {
		_ = c.db.Close()
	}
	if cl, ok := c.provider.(io.Closer); ok && c.opts.provider == nil {
		_ = cl.Close()
	}
}

// open builds every component and verifies the root key; it does not
// start background work.
func open(ctx context.Context, cfg *config.Config, o Options) (*components, error) {
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	c := &components{cfg: cfg, opts: o, provider: o.provider}
	var err error
	if c.provider == nil {
		if c.provider, err = unseal.Open(cfg); err != nil {
			return nil, err
		}
	}
	if c.db, err = store.Open(ctx, cfg.StoreDSN(), store.Options{}); err != nil {
		return nil, err
	}
	if err := policystore.Ready(ctx, c.db, o.Migrate, o.Offline, o.Now(), o.Logger); err != nil {
		c.Close()
		return nil, err
	}
	if c.schema, err = cluster.CheckStoreSchema(ctx, c.db, o.Logger); err != nil {
		c.Close()
		return nil, err
	}
	if !o.Migrate && !o.Offline && !cfg.DatabaseAllowSuperuser {
		if err := c.db.CheckNotSuperuser(ctx); err != nil {
			c.Close()
			return nil, err
		}
	}
	c.keys = keyring.New(c.provider, c.db, keyring.Options{Rand: o.Rand, Now: o.Now,
		// With rotation by use count configured, a key that reaches the
		// hard stop between two checks is rotated at once rather than
		// refused (it stops there otherwise).
		RotateAtLimit: cfg.Keys.RotateAfterUses > 0,
		OnLimitRotate: lifecycle.LimitRotated(c.db, o.Now, o.Logger)})
	if err := c.keys.Check(ctx); err != nil {
		c.Close()
		if errors.Is(err, keyring.ErrWrongRootKey) {
			return nil, errors.New("root key: this is not the root key this deployment was initialised with")
		}
		return nil, fmt.Errorf("root key check: %w", err)
	}
	// After the root key check: a node of another deployment keeps nothing.
	// Offline commands only read the kept id (config.Load took it), and
	// fall back to the host name.
	if cfg.Derived("node") && !o.Offline {
		if cfg.Node, err = cluster.ResolveNode(ctx, cluster.ResolveConfig{Store: c.db, DataDir: cfg.DataDir, Node: cfg.Node,
			Now: o.Now, Rand: o.Rand, Logger: o.Logger}); err != nil {
			c.Close()
			return nil, err
		}
	}
	issuer, accept, err := identity.DeploymentIssuer(ctx, c.db,
		identity.IssuerSetting{Value: cfg.Auth.Issuer, Set: !cfg.Derived("auth.issuer")}, o.Offline, o.Logger)
	if err != nil {
		c.Close()
		return nil, err
	}
	c.issuer = issuer
	c.jwt = auth.NewTokens(auth.TokenConfig{
		Issuer:        issuer,
		AcceptIssuers: accept,
		Audience:      cfg.Auth.Audience,
		TTL:           cfg.Auth.TokenTTL.Duration,
		Now:           o.Now,
		Rand:          o.Rand,
	})
	if len(cfg.Auth.External) > 0 {
		if c.external, err = auth.NewExternal(ctx, auth.ExternalFromConfig(cfg.Auth.External), auth.ExternalOptions{Now: o.Now, Logger: o.Logger}); err != nil {
			c.Close()
			return nil, fmt.Errorf("external issuers: %w", err)
		}
	}
	c.identity = identity.New(identity.Config{
		Store: c.db, Sealer: c.keys, Tokens: c.jwt, Rand: o.Rand, Now: o.Now, Logger: o.Logger,
		External: c.external,
		Lockout: identity.Lockout{MaxFailures: cfg.Auth.Lockout.MaxFailures, Window: cfg.Auth.Lockout.Window.Duration,
			Base: cfg.Auth.Lockout.Base.Duration, Max: cfg.Auth.Lockout.Max.Duration,
			AddressMaxFailures: cfg.Auth.Lockout.AddressMaxFailures},
		MaxConcurrentHashes: cfg.Auth.Hashing.MaxConcurrent, HashQueueTimeout: cfg.Auth.Hashing.QueueTimeout.Duration,
		RefreshInterval: o.PollInterval,
		MACs:            c.keys, EnrolmentCodeTTL: cfg.Auth.MFAEnrolmentCodeTTL.Duration, ReauthMaxAge: cfg.Auth.ReauthMaxAge.Duration,
		RolesNeedMFA: func(roles []string) bool {
			p := c.policies.Current()
			return slices.ContainsFunc(roles, p.RequiresMFA)
		},
	})
	c.policies = policystore.New(c.db, o.Now, o.Logger)
	c.policies.Principals = c.identity.Principals
	if err := c.policies.Load(ctx); err != nil {
		c.Close()
		return nil, err
	}
	// The hash mask is keyed per collection and field by the vault
	// (vault.PseudonymKeyID); elsewhere it redacts.
	masker := mask.New(nil)
	reindexAfter := o.ReindexAfter
	if reindexAfter == 0 && c.db.Dialect() == store.Postgres {
		// Several nodes may share PostgreSQL: wait until every node's key
		// cache holds a new index key version before moving entries to it.
		reindexAfter = keyring.DefaultCacheTTL + 15*time.Second
	}
	c.vault = vault.New(vault.Config{
		Store: c.db, Keys: c.keys, Policies: c.policies, Masker: masker,
		Rand: o.Rand, Now: o.Now, ReindexAfter: reindexAfter,
		ShredAuditValues: func(ctx context.Context) error { return auditadmin.ShredValues(ctx, c.keys, c.db, o.Now()) },
	})
	c.transit = transit.New(transit.Config{
		Store: c.db, Versions: c.db, Keys: c.keys, Auth: c.policies, Meta: c.db, Now: o.Now, Log: o.Logger,
		MaxBatch:               cfg.Limits.MaxBatchItems,
		WrappingKeyRotateAfter: cfg.Transit.BYOK.WrappingKeyRotateAfter.Duration,
		WrappingKeyGrace:       cfg.Transit.BYOK.WrappingKeyGrace.Duration,
		AllowSHA1:              cfg.Transit.BYOK.AllowSHA1,
		// Key metadata is served from memory; change notifications
		// invalidate it at once, this bound when they are down.
		KeyCacheFor: o.PollInterval,
	})
	c.tokens = token.New(token.Config{
		Store: c.db, Keys: c.keys, Policies: c.policies, Masker: masker,
		Rand: o.Rand, Now: o.Now, MaxItems: cfg.Limits.MaxBatchItems,
		CardKeepFirstSix: cfg.Tokens.CardKeepFirstSix, CardLuhnValid: cfg.Tokens.CardLuhnValid,
	})
	return c, nil
}

// useCounts are the counts this node flushes to the store.
func (c *components) useCounts() []lifecycle.Flusher {
	return []lifecycle.Flusher{{Name: "transit use count", Flush: c.transit.Flush}, {Name: "data key use count", Flush: c.keys.FlushUses}}
}

// Migrate applies pending migrations to cfg's database, then rewrites a
// stored policy document written for an older meaning of the policy
// language (policy.Rewrites) and returns what that changed, for the
// operator to review. The rewrite is a new policy version, like a PUT.
func Migrate(ctx context.Context, cfg *config.Config) ([]policystore.Change, error) {
	db, err := store.Open(ctx, cfg.StoreDSN(), store.Options{})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		return nil, err
	}
	changes, err := policystore.Rewrite(ctx, db, time.Now())
	if err != nil {
		return nil, err
	}
	if cfg.DatabaseAppRole != "" {
		return changes, db.GrantAppRole(ctx, cfg.DatabaseAppRole)
	}
	return changes, nil
}
