// Package client is the Go SDK for Coffer's HTTP API: it gets and renews
// access tokens with the OAuth 2.0 client-credentials grant
// (golang.org/x/oauth2/clientcredentials), trusts Coffer's CA, and offers
// typed calls for collections, records, search, subjects, clients and the
// policy. Failures come back as *Error carrying the problem+json fields.
//
// The SDK never logs; it keeps the client secret only inside the token
// source and never puts a value it sends into an error.
package client
