package keyprovider

import (
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/cofferhq/coffer/internal/crypto/envelope"
	"github.com/cofferhq/coffer/internal/crypto/shamir"
	"github.com/cofferhq/coffer/internal/secret"
)

// Errors of the Sealed provider, for callers to branch on. None carries a
// share or a key.
var (
	// ErrSealed: the provider has not been unsealed yet; every Wrap and
	// Unwrap returns it (serve 503 until enough shares are given).
	ErrSealed = errors.New("keyprovider: sealed: give the root key shares first")
	// ErrWrongShares: the shares given combine to a key the check blob
	// refutes — a share is wrong or of another split. The shares are kept:
	// give another share (any threshold of right ones among those held
	// unseal), or Reset and start again.
	ErrWrongShares = errors.New("keyprovider: the shares given do not make the root key")
	// ErrInvalidShare: a share is malformed (wrong length, an x outside
	// 1…n) or has the x of a different share already given. None of the
	// shares of that call was taken.
	ErrInvalidShare = errors.New("keyprovider: invalid root key share")
	// ErrInvalidCheck: the check blob is not one SplitRootKey made.
	ErrInvalidCheck = errors.New("keyprovider: invalid root key check blob")
)

// Check blob layout: format, threshold, number of shares, then an envelope
// sealing checkPlaintext under a key derived from the root key, with the
// three header bytes in its additional data.
const (
	checkFormat     = 1
	checkHeaderSize = 3
	checkLabel      = "coffer/keyprovider/sealed/check/v1"
	checkPlaintext  = "coffer root key"
	shareSize       = 1 + RootKeySize
	// maxUnsealTries bounds the threshold-sized subsets of the shares held
	// that Unseal tries when more than threshold are held.
	maxUnsealTries = 1024
)

// SplitRootKey makes a new random 32-byte root key from r (use
// crypto/rand.Reader), splits it into n shares of which any threshold
// recover it (2 ≤ threshold ≤ n ≤ 255), and returns the shares in text form
// (shamir.EncodeShare; give one to each key holder, never store them
// together) and a check blob to store with the configuration, from which
// NewSealed learns the threshold and verifies the key the shares make. The
// key itself is not returned and exists only while this call runs. The
// check blob is not secret, but must not be swapped: it decides which key
// is accepted.
func SplitRootKey(r io.Reader, n, threshold int) (shares []string, check []byte, err error) {
	if threshold < shamir.MinThreshold || threshold > n || n > shamir.MaxShares {
		return nil, nil, fmt.Errorf("keyprovider: split root key: %w", shamir.ErrParams)
	}
	key, err := secret.Random(r, RootKeySize)
	if err != nil {
		return nil, nil, fmt.Errorf("keyprovider: split root key: %w", err)
	}
	defer key.Zero()
	raw := key.Bytes()
	defer clear(raw)
	parts, err := shamir.Split(raw, n, threshold, r)
	if err != nil {
		return nil, nil, fmt.Errorf("keyprovider: split root key: %w", err)
	}
	defer func() {
		for _, p := range parts {
			clear(p)
		}
	}()
	header := []byte{checkFormat, byte(threshold), byte(n)} // #nosec G115 -- 2 ≤ threshold ≤ n ≤ shamir.MaxShares (255), checked above
	a, err := checkAEAD(raw)
	if err != nil {
		return nil, nil, err
	}
	sealed, err := a.Seal(r, []byte(checkPlaintext), checkAAD(header))
	if err != nil {
		return nil, nil, fmt.Errorf("keyprovider: split root key: %w", err)
	}
	shares = make([]string, n)
	for i, p := range parts {
		shares[i] = shamir.EncodeShare(p)
	}
	return shares, append(header, sealed...), nil
}

// checkAEAD returns the AEAD of the check blob: under a key derived from
// the root key, so the blob is no oracle for anything the root key wraps.
func checkAEAD(root []byte) (*envelope.AEAD, error) {
	k, err := hkdf.Key(sha256.New, root, nil, checkLabel, RootKeySize)
	if err != nil {
		return nil, fmt.Errorf("keyprovider: derive check key: %w", err)
	}
	defer clear(k)
	key := secret.NewKey(k)
	defer key.Zero()
	a, err := envelope.New(key, 1)
	if err != nil {
		return nil, fmt.Errorf("keyprovider: %w", err)
	}
	return a, nil
}

func checkAAD(header []byte) []byte {
	return envelope.AAD(checkLabel, string(header))
}

// Sealed is a Provider whose root key is split into shares (SplitRootKey).
// It starts sealed, answering every Wrap and Unwrap with ErrSealed, until
// Unseal has been given threshold right shares; from then on it behaves as
// a Local over the recovered key (and opens what such a Local wraps). It
// is safe for concurrent use.
type Sealed struct {
	threshold, n int
	header       []byte
	check        []byte // envelope part of the check blob
	rand         io.Reader

	mu     sync.Mutex
	shares map[byte][]byte // by x; guarded by mu

	local atomic.Pointer[Local] // set once unsealed
}

// NewSealed returns a sealed provider for the check blob SplitRootKey made.
// Once unsealed, nonces are read from r, which must be safe for concurrent
// use; nil means crypto/rand.Reader. It returns ErrInvalidCheck for a blob
// that is not a check blob.
func NewSealed(check []byte, r io.Reader) (*Sealed, error) {
	if len(check) < checkHeaderSize+envelope.Overhead || check[0] != checkFormat {
		return nil, ErrInvalidCheck
	}
	t, n := int(check[1]), int(check[2])
	if t < shamir.MinThreshold || t > n {
		return nil, ErrInvalidCheck
	}
	if r == nil {
		r = rand.Reader
	}
	return &Sealed{
		threshold: t,
		n:         n,
		header:    slices.Clone(check[:checkHeaderSize]),
		check:     slices.Clone(check[checkHeaderSize:]),
		rand:      r,
		shares:    make(map[byte][]byte),
	}, nil
}

// Name implements Provider: "shamir:T-of-N".
func (s *Sealed) Name() string {
	return "shamir:" + strconv.Itoa(s.threshold) + "-of-" + strconv.Itoa(s.n)
}

// Sealed reports whether the provider still waits for shares.
func (s *Sealed) Sealed() bool { return s.local.Load() == nil }

// Progress returns how many distinct shares are held and how many are
// needed. Once unsealed it returns need, need.
func (s *Sealed) Progress() (have, need int) {
	if !s.Sealed() {
		return s.threshold, s.threshold
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.shares), s.threshold
}

// Unseal adds shares (decoded with shamir.DecodeShare) and, once threshold
// distinct shares are held, combines them into the root key and verifies it
// against the check blob. It returns done = true once unsealed (and at once
// if already unsealed, ignoring shares).
//
// A malformed share, or one whose x is that of a different share already
// held, fails the call with ErrInvalidShare and none of its shares is
// taken. A share already held is ignored. When the shares held do not
// make the root key, it returns ErrWrongShares and keeps them: with more
// than threshold held, every threshold-sized subset is tried (up to 1024),
// so another right share gets past one wrong one. Progress is never lost
// but by Reset. The caller may clear shares after the call.
func (s *Sealed) Unseal(shares [][]byte) (done bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.Sealed() {
		return true, nil
	}
	var add [][]byte
	for i, sh := range shares {
		if len(sh) != shareSize || sh[0] == 0 || int(sh[0]) > s.n {
			return false, fmt.Errorf("%w: share %d of this call is malformed", ErrInvalidShare, i+1)
		}
		held, ok := s.shares[sh[0]]
		if !ok {
			for _, a := range add {
				if a[0] == sh[0] {
					held, ok = a, true
				}
			}
		}
		if ok {
			if subtle.ConstantTimeCompare(held, sh) != 1 {
				return false, fmt.Errorf("%w: share %d of this call conflicts with share number %d given before", ErrInvalidShare, i+1, sh[0])
			}
			continue
		}
		add = append(add, sh)
	}
	for _, sh := range add {
		s.shares[sh[0]] = slices.Clone(sh)
	}
	if len(s.shares) < s.threshold {
		return false, nil
	}
	xs := make([]byte, 0, len(s.shares))
	for x := range s.shares {
		xs = append(xs, x)
	}
	slices.Sort(xs)
	l, err := s.combine(xs)
	if err != nil {
		return false, err
	}
	s.local.Store(l)
	for x, sh := range s.shares {
		clear(sh)
		delete(s.shares, x)
	}
	return true, nil
}

// combine tries threshold-sized subsets of the held shares xs, in order,
// and returns a Local over the first key the check blob accepts.
func (s *Sealed) combine(xs []byte) (*Local, error) {
	pick := make([]int, s.threshold)
	for i := range pick {
		pick[i] = i
	}
	set := make([][]byte, s.threshold)
	for range maxUnsealTries {
		for i, p := range pick {
			set[i] = s.shares[xs[p]]
		}
		if l, err := s.try(set); err == nil || !errors.Is(err, ErrWrongShares) {
			return l, err
		}
		// Next subset in lexicographic order.
		i := s.threshold - 1
		for i >= 0 && pick[i] == len(xs)-s.threshold+i {
			i--
		}
		if i < 0 {
			break
		}
		pick[i]++
		for j := i + 1; j < s.threshold; j++ {
			pick[j] = pick[j-1] + 1
		}
	}
	return nil, ErrWrongShares
}

func (s *Sealed) try(set [][]byte) (*Local, error) {
	raw, err := shamir.Combine(set)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidShare, err)
	}
	defer clear(raw)
	a, err := checkAEAD(raw)
	if err != nil {
		return nil, err
	}
	pt, err := a.Open(s.check, checkAAD(s.header))
	if err != nil || string(pt) != checkPlaintext {
		return nil, ErrWrongShares
	}
	key := secret.NewKey(raw)
	defer key.Zero()
	return NewLocal(s.Name(), key, s.rand)
}

// Reset drops the shares held, so unsealing starts again. It does nothing
// once unsealed.
func (s *Sealed) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for x, sh := range s.shares {
		clear(sh)
		delete(s.shares, x)
	}
}

// Wrap implements Provider; it returns ErrSealed until unsealed.
func (s *Sealed) Wrap(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	l := s.local.Load()
	if l == nil {
		return nil, ErrSealed
	}
	return l.Wrap(ctx, plaintext, aad)
}

// Unwrap implements Provider; it returns ErrSealed until unsealed (not
// ErrUnwrap: a sealed provider says nothing about whether the root key is
// right).
func (s *Sealed) Unwrap(ctx context.Context, wrapped, aad []byte) ([]byte, error) {
	l := s.local.Load()
	if l == nil {
		return nil, ErrSealed
	}
	return l.Unwrap(ctx, wrapped, aad)
}
