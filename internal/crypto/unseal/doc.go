// Package unseal opens and creates the root key provider a deployment's
// configuration names (file, env, pkcs11, shamir) and, for a root key split
// into Shamir shares, runs the gate of a sealed server: it takes shares one
// at a time (POST /v1/sys/unseal), reports the progress, drops the shares
// held for a caller with the data directory's reset token, and starts the
// server once the key is whole. It sits beside keyprovider, which holds
// the providers themselves.
//
// It must never write, log or put in an error a share, the root key or the
// reset token; never keep a share it was given once it has been used; and
// never write the root key of a shamir deployment anywhere.
package unseal
