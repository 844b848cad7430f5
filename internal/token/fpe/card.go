package fpe

import "strings"

// Card numbers have 12 to 19 digits (ISO/IEC 7812).
const (
	minCardDigits = 12
	maxCardDigits = 19
)

// card tokenizes (enc) or detokenizes a card number; see the package doc.
func (t *Tokenizer) card(s string, opts Options, enc bool) (string, error) {
	// Parse: digits with single spaces or dashes between them.
	var (
		d   []uint16
		pos []int // byte offset of each digit in s
	)
	prevSep := true // no separator first
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			d = append(d, uint16(c-'0'))
			pos = append(pos, i)
			prevSep = false
		case (c == ' ' || c == '-') && !prevSep:
			prevSep = true
		default:
			return "", invalid(enc)
		}
	}
	if prevSep || len(d) < minCardDigits || len(d) > maxCardDigits {
		return "", invalid(enc)
	}

	front := 0
	if opts.KeepFirstSix {
		front = 6
	}
	back := len(d) - 4
	adj := front              // the redundant digit, set from the Luhn sum
	free := d[front+1 : back] // the enciphered digits
	if len(free) < t.digits.MinLen() {
		return "", ErrDomainTooSmall
	}

	// Tweak: label, type, options, then the kept digits.
	var tw strings.Builder
	tw.WriteString(tweakLabel)
	tw.WriteString("\x00card_number\x00")
	if opts.KeepFirstSix {
		tw.WriteByte('6')
	}
	if opts.LuhnValid {
		tw.WriteByte('L')
	}
	tw.WriteByte(0)
	for _, x := range d[:front] {
		tw.WriteByte(decimal[x])
	}
	tw.WriteByte(0)
	for _, x := range d[back:] {
		tw.WriteByte(decimal[x])
	}
	tweak := []byte(tw.String())

	out := make([]uint16, len(d))
	copy(out, d)
	if enc {
		if luhnSum(d) != 0 {
			return "", ErrInvalidValue
		}
		y, err := t.run(t.digits, tweak, free, true)
		if err != nil {
			return "", err
		}
		copy(out[front+1:back], y)
		setLuhn(out, adj, tokenResidue(y, opts))
	} else {
		if luhnSum(d) != tokenResidue(free, opts) {
			return "", ErrInvalidToken
		}
		y, err := t.run(t.digits, tweak, free, false)
		if err != nil {
			return "", err
		}
		copy(out[front+1:back], y)
		setLuhn(out, adj, 0)
	}
	b := []byte(s)
	for i, p := range pos {
		b[p] = decimal[out[i]]
	}
	return string(b), nil
}

// tokenResidue is the Luhn sum (mod 10) a token must have: 0 with
// LuhnValid, otherwise 1–9 chosen by the enciphered digits, so tokens fail
// Luhn and their sums are spread over every non-zero residue.
func tokenResidue(enciphered []uint16, opts Options) int {
	if opts.LuhnValid {
		return 0
	}
	s := 0
	for _, x := range enciphered {
		s += int(x)
	}
	return 1 + s%9
}

// luhnDouble is the Luhn contribution of a doubled digit x.
func luhnDouble(x int) int {
	if x *= 2; x > 9 {
		x -= 9
	}
	return x
}

// luhnSum returns the Luhn sum of d mod 10 (0 for a valid number).
func luhnSum(d []uint16) int {
	s := 0
	for i := range d {
		x := int(d[len(d)-1-i])
		if i%2 == 1 {
			x = luhnDouble(x)
		}
		s += x
	}
	return s % 10
}

// setLuhn sets d[at] so that luhnSum(d) == want. Every position can reach
// every residue because digit ↦ contribution is a bijection on 0–9.
func setLuhn(d []uint16, at, want int) {
	d[at] = 0
	have := luhnSum(d)
	need := ((want-have)%10 + 10) % 10
	doubled := (len(d)-1-at)%2 == 1
	for x := range 10 {
		c := x
		if doubled {
			c = luhnDouble(x)
		}
		if c == need {
			d[at] = uint16(x)
			return
		}
	}
}
