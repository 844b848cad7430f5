// Package client is the Go SDK for Coffer's HTTP API: it gets and renews
// access tokens with the OAuth 2.0 client-credentials grant
// (golang.org/x/oauth2/clientcredentials), trusts Coffer's CA, and offers a
// typed method for every operation of the OpenAPI document the server
// serves (/v1/openapi.json): collections, records, search, subjects,
// tokens, transit keys and batches, Coffer's own keys, the policy, clients,
// users, logins and MFA, audit and security events, inspect and redact,
// and a sealed server's unseal calls. A test fails when an operation has no
// method. Failures come back as *Error carrying the problem+json fields;
// StatusCode reads the HTTP status of any error.
//
// The examples run against a live server that the package's tests start.
//
// The SDK never logs; it keeps the client secret only inside the token
// source and never puts a value it sends into an error.
package client
