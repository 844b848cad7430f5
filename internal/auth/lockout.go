package auth

import "time"

// Lockout schedule: the first FreeFailures failures cost nothing, then each
// further failure doubles the delay from LockoutBase up to LockoutMax.
const (
	FreeFailures = 4
	LockoutBase  = time.Second
	LockoutMax   = 15 * time.Minute
)

// LockoutDelay returns how long an account or address must wait after its
// failures-th consecutive failure: 0 for the first four, then 1s, 2s, 4s, …
// capped at 15 minutes. It is pure; the counts live in the store.
func LockoutDelay(failures int) time.Duration {
	if failures <= FreeFailures {
		return 0
	}
	n := failures - FreeFailures - 1
	if n >= 30 { // 2^30 s is far past the cap; avoid overflow
		return LockoutMax
	}
	d := LockoutBase << n
	if d > LockoutMax {
		return LockoutMax
	}
	return d
}
