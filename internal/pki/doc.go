// Package pki owns Coffer's own certificate authority and its TLS settings:
// creating and loading the CA, issuing server and client certificates, and
// the crypto/tls configurations the server and its clients use.
//
// # Security properties
//
//   - Keys are ECDSA P-256; the CA signs only leaf certificates
//     (MaxPathLen 0), and leaves are marked for server or client use only.
//   - The server speaks TLS 1.3, or TLS 1.2 with ECDHE and an AEAD suite
//     (AES-GCM or ChaCha20-Poly1305); CBC, RSA key exchange and older
//     protocol versions are refused.
//   - The server certificate is re-read from disk when its files change, so
//     a renewal needs no restart; a half-written pair keeps the old one.
//   - A client certificate names its client in a single URI SAN,
//     spiffe://coffer/client/NAME.
//
// # What it must never do
//
// It must never write a private key with permissions wider than 0600, load
// a CA key that group or others may read, overwrite an existing CA, put key
// material into an error or a String, or weaken the TLS floor for a caller.
//
// Randomness is injected (io.Reader) for serial numbers. Since Go 1.26 the
// standard library draws ECDSA keys and signatures from its own secure
// source and ignores the reader passed to it.
package pki
