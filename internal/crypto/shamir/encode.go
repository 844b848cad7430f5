package shamir

import (
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"strings"
)

// sharePrefix starts every share text: "coffer share", format 1.
const sharePrefix = "cs1-"

// groupSize is the number of letters between dashes.
const groupSize = 5

// crcLabel is hashed before the share, so the checksum of a share is not
// the checksum of the same bytes in another format.
const crcLabel = "coffer/shamir/share/v1"

var shareEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Errors DecodeShare returns; neither echoes the text.
var (
	// ErrShareFormat: the text is not a share in this format.
	ErrShareFormat = errors.New("shamir: not a share: want cs1- followed by groups of letters and digits 2-7")
	// ErrShareChecksum: the text has the form of a share but its checksum
	// does not match: a letter was mistyped, left out or swapped.
	ErrShareChecksum = errors.New("shamir: share checksum mismatch: check the share for a typo")
)

// EncodeShare returns the text form of a share (see the package doc).
// The text is as secret as the share.
func EncodeShare(share []byte) string {
	raw := make([]byte, len(share)+crc32.Size)
	defer clear(raw)
	copy(raw, share)
	sum := checksum(share)
	copy(raw[len(share):], sum[:])
	enc := make([]byte, shareEncoding.EncodedLen(len(raw)))
	defer clear(enc)
	shareEncoding.Encode(enc, raw)
	var b strings.Builder
	b.Grow(len(sharePrefix) + len(enc) + len(enc)/groupSize)
	b.WriteString(sharePrefix)
	for i := 0; i < len(enc); i += groupSize {
		if i > 0 {
			b.WriteByte('-')
		}
		b.Write(enc[i:min(i+groupSize, len(enc))])
	}
	return b.String()
}

// DecodeShare parses a share's text form, ignoring case and surrounding
// white space. It returns ErrShareChecksum when the text is well formed but
// its checksum does not match, and ErrShareFormat for anything else that
// is not exactly what EncodeShare writes. Decoding then encoding gives the
// text back in lowercase: there is one text per share.
func DecodeShare(s string) ([]byte, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	body, ok := strings.CutPrefix(s, sharePrefix)
	if !ok || len(body) == 0 {
		return nil, ErrShareFormat
	}
	enc := make([]byte, 0, len(body))
	defer func() { clear(enc) }()
	for i := 0; i < len(body); i++ {
		c := body[i]
		// Every sixth character is a dash, and only those.
		if (i+1)%(groupSize+1) == 0 {
			if c != '-' {
				return nil, ErrShareFormat
			}
			continue
		}
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return nil, ErrShareFormat
		}
		enc = append(enc, c)
	}
	if body[len(body)-1] == '-' {
		return nil, ErrShareFormat
	}
	raw := make([]byte, shareEncoding.DecodedLen(len(enc)))
	defer clear(raw)
	n, err := shareEncoding.Decode(raw, enc)
	if err != nil || n < 2+crc32.Size {
		return nil, ErrShareFormat
	}
	raw = raw[:n]
	// Reject unused trailing bits and impossible lengths: the text must be
	// the one EncodeShare writes for these bytes.
	if shareEncoding.EncodedLen(n) != len(enc) || !canonical(raw, enc) {
		return nil, ErrShareFormat
	}
	share := raw[:n-crc32.Size]
	want := checksum(share)
	if subtle.ConstantTimeCompare(raw[n-crc32.Size:], want[:]) != 1 {
		return nil, ErrShareChecksum
	}
	return append([]byte(nil), share...), nil
}

// canonical reports whether enc is the encoding of raw (no stray bits in
// the last letter).
func canonical(raw, enc []byte) bool {
	re := make([]byte, shareEncoding.EncodedLen(len(raw)))
	defer clear(re)
	shareEncoding.Encode(re, raw)
	return subtle.ConstantTimeCompare(re, enc) == 1
}

func checksum(share []byte) [crc32.Size]byte {
	c := crc32.Update(0, crc32.IEEETable, []byte(crcLabel))
	c = crc32.Update(c, crc32.IEEETable, share)
	var out [crc32.Size]byte
	binary.BigEndian.PutUint32(out[:], c) // the byte order of hash.Hash32.Sum
	return out
}
