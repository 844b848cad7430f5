package client

import (
	"context"
	"net/http"
	"time"
)

// ClientPatch changes a service client; nil fields keep their value.
// Any change ends every access token the client holds.
type ClientPatch struct {
	Name       *string            `json:"name,omitempty"`
	Roles      *[]string          `json:"roles,omitempty"`
	Attributes *map[string]string `json:"attributes,omitempty"`
	Disabled   *bool              `json:"disabled,omitempty"`
}

// UpdateClient changes a service client and returns it.
func (c *Client) UpdateClient(ctx context.Context, clientID string, p ClientPatch) (*ClientInfo, error) {
	var out ClientInfo
	if err := c.do(ctx, c.hc, http.MethodPatch, "/v1/clients/"+esc(clientID), p, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UserPatch changes a user; nil fields keep their value. Any change ends
// every access token the user holds.
type UserPatch struct {
	Roles      *[]string          `json:"roles,omitempty"`
	Attributes *map[string]string `json:"attributes,omitempty"`
	Disabled   *bool              `json:"disabled,omitempty"`
}

// UserInfo is a user as the API shows it.
type UserInfo struct {
	ID          string            `json:"id"`
	Username    string            `json:"username"`
	Roles       []string          `json:"roles"`
	Attributes  map[string]string `json:"attributes,omitempty"`
	MFAEnrolled bool              `json:"mfa_enrolled"`
	Disabled    bool              `json:"disabled"`
	CreatedAt   time.Time         `json:"created_at"`
}

// UpdateUser changes a user and returns it.
func (c *Client) UpdateUser(ctx context.Context, userID string, p UserPatch) (*UserInfo, error) {
	var out UserInfo
	if err := c.do(ctx, c.hc, http.MethodPatch, "/v1/users/"+esc(userID), p, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListUsers lists every user, oldest first (needs read on users).
func (c *Client) ListUsers(ctx context.Context) ([]UserInfo, error) {
	var out struct {
		Users []UserInfo `json:"users"`
	}
	if err := c.do(ctx, c.hc, http.MethodGet, "/v1/users", nil, &out); err != nil {
		return nil, err
	}
	return out.Users, nil
}

// DeleteUser deletes a user; every access token it holds stops working.
func (c *Client) DeleteUser(ctx context.Context, userID string) error {
	return c.do(ctx, c.hc, http.MethodDelete, "/v1/users/"+esc(userID), nil, nil)
}

// SigningKeyRevocation is the answer to RevokeSigningKey.
type SigningKeyRevocation struct {
	KID          string `json:"kid"`
	NewActiveKID string `json:"new_active_kid,omitempty"`
}

// RevokeSigningKey revokes an access token signing key at once (a leaked
// key): every token it signed is refused on every node.
func (c *Client) RevokeSigningKey(ctx context.Context, kid string) (*SigningKeyRevocation, error) {
	var out SigningKeyRevocation
	if err := c.do(ctx, c.hc, http.MethodPost, "/v1/admin/keys/revoke-signing", map[string]string{"kid": kid}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AuditVerification is the answer to VerifyAudit.
type AuditVerification struct {
	OK              bool      `json:"ok"`
	Nodes           int       `json:"nodes"`
	Events          int       `json:"events"`
	Checkpoints     int       `json:"checkpoints"`
	Findings        []string  `json:"findings"`
	FileCompared    bool      `json:"file_compared"`
	WitnessCompared bool      `json:"witness_compared"`
	VerifiedAt      time.Time `json:"verified_at"`
}

// VerifyAudit verifies the audit log now, as `coffer audit verify` does.
func (c *Client) VerifyAudit(ctx context.Context) (*AuditVerification, error) {
	var out AuditVerification
	if err := c.do(ctx, c.hc, http.MethodPost, "/v1/audit/verify", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AuditArchiveResult is what an audit archive run did: the segments
// (NODE:FIRST-LAST) written and verified, adopted from a run cut short,
// and pruned from the database.
type AuditArchiveResult struct {
	Archived       []string `json:"archived"`
	Adopted        []string `json:"adopted"`
	Pruned         []string `json:"pruned"`
	ArchivedEvents int      `json:"archived_events"`
	PrunedEvents   int64    `json:"pruned_events"`
	Bytes          int64    `json:"bytes"`
}

// ArchiveAudit archives the sealed audit history to audit.archive now and
// prunes from the database what is older than before (0:
// audit.retain_in_db), as `coffer audit archive` does offline.
func (c *Client) ArchiveAudit(ctx context.Context, before time.Duration) (*AuditArchiveResult, error) {
	body := map[string]string{}
	if before > 0 {
		body["before"] = before.String()
	}
	var out AuditArchiveResult
	if err := c.do(ctx, c.hc, http.MethodPost, "/v1/admin/audit/archive", body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Suspension is a principal's suspension.
type Suspension struct {
	Principal string    `json:"principal"`
	Until     time.Time `json:"until"`
	Reason    string    `json:"reason,omitempty"`
}

// Suspensions lists the suspensions in force.
func (c *Client) Suspensions(ctx context.Context) ([]Suspension, error) {
	var out struct {
		Suspensions []Suspension `json:"suspensions"`
	}
	if err := c.do(ctx, c.hc, http.MethodGet, "/v1/security/suspensions", nil, &out); err != nil {
		return nil, err
	}
	return out.Suspensions, nil
}

// Suspend suspends a principal by hand for d (0: the server's default).
func (c *Client) Suspend(ctx context.Context, principal string, d time.Duration) (*Suspension, error) {
	var in any
	if d > 0 {
		in = map[string]string{"duration": d.String()}
	}
	var out Suspension
	if err := c.do(ctx, c.hc, http.MethodPut, "/v1/security/suspensions/"+esc(principal), in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// JobProgress is how far one background job has come (GET /v1/admin/jobs).
type JobProgress struct {
	// Name is rewrap or reindex.
	Name string `json:"name"`
	// State is idle, pending, running or done.
	State string `json:"state"`
	// Done of Total: records walked (rewrap) or index entries moved
	// (reindex).
	Done      int64      `json:"done"`
	Total     int64      `json:"total"`
	Moved     int64      `json:"moved,omitempty"`
	Node      string     `json:"node,omitempty"`
	UpdatedAt *time.Time `json:"updated_at,omitempty"`
}

// Jobs reports the background jobs' progress (needs read on system/jobs).
func (c *Client) Jobs(ctx context.Context) ([]JobProgress, error) {
	var out struct {
		Jobs []JobProgress `json:"jobs"`
	}
	if err := c.do(ctx, c.hc, http.MethodGet, "/v1/admin/jobs", nil, &out); err != nil {
		return nil, err
	}
	return out.Jobs, nil
}
