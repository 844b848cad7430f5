package client_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/internal/httpapi"
)

// sdkMethods names the SDK method of each operation the OpenAPI document
// has; TestEveryOperationHasAMethod keeps the SDK complete (#20).
var sdkMethods = map[string]string{
	"GET /healthz":         "Health",
	"GET /readyz":          "Ready",
	"GET /v1/openapi.json": "OpenAPI",
	"GET /.well-known/oauth-authorization-server": "Metadata",
	"GET /.well-known/jwks.json":                  "JWKS",
	"POST /v1/oauth/token":                        "Token",
	"POST /v1/oauth/revoke":                       "Revoke",
	"POST /v1/oauth/introspect":                   "Introspect",
	"POST /v1/auth/login":                         "Login",
	"POST /v1/auth/mfa":                           "CompleteMFA",
	"POST /v1/auth/mfa/totp":                      "StartTOTP",
	"POST /v1/auth/mfa/totp/confirm":              "ConfirmTOTP",
	"POST /v1/sys/unseal":                         "Unseal",
	"POST /v1/sys/unseal/reset":                   "UnsealReset",
	"GET /v1/sys/seal-status":                     "SealStatus",
	"POST /v1/clients":                            "CreateClient",
	"GET /v1/clients":                             "ListClients",
	"DELETE /v1/clients/{id}":                     "DeleteClient",
	"POST /v1/clients/{id}/rotate":                "RotateClientSecret",
	"POST /v1/users":                              "CreateUser",
	"GET /v1/users":                               "ListUsers",
	"GET /v1/admin/jobs":                          "Jobs",
	"POST /v1/users/{id}/mfa/enrolment-code":      "IssueEnrolmentCode",
	"DELETE /v1/users/{id}/mfa":                   "ResetMFA",
	"POST /v1/policy/check":                       "CheckPolicy",
	"GET /v1/policy":                              "GetPolicy",
	"PUT /v1/policy":                              "PutPolicy",
	"POST /v1/collections":                        "CreateCollection",
	"GET /v1/collections":                         "ListCollections",
	"GET /v1/collections/{c}":                     "GetCollection",
	"POST /v1/collections/{c}/records":            "CreateRecord",
	"GET /v1/collections/{c}/records/{id}":        "GetRecord",
	"PATCH /v1/collections/{c}/records/{id}":      "UpdateRecord",
	"DELETE /v1/collections/{c}/records/{id}":     "DeleteRecord",
	"POST /v1/collections/{c}/records/search":     "Search",
	"DELETE /v1/subjects/{subject}":               "EraseSubjectCount",
	"POST /v1/tokenize":                           "Tokenize",
	"POST /v1/detokenize":                         "Detokenize",
	"POST /v1/inspect":                            "Inspect",
	"POST /v1/redact":                             "Redact",
	"POST /v1/keys":                               "CreateKey",
	"GET /v1/keys/wrapping_key":                   "WrappingKey",
	"POST /v1/keys/{name}/import":                 "ImportKey",
	"POST /v1/keys/{name}/import_version":         "ImportKeyVersion",
	"POST /v1/keys/{name}/import_vault":           "ImportVaultKey",
	"GET /v1/keys/{name}":                         "GetKey",
	"DELETE /v1/keys/{name}":                      "DeleteKey",
	"POST /v1/keys/{name}/config":                 "ConfigureKey",
	"POST /v1/keys/{name}/encrypt":                "Encrypt",
	"POST /v1/keys/{name}/decrypt":                "Decrypt",
	"POST /v1/keys/{name}/rotate":                 "RotateKey",
	"POST /v1/keys/{name}/rewrap":                 "Rewrap",
	"POST /v1/admin/keys/rotate":                  "RotateCofferKey",
	"POST /v1/admin/keys/retire":                  "RetireKeyVersion",
	"POST /v1/admin/keys/unretire":                "UnretireKeyVersion",
	"POST /v1/admin/keys/destroy":                 "DestroyKeyVersion",
	"GET /v1/audit/events":                        "AuditEvents",
	"DELETE /v1/security/suspensions/{principal}": "LiftSuspension",
	"GET /v1/security/events":                     "SecurityEvents",
	"POST /v1/admin/keys/revoke-signing":          "RevokeSigningKey",
	"POST /v1/audit/verify":                       "VerifyAudit",
	"POST /v1/admin/audit/archive":                "ArchiveAudit",
	"PATCH /v1/clients/{id}":                      "UpdateClient",
	"GET /v1/security/suspensions":                "Suspensions",
	"PUT /v1/security/suspensions/{principal}":    "Suspend",
	"GET /v1/sys/nodes":                           "Nodes",
	"DELETE /v1/users/{id}":                       "DeleteUser",
	"PATCH /v1/users/{id}":                        "UpdateUser",
	// The Vault-compatible transit surface is for Vault's own clients
	// (hashicorp/vault/api); the SDK's transit methods are Coffer's.
	"GET /v1/transit/{path...}":  "HTTPClient",
	"POST /v1/transit/{path...}": "HTTPClient",
	"PUT /v1/transit/{path...}":  "HTTPClient",
}

func TestEveryOperationHasAMethod(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(httpapi.OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	ct := reflect.TypeFor[*client.Client]()
	seen := map[string]bool{}
	for path, ops := range doc.Paths {
		for m := range ops {
			op := strings.ToUpper(m) + " " + path
			seen[op] = true
			name, ok := sdkMethods[op]
			if !ok {
				t.Errorf("%s has no SDK method", op)
				continue
			}
			if _, ok := ct.MethodByName(name); !ok {
				t.Errorf("%s: (*client.Client).%s does not exist", op, name)
			}
		}
	}
	for op := range sdkMethods {
		if !seen[op] {
			t.Errorf("%s is not in the OpenAPI document", op)
		}
	}
}
