// Package idempotency owns the Idempotency-Key support of creates: a
// request sent with the header claims its key, per principal, in the
// store before it runs; its answer is kept (sealed under the keyring,
// since an answer may hold a client secret) for 24 hours, and a retry
// with the same key and the same request (method, path, body) gets that
// answer again instead of creating anything. The same key with another
// request is refused (422); a duplicate that arrives while the first is
// still running waits for its answer, up to a bound, then is refused
// (409). A request that fails gives its key up, so that a retry runs it
// again. A claim whose node died before answering may be taken over by a
// retry once the claim runs out. An answer is replayed only to the
// authority it was given under (the principal's generation, its token's
// roles, attributes and second factor, the policy's version): a caller
// whose rights changed since gets 403 and nothing runs again.
//
// The HTTP layer reads the header and calls [Keeper.Begin]; the store
// keeps the rows (store.ClaimIdempotencyKey and friends).
//
// # Must never
//
// It must never keep an answer unsealed, never replay one principal's
// answer to another (keys are per principal), never replay one to a
// caller whose authority changed since it was given, and never run a request a
// second time while its first run may still be going on.
package idempotency
