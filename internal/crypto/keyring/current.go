package keyring

import "context"

// CurrentVersion returns the version of keyID that Seal encrypts with now
// (creating version 1 on first use, like Seal). A destroyed key id returns
// ErrKeyDestroyed. Background jobs use it to find values to rewrap.
func (kr *Keyring) CurrentVersion(ctx context.Context, keyID string) (uint32, error) {
	var n uint32
	err := kr.withCurrent(ctx, keyID, func(v *keyVersion) error {
		n = v.n
		return nil
	})
	return n, err
}
