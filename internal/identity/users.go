package identity

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/cofferhq/coffer/internal/auth"
	"github.com/cofferhq/coffer/internal/coffer"
)

// UserStore is what users need from the store.
type UserStore interface {
	CreateUser(ctx context.Context, u coffer.User) error
	User(ctx context.Context, id string) (coffer.User, error)
	UserByName(ctx context.Context, username string) (coffer.User, error)
	UpdateUserMFA(ctx context.Context, u coffer.User) error
	UseTOTPStep(ctx context.Context, userID string, step int64) (bool, error)
	UseRecoveryHash(ctx context.Context, userID, hash string) (bool, error)
}

const (
	mfaKeyID  = "auth/mfa-token"
	totpKeyID = "auth/totp"
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
// password policy.
func (s *Service) CreateUser(ctx context.Context, username, password string, roles []string, attrs map[string]string) (NewUser, error) {
	us, err := s.users()
	if err != nil {
		return NewUser{}, err
	}
	if len(username) < 1 || len(username) > 128 {
		return NewUser{}, coffer.Errorf(coffer.EINVALID, "username must be 1 to 128 bytes")
	}
	if err := auth.CheckPasswordPolicy(password, username); err != nil {
		return NewUser{}, err
	}
	hash, err := auth.HashPassword(s.c.Rand, password)
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
	u := coffer.User{ID: "u_" + id.String(), Username: username, PasswordHash: hash, Roles: roles, Attributes: attrs, CreatedAt: now}
	if err := us.CreateUser(ctx, u); err != nil {
		return NewUser{}, err
	}
	return NewUser{ID: u.ID, Username: username, Roles: roles, Attributes: attrs, CreatedAt: now}, nil
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
}

// Login checks a username and password. A user with confirmed TOTP gets an
// mfa_token for the second step instead of an access token.
func (s *Service) Login(ctx context.Context, username, password, ip string) (LoginResult, error) {
	us, err := s.users()
	if err != nil {
		return LoginResult{}, err
	}
	keys := []string{"user:" + username, "ip:" + ip}
	if err := s.checkLock(ctx, keys...); err != nil {
		return LoginResult{}, err
	}
	u, err := us.UserByName(ctx, username)
	if err != nil && coffer.ErrorCode(err) != coffer.ENOTFOUND {
		return LoginResult{}, err
	}
	ok := false
	if err != nil {
		auth.DummyVerify() // the same work for an unknown user
	} else if ok, err = auth.VerifyPassword(u.PasswordHash, password); err != nil {
		ok = false
	}
	if !ok || u.Disabled {
		s.fail(ctx, "password", username, ip, keys...)
		return LoginResult{}, coffer.Errorf(coffer.EUNAUTHENTICATED, "invalid username or password")
	}
	_ = s.c.Store.ClearAuthFailures(ctx, keys[0])
	p := coffer.Principal{ID: u.ID, Kind: coffer.KindUser, Roles: u.Roles, Attributes: u.Attributes}
	if u.TOTPConfirmed {
		b, _ := json.Marshal(mfaClaims{UserID: u.ID, Expires: s.c.Now().Add(MFATokenTTL).Unix()})
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
// is accepted once: its time step is recorded in the store, so neither this
// node nor another accepts it again.
func (s *Service) CompleteMFA(ctx context.Context, mfaToken, code, ip string) (Issued, *coffer.Principal, error) {
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
	if json.Unmarshal(pt, &mc) != nil || s.c.Now().Unix() > mc.Expires {
		return Issued{}, nil, bad
	}
	keys := []string{"mfa:" + mc.UserID, "ip:" + ip}
	if err := s.checkLock(ctx, keys...); err != nil {
		return Issued{}, nil, err
	}
	u, err := us.User(ctx, mc.UserID)
	if err != nil {
		return Issued{}, nil, bad
	}
	if !u.TOTPConfirmed || u.Disabled {
		return Issued{}, nil, bad
	}
	accepted := false
	if len(code) == 6 {
		secret, err := s.c.Sealer.Open(ctx, totpKeyID, u.TOTPSecret, []byte(u.ID))
		if err != nil {
			return Issued{}, nil, fmt.Errorf("identity: open TOTP secret: %w", err)
		}
		step, verr := auth.ValidateTOTP(string(secret), code, s.c.Now(), u.TOTPLastStep)
		if verr == nil {
			// Atomic in the store: two nodes cannot both accept one step.
			if accepted, err = us.UseTOTPStep(ctx, u.ID, step); err != nil {
				return Issued{}, nil, err
			}
		}
	} else if i, ok := auth.MatchRecoveryCode(u.RecoveryHashes, code); ok {
		if accepted, err = us.UseRecoveryHash(ctx, u.ID, u.RecoveryHashes[i]); err != nil {
			return Issued{}, nil, err
		}
	}
	if !accepted {
		s.fail(ctx, "totp", u.Username, ip, keys...)
		return Issued{}, nil, bad
	}
	_ = s.c.Store.ClearAuthFailures(ctx, keys[0])
	p := coffer.Principal{ID: u.ID, Kind: coffer.KindUser, Roles: u.Roles, Attributes: u.Attributes, MFA: true}
	iss, err := s.issue(p, []string{"pwd", "otp"})
	if err != nil {
		return Issued{}, nil, err
	}
	return iss, &p, nil
}

// TOTPEnrolment is the answer to starting TOTP enrolment.
type TOTPEnrolment struct {
	Secret        string   `json:"secret"`
	OTPAuthURL    string   `json:"otpauth_url"`
	RecoveryCodes []string `json:"recovery_codes"`
}

// StartTOTP begins (or restarts, while unconfirmed) TOTP enrolment for a
// signed-in user. Once confirmed, enrolment cannot be restarted this way.
func (s *Service) StartTOTP(ctx context.Context, p *coffer.Principal, issuer string) (TOTPEnrolment, error) {
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
		return TOTPEnrolment{}, coffer.Errorf(coffer.ECONFLICT, "TOTP is already enrolled")
	}
	secret, url, err := auth.NewTOTP(s.c.Rand, issuer, u.Username)
	if err != nil {
		return TOTPEnrolment{}, fmt.Errorf("identity: TOTP: %w", err)
	}
	codes, hashes, err := auth.NewRecoveryCodes(s.c.Rand, 10)
	if err != nil {
		return TOTPEnrolment{}, fmt.Errorf("identity: recovery codes: %w", err)
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
	secret, err := s.c.Sealer.Open(ctx, totpKeyID, u.TOTPSecret, []byte(u.ID))
	if err != nil {
		return fmt.Errorf("identity: open TOTP secret: %w", err)
	}
	step, err := auth.ValidateTOTP(string(secret), code, s.c.Now(), u.TOTPLastStep)
	if err != nil {
		return coffer.Errorf(coffer.EINVALID, "the code does not match")
	}
	if ok, err := us.UseTOTPStep(ctx, u.ID, step); err != nil || !ok {
		return coffer.Errorf(coffer.EINVALID, "the code does not match")
	}
	u.TOTPConfirmed = true
	return us.UpdateUserMFA(ctx, u)
}
