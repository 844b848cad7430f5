package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

func encodeJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("store: encode: %w", err)
	}
	return string(b), nil
}

// CreateClient stores a new service client; ECONFLICT if the id exists.
func (db *DB) CreateClient(ctx context.Context, c coffer.Client) error {
	roles, err := encodeJSON(c.Roles)
	if err != nil {
		return err
	}
	attrs, err := encodeJSON(c.Attributes)
	if err != nil {
		return err
	}
	_, err = db.write.exec(ctx, `INSERT INTO clients (id, name, secret_hash, roles, attributes, disabled, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		c.ID, c.Name, c.SecretHash, roles, attrs, b2i(c.Disabled), micros(c.CreatedAt))
	if errors.Is(err, ErrConflict) {
		return &coffer.Error{Code: coffer.ECONFLICT, Message: "client already exists", Cause: err}
	}
	if err != nil {
		return fmt.Errorf("store: create client: %w", err)
	}
	return nil
}

const clientCols = `id, name, secret_hash, roles, attributes, disabled, created_at, generation`

func scanClient(s interface{ Scan(...any) error }) (coffer.Client, error) {
	var (
		c            coffer.Client
		roles, attrs string
		dis, at      int64
	)
	if err := s.Scan(&c.ID, &c.Name, &c.SecretHash, &roles, &attrs, &dis, &at, &c.Generation); err != nil {
		return c, err
	}
	if err := json.Unmarshal([]byte(roles), &c.Roles); err != nil {
		return c, fmt.Errorf("store: decode client roles: %w", err)
	}
	if err := json.Unmarshal([]byte(attrs), &c.Attributes); err != nil {
		return c, fmt.Errorf("store: decode client attributes: %w", err)
	}
	c.Disabled, c.CreatedAt = dis != 0, fromMicros(at)
	return c, nil
}

// Client returns a client by id; ENOTFOUND if there is none.
func (db *DB) Client(ctx context.Context, id string) (coffer.Client, error) {
	c, err := scanClient(db.read.queryRow(ctx, `SELECT `+clientCols+` FROM clients WHERE id = $1`, id))
	if errors.Is(err, ErrNotFound) {
		return c, notFound("client")
	}
	if err != nil {
		return c, fmt.Errorf("store: client: %w", err)
	}
	return c, nil
}

// Clients lists every client, oldest first.
func (db *DB) Clients(ctx context.Context) ([]coffer.Client, error) {
	rs, err := db.read.query(ctx, `SELECT `+clientCols+` FROM clients ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("store: clients: %w", err)
	}
	defer rs.Close()
	var out []coffer.Client
	for rs.Next() {
		c, err := scanClient(rs)
		if err != nil {
			return nil, fmt.Errorf("store: clients: %w", err)
		}
		out = append(out, c)
	}
	return out, rs.Err()
}

// UpdateClientSecret replaces a client's secret hash (rotation) and, in
// the same statement, raises its generation: the tokens got with the old
// secret end.
func (db *DB) UpdateClientSecret(ctx context.Context, id, secretHash string) error {
	n, err := db.write.exec(ctx, `UPDATE clients SET secret_hash = $1, generation = generation + 1 WHERE id = $2`,
		secretHash, id)
	if err != nil {
		return fmt.Errorf("store: update client secret: %w", err)
	}
	if n == 0 {
		return notFound("client")
	}
	return nil
}

// DeleteClient removes a client; ENOTFOUND if absent.
func (db *DB) DeleteClient(ctx context.Context, id string) error {
	n, err := db.write.exec(ctx, `DELETE FROM clients WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("store: delete client: %w", err)
	}
	if n == 0 {
		return notFound("client")
	}
	return nil
}

// UpdateClient replaces a client's name, roles, attributes and disabled
// flag, only while its roles and attributes are still wasRoles and
// wasAttrs (compare and swap): whoever decided the change on the client
// as it was acts on that client, not on one an administrator changed
// meanwhile. ENOTFOUND if there is no client, ECONFLICT if it changed.
// Any update raises the client's generation in the same statement: the
// access tokens issued before are refused from then on (TokenState).
func (db *DB) UpdateClient(ctx context.Context, c coffer.Client, wasRoles []string, wasAttrs map[string]string) error {
	enc, err := encodeAll(c.Roles, c.Attributes, wasRoles, wasAttrs)
	if err != nil {
		return err
	}
	n, err := db.write.exec(ctx, `UPDATE clients SET name = $1, roles = $2, attributes = $3, disabled = $4,
		generation = generation + 1 WHERE id = $5 AND roles = $6 AND attributes = $7`,
		c.Name, enc[0], enc[1], b2i(c.Disabled), c.ID, enc[2], enc[3])
	if err != nil {
		return fmt.Errorf("store: update client: %w", err)
	}
	if n == 0 {
		if _, err := db.Client(ctx, c.ID); err != nil {
			return err
		}
		return coffer.Errorf(coffer.ECONFLICT, "the client changed meanwhile; read it again and retry")
	}
	return nil
}

// encodeAll encodes each of vs as JSON, as the identity tables store
// roles and attributes.
func encodeAll(vs ...any) ([]string, error) {
	out := make([]string, len(vs))
	for i, v := range vs {
		s, err := encodeJSON(v)
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

// CreateUser stores a new user; ECONFLICT if the username is taken.
func (db *DB) CreateUser(ctx context.Context, u coffer.User) error {
	roles, err := encodeJSON(u.Roles)
	if err != nil {
		return err
	}
	attrs, err := encodeJSON(u.Attributes)
	if err != nil {
		return err
	}
	rec, err := encodeJSON(nonNil(u.RecoveryHashes))
	if err != nil {
		return err
	}
	var key any // NULL for none: the unique index allows many NULLs
	if u.UsernameKey != "" {
		key = u.UsernameKey
	}
	_, err = db.write.exec(ctx, `INSERT INTO users (id, username, password_hash, roles, attributes,
		totp_secret, totp_confirmed, totp_last_step, recovery_hashes, disabled, created_at, username_key)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		u.ID, u.Username, u.PasswordHash, roles, attrs, u.TOTPSecret, b2i(u.TOTPConfirmed),
		u.TOTPLastStep, rec, b2i(u.Disabled), micros(u.CreatedAt), key)
	if errors.Is(err, ErrConflict) {
		return &coffer.Error{Code: coffer.ECONFLICT, Message: "username already exists", Cause: err}
	}
	if err != nil {
		return fmt.Errorf("store: create user: %w", err)
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

const userCols = `id, username, password_hash, roles, attributes, totp_secret, totp_confirmed,
	totp_last_step, recovery_hashes, disabled, created_at, username_key, generation`

func scanUser(s interface{ Scan(...any) error }) (coffer.User, error) {
	var (
		u                 coffer.User
		roles, attrs, rec string
		conf, dis, at     int64
		key               *string
	)
	if err := s.Scan(&u.ID, &u.Username, &u.PasswordHash, &roles, &attrs, &u.TOTPSecret, &conf,
		&u.TOTPLastStep, &rec, &dis, &at, &key, &u.Generation); err != nil {
		return u, err
	}
	if key != nil {
		u.UsernameKey = *key
	}
	for _, p := range []struct {
		s string
		v any
	}{{roles, &u.Roles}, {attrs, &u.Attributes}, {rec, &u.RecoveryHashes}} {
		if err := json.Unmarshal([]byte(p.s), p.v); err != nil {
			return u, fmt.Errorf("store: decode user: %w", err)
		}
	}
	u.TOTPConfirmed, u.Disabled, u.CreatedAt = conf != 0, dis != 0, fromMicros(at)
	return u, nil
}

// User returns a user by id; ENOTFOUND if there is none.
func (db *DB) User(ctx context.Context, id string) (coffer.User, error) {
	u, err := scanUser(db.read.queryRow(ctx, `SELECT `+userCols+` FROM users WHERE id = $1`, id))
	if errors.Is(err, ErrNotFound) {
		return u, notFound("user")
	}
	if err != nil {
		return u, fmt.Errorf("store: user: %w", err)
	}
	return u, nil
}

// Users lists every user, oldest first.
func (db *DB) Users(ctx context.Context) ([]coffer.User, error) {
	rs, err := db.read.query(ctx, `SELECT `+userCols+` FROM users ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("store: users: %w", err)
	}
	defer rs.Close()
	var out []coffer.User
	for rs.Next() {
		u, err := scanUser(rs)
		if err != nil {
			return nil, fmt.Errorf("store: users: %w", err)
		}
		out = append(out, u)
	}
	return out, rs.Err()
}

// UpdateUser replaces a user's roles, attributes and disabled flag, only
// while its roles and attributes are still wasRoles and wasAttrs (see
// UpdateClient; the generation is raised too). ENOTFOUND if there is no
// user, ECONFLICT if it changed.
func (db *DB) UpdateUser(ctx context.Context, u coffer.User, wasRoles []string, wasAttrs map[string]string) error {
	enc, err := encodeAll(u.Roles, u.Attributes, wasRoles, wasAttrs)
	if err != nil {
		return err
	}
	n, err := db.write.exec(ctx, `UPDATE users SET roles = $1, attributes = $2, disabled = $3,
		generation = generation + 1 WHERE id = $4 AND roles = $5 AND attributes = $6`,
		enc[0], enc[1], b2i(u.Disabled), u.ID, enc[2], enc[3])
	if err != nil {
		return fmt.Errorf("store: update user: %w", err)
	}
	if n == 0 {
		if _, err := db.User(ctx, u.ID); err != nil {
			return err
		}
		return coffer.Errorf(coffer.ECONFLICT, "the user changed meanwhile; read it again and retry")
	}
	return nil
}

// DeleteUser removes a user; ENOTFOUND if absent.
func (db *DB) DeleteUser(ctx context.Context, id string) error {
	n, err := db.write.exec(ctx, `DELETE FROM users WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("store: delete user: %w", err)
	}
	if n == 0 {
		return notFound("user")
	}
	return nil
}

// UserByName returns the user whose username is exactly username, else
// the one whose account key is key; ENOTFOUND if there is neither. An
// empty key matches nothing. The exact name comes first so that every
// user made before usernames were normalised stays reachable, even one
// whose key an older look-alike took (it keeps no key); for the others
// the exact name and the key find the same user.
func (db *DB) UserByName(ctx context.Context, key, username string) (coffer.User, error) {
	u, err := scanUser(db.read.queryRow(ctx, `SELECT `+userCols+` FROM users
		WHERE username = $2 OR username_key = $1
		ORDER BY CASE WHEN username = $2 THEN 0 ELSE 1 END LIMIT 1`, key, username))
	if errors.Is(err, ErrNotFound) {
		return u, notFound("user")
	}
	if err != nil {
		return u, fmt.Errorf("store: user: %w", err)
	}
	return u, nil
}

// FillUsernameKeys gives each user without an account key the key keyOf
// returns for its username, oldest user first; a user whose key another
// user holds already (or for which keyOf returns "") keeps none and stays
// reachable by its exact username. It returns how many it filled. Nodes
// may run it at once: a key taken meanwhile is skipped.
func (db *DB) FillUsernameKeys(ctx context.Context, keyOf func(username string) string) (int, error) {
	rs, err := db.read.query(ctx, `SELECT id, username FROM users WHERE username_key IS NULL ORDER BY created_at, id`)
	if err != nil {
		return 0, fmt.Errorf("store: username keys: %w", err)
	}
	type pending struct{ id, key string }
	var todo []pending
	for rs.Next() {
		var id, name string
		if err := rs.Scan(&id, &name); err != nil {
			rs.Close()
			return 0, fmt.Errorf("store: username keys: %w", err)
		}
		if k := keyOf(name); k != "" {
			todo = append(todo, pending{id, k})
		}
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return 0, fmt.Errorf("store: username keys: %w", err)
	}
	filled := 0
	for _, p := range todo {
		n, err := db.write.exec(ctx, `UPDATE users SET username_key = $1 WHERE id = $2 AND username_key IS NULL
			AND NOT EXISTS (SELECT 1 FROM users WHERE username_key = $1)`, p.key, p.id)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return filled, fmt.Errorf("store: username keys: %w", err)
		}
		filled += int(n)
	}
	return filled, nil
}

// SetMFAEnrolmentCode stores the hash of a user's one-time MFA enrolment
// code and its expiry, replacing any earlier one; ENOTFOUND if no user.
func (db *DB) SetMFAEnrolmentCode(ctx context.Context, userID, hash string, expires time.Time) error {
	n, err := db.write.exec(ctx, `UPDATE users SET mfa_enrolment_hash = $1, mfa_enrolment_expires = $2 WHERE id = $3`,
		hash, micros(expires), userID)
	if err != nil {
		return fmt.Errorf("store: MFA enrolment code: %w", err)
	}
	if n == 0 {
		return notFound("user")
	}
	return nil
}

// UseMFAEnrolmentCode consumes a user's enrolment code if hash is its
// hash and it has not expired at now, in one conditional UPDATE, so that
// a code enrols once however many requests race for it.
func (db *DB) UseMFAEnrolmentCode(ctx context.Context, userID, hash string, now time.Time) (bool, error) {
	n, err := db.write.exec(ctx, `UPDATE users SET mfa_enrolment_hash = '', mfa_enrolment_expires = 0
		WHERE id = $1 AND mfa_enrolment_hash = $2 AND mfa_enrolment_hash <> '' AND mfa_enrolment_expires > $3`,
		userID, hash, micros(now))
	if err != nil {
		return false, fmt.Errorf("store: MFA enrolment code: %w", err)
	}
	return n == 1, nil
}

// ResetUserMFA removes a user's TOTP secret, confirmation, recovery codes
// and enrolment code, and raises the user's generation (the tokens of the
// sign-ins made with the old factor end); the used-step record stays, so
// no old code replays.
func (db *DB) ResetUserMFA(ctx context.Context, userID string) error {
	n, err := db.write.exec(ctx, `UPDATE users SET totp_secret = NULL, totp_confirmed = 0, recovery_hashes = '[]',
		mfa_enrolment_hash = '', mfa_enrolment_expires = 0, generation = generation + 1 WHERE id = $1`, userID)
	if err != nil {
		return fmt.Errorf("store: reset MFA: %w", err)
	}
	if n == 0 {
		return notFound("user")
	}
	return nil
}

// UpdateUserMFA stores a user's TOTP state and recovery hashes.
func (db *DB) UpdateUserMFA(ctx context.Context, u coffer.User) error {
	rec, err := encodeJSON(nonNil(u.RecoveryHashes))
	if err != nil {
		return err
	}
	n, err := db.write.exec(ctx, `UPDATE users SET totp_secret = $1, totp_confirmed = $2, recovery_hashes = $3
		WHERE id = $4`, u.TOTPSecret, b2i(u.TOTPConfirmed), rec, u.ID)
	if err != nil {
		return fmt.Errorf("store: update user MFA: %w", err)
	}
	if n == 0 {
		return notFound("user")
	}
	return nil
}

// UseTOTPStep records step as the user's last used TOTP step, only if it is
// newer than the stored one; it reports false when the step was already used
// (a replay), so two nodes can never both accept one code.
func (db *DB) UseTOTPStep(ctx context.Context, userID string, step int64) (bool, error) {
	n, err := db.write.exec(ctx, `UPDATE users SET totp_last_step = $1 WHERE id = $2 AND totp_last_step < $1`,
		step, userID)
	if err != nil {
		return false, fmt.Errorf("store: use TOTP step: %w", err)
	}
	return n == 1, nil
}

// UseRecoveryHash removes one recovery-code hash if still present; false
// if it was already used. The removal is a conditional UPDATE on the list
// as it was read (compare and swap), so of two requests racing with one
// code on any number of nodes exactly one removes it; a request that lost
// to the use of another code reads the list again.
func (db *DB) UseRecoveryHash(ctx context.Context, userID, hash string) (bool, error) {
	for range 16 {
		var rec string
		if err := db.write.queryRow(ctx, `SELECT recovery_hashes FROM users WHERE id = $1`, userID).Scan(&rec); err != nil {
			return false, fmt.Errorf("store: recovery codes: %w", err)
		}
		var hs []string
		if err := json.Unmarshal([]byte(rec), &hs); err != nil {
			return false, fmt.Errorf("store: recovery codes: %w", err)
		}
		i := slices.Index(hs, hash)
		if i < 0 {
			return false, nil
		}
		b, err := encodeJSON(nonNil(slices.Delete(hs, i, i+1)))
		if err != nil {
			return false, err
		}
		n, err := db.write.exec(ctx, `UPDATE users SET recovery_hashes = $1 WHERE id = $2 AND recovery_hashes = $3`, b, userID, rec)
		if err != nil {
			return false, fmt.Errorf("store: recovery codes: %w", err)
		}
		if n == 1 {
			return true, nil
		}
	}
	return false, errors.New("store: recovery codes: too much contention")
}

// SigningKeys lists every stored JWT signing key.
func (db *DB) SigningKeys(ctx context.Context) ([]coffer.SigningKeyRecord, error) {
	rs, err := db.read.query(ctx, `SELECT kid, sealed, active, created_at, not_after FROM signing_keys ORDER BY created_at`)
	if err != nil {
		return nil, fmt.Errorf("store: signing keys: %w", err)
	}
	defer rs.Close()
	var out []coffer.SigningKeyRecord
	for rs.Next() {
		var (
			k            coffer.SigningKeyRecord
			act, cr, nat int64
		)
		if err := rs.Scan(&k.KID, &k.Sealed, &act, &cr, &nat); err != nil {
			return nil, fmt.Errorf("store: signing keys: %w", err)
		}
		k.Active, k.CreatedAt, k.NotAfter = act != 0, fromMicros(cr), fromMicros(nat)
		out = append(out, k)
	}
	return out, rs.Err()
}

// InsertSigningKey stores a new signing key; when it is active every other
// key is made inactive in the same transaction.
func (db *DB) InsertSigningKey(ctx context.Context, k coffer.SigningKeyRecord) error {
	return db.inTx(ctx, func(q querier) error {
		if k.Active {
			if _, err := q.exec(ctx, `UPDATE signing_keys SET active = 0`); err != nil {
				return fmt.Errorf("store: signing keys: %w", err)
			}
		}
		_, err := q.exec(ctx, `INSERT INTO signing_keys (kid, sealed, active, created_at, not_after)
			VALUES ($1, $2, $3, $4, $5)`, k.KID, k.Sealed, b2i(k.Active), micros(k.CreatedAt), micros(k.NotAfter))
		if err != nil {
			return fmt.Errorf("store: insert signing key: %w", err)
		}
		return nil
	})
}

// RevokeToken records a revoked token id until expires: the token's exp
// plus the skew its verifier allows past exp.
func (db *DB) RevokeToken(ctx context.Context, jti string, expires time.Time) error {
	_, err := db.write.exec(ctx, `INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
		jti, micros(expires))
	if err != nil {
		return fmt.Errorf("store: revoke token: %w", err)
	}
	return nil
}

// UseTokenID records a one-time token id (say, an MFA token's) as
// revoked until expires, and reports whether this call recorded it: false
// means the token was used already, on this node or another.
func (db *DB) UseTokenID(ctx context.Context, id string, expires time.Time) (bool, error) {
	n, err := db.write.exec(ctx, `INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
		id, micros(expires))
	if err != nil {
		return false, fmt.Errorf("store: use token: %w", err)
	}
	return n == 1, nil
}

// IsRevoked reports whether a token id was revoked.
func (db *DB) IsRevoked(ctx context.Context, jti string) (bool, error) {
	var n int64
	err := db.read.queryRow(ctx, `SELECT COUNT(*) FROM revoked_tokens WHERE jti = $1`, jti).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("store: is revoked: %w", err)
	}
	return n > 0, nil
}

// RevokedSince lists token ids revoked that have not yet expired at now,
// for nodes that keep a local revocation set.
func (db *DB) RevokedSince(ctx context.Context, now time.Time) ([]string, error) {
	rs, err := db.read.query(ctx, `SELECT jti FROM revoked_tokens WHERE expires_at > $1`, micros(now))
	if err != nil {
		return nil, fmt.Errorf("store: revoked: %w", err)
	}
	defer rs.Close()
	var out []string
	for rs.Next() {
		var j string
		if err := rs.Scan(&j); err != nil {
			return nil, fmt.Errorf("store: revoked: %w", err)
		}
		out = append(out, j)
	}
	return out, rs.Err()
}

// PurgeRevoked forgets revocations of tokens that have expired anyway:
// RevokeToken is given the token's exp plus the verification skew, so a
// record goes only once no node would accept the token.
func (db *DB) PurgeRevoked(ctx context.Context, now time.Time) (int64, error) {
	n, err := db.write.exec(ctx, `DELETE FROM revoked_tokens WHERE expires_at <= $1`, micros(now))
	if err != nil {
		return 0, fmt.Errorf("store: purge revoked: %w", err)
	}
	return n, nil
}

// AuthFailure records one failed authentication for key (an account or a
// source address) and returns the failure count; lockUntil is computed by
// the caller from the count via lock(count) and stored. Concurrent
// failures of one key are all counted, on every node.
func (db *DB) AuthFailure(ctx context.Context, key string, now time.Time, window time.Duration, lock func(failures int) time.Duration) (failures int, lockedUntil time.Time, err error) {
	err = db.inTx(ctx, func(q querier) error {
		n, _, err := db.lockAuthRow(ctx, q, key, now, window)
		if err != nil {
			return err
		}
		failures, lockedUntil = n+1, lockEnd(now, lock(n+1))
		return putAuthRow(ctx, q, key, failures, lockedUntil, now)
	})
	return failures, lockedUntil, err
}

// ReserveAuthAttempt takes one attempt of key's budget before the
// credential is checked, so that concurrent attempts on any number of
// nodes cannot all pass a lock check made before any of them failed.
// While key is locked it counts nothing and returns the lock's end
// (after now); otherwise it counts the attempt as a failure, stores the
// lock lock(count) calls for (which applies to the attempts after this
// one), and returns the failures counted before it with a zero time. A
// success undoes the count with ClearAuthFailures.
func (db *DB) ReserveAuthAttempt(ctx context.Context, key string, now time.Time, window time.Duration, lock func(failures int) time.Duration) (prior int, lockedUntil time.Time, err error) {
	err = db.inTx(ctx, func(q querier) error {
		n, until, err := db.lockAuthRow(ctx, q, key, now, window)
		if err != nil {
			return err
		}
		if until.After(now) {
			prior, lockedUntil = n, until
			return nil
		}
		prior = n
		return putAuthRow(ctx, q, key, n+1, lockEnd(now, lock(n+1)), now)
	})
	return prior, lockedUntil, err
}

// AuthFailures returns the failures counted for key within window (0 for
// none, or when they are older than window and no lock runs).
func (db *DB) AuthFailures(ctx context.Context, key string, now time.Time, window time.Duration) (int, error) {
	var n, until, updated int64
	err := db.read.queryRow(ctx, `SELECT failures, locked_until, updated_at FROM auth_failures WHERE key = $1`, key).Scan(&n, &until, &updated)
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store: auth failures: %w", err)
	}
	return int(forgive(n, until, updated, now, window)), nil
}

// forgive returns n, or 0 when the failures are older than window and no
// lockout is still running.
func forgive(n, until, updated int64, now time.Time, window time.Duration) int64 {
	if window > 0 && now.Sub(fromMicros(updated)) > window && fromMicros(until).Before(now) {
		return 0
	}
	return n
}

// lockAuthRow returns key's counted failures (0 if forgiven) and lock end,
// holding the row until the transaction ends. The row is made first so
// that there is one to lock: on PostgreSQL, SELECT … FOR UPDATE makes
// concurrent transactions on one key wait for each other instead of all
// reading the same count; SQLite runs one write transaction at a time.
func (db *DB) lockAuthRow(ctx context.Context, q querier, key string, now time.Time, window time.Duration) (int, time.Time, error) {
	sel := `SELECT failures, locked_until, updated_at FROM auth_failures WHERE key = $1`
	if db.dialect == Postgres {
		sel = `SELECT failures, locked_until, updated_at FROM auth_failures WHERE key = $1 FOR UPDATE`
	}
	// A success on another connection may delete the row between the
	// INSERT and the SELECT: then make it again.
	for range 4 {
		if _, err := q.exec(ctx, `INSERT INTO auth_failures (key, failures, locked_until, updated_at) VALUES ($1, 0, 0, $2)
			ON CONFLICT (key) DO NOTHING`, key, micros(now)); err != nil {
			return 0, time.Time{}, fmt.Errorf("store: auth failures: %w", err)
		}
		var n, until, updated int64
		err := q.queryRow(ctx, sel, key).Scan(&n, &until, &updated)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, time.Time{}, fmt.Errorf("store: auth failures: %w", err)
		}
		return int(forgive(n, until, updated, now, window)), fromMicros(until), nil
	}
	return 0, time.Time{}, errors.New("store: auth failures: the row keeps disappearing")
}

// lockEnd is now+d, or the zero time (stored as 0) for no lock: never
// now itself, which a concurrent attempt that read the clock a moment
// earlier would take for a running lock.
func lockEnd(now time.Time, d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return now.Add(d)
}

func putAuthRow(ctx context.Context, q querier, key string, failures int, lockedUntil, now time.Time) error {
	until := int64(0)
	if !lockedUntil.IsZero() {
		until = micros(lockedUntil)
	}
	_, err := q.exec(ctx, `UPDATE auth_failures SET failures = $1, locked_until = $2, updated_at = $3 WHERE key = $4`,
		failures, until, micros(now), key)
	if err != nil {
		return fmt.Errorf("store: auth failures: %w", err)
	}
	return nil
}

// AuthLockedUntil returns until when key is locked out (zero if never).
func (db *DB) AuthLockedUntil(ctx context.Context, key string) (time.Time, error) {
	var until int64
	err := db.read.queryRow(ctx, `SELECT locked_until FROM auth_failures WHERE key = $1`, key).Scan(&until)
	if errors.Is(err, ErrNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("store: auth lockout: %w", err)
	}
	return fromMicros(until), nil
}

// ClearAuthFailures forgets the failures of key after a success.
func (db *DB) ClearAuthFailures(ctx context.Context, key string) error {
	if _, err := db.write.exec(ctx, `DELETE FROM auth_failures WHERE key = $1`, key); err != nil {
		return fmt.Errorf("store: clear auth failures: %w", err)
	}
	return nil
}

// SavePolicy stores the policy document and returns its new version. It
// records the document as written for this Coffer's policy language (the
// latest schema version it knows; see StoredPolicy). The version is raised
// in the one statement that writes the document, so saves racing on
// PostgreSQL (read committed) each get their own version and the highest
// holds the document saved last.
func (db *DB) SavePolicy(ctx context.Context, format string, source []byte, now time.Time) (int64, error) {
	return db.savePolicy(ctx, -1, format, source, now)
}

// RewritePolicy replaces the stored document by a rewritten one (see
// policy.ApplyRewrites), as SavePolicy does, if and only if the stored one
// is still at version (otherwise ECONFLICT: it changed meanwhile, and the
// rewrite must start again from it).
func (db *DB) RewritePolicy(ctx context.Context, version int64, format string, source []byte, now time.Time) (int64, error) {
	return db.savePolicy(ctx, version, format, source, now)
}

// savePolicy is SavePolicy, and RewritePolicy when from is not -1: the
// update then applies only to version from, in the same one statement.
func (db *DB) savePolicy(ctx context.Context, from int64, format string, source []byte, now time.Time) (int64, error) {
	latest, err := latestMigration(db.dialect)
	if err != nil {
		return 0, err
	}
	latest = max(latest, PolicyLanguageVersion)
	var v int64
	if from >= 0 {
		err = db.write.queryRow(ctx, `UPDATE policy SET version = version + 1, format = $1, source = $2, updated_at = $3,
			schema_version = $4 WHERE id = 1 AND version = $5 RETURNING version`,
			format, source, micros(now), latest, from).Scan(&v)
		if errors.Is(err, ErrNotFound) {
			return 0, coffer.Errorf(coffer.ECONFLICT, "the policy changed meanwhile")
		}
	} else {
		err = db.write.queryRow(ctx, `INSERT INTO policy (id, version, format, source, updated_at, schema_version)
			VALUES (1, 1, $1, $2, $3, $4)
			ON CONFLICT (id) DO UPDATE SET version = policy.version + 1, format = $1, source = $2, updated_at = $3, schema_version = $4
			RETURNING version`, format, source, micros(now), latest).Scan(&v)
	}
	if err != nil {
		return 0, fmt.Errorf("store: save policy: %w", err)
	}
	return v, nil
}

// PolicyLanguageVersion is the version of the policy language this
// Coffer writes (policy.LanguageVersion): a saved document records
// max(PolicyLanguageVersion, the newest migration), so that a change to
// the language is told apart from the documents before it even when its
// migration number is lower than one applied already.
const PolicyLanguageVersion = 100

// StoredPolicy is Policy with the schema version of the Coffer that saved
// the document: the meaning of the policy language it was written for. 0
// means a Coffer from before that was recorded (schema 10).
func (db *DB) StoredPolicy(ctx context.Context) (version int64, format string, source []byte, schema int64, err error) {
	err = db.read.queryRow(ctx, `SELECT version, format, source, schema_version FROM policy WHERE id = 1`).
		Scan(&version, &format, &source, &schema)
	if errors.Is(err, ErrNotFound) {
		return 0, "", nil, 0, notFound("policy")
	}
	if err != nil {
		return 0, "", nil, 0, fmt.Errorf("store: policy: %w", err)
	}
	return version, format, source, schema, nil
}

// Policy returns the stored policy document; ENOTFOUND if none was saved.
func (db *DB) Policy(ctx context.Context) (version int64, format string, source []byte, err error) {
	err = db.read.queryRow(ctx, `SELECT version, format, source FROM policy WHERE id = 1`).Scan(&version, &format, &source)
	if errors.Is(err, ErrNotFound) {
		return 0, "", nil, notFound("policy")
	}
	if err != nil {
		return 0, "", nil, fmt.Errorf("store: policy: %w", err)
	}
	return version, format, source, nil
}

// PolicyVersion returns the stored policy's version (0 if none), cheaply,
// so nodes can poll for a change.
func (db *DB) PolicyVersion(ctx context.Context) (int64, error) {
	var v int64
	err := db.read.queryRow(ctx, `SELECT version FROM policy WHERE id = 1`).Scan(&v)
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store: policy version: %w", err)
	}
	return v, nil
}

// Meta returns a metadata value; ENOTFOUND if unset.
func (db *DB) Meta(ctx context.Context, key string) (string, error) {
	var v string
	err := db.read.queryRow(ctx, `SELECT value FROM meta WHERE key = $1`, key).Scan(&v)
	if errors.Is(err, ErrNotFound) {
		return "", notFound("meta")
	}
	if err != nil {
		return "", fmt.Errorf("store: meta: %w", err)
	}
	return v, nil
}

// AddMeta sets a metadata value only if key has none, and returns the
// value key holds afterwards: value when it was added, the existing one
// when another node (or an earlier call) set it first.
func (db *DB) AddMeta(ctx context.Context, key, value string) (string, error) {
	_, err := db.write.exec(ctx, `INSERT INTO meta (key, value) VALUES ($1, $2)
		ON CONFLICT (key) DO NOTHING`, key, value)
	if err != nil {
		return "", fmt.Errorf("store: add meta: %w", err)
	}
	var v string
	if err := db.write.queryRow(ctx, `SELECT value FROM meta WHERE key = $1`, key).Scan(&v); err != nil {
		return "", fmt.Errorf("store: add meta: read back: %w", err)
	}
	return v, nil
}

// DeleteMeta removes a metadata value; one that is not set is no error.
func (db *DB) DeleteMeta(ctx context.Context, key string) error {
	if _, err := db.write.exec(ctx, `DELETE FROM meta WHERE key = $1`, key); err != nil {
		return fmt.Errorf("store: delete meta: %w", err)
	}
	return nil
}

// SetMeta sets a metadata value.
func (db *DB) SetMeta(ctx context.Context, key, value string) error {
	_, err := db.write.exec(ctx, `INSERT INTO meta (key, value) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET value = $2`, key, value)
	if err != nil {
		return fmt.Errorf("store: set meta: %w", err)
	}
	return nil
}
