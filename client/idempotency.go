package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
)

type idempotencyKeyCtx struct{}

// WithIdempotencyKey returns a context under which a create (of a record,
// collection, client, user or transit key, or a tokenize) carries key as its
// Idempotency-Key: the server runs a create at most once per key and
// principal (for 24 hours) and answers a repeat with the first answer. Give
// the same key when an application repeats a create after it crashed or
// lost the answer; without one, each create call gets a fresh random key,
// which makes the client's own retries (see RetryPolicy) safe.
func WithIdempotencyKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, idempotencyKeyCtx{}, key)
}

// idempotencyKey is the caller's key, else 128 random bits.
func idempotencyKey(ctx context.Context) (string, error) {
	if k, ok := ctx.Value(idempotencyKeyCtx{}).(string); ok && k != "" {
		return k, nil
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("client: idempotency key: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// createPath says whether a POST to path is a create the server runs once
// per Idempotency-Key.
func createPath(path string) bool {
	switch path {
	case "/v1/clients", "/v1/users", "/v1/collections", "/v1/tokenize", "/v1/keys":
		return true
	}
	rest, ok := strings.CutPrefix(path, "/v1/collections/")
	if !ok {
		return false
	}
	name, tail, _ := strings.Cut(rest, "/")
	return name != "" && tail == "records"
}
