package ff1

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"math"
	"math/big"
	"math/bits"
	"unicode/utf8"
)

// Limits of SP 800-38G.
const (
	// MinRadix is the smallest radix FF1 supports.
	MinRadix = 2
	// MaxRadix is the largest radix FF1 supports (2^16).
	MaxRadix = 1 << 16
	// MinDomain is the smallest domain size radix^minlen allowed (SP 800-38G Rev. 1).
	MinDomain = 1_000_000
	// MaxLen is the largest numeral string length (the standard encodes n in
	// four bytes, so n < 2^32).
	MaxLen = math.MaxUint32
	// MaxTweakLen is the largest tweak length in bytes (four-byte encoding).
	MaxTweakLen = math.MaxUint32
)

const rounds = 10

// Errors. None of them carries an input, tweak or key.
var (
	// ErrKeySize means the key is not 16, 24 or 32 bytes long.
	ErrKeySize = errors.New("ff1: key must be 16, 24 or 32 bytes")
	// ErrRadix means the radix is outside [MinRadix, MaxRadix].
	ErrRadix = errors.New("ff1: radix must be between 2 and 65536")
	// ErrLength means the input is shorter than the cipher's minimum length
	// (radix^n < MinDomain) or longer than its maximum.
	ErrLength = errors.New("ff1: input length outside the cipher's domain")
	// ErrNumeral means a numeral is not smaller than the radix, or a
	// character is not in the alphabet.
	ErrNumeral = errors.New("ff1: numeral outside the radix")
	// ErrTweak means the tweak is too long.
	ErrTweak = errors.New("ff1: tweak too long")
	// ErrAlphabet means an alphabet's length is not the radix or it repeats
	// a character.
	ErrAlphabet = errors.New("ff1: alphabet must hold radix distinct characters")
)

// Cipher is an FF1 cipher for one AES key and one radix. It is safe for
// concurrent use.
type Cipher struct {
	block  cipher.Block
	radix  int
	minLen int
	maxLen int
}

// New returns an FF1 cipher for key (AES-128, AES-192 or AES-256) and radix.
// Its minimum length is the smallest n ≥ 2 with radix^n ≥ 1,000,000.
func New(key []byte, radix int) (*Cipher, error) {
	switch len(key) {
	case 16, 24, 32:
	default:
		return nil, ErrKeySize
	}
	if radix < MinRadix || radix > MaxRadix {
		return nil, ErrRadix
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, ErrKeySize
	}
	minLen, dom := 0, uint64(1)
	for dom < MinDomain {
		dom *= uint64(radix)
		minLen++
	}
	minLen = max(minLen, 2)
	maxLen := MaxLen
	if uint64(maxLen) > uint64(math.MaxInt) {
		maxLen = math.MaxInt
	}
	return &Cipher{block: block, radix: radix, minLen: minLen, maxLen: maxLen}, nil
}

// Radix returns the cipher's radix.
func (c *Cipher) Radix() int { return c.radix }

// MinLen returns the shortest input the cipher accepts.
func (c *Cipher) MinLen() int { return c.minLen }

// MaxLen returns the longest input the cipher accepts.
func (c *Cipher) MaxLen() int { return c.maxLen }

// Encrypt enciphers the numeral string x (each numeral < radix) under tweak
// and returns a new numeral string of the same length. It returns an error
// wrapping ErrLength, ErrNumeral or ErrTweak when x or tweak is outside the
// domain.
func (c *Cipher) Encrypt(tweak []byte, x []uint16) ([]uint16, error) {
	return c.crypt(tweak, x, true)
}

// Decrypt deciphers the numeral string x under tweak; it is the inverse of
// Encrypt and has the same error contract.
func (c *Cipher) Decrypt(tweak []byte, x []uint16) ([]uint16, error) {
	return c.crypt(tweak, x, false)
}

// EncryptString enciphers s, whose characters must all be in alphabet, and
// returns the enciphered string over the same alphabet. alphabet must hold
// exactly radix distinct characters (runes); the i-th one is numeral i, so
// the alphabet "0123456789abcdefghijklmnopqrstuvwxyz" with radix 36 matches
// the NIST samples. Errors wrap ErrAlphabet, ErrNumeral, ErrLength or ErrTweak.
func (c *Cipher) EncryptString(tweak []byte, s, alphabet string) (string, error) {
	return c.cryptString(tweak, s, alphabet, true)
}

// DecryptString is the inverse of EncryptString.
func (c *Cipher) DecryptString(tweak []byte, s, alphabet string) (string, error) {
	return c.cryptString(tweak, s, alphabet, false)
}

func (c *Cipher) cryptString(tweak []byte, s, alphabet string, enc bool) (string, error) {
	al, err := newAlphabet(alphabet, c.radix)
	if err != nil {
		return "", err
	}
	x := make([]uint16, 0, len(s))
	for _, r := range s {
		i, ok := al.index(r)
		if !ok {
			return "", ErrNumeral
		}
		x = append(x, i)
	}
	y, err := c.crypt(tweak, x, enc)
	if err != nil {
		return "", err
	}
	out := make([]byte, 0, len(s))
	for _, n := range y {
		out = utf8.AppendRune(out, al.runes[n])
	}
	return string(out), nil
}

// alphabet maps characters to numerals and back.
type alphabet struct {
	runes []rune
	ascii [128]int32 // numeral+1 for ASCII characters, 0 when absent
	other map[rune]uint16
}

func newAlphabet(s string, radix int) (*alphabet, error) {
	a := &alphabet{runes: make([]rune, 0, len(s))}
	for _, r := range s {
		if r == utf8.RuneError || len(a.runes) >= radix {
			return nil, ErrAlphabet
		}
		n := len(a.runes)
		if r < 128 {
			if a.ascii[r] != 0 {
				return nil, ErrAlphabet
			}
			a.ascii[r] = int32(n) + 1 // #nosec G115 -- n < radix ≤ MaxRadix (2^16), checked above
		} else {
			if a.other == nil {
				a.other = make(map[rune]uint16)
			}
			if _, dup := a.other[r]; dup {
				return nil, ErrAlphabet
			}
			a.other[r] = uint16(n) // #nosec G115 -- n < radix ≤ MaxRadix (2^16), so n ≤ 65535
		}
		a.runes = append(a.runes, r)
	}
	if len(a.runes) != radix {
		return nil, ErrAlphabet
	}
	return a, nil
}

func (a *alphabet) index(r rune) (uint16, bool) {
	if r >= 0 && r < 128 {
		n := a.ascii[r]
		if n == 0 {
			return 0, false
		}
		return uint16(n - 1), true // #nosec G115 -- newAlphabet stored numeral+1 with numeral ≤ 65535
	}
	n, ok := a.other[r]
	return n, ok
}

// params holds what one call derives from n, t and the radix.
type params struct {
	n, u, v int
	b, d    int
	// state is the CBC-MAC state after P and the constant full blocks of Q.
	state [16]byte
	// tail is the varying end of Q: the rest of the tweak, the zero pad,
	// the round number at tail[iPos] and NUM(B) in the last b bytes.
	tail []byte
	iPos int
	// scratch blocks, kept here so that one allocation serves a whole call
	// (arrays handed to cipher.Block escape).
	blk, r  [16]byte
	nb      [8]byte
	tailBuf [64]byte
}

func (c *Cipher) validate(tweak []byte, x []uint16) error {
	if len(x) < c.minLen || len(x) > c.maxLen {
		return ErrLength
	}
	if uint64(len(tweak)) > MaxTweakLen {
		return ErrTweak
	}
	for _, d := range x {
		if int(d) >= c.radix {
			return ErrNumeral
		}
	}
	return nil
}

// setup computes P, CIPH(P), the constant part of Q and the byte lengths b
// and d (steps 1–5 of Algorithms 7 and 8).
func (c *Cipher) setup(p *params, tweak []byte, n, b int) {
	t := len(tweak)
	p.n, p.u = n, n/2
	p.v = n - p.u
	p.b = b
	p.d = 4*((b+3)/4) + 4

	P := &p.blk
	*P = [16]byte{}
	// P = [1]^1 || [2]^1 || [1]^1 || [radix]^3 || [10]^1 || [u mod 256]^1 || [n]^4 || [t]^4
	var radix [4]byte
	binary.BigEndian.PutUint32(radix[:], uint32(c.radix)) // #nosec G115 -- New checked radix ≤ MaxRadix (2^16)
	P[0], P[1], P[2] = 1, 2, 1
	copy(P[3:6], radix[1:])
	P[6] = 10
	P[7] = byte(p.u)                                // #nosec G115 -- the standard takes u mod 256: the truncation is the encoding
	binary.BigEndian.PutUint32(P[8:12], uint32(n))  // #nosec G115 -- validate checked n ≤ MaxLen (2^32-1)
	binary.BigEndian.PutUint32(P[12:16], uint32(t)) // #nosec G115 -- validate checked t ≤ MaxTweakLen (2^32-1)
	c.block.Encrypt(p.state[:], P[:])

	// Q = T || 0^pad || [i]^1 || [NUM(B)]^b, pad = (-t-b-1) mod 16.
	pad := ((-t-b-1)%16 + 16) % 16
	fixed := (t + pad) / 16 * 16 // bytes of Q that are constant full blocks
	blk := &p.blk
	for off := 0; off < fixed; off += 16 {
		*blk = [16]byte{}
		if off < t {
			copy(blk[:], tweak[off:])
		}
		subtle16(blk, &p.state)
		c.block.Encrypt(p.state[:], blk[:])
	}
	tailLen := t + pad + 1 + b - fixed
	if tailLen <= len(p.tailBuf) {
		p.tail = p.tailBuf[:tailLen]
	} else {
		p.tail = make([]byte, tailLen)
	}
	if fixed < t {
		copy(p.tail, tweak[fixed:])
	}
	p.iPos = t + pad - fixed
}

// subtle16 sets blk ^= state.
func subtle16(blk, state *[16]byte) {
	a := binary.LittleEndian.Uint64(blk[:8]) ^ binary.LittleEndian.Uint64(state[:8])
	b := binary.LittleEndian.Uint64(blk[8:]) ^ binary.LittleEndian.Uint64(state[8:])
	binary.LittleEndian.PutUint64(blk[:8], a)
	binary.LittleEndian.PutUint64(blk[8:], b)
}

// prf finishes the CBC-MAC over the tail of Q into r.
func (c *Cipher) prf(p *params, r *[16]byte) {
	*r = p.state
	blk := &p.blk
	for off := 0; off < len(p.tail); off += 16 {
		copy(blk[:], p.tail[off:off+16])
		subtle16(blk, r)
		c.block.Encrypt(r[:], blk[:])
	}
}

// pow64 returns radix^m and whether it fits in a uint64.
func pow64(radix, m int) (uint64, bool) {
	p := uint64(1)
	for range m {
		hi, lo := bits.Mul64(p, uint64(radix)) // #nosec G115 -- radix ≥ MinRadix (2), checked by New
		if hi != 0 {
			return 0, false
		}
		p = lo
	}
	return p, true
}

// byteLen returns b = ceil(ceil(v·log2(radix))/8), computed exactly as the
// byte length of radix^v − 1 (its bit length is ceil(v·log2(radix))).
func byteLen(bitLen int) int { return (bitLen + 7) / 8 }

func (c *Cipher) crypt(tweak []byte, x []uint16, enc bool) ([]uint16, error) {
	if err := c.validate(tweak, x); err != nil {
		return nil, err
	}
	n := len(x)
	u := n / 2
	v := n - u
	if modV, ok := pow64(c.radix, v); ok {
		modU, _ := pow64(c.radix, u)
		return c.crypt64(tweak, x, enc, modU, modV), nil
	}
	return c.cryptBig(tweak, x, enc), nil
}

// crypt64 runs FF1 with uint64 arithmetic; radix^v < 2^64, so b ≤ 8 and d ≤ 12.
func (c *Cipher) crypt64(tweak []byte, x []uint16, enc bool, modU, modV uint64) []uint16 {
	p := new(params)
	c.setup(p, tweak, len(x), byteLen(bits.Len64(modV-1)))
	radix := uint64(c.radix) // #nosec G115 -- radix ≥ MinRadix (2), checked by New
	num := func(s []uint16) uint64 {
		var r uint64
		for _, d := range s {
			r = r*radix + uint64(d)
		}
		return r
	}
	a, b := num(x[:p.u]), num(x[p.u:])
	r := &p.r
	roundY := func(i int, in uint64, mod uint64) uint64 {
		p.tail[p.iPos] = byte(i) // #nosec G115 -- the round number, 0 ≤ i < rounds (10)
		binary.BigEndian.PutUint64(p.nb[:], in)
		copy(p.tail[len(p.tail)-p.b:], p.nb[8-p.b:])
		c.prf(p, r)
		// y mod radix^m over S = R[:d], d ∈ {8, 12}.
		var y uint64
		s := r[:p.d]
		if len(s)%8 == 4 {
			y = uint64(binary.BigEndian.Uint32(s[:4])) % mod
			s = s[4:]
		}
		for ; len(s) > 0; s = s[8:] {
			_, y = bits.Div64(y, binary.BigEndian.Uint64(s[:8]), mod)
		}
		return y
	}
	if enc {
		for i := range rounds {
			mod := modU
			if i%2 == 1 {
				mod = modV
			}
			y := roundY(i, b, mod)
			s, carry := bits.Add64(a%mod, y, 0)
			if carry != 0 || s >= mod {
				s -= mod
			}
			a, b = b, s
		}
	} else {
		for i := rounds - 1; i >= 0; i-- {
			mod := modU
			if i%2 == 1 {
				mod = modV
			}
			y := roundY(i, a, mod)
			bm := b % mod
			s := bm - y
			if bm < y {
				s += mod
			}
			a, b = s, a
		}
	}
	out := make([]uint16, len(x))
	str64(out[:p.u], a, radix)
	str64(out[p.u:], b, radix)
	return out
}

func str64(dst []uint16, v, radix uint64) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = uint16(v % radix) // #nosec G115 -- below radix ≤ MaxRadix (2^16)
		v /= radix
	}
}

// cryptBig runs FF1 with math/big for inputs whose halves exceed 64 bits.
func (c *Cipher) cryptBig(tweak []byte, x []uint16, enc bool) []uint16 {
	radix := big.NewInt(int64(c.radix))
	n := len(x)
	u, v := n/2, n-n/2
	modU := new(big.Int).Exp(radix, big.NewInt(int64(u)), nil)
	modV := new(big.Int).Exp(radix, big.NewInt(int64(v)), nil)
	bitLen := new(big.Int).Sub(modV, big.NewInt(1)).BitLen()

	p := new(params)
	c.setup(p, tweak, n, byteLen(bitLen))
	num := func(s []uint16) *big.Int {
		r := new(big.Int)
		var d big.Int
		for _, dig := range s {
			r.Mul(r, radix)
			r.Add(r, d.SetUint64(uint64(dig)))
		}
		return r
	}
	a, b := num(x[:u]), num(x[u:])
	r := &p.r
	sBuf := make([]byte, (p.d+15)/16*16)
	y := new(big.Int)
	roundY := func(i int, in *big.Int) *big.Int {
		p.tail[p.iPos] = byte(i) // #nosec G115 -- the round number, 0 ≤ i < rounds (10)
		in.FillBytes(p.tail[len(p.tail)-p.b:])
		c.prf(p, r)
		copy(sBuf, r[:])
		// S = R || CIPH(R ⊕ [1]^16) || CIPH(R ⊕ [2]^16) || …
		for j := 1; j*16 < p.d; j++ {
			blk := &p.blk
			*blk = [16]byte{}
			binary.BigEndian.PutUint64(blk[8:], uint64(j))
			subtle16(blk, r)
			c.block.Encrypt(sBuf[j*16:(j+1)*16], blk[:])
		}
		return y.SetBytes(sBuf[:p.d])
	}
	if enc {
		for i := range rounds {
			mod := modU
			if i%2 == 1 {
				mod = modV
			}
			yy := roundY(i, b)
			cc := new(big.Int).Add(a, yy)
			cc.Mod(cc, mod)
			a, b = b, cc
		}
	} else {
		for i := rounds - 1; i >= 0; i-- {
			mod := modU
			if i%2 == 1 {
				mod = modV
			}
			yy := roundY(i, a)
			cc := new(big.Int).Sub(b, yy)
			cc.Mod(cc, mod) // Euclidean: result in [0, mod)
			a, b = cc, a
		}
	}
	out := make([]uint16, n)
	strBig(out[:u], a, radix)
	strBig(out[u:], b, radix)
	return out
}

func strBig(dst []uint16, v, radix *big.Int) {
	q := new(big.Int).Set(v)
	var m big.Int
	for i := len(dst) - 1; i >= 0; i-- {
		q.QuoRem(q, radix, &m)
		dst[i] = uint16(m.Uint64()) // #nosec G115 -- a remainder below radix ≤ MaxRadix (2^16)
	}
}
