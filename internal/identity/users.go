package identity

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/google/uuid"

	"github.com/cofferhq/coffer/internal/auth"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/secret"
)

// UserStore is what users need from the store.
type UserStore interface {
	CreateUser(ctx context.Context, u coffer.User) error
	User(ctx context.Context, id string) (coffer.User, error)
	// UserByName finds a user by account key, or a user made before keys
	// existed by exact username.
	UserByName(ctx context.Context, key, username string) (coffer.User, error)
	FillUsernameKeys(ctx context.Context, keyOf func(username string) string) (int, error)
	UpdateUserMFA(ctx context.Context, u coffer.User) error
	UseTOTPStep(ctx context.Context, userID string, step int64) (bool, error)
	UseRecoveryHash(ctx context.Context, userID, hash string) (bool, error)
	SetMFAEnrolmentCode(ctx context.Context, userID, hash string, expires time.Time) error
	UseMFAEnrolmentCode(ctx context.Context, userID, hash string, now time.Time) (bool, error)
	ResetUserMFA(ctx context.Context, userID string) error
	Users(ctx context.Context) ([]coffer.User, error)
	// UpdateUser replaces roles, attributes and the disabled flag while
	// roles and attributes are still wasRoles and wasAttrs (ECONFLICT
	// otherwise), and raises its generation (its tokens end).
	UpdateUser(ctx context.Context, u coffer.User, wasRoles []string, wasAttrs map[string]string) error
	DeleteUser(ctx context.Context, id string) error
}

const (
	mfaKeyID      = "auth/mfa-token"
	totpKeyID     = "auth/totp"
	recoveryKeyID = "auth/recovery"
	// MFATokenTTL is how long the second login step may take.
	MFATokenTTL = 5 * time.Minute
)

// NewUser is a created user.
type NewUser struct {
	ID         string            `json:"id"`
	Username   string            `json:"username"`
	Roles      []string          `json:"roles"`
	Attributes map[string]string `json:"attributes,omitempty"`
	CreatedAt  time.Time         `json:"created_at"`
}

func (s *Service) users() (UserStore, error) { return s.c.Store, nil }

// CreateUser makes a user with an argon2id password hash, after checking the
// password policy. The username is normalised (auth.Username): one that
// differs from an existing one only by case, width, surrounding spaces or
// look-alike letters is the same account (409), and one that mixes
// scripts is refused (422).
func (s *Service) CreateUser(ctx context.Context, username string, pw secret.Password, roles []string, attrs map[string]string) (NewUser, error) {
	us, err := s.users()
	if err != nil {
		return NewUser{}, err
	}
	display, key, err := auth.Username(username)
	if err != nil {
		return NewUser{}, &coffer.Error{Code: coffer.EINVALID, Message: err.Error(), Cause: err}
	}
	if err := auth.CheckPasswordPolicy(pw, display); err != nil {
		return NewUser{}, err
	}
	var hash string
	if err := s.hashing(ctx, "user:"+key, func() { hash, err = auth.HashPassword(s.c.Rand, pw) }); err != nil {
		return NewUser{}, err
	}
	if err != nil {
		return NewUser{}, fmt.Errorf("identity: hash password: %w", err)
	}
	id, err := uuid.NewV7FromReader(s.c.Rand)
	if err != nil {
		return NewUser{}, fmt.Errorf("identity: user id: %w", err)
	}
	if roles == nil {
		roles = []string{}
	}
	now := s.c.Now().UTC()
	u := coffer.User{ID: "u_" + id.String(), Username: display, UsernameKey: key, PasswordHash: hash, Roles: roles,
		Attributes: attrs, CreatedAt: now}
	if err := us.CreateUser(ctx, u); err != nil {
		return NewUser{}, err
	}
	return NewUser{ID: u.ID, Username: display, Roles: roles, Attributes: attrs, CreatedAt: now}, nil
}

// LoginResult is either a token or a request for the second factor.
type LoginResult struct {
	Token       *Issued
	MFARequired bool
	MFAToken    string
	Principal   *coffer.Principal
}

type mfaClaims struct {
	UserID  string `json:"u"`
	Expires int64  `json:"e"`
	// Nonce names this token, so that it completes one login only.
	Nonce string `json:"n"`
}

// Login checks a username and password under the lockout rules (see
// Lockout): the account is the username's key, so case and look-alike
// variants share one budget. A user with confirmed TOTP gets a
// single-use mfa_token for the second step instead of an access token.
func (s *Service) Login(ctx context.Context, username string, pw secret.Password, ip string) (LoginResult, error) {
	us, err := s.users()
	if err != nil {
		return LoginResult{}, err
	}
	key := auth.UsernameKey(username)
	acct := "user:" + key
	if key == "" {
		acct = "user:!" + username // no valid username: only a made-up or pre-normalisation one
	}
	a, err := s.begin(ctx, "password", username, acct, ip)
	if err != nil {
		return LoginResult{}, err
	}
	u, err := us.UserByName(ctx, key, username)
	if err != nil && coffer.ErrorCode(err) != coffer.ENOTFOUND {
		return LoginResult{}, err
	}
	ok := false
	known := err == nil
	if herr := s.hashing(ctx, acct, func() {
		if !known {
			auth.DummyVerify() // the same work for an unknown user
			return
		}
		var verr error
		if ok, verr = auth.VerifyPassword(u.PasswordHash, pw); verr != nil {
			ok = false
		}
	}); herr != nil {
		return LoginResult{}, herr
	}
	if !ok || u.Disabled {
		return LoginResult{}, a.failed(ctx, coffer.Errorf(coffer.EUNAUTHENTICATED, "invalid username or password"))
	}
	a.succeeded(ctx)
	p := coffer.Principal{ID: u.ID, Kind: coffer.KindUser, Roles: u.Roles, Attributes: u.Attributes,
		Generation: u.Generation}
	if u.TOTPConfirmed {
		nonce := make([]byte, 16)
		if _, err := io.ReadFull(s.c.Rand, nonce); err != nil {
			return LoginResult{}, fmt.Errorf("identity: mfa token: %w", err)
		}
		b, _ := json.Marshal(mfaClaims{UserID: u.ID, Expires: s.c.Now().Add(MFATokenTTL).Unix(),
			Nonce: base64.RawURLEncoding.EncodeToString(nonce)})
		sealed, err := s.c.Sealer.Seal(ctx, mfaKeyID, b, []byte("mfa-token"))
		if err != nil {
			return LoginResult{}, fmt.Errorf("identity: mfa token: %w", err)
		}
		return LoginResult{MFARequired: true, MFAToken: base64.RawURLEncoding.EncodeToString(sealed), Principal: &p}, nil
	}
	iss, err := s.issue(p, []string{"pwd"})
	if err != nil {
		return LoginResult{}, err
	}
	return LoginResult{Token: &iss, Principal: &p}, nil
}

// CompleteMFA finishes a login with a TOTP code or a recovery code. A code
// is accepted once: its time step is recorded in the store (a recovery
// code is removed by a conditional update), so neither this node nor
// another accepts it again; and an mfa_token completes one login only.
func (s *Service) CompleteMFA(ctx context.Context, mfaToken string, totp secret.Password, ip string) (Issued, *coffer.Principal, error) {
	code := totp.Reveal()
	us, err := s.users()
	if err != nil {
		return Issued{}, nil, err
	}
	bad := coffer.Errorf(coffer.EUNAUTHENTICATED, "invalid or expired MFA token or code")
	raw, err := base64.RawURLEncoding.DecodeString(mfaToken)
	if err != nil || len(raw) > 1024 {
		return Issued{}, nil, bad
	}
	pt, err := s.c.Sealer.Open(ctx, mfaKeyID, raw, []byte("mfa-token"))
	if err != nil {
		return Issued{}, nil, bad
	}
	var mc mfaClaims
	if json.Unmarshal(pt, &mc) != nil || s.c.Now().Unix() > mc.Expires || mc.Nonce == "" {
		return Issued{}, nil, bad
	}
	tokenID := "mfa-token:" + mc.Nonce
	s.mu.RLock()
	_, used := s.revoked[tokenID]
	s.mu.RUnlock()
	if used {
		return Issued{}, nil, bad
	}
	a, err := s.begin(ctx, "totp", mc.UserID, "mfa:"+mc.UserID, ip)
	if err != nil {
		return Issued{}, nil, err
	}
	u, err := us.User(ctx, mc.UserID)
	if err != nil {
		return Issued{}, nil, bad
	}
	if !u.TOTPConfirmed || u.Disabled {
		return Issued{}, nil, bad
	}
	// A used token is refused before its code is looked at, so a refused
	// replay spends no code.
	if used, err := s.c.Store.IsRevoked(ctx, tokenID); err != nil || used {
		if err != nil {
			return Issued{}, nil, err
		}
		return Issued{}, nil, bad
	}
	accepted := false
	if len(code) == 6 {
		secret, err := s.c.Sealer.Open(ctx, totpKeyID, u.TOTPSecret, []byte(u.ID))
		if err != nil {
			return Issued{}, nil, fmt.Errorf("identity: open TOTP secret: %w", err)
		}
		step, verr := auth.ValidateTOTP(string(secret), totp, s.c.Now(), u.TOTPLastStep)
		if verr == nil {
			// Atomic in the store: two nodes cannot both accept one step.
			if accepted, err = us.UseTOTPStep(ctx, u.ID, step); err != nil {
				return Issued{}, nil, err
			}
		}
	} else {
		i, ok, err := auth.MatchRecoveryCode(u.RecoveryHashes, totp, s.recoveryMAC(ctx))
		if err != nil {
			return Issued{}, nil, err
		}
		if ok {
			if accepted, err = us.UseRecoveryHash(ctx, u.ID, u.RecoveryHashes[i]); err != nil {
				return Issued{}, nil, err
			}
		}
	}
	if !accepted {
		return Issued{}, nil, a.failed(ctx, bad)
	}
	// The token completes this login and no other, on any node.
	if first, err := s.c.Store.UseTokenID(ctx, tokenID, time.Unix(mc.Expires, 0).Add(time.Minute)); err != nil || !first {
		if err != nil {
			return Issued{}, nil, err
		}
		return Issued{}, nil, bad
	}
	s.mu.Lock()
	s.revoked[tokenID] = struct{}{}
	s.mu.Unlock()
	a.succeeded(ctx)
	p := coffer.Principal{ID: u.ID, Kind: coffer.KindUser, Roles: u.Roles, Attributes: u.Attributes, MFA: true,
		Generation: u.Generation}
	iss, err := s.issue(p, []string{"pwd", "otp"})
	if err != nil {
		return Issued{}, nil, err
	}
	return iss, &p, nil
}

// recoveryMAC MACs normalised recovery codes under the recovery key.
func (s *Service) recoveryMAC(ctx context.Context) auth.RecoveryMAC {
	return func(version uint32, norm []byte) ([]byte, error) {
		return s.c.MACs.MACVersion(ctx, recoveryKeyID, version, norm)
	}
}

// TOTPEnrolment is the answer to starting TOTP enrolment.
type TOTPEnrolment struct {
	Secret        string   `json:"secret"`
	OTPAuthURL    string   `json:"otpauth_url"`
	RecoveryCodes []string `json:"recovery_codes"`
}

// ErrEnrolmentCodeRequired refuses TOTP enrolment without a valid
// one-time enrolment code to a user whose roles require MFA.
var ErrEnrolmentCodeRequired = coffer.Errorf(coffer.EFORBIDDEN,
	"your roles require MFA: enrolment needs a one-time enrolment_code from an admin (POST /v1/users/{id}/mfa/enrolment-code)")

// needsMFA reports whether any of roles requires MFA under the policy.
func (s *Service) needsMFA(roles []string) bool {
	return s.c.RolesNeedMFA != nil && s.c.RolesNeedMFA(roles)
}

// StartTOTP begins (or restarts, while unconfirmed) TOTP enrolment for a
// signed-in user. Once confirmed, enrolment cannot be restarted this way
// (an admin resets it: ResetMFA). A user whose roles require MFA must
// bring a one-time enrolment code issued by an admin, consumed here:
// otherwise whoever had only the password could enrol their own
// authenticator and gain the roles that MFA guards.
func (s *Service) StartTOTP(ctx context.Context, p *coffer.Principal, issuer, enrolmentCode string) (TOTPEnrolment, error) {
	us, err := s.users()
	if err != nil {
		return TOTPEnrolment{}, err
	}
	if p.Kind != coffer.KindUser {
		return TOTPEnrolment{}, coffer.Errorf(coffer.EFORBIDDEN, "only users enrol in TOTP")
	}
	u, err := us.User(ctx, p.ID)
	if err != nil {
		return TOTPEnrolment{}, err
	}
	if u.TOTPConfirmed {
		return TOTPEnrolment{}, coffer.Errorf(coffer.ECONFLICT, "TOTP is already enrolled; an admin can reset it")
	}
	if s.needsMFA(u.Roles) || enrolmentCode != "" {
		if enrolmentCode == "" || len(enrolmentCode) > 128 {
			return TOTPEnrolment{}, ErrEnrolmentCodeRequired
		}
		ok, err := us.UseMFAEnrolmentCode(ctx, u.ID, auth.EnrolmentCodeHash(enrolmentCode), s.c.Now())
		if err != nil {
			return TOTPEnrolment{}, err
		}
		if !ok {
			return TOTPEnrolment{}, coffer.Errorf(coffer.EFORBIDDEN, "the enrolment code is wrong, used or expired")
		}
	}
	secret, url, err := auth.NewTOTP(s.c.Rand, issuer, u.Username)
	if err != nil {
		return TOTPEnrolment{}, fmt.Errorf("identity: TOTP: %w", err)
	}
	codes, err := auth.NewRecoveryCodes(s.c.Rand, 10)
	if err != nil {
		return TOTPEnrolment{}, fmt.Errorf("identity: recovery codes: %w", err)
	}
	hashes := make([]string, len(codes))
	for i, c := range codes {
		norm, _ := auth.NormalizeRecoveryCode(c)
		v, mac, err := s.c.MACs.MAC(ctx, recoveryKeyID, []byte(norm))
		if err != nil {
			return TOTPEnrolment{}, fmt.Errorf("identity: recovery codes: %w", err)
		}
		hashes[i] = auth.RecoveryHash(v, mac)
	}
	if u.TOTPSecret, err = s.c.Sealer.Seal(ctx, totpKeyID, []byte(secret), []byte(u.ID)); err != nil {
		return TOTPEnrolment{}, fmt.Errorf("identity: seal TOTP secret: %w", err)
	}
	u.RecoveryHashes = hashes
	if err := us.UpdateUserMFA(ctx, u); err != nil {
		return TOTPEnrolment{}, err
	}
	return TOTPEnrolment{Secret: secret, OTPAuthURL: url, RecoveryCodes: codes}, nil
}

// ConfirmTOTP proves the user holds the secret; from then on login asks for
// a code.
func (s *Service) ConfirmTOTP(ctx context.Context, p *coffer.Principal, code string) error {
	us, err := s.users()
	if err != nil {
		return err
	}
	if p.Kind != coffer.KindUser {
		return coffer.Errorf(coffer.EFORBIDDEN, "only users enrol in TOTP")
	}
	u, err := us.User(ctx, p.ID)
	if err != nil {
		return err
	}
	if u.TOTPConfirmed {
		return coffer.Errorf(coffer.ECONFLICT, "TOTP is already enrolled")
	}
	if len(u.TOTPSecret) == 0 {
		return coffer.Errorf(coffer.EINVALID, "start enrolment first: POST /v1/auth/mfa/totp")
	}
	seed, err := s.c.Sealer.Open(ctx, totpKeyID, u.TOTPSecret, []byte(u.ID))
	if err != nil {
		return fmt.Errorf("identity: open TOTP secret: %w", err)
	}
	step, err := auth.ValidateTOTP(string(seed), secret.NewPassword(code), s.c.Now(), u.TOTPLastStep)
	if err != nil {
		return coffer.Errorf(coffer.EINVALID, "the code does not match")
	}
	if ok, err := us.UseTOTPStep(ctx, u.ID, step); err != nil || !ok {
		return coffer.Errorf(coffer.EINVALID, "the code does not match")
	}
	u.TOTPConfirmed = true
	return us.UpdateUserMFA(ctx, u)
}

// UserInfo is a user as admins see it (never a secret).
type UserInfo struct {
	ID         string            `json:"id"`
	Username   string            `json:"username"`
	Roles      []string          `json:"roles"`
	Attributes map[string]string `json:"attributes,omitempty"`
	MFA        bool              `json:"mfa_enrolled"`
	Disabled   bool              `json:"disabled"`
	CreatedAt  time.Time         `json:"created_at"`
}

// User returns a user by id (ENOTFOUND if none), for deciding who may act
// on it.
func (s *Service) User(ctx context.Context, id string) (UserInfo, error) {
	u, err := s.c.Store.User(ctx, id)
	if err != nil {
		return UserInfo{}, err
	}
	return UserInfo{ID: u.ID, Username: u.Username, Roles: u.Roles, Attributes: u.Attributes, MFA: u.TOTPConfirmed,
		Disabled: u.Disabled, CreatedAt: u.CreatedAt}, nil
}

// UpdateUser changes a user from was (as read when the change was
// decided) to next: its roles, attributes and whether it is disabled (a
// disabled user cannot sign in). Refused (409) when the user's roles or
// attributes changed since was was read (see UpdateClient). The caller
// decides who may (see httpapi).
func (s *Service) UpdateUser(ctx context.Context, was, next UserInfo) (UserInfo, error) {
	if next.Roles == nil {
		next.Roles = []string{}
	}
	u := coffer.User{ID: was.ID, Roles: next.Roles, Attributes: next.Attributes, Disabled: next.Disabled}
	if err := s.c.Store.UpdateUser(ctx, u, was.Roles, was.Attributes); err != nil {
		return UserInfo{}, err
	}
	return s.User(ctx, was.ID)
}

// DeleteUser removes a user; its password stops working at once. The
// caller decides who may.
func (s *Service) DeleteUser(ctx context.Context, id string) error {
	return s.c.Store.DeleteUser(ctx, id)
}

// Principals lists every client and user that is not disabled as the
// principal it signs in as (see PrincipalsOf), for asking who could still
// do something under a policy.
func (s *Service) Principals(ctx context.Context) ([]coffer.Principal, error) {
	cs, err := s.c.Store.Clients(ctx)
	if err != nil {
		return nil, err
	}
	us, err := s.c.Store.Users(ctx)
	if err != nil {
		return nil, err
	}
	return PrincipalsOf(cs, us), nil
}

// PrincipalsOf returns the clients and users that are not disabled as
// the principals they sign in as, a user with confirmed TOTP as after an
// MFA sign-in.
func PrincipalsOf(cs []coffer.Client, us []coffer.User) []coffer.Principal {
	out := make([]coffer.Principal, 0, len(cs)+len(us))
	for _, c := range cs {
		if !c.Disabled {
			out = append(out, coffer.Principal{ID: c.ID, Kind: coffer.KindClient, Roles: c.Roles, Attributes: c.Attributes})
		}
	}
	for _, u := range us {
		if !u.Disabled {
			out = append(out, coffer.Principal{ID: u.ID, Kind: coffer.KindUser, Roles: u.Roles, Attributes: u.Attributes,
				MFA: u.TOTPConfirmed})
		}
	}
	return out
}

// EnrolmentCode is a one-time MFA enrolment code as issued (shown once).
type EnrolmentCode struct {
	UserID    string    `json:"user_id"`
	Code      string    `json:"enrolment_code"`
	ExpiresAt time.Time `json:"expires_at"`
}

// IssueEnrolmentCode makes a one-time MFA enrolment code for a user who
// has not enrolled (409 otherwise), replacing any earlier code; only its
// hash is stored. The caller decides who may (see httpapi).
func (s *Service) IssueEnrolmentCode(ctx context.Context, userID string) (EnrolmentCode, error) {
	u, err := s.c.Store.User(ctx, userID)
	if err != nil {
		return EnrolmentCode{}, err
	}
	if u.TOTPConfirmed {
		return EnrolmentCode{}, coffer.Errorf(coffer.ECONFLICT, "the user has MFA already; reset it first (DELETE /v1/users/{id}/mfa)")
	}
	code, hash, err := auth.NewEnrolmentCode(s.c.Rand)
	if err != nil {
		return EnrolmentCode{}, err
	}
	exp := s.c.Now().Add(s.c.EnrolmentCodeTTL).UTC().Truncate(time.Second)
	if err := s.c.Store.SetMFAEnrolmentCode(ctx, u.ID, hash, exp); err != nil {
		return EnrolmentCode{}, err
	}
	return EnrolmentCode{UserID: u.ID, Code: code, ExpiresAt: exp}, nil
}

// ResetMFA removes a user's TOTP enrolment and recovery codes, so that
// the user enrols again (with an enrolment code where the roles need
// MFA). Its MFA lockout is forgotten too. The caller decides who may.
func (s *Service) ResetMFA(ctx context.Context, userID string) error {
	if err := s.c.Store.ResetUserMFA(ctx, userID); err != nil {
		return err
	}
	if err := s.c.Store.ClearAuthFailures(ctx, "mfa:"+userID); err != nil {
		return err
	}
	return nil
}

// RequireFreshAuth refuses (401) a principal whose token is older than
// the re-authentication age: operations that change how others sign in
// need a sign-in of the last few minutes, not a token that may have been
// lying around.
func (s *Service) RequireFreshAuth(p *coffer.Principal) error {
	if p == nil || p.AuthTime.IsZero() || s.c.Now().Sub(p.AuthTime) > s.c.ReauthMaxAge {
		return &coffer.Error{Code: coffer.EUNAUTHENTICATED, Message: fmt.Sprintf(
			"this operation needs a fresh sign-in: get a new access token (at most %s old) and retry", s.c.ReauthMaxAge)}
	}
	return nil
}

// ListUsers lists every user as admins see them (never a password hash,
// TOTP secret or recovery code), oldest first. The caller decides who may
// (identityadmin).
func (s *Service) ListUsers(ctx context.Context) ([]UserInfo, error) {
	us, err := s.c.Store.Users(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]UserInfo, len(us))
	for i, u := range us {
		out[i] = UserInfo{ID: u.ID, Username: u.Username, Roles: u.Roles, Attributes: u.Attributes, MFA: u.TOTPConfirmed,
			Disabled: u.Disabled, CreatedAt: u.CreatedAt}
		if out[i].Roles == nil {
			out[i].Roles = []string{}
		}
	}
	return out, nil
}
