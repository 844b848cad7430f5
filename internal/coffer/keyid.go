package coffer

import "errors"

// Conflicts of the data key table that the keyring branches on and the
// store reports: one value each, so that no adapter has to translate.
var (
	// ErrKeyVersionExists: a data key version is already stored (another
	// node made it first).
	ErrKeyVersionExists = errors.New("data key version already exists")
	// ErrWrappedKeyChanged: a data key row is gone, destroyed, or no
	// longer holds the wrapped bytes the caller read.
	ErrWrappedKeyChanged = errors.New("wrapped data key changed meanwhile")
)
