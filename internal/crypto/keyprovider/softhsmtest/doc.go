// Package softhsmtest sets up SoftHSM2 tokens for the tests that run the
// PKCS#11 root key provider against a real token (build tag pkcs11). It is
// test support only: nothing in a Coffer binary imports it.
//
// It must never be imported by non-test code: it writes SOFTHSM2_CONF into
// the process environment and initialises tokens with fixed test PINs.
package softhsmtest
