package fpe

import (
	"errors"
	"math/big"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/cofferhq/coffer/internal/token/ff1"
)

// KeySize is the size of a token key: FF1 runs over AES-256.
const KeySize = 32

// tweakLabel versions the tweak layout; changing it changes every token.
const tweakLabel = "coffer/fpe/v1"

// maxWalks bounds cycle walking. Each step leaves the domain with
// probability below 9/10, so 4096 steps fail with probability < 10^-187.
const maxWalks = 4096

// Field types this package tokenizes (the same names as internal/coffer's).
const (
	TypeString     = "string"
	TypeEmail      = "email"
	TypePhone      = "phone"
	TypeCardNumber = "card_number"
	TypeSSN        = "ssn"
	TypeDate       = "date"
	TypeInteger    = "integer"
)

// Errors. None carries a value, a token or a key.
var (
	// ErrDomainTooSmall means the enciphered part of the value has fewer than
	// 1,000,000 possible values (the server answers 422).
	ErrDomainTooSmall = errors.New("fpe: value has too few enciphered characters for format-preserving tokenization")
	// ErrInvalidValue means the value does not have the form of its type
	// (a card number failing Luhn, an email without "@", …).
	ErrInvalidValue = errors.New("fpe: value does not match its type")
	// ErrInvalidToken means the token was not made by Tokenize with this
	// type and these options.
	ErrInvalidToken = errors.New("fpe: not a valid token for this type")
	// ErrUnsupportedType means the type has no format-preserving tokens.
	ErrUnsupportedType = errors.New("fpe: type not supported")
	// ErrKeySize means the key is not KeySize bytes.
	ErrKeySize = errors.New("fpe: key must be 32 bytes")
)

// Options change what a token keeps. Detokenize must be given the options
// Tokenize was given.
type Options struct {
	// KeepFirstSix keeps a card number's first six digits (the IIN) as well
	// as its last four.
	KeepFirstSix bool
	// LuhnValid makes card tokens pass the Luhn check; by default they fail
	// it so that a token can never be mistaken for a card.
	LuhnValid bool
	// KeepLast keeps the last N enciphered-class characters (digits and
	// letters) of a non-card value in clear, e.g. 4 for an SSN's last four.
	// Card numbers always keep their last four.
	KeepLast int
}

// Tokenizer makes and reverses format-preserving tokens under one key. It is
// safe for concurrent use.
type Tokenizer struct {
	digits  *ff1.Cipher // radix 10
	letters *ff1.Cipher // radix 26
}

// New returns a Tokenizer for a 32-byte key.
func New(key []byte) (*Tokenizer, error) {
	if len(key) != KeySize {
		return nil, ErrKeySize
	}
	d, err := ff1.New(key, 10)
	if err != nil {
		return nil, ErrKeySize
	}
	l, err := ff1.New(key, 26)
	if err != nil {
		return nil, ErrKeySize
	}
	return &Tokenizer{digits: d, letters: l}, nil
}

// Tokenize returns the format-preserving token of value, a value of type
// typ, under key. See New and (*Tokenizer).Tokenize.
func Tokenize(key []byte, typ, value string, opts Options) (string, error) {
	t, err := New(key)
	if err != nil {
		return "", err
	}
	return t.Tokenize(typ, value, opts)
}

// Detokenize returns the value whose token under key is token.
func Detokenize(key []byte, typ, token string, opts Options) (string, error) {
	t, err := New(key)
	if err != nil {
		return "", err
	}
	return t.Detokenize(typ, token, opts)
}

// Tokenize returns the format-preserving token of value. Errors wrap
// ErrInvalidValue, ErrDomainTooSmall or ErrUnsupportedType.
func (t *Tokenizer) Tokenize(typ, value string, opts Options) (string, error) {
	if typ == TypeCardNumber {
		return t.card(value, opts, true)
	}
	return t.generic(typ, value, opts, true)
}

// Detokenize returns the value whose token is token. Errors wrap
// ErrInvalidToken, ErrDomainTooSmall or ErrUnsupportedType.
func (t *Tokenizer) Detokenize(typ, token string, opts Options) (string, error) {
	if typ == TypeCardNumber {
		return t.card(token, opts, false)
	}
	return t.generic(typ, token, opts, false)
}

// Character classes of enciphered positions.
const (
	kept  = iota // stays as is
	digit        // 0-9, radix 10
	lower        // a-z, radix 26
	upper        // A-Z, radix 26
)

// decimal holds the digit characters by value. Indexing it, rather than
// converting '0'+d, panics on a numeral of 10 or more instead of writing a
// character that is not a digit.
const decimal = "0123456789"

func classOf(r rune) int {
	switch {
	case r >= '0' && r <= '9':
		return digit
	case r >= 'a' && r <= 'z':
		return lower
	case r >= 'A' && r <= 'Z':
		return upper
	}
	return kept
}

// invalid returns the error for a value (tokenizing) or a token (detokenizing)
// that does not fit its type.
func invalid(enc bool) error {
	if enc {
		return ErrInvalidValue
	}
	return ErrInvalidToken
}

func (t *Tokenizer) generic(typ, s string, opts Options, enc bool) (string, error) {
	if !utf8.ValidString(s) {
		return "", invalid(enc)
	}
	rs := []rune(s)
	cls := make([]int, len(rs))
	for i, r := range rs {
		cls[i] = classOf(r)
	}
	switch typ {
	case TypeString:
	case TypeSSN, TypePhone, TypeDate, TypeInteger:
		allowed := map[string]string{
			TypeSSN:     "- ",
			TypePhone:   "+-. ()",
			TypeDate:    "-/.: TZ+",
			TypeInteger: "-+",
		}[typ]
		n := 0
		for i, r := range rs {
			if cls[i] == digit {
				n++
				continue
			}
			if !strings.ContainsRune(allowed, r) {
				return "", invalid(enc)
			}
			cls[i] = kept // e.g. the T and Z of a timestamp
		}
		if n == 0 || (typ == TypeSSN && n != 9) {
			return "", invalid(enc)
		}
	case TypeEmail:
		at := strings.IndexByte(s, '@')
		if at <= 0 || strings.Count(s, "@") != 1 {
			return "", invalid(enc)
		}
		domain := s[at+1:]
		dot := strings.LastIndexByte(domain, '.')
		if dot <= 0 || dot == len(domain)-1 || strings.Contains(domain, "..") {
			return "", invalid(enc)
		}
		// Keep the TLD: every rune after the domain's last dot.
		tld := utf8.RuneCountInString(domain[dot:])
		for i := len(rs) - tld; i < len(rs); i++ {
			cls[i] = kept
		}
	default:
		return "", ErrUnsupportedType
	}
	if opts.KeepLast < 0 {
		return "", invalid(enc)
	}
	for i, k := len(rs)-1, opts.KeepLast; i >= 0 && k > 0; i-- {
		if cls[i] != kept {
			cls[i] = kept
			k--
		}
	}

	// Tweak: label, type, options and the shape.
	var tw strings.Builder
	tw.WriteString(tweakLabel)
	tw.WriteByte(0)
	tw.WriteString(typ)
	tw.WriteByte(0)
	tw.WriteString(strconv.Itoa(opts.KeepLast))
	tw.WriteByte(0)
	var (
		x     []uint16
		radix []int
		nDig  int
		nLet  int
	)
	for i, r := range rs {
		switch cls[i] {
		case digit:
			tw.WriteByte('d')
			x = append(x, uint16(r-'0')) // #nosec G115 -- classOf: r is in '0'..'9'
			radix = append(radix, 10)
			nDig++
		case lower:
			tw.WriteByte('a')
			x = append(x, uint16(r-'a')) // #nosec G115 -- classOf: r is in 'a'..'z'
			radix = append(radix, 26)
			nLet++
		case upper:
			tw.WriteByte('A')
			x = append(x, uint16(r-'A')) // #nosec G115 -- classOf: r is in 'A'..'Z'
			radix = append(radix, 26)
			nLet++
		default:
			tw.WriteByte('k')
			tw.WriteRune(r)
		}
	}
	tweak := []byte(tw.String())

	var y []uint16
	var err error
	switch {
	case nLet == 0:
		y, err = t.run(t.digits, tweak, x, enc)
	case nDig == 0:
		y, err = t.run(t.letters, tweak, x, enc)
	default:
		y, err = t.mixed(tweak, x, radix, enc)
	}
	if err != nil {
		return "", err
	}
	out := make([]rune, len(rs))
	j := 0
	for i, r := range rs {
		switch cls[i] {
		case digit:
			out[i] = '0' + rune(y[j])
			j++
		case lower:
			out[i] = 'a' + rune(y[j])
			j++
		case upper:
			out[i] = 'A' + rune(y[j])
			j++
		default:
			out[i] = r
		}
	}
	return string(out), nil
}

// run enciphers or deciphers x with c, mapping a short input to
// ErrDomainTooSmall.
func (t *Tokenizer) run(c *ff1.Cipher, tweak []byte, x []uint16, enc bool) ([]uint16, error) {
	if len(x) < c.MinLen() {
		return nil, ErrDomainTooSmall
	}
	var y []uint16
	var err error
	if enc {
		y, err = c.Encrypt(tweak, x)
	} else {
		y, err = c.Decrypt(tweak, x)
	}
	if err != nil {
		if errors.Is(err, ff1.ErrLength) {
			return nil, ErrDomainTooSmall
		}
		return nil, invalid(enc)
	}
	return y, nil
}

// mixed enciphers a mixed-radix numeral string: its value N in
// [0, D), D = Π radix[i], is written as L decimal digits (10^L ≥ D > 10^(L-1)),
// enciphered with FF1 and cycle-walked until the result is below D.
func (t *Tokenizer) mixed(tweak []byte, x []uint16, radix []int, enc bool) ([]uint16, error) {
	dom := big.NewInt(1)
	n := new(big.Int)
	var tmp big.Int
	for i, d := range x {
		r := big.NewInt(int64(radix[i]))
		dom.Mul(dom, r)
		n.Mul(n, r)
		n.Add(n, tmp.SetUint64(uint64(d)))
	}
	if dom.Cmp(big.NewInt(ff1.MinDomain)) < 0 {
		return nil, ErrDomainTooSmall
	}
	L := len(new(big.Int).Sub(dom, big.NewInt(1)).Text(10))
	digits := make([]uint16, L)
	toDigits := func(v *big.Int) {
		s := v.Text(10)
		pad := L - len(s)
		for i := range digits {
			if i < pad {
				digits[i] = 0
			} else {
				digits[i] = uint16(s[i-pad] - '0')
			}
		}
	}
	fromDigits := func(ds []uint16) *big.Int {
		b := make([]byte, len(ds))
		for i, d := range ds {
			b[i] = decimal[d]
		}
		v, _ := new(big.Int).SetString(string(b), 10)
		return v
	}
	toDigits(n)
	cur := digits
	for range maxWalks {
		next, err := t.run(t.digits, tweak, cur, enc)
		if err != nil {
			return nil, err
		}
		v := fromDigits(next)
		if v.Cmp(dom) < 0 {
			// Back to mixed radix, least significant position last.
			out := make([]uint16, len(x))
			var m big.Int
			for i := len(x) - 1; i >= 0; i-- {
				v.QuoRem(v, big.NewInt(int64(radix[i])), &m)
				out[i] = uint16(m.Uint64()) // #nosec G115 -- a remainder below radix[i] (10 or 26)
			}
			return out, nil
		}
		cur = next
	}
	return nil, invalid(enc)
}
