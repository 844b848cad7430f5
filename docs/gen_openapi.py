#!/usr/bin/env python3
"""Writes internal/httpapi/openapi.json, the OpenAPI 3.1 document Coffer serves.

Run from the repository root: python3 docs/gen_openapi.py
A Go test checks that every registered route is documented here.
"""
import json, sys

def ref(name): return {"$ref": f"#/components/schemas/{name}"}
def problem(desc): return {"description": desc, "content": {"application/problem+json": {"schema": ref("Problem")}}}
def jbody(schema, desc="OK"): return {"description": desc, "content": {"application/json": {"schema": schema}}}
def req(schema): return {"required": True, "content": {"application/json": {"schema": schema}}}
STD = {"400": problem("Malformed request"), "401": problem("Not authenticated"),
       "403": problem("Not allowed"), "413": problem("Body too large"),
       "422": problem("Valid JSON that breaks the schema"), "429": problem("Rate limited or locked out"),
       "503": problem("Not ready, or the audit log is unavailable: the request was not carried out (or, when the audit log failed while it ran, its outcome could not be recorded)")}
# The grant rule (httpapi grants.go): who may give roles and attributes, and act on a principal holding them.
GRANT_RULE = ("the right to grant everything the principal holds: each of its roles and attributes (key=value) held by the caller, "
              "or admin on the resource (clients or users)")
HELD = problem("Not allowed: the action itself, or the principal holds roles or attributes the caller lacks and the caller has no admin on the resource "
               "(an operation on a principal is as good as granting what it holds), or the change would give one the caller lacks")
GRANT_403 = problem("Not allowed: a role or an attribute (key=value) the caller does not hold, without admin on the resource")
SEALED = problem("Sealed: a Shamir deployment's server waits for root key shares and answers nothing else (Retry-After)")
# Every operation with a body may answer these (the attack suite sends each).
BODY = {"400": problem("Malformed request"), "413": problem("Body too large"),
        "415": problem("Content-Type is not one the operation takes"), "422": problem("Valid JSON that breaks the schema")}
NOTFOUND = problem("Unknown: nothing of that name or id (also for what the caller may not know exists)")
OAUTH_FORM = {"400": jbody(ref("OAuthError"), "invalid_request: not a form, or the token is missing"),
              "413": jbody(ref("OAuthError"), "invalid_request: body too large")}
def op(summary, responses, body=None, tags=None, public=False, params=None):
    base = {"503": SEALED} if public else STD
    if body: base = {**BODY, **base}
    if params and any(x["in"] == "path" for x in params): base = {"404": NOTFOUND, **base}
    o = {"summary": summary, "responses": {**base, **responses}}
    if body: o["requestBody"] = body
    if tags: o["tags"] = tags
    if public: o["security"] = []
    if params: o["parameters"] = params
    return o
def p(name, desc): return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": desc}
def q(name, desc, typ="string"): return {"name": name, "in": "query", "required": False, "schema": {"type": typ}, "description": desc}
obj = lambda props, req=None, extra=False: {"type": "object", "properties": props, **({"required": req} if req else {}), "additionalProperties": extra}
S = {"type": "string"}
TS = {"type": "string", "format": "date-time"}
B64 = {"type": "string", "contentEncoding": "base64", "description": "standard base64"}
CT = {"type": "string", "pattern": "^coffer:v[1-9][0-9]*:", "description": "coffer:vN:BASE64, as encrypt returns it"}
REF = {"type": "string", "description": "echoed in the item's result, to match the two"}
MAX_BATCH = 10000  # limits.max_batch_items, default
def batch(item): return {"type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": ref(item)}
def transit_body(single, item, batch_item):
    return req({"oneOf": [ref(single), obj({"items": batch(item)}, ["items"]), obj({"batch_input": batch(batch_item)}, ["batch_input"])]})
def transit_ok(single, result):
    return jbody({"oneOf": [ref(single), obj({"items": {"type": "array", "items": ref(single)}}, ["items"]),
                            obj({"batch_results": {"type": "array", "items": ref(result)}}, ["batch_results"])]})
TRANSIT_FORMS = (" Three forms: one value; 'items', all or nothing (any bad item fails the request: 422 naming each, 400 for a ciphertext that does not open); "
                 "or Vault-style 'batch_input', answered 200 with 'batch_results' in order, where each item succeeds or carries its own 'error' "
                 "(Vault 1.12 and later answer 400 when an item fails; Coffer answers 200 and keeps problem+json for whole-request errors). "
                 "A malformed envelope is still 400/422; an unknown key 404; more items than limits.max_batch_items (default 10000) is 413. "
                 "A batch is one audit event: count = items that succeeded, reason = 'batch of N: K ok, F failed'.")

PROBLEM_TYPES = ("https://coffer.dev/problems/ and the error code (malformed, unauthenticated, forbidden, not_found, conflict, too_large, "
                 "invalid, rate_limited, unavailable, internal), or one of these more specific types (status 409): "
                 "subject-erased (a write names a data subject that was erased; an erased subject stays erased); "
                 "integrity (a stored record failed its integrity check: its data was changed outside Coffer; a data.integrity security event is raised); "
                 "key-destroyed (the key was destroyed: what it sealed is gone for good); "
                 "key-version-destroyed (a value is sealed under a key version that was destroyed); "
                 "key-retired (a value is sealed under a retired key version, or the key has no active version to seal with)")
ERASED = problem("subject-erased: the record's data subject was erased; or key-retired / key-destroyed: the key has no version to seal with")
INTEGRITY = "integrity: the record failed its integrity check (changed outside Coffer)"

VAULT_SUMMARY = {
  "get": "Vault transit API: keys/NAME (key info), keys?list=true (the keys the caller may read; 404 when none exist), wrapping_key",
  "post": "Vault transit API: keys/NAME (create, aes256-gcm96 only), keys/NAME/rotate, keys/NAME/config, keys/NAME/import, keys/NAME/import_version, "
          "encrypt/NAME, decrypt/NAME, rewrap/NAME (plaintext, ciphertext, context, key_version, batch_input → batch_results), "
          "hmac/NAME[/ALGORITHM], verify/NAME[/ALGORITHM] (HMAC only), datakey/plaintext|wrapped/NAME",
}
VAULT_SUMMARY["put"] = VAULT_SUMMARY["post"] + " (the vault CLI and Go client write with PUT)"
VAULT_ERR = {"description": "Vault's error shape", "content": {"application/json": {"schema": ref("VaultErrors")}}}
def vault_op(method):
    return {"summary": VAULT_SUMMARY[method],
            "description": ("HashiCorp Vault's transit engine API, served on Coffer's transit keys so that Vault's clients work unchanged "
                            "(mount configurable: transit_compat_mount; off with transit_compat: false). The access token is a Coffer access token, "
                            "sent as X-Vault-Token or Authorization: Bearer. Every call is decided by Coffer's policy on keys/NAME as on /v1/keys "
                            "(hmac needs encrypt, verify decrypt, datakey encrypt, list read on each key listed) and audited with its targets. "
                            "Ciphertexts and HMACs are vault:vN:BASE64; vault:vN: and coffer:vN: ciphertexts decrypt on both surfaces. "
                            "Answers are Vault's envelope; errors are {\"errors\":[...]} with Vault's statuses (400 for bad input and for a key that "
                            "does not exist on encrypt/decrypt/rewrap, 403 for a missing, invalid or refused token, 404 for a read of nothing and for "
                            "a path Vault's transit engine does not have, 405 for a method it does not take). See docs/vault-compat.md."),
            "tags": ["vault-compat"], "security": [{"bearer": []}, {"vaultToken": []}],
            "parameters": [p("path...", "the path under the mount, as in Vault: keys/NAME, encrypt/NAME, …"),
                           q("list", "true on GET keys: list the keys")],
            **({"requestBody": {"required": False, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": True}}}}} if method != "get" else {}),
            "responses": {"200": jbody(ref("VaultResponse"), "Vault's envelope; a batch_input with failed items answers 400 with the same envelope, or partial_failure_response_code"),
                          "204": {"description": "import, import_version"},
                          "400": VAULT_ERR, "403": VAULT_ERR, "404": VAULT_ERR, "405": VAULT_ERR, "413": VAULT_ERR, "429": VAULT_ERR, "503": VAULT_ERR}}

schemas = {
  "VaultErrors": obj({"errors": {"type": "array", "items": S}}, ["errors"]),
  "VaultResponse": obj({"request_id": S, "lease_id": S, "renewable": {"type": "boolean"}, "lease_duration": {"type": "integer"},
                        "data": {"type": "object", "additionalProperties": True}, "wrap_info": {"type": "null"},
                        "warnings": {"type": ["array", "null"], "items": S}, "auth": {"type": "null"}},
                       ["request_id", "lease_id", "renewable", "lease_duration", "data", "wrap_info", "warnings", "auth"]),
  "Problem": obj({"type": {"type": "string", "description": PROBLEM_TYPES}, "title": S, "status": {"type": "integer"}, "detail": S, "request_id": S,
                  "problems": {"type": "array", "items": S}}, ["type", "title", "status", "detail", "request_id"]),
  "TokenResponse": obj({"access_token": S, "token_type": {"const": "Bearer"}, "expires_in": {"type": "integer"}, "scope": S},
                       ["access_token", "token_type", "expires_in"]),
  "OAuthError": obj({"error": S, "error_description": S}, ["error"]),
  "TransitItem": obj({"plaintext": B64, "context": B64}, ["plaintext"]),
  "TransitCiphertextItem": obj({"ciphertext": CT, "context": B64}, ["ciphertext"]),
  "TransitCiphertext": obj({"ciphertext": CT, "key_version": {"type": "integer", "minimum": 1}}, ["ciphertext", "key_version"]),
  "TransitPlaintext": obj({"plaintext": B64}, ["plaintext"]),
  "TransitBatchItem": obj({"plaintext": B64, "context": B64, "reference": REF}),
  "TransitBatchCiphertextItem": obj({"ciphertext": CT, "context": B64, "reference": REF}),
  "TransitBatchError": obj({"error": {"type": "string", "description": "Why this item failed; names the field, never its value. Every ciphertext that parses but does not open (altered, another key's, another context, a version the key lacks or below min_decryption_version) has the one message 'ciphertext cannot be decrypted'."},
                            "reference": REF}, ["error"]),
  "TransitBatchCiphertextResult": {"oneOf": [obj({"ciphertext": CT, "key_version": {"type": "integer", "minimum": 1}, "reference": REF}, ["ciphertext", "key_version"]), ref("TransitBatchError")]},
  "TransitBatchPlaintextResult": {"oneOf": [obj({"plaintext": B64, "reference": REF}, ["plaintext"]), ref("TransitBatchError")]},
  "KeyVersionRequest": obj({"key_id": {"type": "string", "description": "collection/NAME, subject/ID or tokens/TYPE"},
                            "version": {"type": "integer", "minimum": 1, "maximum": 4294967295}}, ["key_id", "version"]),
  "KeyVersionChange": obj({"key_id": S, "version": {"type": "integer"}, "state": {"enum": ["active", "retired", "destroyed"]}},
                          ["key_id", "version", "state"]),
  "Field": obj({"name": S, "type": {"enum": ["string", "email", "phone", "card_number", "ssn", "date", "integer"]},
                "searchable": {"type": "boolean"}, "mask": S}, ["name", "type"]),
  "Collection": obj({"name": {"type": "string"}, "fields": {"type": "array", "items": ref("Field")},
                     "retention": {"type": "string", "description": "Go duration, e.g. 720h"}, "created_at": TS}, ["name", "fields"]),
  "NewRecord": obj({"owner": S, "subject": S, "data": {"type": "object", "additionalProperties": True}}, ["data"]),
  "Record": obj({"id": S, "owner": S, "subject": S, "created_at": TS, "updated_at": TS, "expires_at": TS,
                 "data": {"type": "object", "additionalProperties": True,
                          "description": "Each field plain, masked or left out as the caller's policy says."}}, ["id", "owner", "created_at", "data"]),
  "Search": obj({"where": {"type": "object", "additionalProperties": True}, "limit": {"type": "integer", "minimum": 1, "maximum": 1000}}, ["where"]),
  "TokenItem": obj({"value": S, "type": {"enum": ["card_number", "ssn", "email", "phone", "string"]},
                    "mode": {"enum": ["random", "deterministic", "format_preserving"], "default": "random",
                             "description": "random needs tokenize on tokens/TYPE; deterministic and format_preserving (linkable: the same value always gives the same token) need tokenize_linkable, which for low-entropy types is as good as detokenize"},
                    "ttl": {"type": "string", "description": "Go duration, 1s to 100 years. A linkable token made again keeps the later expiry of the two (none beats any): a TTL on it is a lower bound"},
                    "canary": {"type": "boolean", "description": "plant a decoy: any detokenize of it raises data.canary. Needs admin on tokens/TYPE. A canary over an existing linkable token that is not one is a 409; a canary stays one when its value is tokenized again"}},
                   ["value", "type"]),
  "PolicyRule": obj({"resources": {"type": "array", "items": S, "description": "*, collections/NAME, tokens/TYPE, keys/NAME, audit, policy, clients, users, security, subjects, inspect; a name may end in *"},
                     "actions": {"type": "array", "items": {"enum": ["*", "create", "read", "update", "delete", "search", "tokenize", "tokenize_linkable", "detokenize", "encrypt", "decrypt", "admin"]},
                                 "description": "tokenize makes random tokens only; tokenize_linkable makes deterministic and format-preserving ones, and is as good as detokenize for low-entropy types (card numbers, SSNs, phones)"},
                     "when": {"type": "string", "description": "CEL condition over principal, resource and request"},
                     "fields": {"type": "object", "additionalProperties": {"enum": ["plain", "masked", "deny"]}}}, ["resources", "actions"]),
  "PolicyDocument": obj({"roles": {"type": "object", "additionalProperties": {"oneOf": [
      {"type": "array", "items": ref("PolicyRule")},
      obj({"require_mfa": {"type": "boolean"}, "rules": {"type": "array", "items": ref("PolicyRule")}}, ["rules"])]}}}, ["roles"]),
  "ClientInfo": obj({"client_id": S, "name": S, "roles": {"type": "array", "items": S}, "attributes": {"type": "object", "additionalProperties": S},
                     "disabled": {"type": "boolean"}, "created_at": TS}, ["client_id", "name", "roles", "disabled"]),
  "ClientPatch": obj({"name": S, "roles": {"type": "array", "items": S}, "attributes": {"type": "object", "additionalProperties": S}, "disabled": {"type": "boolean"}}),
  "UserInfo": obj({"id": S, "username": S, "roles": {"type": "array", "items": S}, "attributes": {"type": "object", "additionalProperties": S},
                   "mfa_enrolled": {"type": "boolean"}, "disabled": {"type": "boolean"}, "created_at": TS}, ["id", "username", "roles", "disabled"]),
  "UserPatch": obj({"roles": {"type": "array", "items": S}, "attributes": {"type": "object", "additionalProperties": S}, "disabled": {"type": "boolean"}}),
  "NewClient": obj({"name": S, "roles": {"type": "array", "items": S}, "attributes": {"type": "object", "additionalProperties": S}}, ["name"]),
  "CreatedClient": obj({"client_id": S, "client_secret": S, "name": S, "roles": {"type": "array", "items": S},
                        "attributes": {"type": "object", "additionalProperties": S}, "created_at": TS}, ["client_id", "client_secret", "name", "roles", "created_at"]),
  "NewUser": obj({"username": S, "password": S, "roles": {"type": "array", "items": S}, "attributes": {"type": "object", "additionalProperties": S}}, ["username", "password"]),
  "AuditEvent": {"type": "object", "additionalProperties": False,
                 "required": ["id", "seq", "node", "time", "principal", "principal_id", "principal_kind", "roles", "source_ip", "action", "resource", "fields",
                              "decision", "rule", "reason", "status", "count", "value_hmacs", "request_id", "hash", "prev_hash", "key_version", "targets"],
                 "properties": {k: S for k in ["id", "action", "resource", "rule", "request_id", "hash", "prev_hash", "node", "source_ip"]} | {
                   "principal": {"type": "string", "description": "who; empty when unauthenticated (the same as principal_id)"}, "principal_id": S,
                   "principal_kind": {"type": "string", "description": "client, user, external; empty when unauthenticated"},
                   "roles": {"type": "array", "items": S}, "fields": {"type": "array", "items": S, "description": "names of the fields touched, never values"},
                   "decision": {"enum": ["allow", "deny", ""]}, "reason": S,
                   "seq": {"type": "integer", "minimum": 1, "description": "position in the node's chain"},
                   "time": TS, "status": {"type": "integer"}, "count": {"type": "integer", "minimum": 0},
                   "key_version": {"type": "integer", "minimum": 1, "description": "version of the audit HMAC key (audit/hmac) that chained the event"},
                   "value_hmacs": {"type": "array", "items": S, "description": "the values the request named (search terms, detokenized tokens), each as v<key version>.<base64url of a 128-bit HMAC> under an audit-only key (audit-value/COLLECTION/FIELD, audit-value/tokens) bound to the principal; never a value, never a MAC the database holds"},
                   "targets": {"type": "array", "items": S, "description": "what the action touched, by path: collections/C (schema), collections/C/records/ID, subjects/S, keys/NAME/versions/N (transit) or keys/KEY_ID/versions/N (Coffer's own keys), keys/NAME, clients/ID, users/ID, tokens/TYPE/ID (random tokens, by keyed MAC; deterministic and format-preserving ones are only counted), access_tokens/JTI, policy/versions/N, suspensions/PRINCIPAL. Ids only, never a value, token or secret; free-form parts are path-escaped; at most 10000 (count says how many when more). Empty in events written before targets existed. Bound into the event's hash."}},
                 "description": "One audited request. After audit appends failed, the first event written again has action audit.outage: its reason says since when, its count how many events (of requests refused meanwhile) are missing, at most."},
  "SecurityEvent": obj({"id": S, "time": TS, "severity": {"enum": ["low", "medium", "high", "critical"]}, "principal": S,
      "detail": {"type": "object", "description": "counts, windows and names that explain the event; never a value"},
      "kind": {"type": "string", "description": "auth.bruteforce, access.denied_burst, data.bulk_read (values that left for one principal, "
               "every field of every record read or searched and every value detokenized or decrypted, over detect.bulk_read_values "
               "within a sliding detect.window), data.bulk_tokenize (values tokenized by one principal over detect.bulk_tokenize_values, "
               "or deterministically or format-preserving over detect.bulk_tokenize_linkable, within a sliding window), data.enumeration, "
               "data.unusual_hour, data.canary"}}, ["id", "time", "kind", "severity", "principal", "detail"]),
  "Ready": obj({"status": {"enum": ["ok", "not ready", "sealed"]}, "checks": {"type": "object", "additionalProperties": {"enum": ["ok", "not ready", "sealed"]},
                 "description": "each readiness check by name (store, keys, audit, witness…); keys is sealed while a Shamir deployment waits for root key shares"}}, ["status", "checks"]),
  "AuthServerMetadata": obj({"issuer": S, "token_endpoint": S, "jwks_uri": S, "revocation_endpoint": S, "introspection_endpoint": S,
                 "grant_types_supported": {"type": "array", "items": S}, "response_types_supported": {"type": "array", "items": S},
                 "token_endpoint_auth_methods_supported": {"type": "array", "items": S},
                 "revocation_endpoint_auth_methods_supported": {"type": "array", "items": S},
                 "introspection_endpoint_auth_methods_supported": {"type": "array", "items": S},
                 "token_endpoint_auth_signing_alg_values_supported": {"type": "array", "items": S},
                 "service_documentation": S},
                 ["issuer", "token_endpoint", "jwks_uri", "revocation_endpoint", "introspection_endpoint", "grant_types_supported", "response_types_supported"]),
  "JWKS": obj({"keys": {"type": "array", "items": {"type": "object", "required": ["kty", "kid"], "additionalProperties": False,
                 "properties": {"kty": {"enum": ["OKP", "EC"]}, "crv": S, "x": S, "y": S, "kid": S, "alg": {"enum": ["EdDSA", "ES256"]}, "use": {"const": "sig"}}}}}, ["keys"]),
  "Introspection": obj({"active": {"type": "boolean"}, "sub": S, "client_id": S, "exp": {"type": "integer"}, "token_type": S,
                 "roles": {"type": "array", "items": S}, "coffer_kind": {"enum": ["client", "user", "external"]}}, ["active"]),
  "CreatedUser": obj({"id": S, "username": S, "roles": {"type": "array", "items": S},
                 "attributes": {"type": "object", "additionalProperties": S}, "created_at": TS}, ["id", "username", "roles", "created_at"]),
  "PolicyCheck": obj({"principal": obj({"id": S, "kind": S, "roles": {"type": "array", "items": S},
                 "attributes": {"type": "object", "additionalProperties": S}, "mfa": {"type": "boolean"}}),
                 "action": S, "resource": S, "owner": S, "id": S, "ip": S,
                 "fields": {"type": "array", "items": S, "description": "fields whose view to answer"}}, ["action", "resource"]),
  "PolicyDecision": obj({"allowed": {"type": "boolean"}, "rule": S, "reason": S,
                 "fields": {"type": "object", "additionalProperties": {"enum": ["plain", "masked", "deny"]}}}, ["allowed", "rule", "reason"]),
  "TransitKey": obj({"name": S, "created_at": TS, "latest_version": {"type": "integer", "minimum": 1},
                 "min_decryption_version": {"type": "integer", "minimum": 1}, "deletable": {"type": "boolean"},
                 "exportable": {"const": False}, "auto_rotate_period": {"type": "string", "description": "Go duration"},
                 "imported": {"type": "boolean", "description": "the key's material was brought from outside (imported_from says how); it still never leaves Coffer"},
                 "imported_from": {"enum": ["byok", "vault"], "description": "byok: import; vault: import_vault"},
                 "vault_latest_version": {"type": "integer", "minimum": 1, "description": "imported from Vault: the newest version brought from it; the versions up to it also decrypt the vault:vN: ciphertexts Vault made"},
                 "versions": {"type": "array", "items": obj({"version": {"type": "integer", "minimum": 1}, "created_at": TS, "state": S}, ["version", "created_at", "state"])}},
                 ["name", "created_at", "latest_version", "min_decryption_version", "deletable", "exportable", "imported", "versions"]),
  "Finding": obj({"type": S, "start": {"type": "integer", "minimum": 0}, "end": {"type": "integer", "minimum": 0},
                 "confidence": {"type": "number", "minimum": 0, "maximum": 1}}, ["type", "start", "end", "confidence"]),
  "UnsealStatus": obj({"sealed": {"type": "boolean"}, "progress": {"type": "integer"}, "threshold": {"type": "integer"}}),
  "Node": obj({"node": {"type": "string", "description": "the node id: the node setting, or the id generated once and kept in the node's data directory"},
               "host": S, "version": {"type": "string", "description": "the Coffer version the node runs"},
               "schema_version": {"type": "integer", "description": "the database schema version the node was built for"},
               "started_at": TS, "last_heartbeat": TS, "lease_until": {"type": "string", "format": "date-time", "description": "the node counts as live until then unless it renews its lease"},
               "self": {"type": "boolean", "description": "true for the node that answered"}},
              ["node", "host", "version", "schema_version", "started_at", "last_heartbeat", "lease_until", "self"]),
}

paths = {
  "/healthz": {"get": op("Liveness", {"200": jbody(obj({"status": {"const": "ok"}, "sealed": {"const": True, "description": "present while the server waits for root key shares"}}, ["status"]))}, public=True, tags=["operations"])},
  "/readyz": {"get": op("Readiness: store, keys, audit, node (this node holds the lease on its node id), changes (on PostgreSQL: listening for other nodes' changes, or not for longer than 10 s), and the audit witness when audit.witness is set (503 while a signed checkpoint has waited for it longer than audit.witness_max_lag)", {"200": jbody(ref("Ready")), "503": jbody(ref("Ready"), "Not ready")}, public=True, tags=["operations"])},
  # Answered only while a Shamir deployment is sealed (waiting for root key
  # shares); an unsealed server routes neither. Marked x-coffer-sealed-only.
  "/v1/sys/unseal": {"post": {**op("Give one root key share to a sealed server. The check file commits to every share of the split: "
      "a share that is not the one committed to for its number (forged, of another deployment, altered) is refused (422) and not held, "
      "so strangers cannot stand in the way of the holders. A check file made before commitments holds any share until threshold of "
      "them fail to combine; a share then replaces the held one of its number, and the first unseal upgrades the file. "
      "Rate-limited per source address (per /64 for IPv6).", {
      "200": jbody(ref("UnsealStatus")),
      "400": problem("Malformed request"), "422": problem("Not one of this deployment's shares, or the shares held do not make the key"),
      "429": problem("Too many attempts from this address (Retry-After)")},
      body=req(obj({"share": S}, ["share"])), public=True, tags=["operations"]), "x-coffer-sealed-only": True}},
  "/v1/sys/unseal/reset": {"post": {**op("Drop every share a sealed server holds, so the holders start again. Authenticated by the "
      "reset token the sealed server writes to DATA_DIR/unseal-reset.token (0600): whoever can read the data directory could restart the "
      "server, and this is that restart without the downtime (coffer unseal --reset --data-dir DIR). The token is removed once unsealed. "
      "Rate-limited as /v1/sys/unseal.", {
      "200": jbody(ref("UnsealStatus")), "400": problem("Malformed request"), "401": problem("Wrong reset token"),
      "429": problem("Too many attempts from this address (Retry-After)"),
      "503": problem("The server could not write its reset token: restart it instead")},
      body=req(obj({"reset_token": S}, ["reset_token"])), public=True, tags=["operations"]), "x-coffer-sealed-only": True}},
  "/v1/sys/seal-status": {"get": {**op("Unseal progress of a sealed server", {
      "200": jbody(ref("UnsealStatus"))},
      public=True, tags=["operations"]), "x-coffer-sealed-only": True}},
  "/v1/openapi.json": {"get": op("This document", {"200": jbody(obj({"openapi": {"const": "3.1.0"}, "info": {"type": "object"}, "servers": {"type": "array"},
      "security": {"type": "array"}, "components": {"type": "object"}, "paths": {"type": "object"}}, ["openapi", "info", "paths"]))}, public=True, tags=["operations"])},
  "/.well-known/oauth-authorization-server": {"get": op("RFC 8414 authorization server metadata", {"200": jbody(ref("AuthServerMetadata"))}, public=True, tags=["auth"])},
  "/.well-known/jwks.json": {"get": op("JSON Web Key Set of the token signing keys", {"200": {"description": "OK", "content": {"application/jwk-set+json": {"schema": ref("JWKS")}}}}, public=True, tags=["auth"])},
  "/v1/oauth/token": {"post": op("OAuth 2.0 client credentials grant (RFC 6749 §4.4)",
      {"200": jbody(ref("TokenResponse")), "400": jbody(ref("OAuthError"), "invalid_request or unsupported_grant_type"),
       "413": jbody(ref("OAuthError"), "invalid_request: body too large"),
       "401": jbody(ref("OAuthError"), "invalid_client"), "429": jbody(ref("OAuthError"), "locked out (Retry-After)")},
      body={"required": True, "content": {"application/x-www-form-urlencoded": {"schema": obj({"grant_type": {"const": "client_credentials"}, "client_id": S, "client_secret": S, "scope": S}, ["grant_type"])}}},
      public=True, tags=["auth"])},
  "/v1/oauth/revoke": {"post": op("Revoke an access token (RFC 7009)", {"200": {"description": "Revoked (or unknown)"}, **OAUTH_FORM},
      body={"required": True, "content": {"application/x-www-form-urlencoded": {"schema": obj({"token": S, "token_type_hint": S}, ["token"])}}}, public=True, tags=["auth"])},
  "/v1/oauth/introspect": {"post": op("Token introspection (RFC 7662), authenticated by the caller's own bearer access token (or mTLS); an unknown, expired or revoked token is {\"active\": false}", {"200": jbody(ref("Introspection")), **OAUTH_FORM},
      body={"required": True, "content": {"application/x-www-form-urlencoded": {"schema": obj({"token": S}, ["token"])}}}, tags=["auth"])},
  "/v1/auth/login": {"post": op("User login with username and password. The username is matched after normalisation (PRECIS, case folded, look-alike letters folded). Failures count against the account (locked for a growing time after auth.lockout.max_failures) and the source address (locked for unknown or failing accounts after auth.lockout.address_max_failures); locked: 429 with Retry-After. Password checks run through a bounded queue: 503 with Retry-After when it is full.",
      {"200": jbody({"oneOf": [ref("TokenResponse"), obj({"mfa_required": {"const": True}, "mfa_token": S}, ["mfa_required", "mfa_token"])]}),
       "401": problem("Invalid username or password"), "429": problem("Locked out (Retry-After)"), "503": problem("Too many sign-ins at once (Retry-After)")},
      body=req(obj({"username": S, "password": S}, ["username", "password"])), public=True, tags=["auth"])},
  "/v1/auth/mfa": {"post": op("Second step of a login with a TOTP or recovery code. An mfa_token completes one login only; failures count against the user's MFA step and the source address (429 with Retry-After when locked)",
      {"200": jbody(ref("TokenResponse")), "401": problem("Invalid or expired MFA token or code"), "429": problem("Locked out (Retry-After)")},
      body=req(obj({"mfa_token": S, "code": S}, ["mfa_token", "code"])), public=True, tags=["auth"])},
  "/v1/auth/mfa/totp": {"post": op("Start TOTP enrolment; answers the secret and ten one-time recovery codes (80 bits each), shown once. A user whose roles require MFA must send the one-time enrolment_code an admin issued (403 without it)",
      {"200": jbody(obj({"secret": S, "otpauth_url": S, "recovery_codes": {"type": "array", "items": S}}, ["secret", "otpauth_url", "recovery_codes"])),
       "409": problem("Already enrolled (an admin can reset it)")},
      body={"required": False, "content": {"application/json": {"schema": obj({"enrolment_code": S})}}}, tags=["auth"])},
  "/v1/auth/mfa/totp/confirm": {"post": op("Confirm TOTP enrolment with a code", {"204": {"description": "Enrolled: from now on login asks for a code"}, "401": problem("Wrong code")},
      body=req(obj({"code": S}, ["code"])), tags=["auth"])},
  "/v1/clients": {"post": op("Create a service client (secret shown once). Each role and attribute (key=value) given must be one the caller holds, or the caller needs admin on clients", {"201": jbody(ref("CreatedClient"), "Created"), "403": GRANT_403}, body=req(ref("NewClient")), tags=["admin"]),
                  "get": op("List service clients (never a secret)", {"200": jbody(obj({"clients": {"type": "array", "items": ref("ClientInfo")}}, ["clients"]))}, tags=["admin"])},
  "/v1/clients/{id}": {"delete": op("Delete a client: its secret and every access token it holds stop working at once, on every node (401; introspection active:false). Needs delete on clients and " + GRANT_RULE, {"204": {"description": "Deleted"}, "403": HELD, "404": problem("Unknown")}, params=[p("id", "client id")], tags=["admin"]),
                       "patch": op("Change a client: each field given replaces the stored one (roles and attributes as a whole); disabled: true stops it getting tokens. Any change ends every access token the client holds, at once, on every node (tokens carry the principal's generation, claim coffer_gen, which this raises). Needs update on clients and " + GRANT_RULE + " (before and after the change)",
                                   {"200": jbody(ref("ClientInfo")), "403": HELD, "404": problem("Unknown"), "409": problem("The client's roles or attributes changed meanwhile: read it again and retry")},
                                   body=req(ref("ClientPatch")), params=[p("id", "client id")], tags=["admin"])},
  "/v1/clients/{id}/rotate": {"post": op("Rotate a client's secret: the old secret and every access token got with it stop working at once, on every node. Needs update on clients and " + GRANT_RULE, {"200": jbody(ref("CreatedClient")), "403": HELD, "404": problem("Unknown")}, params=[p("id", "client id")], tags=["admin"])},
  "/v1/users": {"post": op("Create a user. The username is normalised (PRECIS UsernameCasePreserved; the account key is case folded with look-alike letters folded): one that differs from an existing user only by case, width, spaces or look-alike letters is taken (409); one that mixes scripts is refused (422)", {"201": jbody(obj({"id": S, "username": S, "roles": {"type": "array", "items": S}}, ["id"], True), "Created"), "403": GRANT_403, "409": problem("Username taken")}, body=req(ref("NewUser")), tags=["admin"]),
                "get": op("List users, oldest first, as admins see them (never a password hash, TOTP secret or recovery code). Needs read on users; the decision and the count returned are in the audit log (action read on users)", {"200": jbody(obj({"users": {"type": "array", "items": ref("UserInfo")}}, ["users"]))}, tags=["admin"])},
  "/v1/users/{id}": {"delete": op("Delete a user: the password and every access token the user holds stop working at once, on every node. Needs delete on users and " + GRANT_RULE, {"204": {"description": "Deleted"}, "403": HELD, "404": problem("Unknown user")}, params=[p("id", "user id")], tags=["admin"]),
                     "patch": op("Change a user: each field given replaces the stored one (roles and attributes as a whole); disabled: true stops it signing in. Any change ends every access token the user holds, at once, on every node. Needs update on users and " + GRANT_RULE + " (before and after the change)",
                                 {"200": jbody(ref("UserInfo")), "403": HELD, "404": problem("Unknown user"), "409": problem("The user's roles or attributes changed meanwhile: read it again and retry")},
                                 body=req(ref("UserPatch")), params=[p("id", "user id")], tags=["admin"])},
  "/v1/users/{id}/mfa/enrolment-code": {"post": op("Issue a one-time MFA enrolment code for a user who has not enrolled (shown once; expires after auth.mfa_enrolment_code_ttl; replaces an earlier one). Needs update on users, " + GRANT_RULE + ", and an access token issued within auth.reauth_max_age (401 otherwise)",
      {"201": jbody(obj({"user_id": S, "enrolment_code": S, "expires_at": TS}, ["user_id", "enrolment_code", "expires_at"]), "Created"),
       "403": HELD, "404": problem("Unknown user"), "409": problem("The user has MFA already")}, params=[p("id", "user id")], tags=["admin"])},
  "/v1/users/{id}/mfa": {"delete": op("Reset a user's MFA: removes the TOTP secret and recovery codes, so the user enrols again (with an enrolment code where the roles require MFA), and ends every access token the user holds, at once, on every node. Needs update on users, " + GRANT_RULE + ", and an access token issued within auth.reauth_max_age (401 otherwise)",
      {"204": {"description": "Reset"}, "403": HELD, "404": problem("Unknown user")}, params=[p("id", "user id")], tags=["admin"])},
  "/v1/policy": {"get": op("The policy in force", {"200": {"description": "The document as it was put, in its format", "content": {"application/json": {"schema": ref("PolicyDocument")}, "application/yaml": {"schema": {"type": "string", "description": "the YAML policy document as put (see PolicyDocument)"}}}}}, tags=["policy"]),
                 "put": op("Replace the whole policy (JSON or YAML); 422 lists every problem. A document under which no principal could change the policy again (update on policy: the caller, from its address, or any client or user not disabled, users with MFA where enrolled) is refused with 422 policy-lockout unless force=true; the offline break-glass is `coffer policy apply --data-dir DIR FILE`",
                           {"204": {"description": "In force"}, "403": problem("No update on policy"),
                            "422": problem("invalid: the document does not compile (problems lists each); or policy-lockout: no principal could change the policy under it (retry with force=true if that is meant)")},
                           params=[q("force", "true: put the document in force even though no principal could change the policy under it", "boolean")],
                           body={"required": True, "content": {"application/json": {"schema": ref("PolicyDocument")}, "application/yaml": {"schema": ref("PolicyDocument")}}}, tags=["policy"])},
  "/v1/policy/check": {"post": op("Explain a decision without acting: what the policy in force answers for a principal, action and resource", {"200": jbody(ref("PolicyDecision"))}, body=req(ref("PolicyCheck")), tags=["policy"])},
  "/v1/collections": {"post": op("Create a collection", {"201": jbody(ref("Collection"), "Created"), "409": problem("Exists")}, body=req(ref("Collection")), tags=["records"]),
                      "get": op("List collections", {"200": jbody(obj({"collections": {"type": "array", "items": ref("Collection")}}, ["collections"]))}, tags=["records"])},
  "/v1/collections/{c}": {"get": op("A collection's schema", {"200": jbody(ref("Collection")), "404": problem("Unknown")}, params=[p("c", "collection")], tags=["records"])},
  "/v1/collections/{c}/records": {"post": op("Create a record; binding it to a data subject's key (subject) is decided by policy like the owner (resource.subject)", {"201": jbody(obj({"id": S}, ["id"]), "Created"), "404": problem("Unknown collection"),
      "409": ERASED},
      body=req(ref("NewRecord")), params=[p("c", "collection")], tags=["records"])},
  "/v1/collections/{c}/records/{id}": {
      "get": op("Read a record, shaped by the caller's field views", {"200": jbody(ref("Record")), "404": problem("Unknown or not to be known, or its data subject was erased"),
                "409": problem(INTEGRITY + "; or conflict: a value is sealed under a retired or destroyed key version")}, params=[p("c", "collection"), p("id", "record id")], tags=["records"]),
      "patch": op("Replace some fields (the record moves to its next revision)", {"200": jbody(ref("Record")), "204": {"description": "Updated; not readable by the caller"}, "404": problem("Unknown"),
                  "409": problem("subject-erased, " + INTEGRITY + ", key-retired or key-version-destroyed; or conflict: other updates of the record went first, try again")},
                  body=req(obj({"data": {"type": "object", "additionalProperties": True}}, ["data"])), params=[p("c", "collection"), p("id", "record id")], tags=["records"]),
      "delete": op("Delete a record", {"204": {"description": "Deleted"}, "404": problem("Unknown")}, params=[p("c", "collection"), p("id", "record id")], tags=["records"])},
  "/v1/collections/{c}/records/search": {"post": op("Exact-match search on searchable fields (blind index); every field in where must be one the caller sees in plain (403 naming it otherwise: a hit or none would confirm a guess). Each hit is checked after decryption; a record the index named wrongly, or that fails its integrity check, is left out and raises a data.integrity security event",
      {"200": jbody(obj({"records": {"type": "array", "items": ref("Record")}}, ["records"])), "409": problem("conflict: a hit's value is sealed under a retired or destroyed key version")},
      body=req(ref("Search")), params=[p("c", "collection")], tags=["records"])},
  "/v1/subjects/{subject}": {"delete": op("Erase a data subject everywhere (crypto-shredding)", {"200": jbody(obj({"subject_erased": {"const": True}, "records_deleted": {"type": "integer", "minimum": 0}}, ["subject_erased", "records_deleted"]))}, params=[p("subject", "data subject")], tags=["records"])},
  "/v1/tokenize": {"post": op("Replace values with tokens (batch, same order, all or nothing). Random items need tokenize on tokens/TYPE, deterministic and format_preserving items tokenize_linkable, canaries also admin. Metered per principal over a sliding hour, across "
      "nodes: limits.tokenize_linkable_per_hour (default 10000) values in deterministic or format_preserving mode, "
      "limits.tokenize_per_hour (default none) in any mode, replaced per role under limits.roles. Over a quota: 429 with "
      "Retry-After (when enough earlier use has left the hour), audited as a denial; a request larger than a whole quota: 413. "
      "Volume raises data.bulk_tokenize.",
      {"200": jbody(obj({"tokens": {"type": "array", "items": S}}, ["tokens"])),
       "403": problem("Not allowed: names the action and tokens/TYPE refused (nothing is stored)"),
       "409": problem("items[i]: a canary over an existing token that is not one, the same value as a canary and a real token in one request, or a token that collides with one of another type, key version or format; no value is named")},
      body=req(obj({"items": {"type": "array", "maxItems": MAX_BATCH, "items": ref("TokenItem")}}, ["items"])), tags=["tokens"])},
  "/v1/detokenize": {"post": op("Values of tokens, all or nothing. Rights are checked before any lookup, so the answer never says whether a token exists to a caller who could not detokenize it.",
      {"200": jbody(obj({"values": {"type": "array", "items": S}}, ["values"])),
       "403": problem("No detokenize right (with a view other than deny) on any token type: the same answer whatever the tokens; or a random or deterministic token, which names its type, of a type not granted"),
       "404": problem("tokens[i] is unknown or expired, or is a format-preserving token of a type the caller may not detokenize"),
       "409": problem("key-version-destroyed or key-retired: a token's value is sealed under an ended key version")},
      body=req(obj({"tokens": {"type": "array", "maxItems": MAX_BATCH, "items": S}}, ["tokens"])), tags=["tokens"])},
  "/v1/inspect": {"post": op("Find sensitive data in free text (where, never what)", {"200": jbody(obj({"findings": {"type": "array", "items": ref("Finding")}}, ["findings"]))}, body=req(obj({"text": S}, ["text"])), tags=["tokens"])},
  "/v1/redact": {"post": op("Redact sensitive data in free text", {"200": jbody(obj({"text": S, "findings": {"type": "integer", "minimum": 0, "description": "how many values were redacted"}}, ["text", "findings"]))}, body=req(obj({"text": S, "mode": {"enum": ["mask", "placeholder"]}}, ["text"])), tags=["tokens"])},
  "/v1/keys": {"post": op("Create a transit key", {"201": jbody(ref("TransitKey"), "Created"), "409": problem("Exists")},
      body=req(obj({"name": S, "deletable": {"type": "boolean"}, "auto_rotate_period": {"type": "string", "description": "Go duration; empty or 0 for none"}}, ["name"])), tags=["keys"])},
  "/v1/keys/wrapping_key": {"get": op("The RSA-4096 public key that bring-your-own-key imports are wrapped for (Vault transit BYOK scheme); its private key is sealed by the keyring and never exportable. A new one is made once the current one is older than transit.byok.wrapping_key_rotate_after (default 30 days); the previous one still unwraps imports for transit.byok.wrapping_key_grace (default 1h). Needs admin on keys/wrapping_key. No transit key may be called wrapping_key.",
      {"200": jbody(obj({"public_key": {"type": "string", "description": "PEM of an RSA-4096 SubjectPublicKeyInfo"},
                         "version": {"type": "integer", "minimum": 1, "description": "the wrapping key's version; a new one after each rotation"},
                         "created_at": {**TS, "description": "absent for a key made before wrapping keys rotated"}}, ["public_key", "version"]))}, tags=["keys"])},
  "/v1/keys/{name}/import": {"post": op("Create a transit key from a key you bring: ciphertext is base64 of RSA-OAEP (wrapping key, hash_function, empty label) of a fresh 32-byte AES key, followed by AES key wrap with padding (RFC 5649) of the 32-byte AES-256-GCM key under it. The key becomes version 1 and is never exportable. Every ciphertext that does not unwrap is the same 422. Needs admin on keys/NAME.",
      {"201": jbody(ref("TransitKey"), "Created"), "409": problem("A key of this name exists or existed")},
      body=req(obj({"ciphertext": {"type": "string", "contentEncoding": "base64"}, "hash_function": {"enum": ["SHA1", "SHA256", "SHA384", "SHA512"], "default": "SHA256", "description": "the RSA-OAEP hash; SHA1 is a 422 unless transit.byok.allow_sha1 is set"}}, ["ciphertext"])),
      params=[p("name", "key")], tags=["keys"])},
  "/v1/keys/{name}/import_version": {"post": op("Make a key you bring, wrapped as for import, the next version of an existing transit key: it encrypts from now on, older versions still decrypt down to min_decryption_version. Never exportable. Every ciphertext that does not unwrap is the same 422. Needs admin on keys/NAME.",
      {"200": jbody(ref("TransitKey")), "404": problem("No such key")},
      body=req(obj({"ciphertext": {"type": "string", "contentEncoding": "base64"}, "hash_function": {"enum": ["SHA1", "SHA256", "SHA384", "SHA512"], "default": "SHA256", "description": "the RSA-OAEP hash; SHA1 is a 422 unless transit.byok.allow_sha1 is set"}}, ["ciphertext"])),
      params=[p("name", "key")], tags=["keys"])},
  "/v1/keys/{name}/import_vault": {"post": op("Create a transit key from the versions of a HashiCorp Vault transit key (aes256-gcm96, exportable, not derived or convergent), each version's key wrapped as for import. "
      "`coffer keys import-vault` reads them from Vault's transit/export/encryption-key and sends them: the server never talks to Vault. Each version keeps its number, "
      "the first is the key's min_decryption_version, the last encrypts; every vault:vN: ciphertext Vault made under them decrypts here and on the Vault-compatible surface. "
      "The key is marked imported (imported_from vault) and is never exportable. Needs admin on keys/NAME; audited as keys.import_vault with a target per version, never material.",
      {"201": jbody(ref("TransitKey"), "Created"), "409": problem("A key of this name exists or existed, or earlier versions of this name sit at or above the first version"),
       "413": problem("More than 500 versions")},
      body=req(obj({"versions": {"type": "array", "minItems": 1, "maxItems": 500, "description": "consecutive, from Vault's min_decryption_version to its latest version",
                                 "items": obj({"version": {"type": "integer", "minimum": 1}, "ciphertext": {"type": "string", "contentEncoding": "base64"}}, ["version", "ciphertext"])},
                    "hash_function": {"enum": ["SHA1", "SHA256", "SHA384", "SHA512"], "default": "SHA256", "description": "the RSA-OAEP hash of every version's wrap; SHA1 is a 422 unless transit.byok.allow_sha1 is set"},
                    "auto_rotate_period": {"type": "string", "description": "Go duration (Vault's, carried over); 0 or empty for none"}}, ["versions"])),
      params=[p("name", "key")], tags=["keys"])},
  "/v1/keys/{name}": {"get": op("Transit key metadata (never material)", {"200": jbody(ref("TransitKey")), "404": problem("No such key")}, params=[p("name", "key")], tags=["keys"]),
                      "delete": op("Delete a transit key marked deletable (destroys its material)", {"204": {"description": "Deleted"}, "409": problem("Not deletable")}, params=[p("name", "key")], tags=["keys"])},
  "/v1/keys/{name}/config": {"post": op("Configure a transit key: min_decryption_version, deletable, auto_rotate_period (fields left out keep their value)", {"200": jbody(ref("TransitKey")), "404": problem("No such key")},
      body=req(obj({"min_decryption_version": {"type": "integer", "minimum": 1}, "deletable": {"type": "boolean"}, "auto_rotate_period": {"type": "string", "description": "Go duration; 0 turns it off"}})), params=[p("name", "key")], tags=["keys"])},
  "/v1/keys/{name}/encrypt": {"post": op("Encrypt with a transit key under its latest version (encrypt on keys/NAME)." + TRANSIT_FORMS,
      {"200": transit_ok("TransitCiphertext", "TransitBatchCiphertextResult"), "404": problem("No such key")},
      body=transit_body("TransitItem", "TransitItem", "TransitBatchItem"), params=[p("name", "key")], tags=["keys"])},
  "/v1/keys/{name}/decrypt": {"post": op("Decrypt with a transit key (decrypt on keys/NAME)." + TRANSIT_FORMS,
      {"200": transit_ok("TransitPlaintext", "TransitBatchPlaintextResult"), "404": problem("No such key")},
      body=transit_body("TransitCiphertextItem", "TransitCiphertextItem", "TransitBatchCiphertextItem"), params=[p("name", "key")], tags=["keys"])},
  "/v1/keys/{name}/rotate": {"post": op("Rotate a transit key", {"200": jbody(ref("TransitKey")), "404": problem("No such key")}, params=[p("name", "key")], tags=["keys"])},
  "/v1/keys/{name}/rewrap": {"post": op("Rewrap ciphertexts to the latest recorded version without answering the plaintext (decrypt and encrypt on keys/NAME)." + TRANSIT_FORMS,
      {"200": transit_ok("TransitCiphertext", "TransitBatchCiphertextResult"), "404": problem("No such key")},
      body=transit_body("TransitCiphertextItem", "TransitCiphertextItem", "TransitBatchCiphertextItem"), params=[p("name", "key")], tags=["keys"])},
  "/v1/admin/jobs": {"get": op("How far the background jobs that run on the serving nodes have come, for a progress bar: the rewrap (records walked of all records after a rotation of a collection or subject key, and values moved) and the reindex (blind index entries under their field's newest index key of all entries of rotated fields). Poll it; `coffer jobs wait` and the console do. Needs read on system/jobs",
      {"200": jbody(obj({"jobs": {"type": "array", "items": obj({"name": {"enum": ["rewrap", "reindex"]}, "state": {"enum": ["idle", "pending", "running", "done"]},
          "done": {"type": "integer", "minimum": 0}, "total": {"type": "integer", "minimum": 0}, "moved": {"type": "integer", "minimum": 0},
          "node": {"type": "string", "description": "the node holding the job's lease while it runs"}, "updated_at": TS}, ["name", "state", "done", "total"])}}, ["jobs"]))}, tags=["admin"])},
  "/v1/admin/keys/rotate": {"post": op("Rotate one of Coffer's own keys (collection/NAME, subject/NAME, index/COLLECTION/FIELD, mask/hash/COLLECTION/FIELD (the hash mask's pseudonyms of one field), tokens/TYPE[/fpe|/deterministic], audit/hmac, audit/signing, jwt/signing); collection and subject keys are then rewrapped, and index keys reindexed, in the background; the audit log goes on under a new audit key version, and every older one is kept to verify it. Needs admin on system/keys/KEY_ID (Coffer's own keys have a namespace of their own, which no transit pattern keys/… reaches).", {"200": jbody(obj({"key_id": S, "rewrap_scheduled": {"type": "boolean"}, "reindex_scheduled": {"type": "boolean"}, "version": {"type": "integer", "minimum": 1, "description": "absent for jwt/signing, whose keys are named"}}, ["key_id", "rewrap_scheduled"])),
      "404": problem("No such key"), "409": problem("The key was destroyed")},
      body=req(obj({"key_id": S}, ["key_id"])), tags=['keys'])},
  "/v1/admin/keys/retire": {"post": op("Retire an old version of a collection/NAME, subject/ID or tokens/TYPE key: it no longer decrypts. Refused (409) while it is the version that encrypts, while a newer version is younger than the key cache time and a margin (a node may still seal under the old one; the problem says when to retry, with Retry-After), and while any stored value is sealed under it (the problem says how many; the rewrap moves record values after a rotation, token values are never moved). Retiring a retired version does nothing. Undo with /v1/admin/keys/unretire. Needs admin on system/keys/KEY_ID (Coffer's own keys have a namespace of their own, which no transit pattern keys/… reaches).", {"200": jbody(ref("KeyVersionChange")),
      "404": problem("No such key or version"), "409": problem("Refused for safety: the current version, a version that is too young to retire, values still sealed under it, or a destroyed version")},
      body=req(ref("KeyVersionRequest")), tags=['keys'])},
  "/v1/admin/keys/unretire": {"post": op("Make a retired key version decrypt again (to undo a retirement). A destroyed version cannot come back (409). Needs admin on system/keys/KEY_ID (Coffer's own keys have a namespace of their own, which no transit pattern keys/… reaches).", {"200": jbody(ref("KeyVersionChange")),
      "404": problem("No such key or version"), "409": problem("The version was destroyed")},
      body=req(ref("KeyVersionRequest")), tags=['keys'])},
  "/v1/admin/keys/revoke-signing": {"post": op("Revoke an access token signing key at once (a leaked key; its kid is in each token's header and in the JWKS): it is deleted, every token it signed is refused on every node from the next request, and it is no longer published; when it is the active key, a new one is made first (new_active_kid). A key rotated out otherwise verifies only for the token lifetime plus the skew. Needs admin on system/keys/jwt/signing; audited as keys.revoke_signing.",
      {"200": jbody(obj({"kid": S, "new_active_kid": S}, ["kid"])), "404": problem("No such signing key")},
      body=req(obj({"kid": S}, ["kid"])), tags=['keys'])},
  "/v1/admin/keys/destroy": {"post": op("Destroy a retired key version for good: its wrapped key bytes are erased and nothing sealed under it can be opened again (backups taken before hold their own copy of the key). Refused (409) unless the version is retired, and while any stored value is sealed under it. Destroying a destroyed version does nothing. Needs admin on system/keys/KEY_ID (Coffer's own keys have a namespace of their own, which no transit pattern keys/… reaches).", {"200": jbody(ref("KeyVersionChange")),
      "404": problem("No such key or version"), "409": problem("Refused for safety: the version is not retired, or values are still sealed under it")},
      body=req(ref("KeyVersionRequest")), tags=['keys'])},
  # The Vault-compatible transit surface (internal/vaultcompat, docs/vault-compat.md): Vault's own paths, bodies,
  # envelope and {"errors":[...]} errors, routed as one pattern per method and dispatched as Vault's router does.
  "/v1/transit/{path...}": {m: vault_op(m) for m in ("get", "post", "put")},
  "/v1/audit/events": {"get": op("Audit events, each decoded from what is stored and its hash recomputed, so a stored row whose columns or body were edited (relabelled principal, action or time) is never answered, as matching or at all (it is logged and counted)", {"200": jbody(obj({"events": {"type": "array", "items": ref("AuditEvent")}, "next": {"type": "string", "description": "cursor for the next page (after=), when there is one"}, "archived_segments": {"type": "array", "items": S, "description": "present when the requested range (since, or all time) reaches into history pruned from the database: the ids (NODE:FIRST-LAST) of the sealed segments in the audit archive that hold it, at most 100; read them with `coffer audit search --archive DIR`"}}, ["events"]))},
      params=[q("limit", "at most this many", "integer"), q("principal", "principal id"), q("action", "action"), q("since", "RFC 3339 time"), q("after", "cursor from a previous page")], tags=["audit"])},
  "/v1/sys/nodes": {"get": op("The deployment's live nodes (each holding the lease on its node id), their versions and last heartbeats. Needs read on nodes; audited.", {"200": jbody(obj({"nodes": {"type": "array", "items": ref("Node")}}, ["nodes"]))}, tags=["operations"])},
  "/v1/audit/verify": {"post": op("Verify the audit log now, as `coffer audit verify` does offline: every node's hash chain and signed checkpoints in the store, compared with the file sink (audit.file) and the witness (audit.witness) when configured. A broken log is a 200 with ok false and one finding per problem (node and seq, never a value); 409 while another verification runs on the node. Needs admin on audit.",
      {"200": jbody(obj({"ok": {"type": "boolean"}, "nodes": {"type": "integer"}, "events": {"type": "integer"}, "checkpoints": {"type": "integer"}, "findings": {"type": "array", "items": S}, "file_compared": {"type": "boolean"}, "witness_compared": {"type": "boolean"}, "verified_at": {"type": "string", "format": "date-time"}})), "409": problem("A verification is already running")}, tags=["audit"])},
  "/v1/admin/audit/archive": {"post": op("Archive the sealed audit history now, as the background job does every audit.archive_every and `coffer audit archive` does offline: each node's events up to a signed checkpoint are written to audit.archive as a compressed, self-describing segment (events, checkpoints, the previous segment's head), read back and verified; then the archived segments older than `before` (default audit.retain_in_db) are pruned from the database (never a node's newest event), each prune an audit event. Idempotent: a run cut short is resumed, never duplicating a segment. 409 when audit.archive is not set or another node runs the job; 503 when the archive volume is full or unreachable, or a segment does not read back verified (nothing more is pruned; the node keeps serving). Needs admin on audit.",
      {"200": jbody(obj({"archived": {"type": "array", "items": S}, "adopted": {"type": "array", "items": S}, "pruned": {"type": "array", "items": S}, "archived_events": {"type": "integer"}, "pruned_events": {"type": "integer"}, "bytes": {"type": "integer"}}, ["archived", "adopted", "pruned"])), "409": problem("audit.archive is not configured, or the archive job runs elsewhere")},
      body=req(obj({"before": {"type": "string", "description": "a Go duration: archive and prune what is older (default audit.retain_in_db); send {} for the default"}})), tags=["audit"])},
  "/v1/security/suspensions/{principal}": {"delete": op("Lift a principal's suspension", {"204": {"description": "Lifted"}}, params=[p("principal", "principal id")], tags=["audit"]),
      "put": op("Suspend a principal by hand (needs admin on security): every request of its is refused (403) on every node until the time answered or until lifted. Body optional: {\"duration\": \"1h\"} (default 1h, at most 720h). Suspending yourself is 409.", {"200": jbody(obj({"principal": S, "until": {"type": "string", "format": "date-time"}})), "409": problem("You cannot suspend yourself")},
                body={"required": False, "content": {"application/json": {"schema": obj({"duration": S})}}}, params=[p("principal", "principal id")], tags=["audit"])},
  "/v1/security/suspensions": {"get": op("The suspensions in force (needs read on security)", {"200": jbody(obj({"suspensions": {"type": "array", "items": obj({"principal": S, "until": {"type": "string", "format": "date-time"}, "reason": S})}}))}, tags=["audit"])},
  "/v1/security/events": {"get": op("Security events raised by the detectors (kinds: see SecurityEvent)", {"200": jbody(obj({"events": {"type": "array", "items": ref("SecurityEvent")}}, ["events"]))},
      params=[q("since", "RFC 3339 time"), q("kind", "event kind")], tags=["audit"])},
}

# Creates take an Idempotency-Key header (internal/idempotency): kept 24 h per principal.
IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header", "required": False,
  "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
  "description": "Makes the create run once: the answer is kept 24 hours per principal, and a retry with the same key and the same request "
                 "(method, path, body) gets it again (same id, same secret, same tokens) with Idempotent-Replayed: true, creating nothing. "
                 "The same key with another request is 422; a duplicate sent while the first still runs waits for its answer, then is 409 "
                 "(retry later). A create that fails keeps nothing: its retry runs again. A retry whose caller's authority changed since (its generation, "
                 "its token's roles, attributes or second factor, or the policy version) is 403 and gets nothing of the kept answer. 1 to 255 visible ASCII characters (400 otherwise)."}
IDEMPOTENT = ["/v1/clients", "/v1/users", "/v1/collections", "/v1/collections/{c}/records", "/v1/tokenize", "/v1/keys"]
for path in IDEMPOTENT:
    o = paths[path]["post"]
    o["parameters"] = o.get("parameters", []) + [IDEMPOTENCY_KEY]
    o["responses"].setdefault("409", problem("Conflict"))
    o["responses"]["409"] = problem(o["responses"]["409"]["description"] + "; or a request with the same Idempotency-Key is still being carried out (retry later)")
    o["responses"]["422"] = problem(o["responses"].get("422", {}).get("description", "Valid JSON that breaks the schema") + "; or the Idempotency-Key was used for another request")

doc = {
  "openapi": "3.1.0",
  "info": {"title": "Coffer", "version": "1", "description": "A self-hosted vault for the sensitive data of backend systems. Every error is application/problem+json (RFC 9457)."},
  "servers": [{"url": "https://127.0.0.1:8443"}],
  "security": [{"bearer": []}],
  "components": {"schemas": schemas, "securitySchemes": {
      "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
      "vaultToken": {"type": "apiKey", "in": "header", "name": "X-Vault-Token", "description": "a Coffer access token, on the Vault-compatible transit surface only"},
      "oauth2": {"type": "oauth2", "flows": {"clientCredentials": {"tokenUrl": "/v1/oauth/token", "scopes": {}}}}}},
  "paths": paths,
}
json.dump(doc, open("internal/httpapi/openapi.json", "w"), indent=1, sort_keys=True)
print("wrote internal/httpapi/openapi.json with", len(paths), "paths")
