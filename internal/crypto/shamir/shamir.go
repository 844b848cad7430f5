package shamir

import (
	"errors"
	"fmt"
	"io"
)

// Bounds on shares: x coordinates are the non-zero bytes.
const (
	MinThreshold = 2
	MaxShares    = 255
)

// Errors callers branch on. None of them carries a share or a secret.
var (
	// ErrParams: Split was asked for other than 2 ≤ threshold ≤ n ≤ 255
	// or an empty secret.
	ErrParams = errors.New("shamir: need 2 ≤ threshold ≤ shares ≤ 255 and a non-empty secret")
	// ErrInvalidShares: Combine was given fewer than two shares, shares of
	// different lengths, a share without data, a share with x = 0, or two
	// shares with the same x.
	ErrInvalidShares = errors.New("shamir: invalid set of shares")
)

// Split splits secret into n shares, any threshold of which recover it with
// Combine. Each share is one byte x (1…n, in order) followed by
// len(secret) bytes. The random coefficients are read from r (use
// crypto/rand.Reader); a short read fails the split.
func Split(secret []byte, n, threshold int, r io.Reader) ([][]byte, error) {
	if len(secret) == 0 || threshold < MinThreshold || threshold > n || n > MaxShares {
		return nil, ErrParams
	}
	// coef[i*(threshold-1)+k] is the coefficient of x^(k+1) for byte i.
	deg := threshold - 1
	coef := make([]byte, len(secret)*deg)
	defer clear(coef)
	if _, err := io.ReadFull(r, coef); err != nil {
		return nil, fmt.Errorf("shamir: read random coefficients: %w", err)
	}
	shares := make([][]byte, n)
	for s := range shares {
		x := byte(s + 1)
		share := make([]byte, 1+len(secret))
		share[0] = x
		for i, c0 := range secret {
			cs := coef[i*deg : (i+1)*deg]
			// Horner: ((c_d x + c_{d-1}) x + …) x + c_0.
			var y byte
			for k := deg - 1; k >= 0; k-- {
				y = mul(y^cs[k], x)
			}
			share[1+i] = y ^ c0
		}
		shares[s] = share
	}
	return shares, nil
}

// Combine recovers the secret from shares made by Split: given at least
// threshold of them it returns the secret; given fewer, or a wrong share,
// it returns a wrong secret without an error (verify the result). It
// returns ErrInvalidShares for fewer than two shares, shares of different
// lengths or without data, x = 0, or a repeated x. Extra shares beyond
// the threshold are harmless when they are right.
func Combine(shares [][]byte) ([]byte, error) {
	return interpolate(shares, 0)
}

// Evaluate returns the share numbered x (1…255) of the polynomials that
// shares determine: given threshold right shares of a split, it is the
// share Split made for x (for x ≤ n), which lets a holder of the secret's
// shares check or commit to the others. Errors as for Combine, and
// ErrInvalidShares for x = 0 (that is the secret: use Combine).
func Evaluate(shares [][]byte, x byte) ([]byte, error) {
	if x == 0 {
		return nil, ErrInvalidShares
	}
	y, err := interpolate(shares, x)
	if err != nil {
		return nil, err
	}
	return append([]byte{x}, y...), nil
}

// interpolate evaluates at x the polynomials through shares (Lagrange),
// byte by byte.
func interpolate(shares [][]byte, x byte) ([]byte, error) {
	if len(shares) < MinThreshold {
		return nil, ErrInvalidShares
	}
	size := len(shares[0])
	if size < 2 {
		return nil, ErrInvalidShares
	}
	var seen [256]bool
	for _, s := range shares {
		if len(s) != size || s[0] == 0 || seen[s[0]] {
			return nil, ErrInvalidShares
		}
		seen[s[0]] = true
	}
	// The Lagrange basis at x depends only on the public x coordinates:
	// w_j = Π_{m≠j} (x - x_m) / (x_j - x_m), and subtraction is XOR.
	w := make([]byte, len(shares))
	for j, sj := range shares {
		num, den := byte(1), byte(1)
		for m, sm := range shares {
			if m != j {
				num = mul(num, x^sm[0])
				den = mul(den, sj[0]^sm[0])
			}
		}
		w[j] = mul(num, inv(den))
	}
	out := make([]byte, size-1)
	for i := range out {
		var y byte
		for j, s := range shares {
			y ^= mul(s[1+i], w[j])
		}
		out[i] = y
	}
	return out, nil
}

// mul multiplies in GF(2^8) modulo x^8+x^4+x^3+x+1 without branches or
// table lookups.
func mul(a, b byte) byte {
	var p byte
	for range 8 {
		p ^= -(b & 1) & a
		a = a<<1 ^ 0x1b&-(a>>7)
		b >>= 1
	}
	return p
}

// inv returns a^254, the multiplicative inverse of a non-zero a (and 0 for
// 0), by a fixed chain: a^254 = a^2 · a^4 · … · a^128.
func inv(a byte) byte {
	sq := mul(a, a) // a^2
	r := sq
	for range 6 {
		sq = mul(sq, sq) // a^4 … a^128
		r = mul(r, sq)
	}
	return r
}
