// Package openapitest checks Coffer's HTTP answers against the OpenAPI 3.1
// document the server serves (/v1/openapi.json), with
// github.com/pb33f/libopenapi-validator: status codes, content types and
// bodies, every schema in full. The e2e and attack suites wrap their HTTP
// clients' transports with a Recorder, so every answer they receive is
// checked and a mismatch fails the test that saw it.
//
// It is test support only: nothing in a Coffer binary may import it, and it
// never changes what a caller reads.
package openapitest
