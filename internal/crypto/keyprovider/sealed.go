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
	// 1…n) or, with a check blob without commitments, has the x of a
	// different share already held while the shares held have not yet
	// failed to combine. None of the shares of that call was taken.
	ErrInvalidShare = errors.New("keyprovider: invalid root key share")
	// ErrUnknownShare: the check blob commits to every share of the split,
	// and a share is not the one it commits to for its number: forged,
	// of another deployment, or altered. None of the shares of that call
	// was taken.
	ErrUnknownShare = errors.New("keyprovider: not one of this deployment's root key shares")
	// ErrInvalidCheck: the check blob is not one SplitRootKey made.
	ErrInvalidCheck = errors.New("keyprovider: invalid root key check blob")
)

// Check blob layout: format, threshold, number of shares; in format 2 a
// commitment to each share (SHA-256 of commitLabel and the share, share 1
// first); then an envelope sealing checkPlaintext under a key derived
// from the root key, with everything before it in its additional data.
// Format 1, written before commitments, has none.
const (
	checkFormatV1   = 1
	checkFormat     = 2
	checkHeaderSize = 3
	checkLabel      = "coffer/keyprovider/sealed/check/v1"
	checkPlaintext  = "coffer root key"
	commitLabel     = "coffer/keyprovider/sealed/share-commitment/v2"
	commitSize      = sha256.Size
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
// NewSealed learns the threshold and verifies the key the shares make, and
// which holds a commitment to each share, so that a share that is not one
// of these is refused on submission. The key itself is not returned and
// exists only while this call runs. The check blob is not secret, but must
// not be swapped: it decides which key and shares are accepted.
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
	commits := make([]byte, 0, n*commitSize)
	for _, p := range parts {
		c := commitment(p)
		commits = append(commits, c[:]...)
	}
	if check, err = sealCheck(r, raw, header, commits); err != nil {
		return nil, nil, fmt.Errorf("keyprovider: split root key: %w", err)
	}
	shares = make([]string, n)
	for i, p := range parts {
		shares[i] = shamir.EncodeShare(p)
	}
	return shares, check, nil
}

// sealCheck returns the check blob of root key raw: header, commits, and
// the envelope binding both.
func sealCheck(r io.Reader, raw, header, commits []byte) ([]byte, error) {
	a, err := checkAEAD(raw)
	if err != nil {
		return nil, err
	}
	bound := append(slices.Clone(header), commits...)
	sealed, err := a.Seal(r, []byte(checkPlaintext), checkAAD(bound))
	if err != nil {
		return nil, err
	}
	return append(bound, sealed...), nil
}

// commitment is a share's commitment in a check blob. A share is 32
// uniformly random bytes to anyone without threshold-1 others, so its
// hash reveals nothing that guessing could use.
func commitment(share []byte) [commitSize]byte {
	h := sha256.New()
	h.Write([]byte(commitLabel))
	h.Write(share)
	var c [commitSize]byte
	h.Sum(c[:0])
	return c
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
	header       []byte // format, threshold, n
	commits      []byte // n commitments, nil for a format 1 blob
	check        []byte // envelope part of the check blob
	rand         io.Reader

	mu       sync.Mutex
	shares   map[byte][]byte // by x; guarded by mu
	failed   bool            // the shares held failed to combine; guarded by mu
	replaced int             // shares replaced by another of the same x; guarded by mu
	upgrade  []byte          // a format 2 blob made on unsealing a format 1 one; guarded by mu

	local atomic.Pointer[Local] // set once unsealed
}

// NewSealed returns a sealed provider for the check blob SplitRootKey made.
// Once unsealed, nonces are read from r, which must be safe for concurrent
// use; nil means crypto/rand.Reader. It returns ErrInvalidCheck for a blob
// that is not a check blob.
func NewSealed(check []byte, r io.Reader) (*Sealed, error) {
	if len(check) < checkHeaderSize+envelope.Overhead {
		return nil, ErrInvalidCheck
	}
	t, n := int(check[1]), int(check[2])
	if t < shamir.MinThreshold || t > n {
		return nil, ErrInvalidCheck
	}
	body := check[checkHeaderSize:]
	var commits []byte
	switch check[0] {
	case checkFormatV1:
	case checkFormat:
		if len(body) < n*commitSize+envelope.Overhead {
			return nil, ErrInvalidCheck
		}
		commits, body = slices.Clone(body[:n*commitSize]), body[n*commitSize:]
	default:
		return nil, ErrInvalidCheck
	}
	if r == nil {
		r = rand.Reader
	}
	return &Sealed{
		threshold: t,
		n:         n,
		header:    slices.Clone(check[:checkHeaderSize]),
		commits:   commits,
		check:     slices.Clone(body),
		rand:      r,
		shares:    make(map[byte][]byte),
	}, nil
}

// Committed reports whether the check blob commits to every share, so
// that Unseal refuses a share that is not one of them. A blob written
// before commitments (format 1) does not; UpgradedCheck gives one that
// does once unsealed.
func (s *Sealed) Committed() bool { return s.commits != nil }

// UpgradedCheck returns, once a provider whose check blob has no
// commitments was unsealed, the same blob with a commitment to each share
// of the split (every share follows from any threshold of them), for the
// caller to store in place of the old one; nil otherwise. The key is the
// same: shares and backups are unchanged.
func (s *Sealed) UpgradedCheck() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.upgrade)
}

// Replaced returns how many held shares were replaced by a different one
// of the same number (format 1 blobs only, after a failed combination).
func (s *Sealed) Replaced() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.replaced
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
// A malformed share fails the call with ErrInvalidShare, and, when the
// check blob commits to the shares, a share other than the one committed
// to for its number fails it with ErrUnknownShare: a stranger's forged
// shares are never held, so they cannot stand in the way of the right
// ones. None of the call's shares is taken then. A share already held is
// ignored.
//
// Without commitments (a format 1 check blob) a forged share cannot be
// told from a right one until threshold shares fail to combine: a share
// whose number is held by a different share is refused (ErrInvalidShare)
// until then, and replaces the held one after, so that the right shares,
// given again, win. When the shares held do not make the root key, it
// returns ErrWrongShares and keeps them: with more than threshold held,
// every threshold-sized subset is tried (up to 1024), so another right
// share gets past one wrong one. Progress is never lost but by Reset. The
// caller may clear shares after the call.
func (s *Sealed) Unseal(shares [][]byte) (done bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.Sealed() {
		return true, nil
	}
	var add, replace [][]byte
	for i, sh := range shares {
		if len(sh) != shareSize || sh[0] == 0 || int(sh[0]) > s.n {
			return false, fmt.Errorf("%w: share %d of this call is malformed", ErrInvalidShare, i+1)
		}
		if s.commits != nil {
			c := commitment(sh)
			want := s.commits[(int(sh[0])-1)*commitSize : int(sh[0])*commitSize]
			if subtle.ConstantTimeCompare(c[:], want) != 1 {
				return false, fmt.Errorf("%w: share %d of this call, numbered %d", ErrUnknownShare, i+1, sh[0])
			}
		}
		if j := slices.IndexFunc(shares[:i], func(a []byte) bool { return len(a) > 0 && a[0] == sh[0] }); j >= 0 {
			if subtle.ConstantTimeCompare(shares[j], sh) != 1 {
				return false, fmt.Errorf("%w: shares %d and %d of this call differ but are both numbered %d", ErrInvalidShare, j+1, i+1, sh[0])
			}
			continue // the same share twice
		}
		held, ok := s.shares[sh[0]]
		switch {
		case !ok:
			add = append(add, sh)
		case subtle.ConstantTimeCompare(held, sh) == 1:
		case s.failed:
			replace = append(replace, sh)
		default:
			return false, fmt.Errorf("%w: share %d of this call conflicts with share number %d given before", ErrInvalidShare, i+1, sh[0])
		}
	}
	for _, sh := range replace {
		clear(s.shares[sh[0]])
		s.replaced++
	}
	for _, sh := range append(add, replace...) {
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
		s.failed = s.failed || errors.Is(err, ErrWrongShares)
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
	pt, err := a.Open(s.check, checkAAD(append(slices.Clone(s.header), s.commits...)))
	if err != nil || string(pt) != checkPlaintext {
		return nil, ErrWrongShares
	}
	if s.commits == nil {
		// The right shares, and so the whole split: commit to it.
		s.upgrade = s.committedCheck(set, raw)
	}
	key := secret.NewKey(raw)
	defer key.Zero()
	return NewLocal(s.Name(), key, s.rand)
}

// committedCheck returns the format 2 check blob of the split that the
// right shares set belong to, for the root key raw, or nil if it cannot
// be made (the caller then keeps the old blob).
func (s *Sealed) committedCheck(set [][]byte, raw []byte) []byte {
	commits := make([]byte, 0, s.n*commitSize)
	for x := 1; x <= s.n; x++ {
		sh, err := shamir.Evaluate(set, byte(x)) // #nosec G115 -- x ≤ n ≤ 255
		if err != nil {
			return nil
		}
		c := commitment(sh)
		clear(sh)
		commits = append(commits, c[:]...)
	}
	header := []byte{checkFormat, s.header[1], s.header[2]}
	blob, err := sealCheck(s.rand, raw, header, commits)
	if err != nil {
		return nil
	}
	return blob
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
	s.failed = false
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
