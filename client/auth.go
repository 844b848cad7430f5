package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// TokenResponse is an OAuth 2.0 token answer (RFC 6749 §5.1).
type TokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope,omitempty"`
}

// Token returns a valid access token of the client's credentials (fetched
// or renewed as needed), or the fixed token of WithToken.
func (c *Client) Token(ctx context.Context) (string, error) {
	if c.src == nil {
		return "", errors.New("client: no credentials: use WithClientCredentials or WithToken")
	}
	t, err := c.src.Token()
	if err != nil {
		return "", fmt.Errorf("client: token: %w", err)
	}
	return t.AccessToken, nil
}

// Metadata is the RFC 8414 authorization server metadata.
type Metadata struct {
	Issuer                             string   `json:"issuer"`
	TokenEndpoint                      string   `json:"token_endpoint"`
	JWKSURI                            string   `json:"jwks_uri"`
	RevocationEndpoint                 string   `json:"revocation_endpoint"`
	IntrospectionEndpoint              string   `json:"introspection_endpoint"`
	GrantTypesSupported                []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported  []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgsValues []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	ServiceDocumentation               string   `json:"service_documentation"`
}

// Metadata returns the server's RFC 8414 metadata (no token needed).
func (c *Client) Metadata(ctx context.Context) (*Metadata, error) {
	var out Metadata
	if err := c.do(ctx, c.raw, http.MethodGet, "/.well-known/oauth-authorization-server", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// JWKS returns the JSON Web Key Set of the token signing keys, as served.
func (c *Client) JWKS(ctx context.Context) ([]byte, error) {
	b, _, err := c.getRaw(ctx, c.raw, "/.well-known/jwks.json")
	return b, err
}

// OpenAPI returns the OpenAPI 3.1 document the server serves.
func (c *Client) OpenAPI(ctx context.Context) ([]byte, error) {
	b, _, err := c.getRaw(ctx, c.raw, "/v1/openapi.json")
	return b, err
}

// Introspection is an RFC 7662 answer.
type Introspection struct {
	Active    bool     `json:"active"`
	Sub       string   `json:"sub,omitempty"`
	ClientID  string   `json:"client_id,omitempty"`
	Exp       int64    `json:"exp,omitempty"`
	TokenType string   `json:"token_type,omitempty"`
	Roles     []string `json:"roles,omitempty"`
	Kind      string   `json:"coffer_kind,omitempty"`
}

// Introspect asks whether token is active (RFC 7662).
func (c *Client) Introspect(ctx context.Context, token string) (*Introspection, error) {
	var out Introspection
	if err := c.form(ctx, c.hc, "/v1/oauth/introspect", url.Values{"token": {token}}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Revoke revokes an access token (RFC 7009): every node refuses it after.
func (c *Client) Revoke(ctx context.Context, token string) error {
	return c.form(ctx, c.raw, "/v1/oauth/revoke", url.Values{"token": {token}}, nil)
}

func (c *Client) form(ctx context.Context, hc *http.Client, path string, v url.Values, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, strings.NewReader(v.Encode()))
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	return c.send(hc, req, out)
}

// LoginResult is a user login's answer: a token, or the second step to take.
type LoginResult struct {
	Token *TokenResponse
	// MFARequired says the user has MFA: call CompleteMFA with MFAToken
	// and a TOTP or recovery code.
	MFARequired bool
	MFAToken    string
}

// Login signs a user in with a username and password. It needs no client
// credentials; use the token with WithToken.
func (c *Client) Login(ctx context.Context, username, password string) (*LoginResult, error) {
	var out struct {
		TokenResponse
		MFARequired bool   `json:"mfa_required"`
		MFAToken    string `json:"mfa_token"`
	}
	in := map[string]string{"username": username, "password": password}
	if err := c.do(ctx, c.raw, http.MethodPost, "/v1/auth/login", in, &out); err != nil {
		return nil, err
	}
	if out.MFARequired {
		return &LoginResult{MFARequired: true, MFAToken: out.MFAToken}, nil
	}
	return &LoginResult{Token: &out.TokenResponse}, nil
}

// CompleteMFA finishes a login with MFA, with a TOTP or recovery code.
func (c *Client) CompleteMFA(ctx context.Context, mfaToken, code string) (*TokenResponse, error) {
	var out TokenResponse
	if err := c.do(ctx, c.raw, http.MethodPost, "/v1/auth/mfa", map[string]string{"mfa_token": mfaToken, "code": code}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// TOTPEnrolment is a started TOTP enrolment, shown once.
type TOTPEnrolment struct {
	Secret        string   `json:"secret"`
	OTPAuthURL    string   `json:"otpauth_url"`
	RecoveryCodes []string `json:"recovery_codes"`
}

// StartTOTP starts the signed-in user's TOTP enrolment; enrolmentCode is
// the admin's one-time code where the user's roles require MFA ("" if not).
func (c *Client) StartTOTP(ctx context.Context, enrolmentCode string) (*TOTPEnrolment, error) {
	in := map[string]string{}
	if enrolmentCode != "" {
		in["enrolment_code"] = enrolmentCode
	}
	var out TOTPEnrolment
	if err := c.do(ctx, c.hc, http.MethodPost, "/v1/auth/mfa/totp", in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ConfirmTOTP confirms the enrolment with a current code; from then on
// login asks for one.
func (c *Client) ConfirmTOTP(ctx context.Context, code string) error {
	return c.do(ctx, c.hc, http.MethodPost, "/v1/auth/mfa/totp/confirm", map[string]string{"code": code}, nil)
}

// ClientInfo is a service client as listed (never its secret).
type ClientInfo struct {
	ClientID   string            `json:"client_id"`
	Name       string            `json:"name"`
	Roles      []string          `json:"roles"`
	Attributes map[string]string `json:"attributes,omitempty"`
	CreatedAt  time.Time         `json:"created_at"`
}

// ListClients lists the service clients.
func (c *Client) ListClients(ctx context.Context) ([]ClientInfo, error) {
	var out struct {
		Clients []ClientInfo `json:"clients"`
	}
	if err := c.do(ctx, c.hc, http.MethodGet, "/v1/clients", nil, &out); err != nil {
		return nil, err
	}
	return out.Clients, nil
}

// DeleteClient deletes a service client.
func (c *Client) DeleteClient(ctx context.Context, clientID string) error {
	return c.do(ctx, c.hc, http.MethodDelete, "/v1/clients/"+esc(clientID), nil, nil)
}

// RotateClientSecret gives a client a new secret (shown only here).
func (c *Client) RotateClientSecret(ctx context.Context, clientID string) (*NewClient, error) {
	var out NewClient
	if err := c.do(ctx, c.hc, http.MethodPost, "/v1/clients/"+esc(clientID)+"/rotate", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// User is a created user.
type User struct {
	ID         string            `json:"id"`
	Username   string            `json:"username"`
	Roles      []string          `json:"roles"`
	Attributes map[string]string `json:"attributes,omitempty"`
	CreatedAt  time.Time         `json:"created_at"`
}

// CreateUser creates a user with a password, roles and attributes.
func (c *Client) CreateUser(ctx context.Context, username, password string, roles []string, attrs map[string]string) (*User, error) {
	in := map[string]any{"username": username, "password": password, "roles": roles}
	if attrs != nil {
		in["attributes"] = attrs
	}
	var out User
	if err := c.do(ctx, c.hc, http.MethodPost, "/v1/users", in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// EnrolmentCode is a one-time MFA enrolment code, shown once.
type EnrolmentCode struct {
	UserID    string    `json:"user_id"`
	Code      string    `json:"enrolment_code"`
	ExpiresAt time.Time `json:"expires_at"`
}

// IssueEnrolmentCode issues a user a one-time MFA enrolment code (needs a
// recently issued token).
func (c *Client) IssueEnrolmentCode(ctx context.Context, userID string) (*EnrolmentCode, error) {
	var out EnrolmentCode
	if err := c.do(ctx, c.hc, http.MethodPost, "/v1/users/"+esc(userID)+"/mfa/enrolment-code", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ResetMFA removes a user's TOTP secret and recovery codes.
func (c *Client) ResetMFA(ctx context.Context, userID string) error {
	return c.do(ctx, c.hc, http.MethodDelete, "/v1/users/"+esc(userID)+"/mfa", nil, nil)
}
