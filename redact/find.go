package redact

import (
	"encoding/base64"
	"encoding/json"
	"net/netip"
	"strings"
)

// Finding types.
const (
	TypeCard       = "card_number"
	TypeEmail      = "email"
	TypePhone      = "phone"
	TypeSSN        = "ssn"
	TypeIBAN       = "iban"
	TypeIPv4       = "ipv4"
	TypeIPv6       = "ipv6"
	TypeJWT        = "jwt"
	TypeAPIKey     = "api_key"
	TypePrivateKey = "private_key"
)

// Finding is one sensitive value found in a text.
type Finding struct {
	// Type is one of the Type* constants.
	Type string
	// Start and End are byte offsets: the value is text[Start:End].
	Start, End int
	// Confidence, in (0, 1], is how sure the detector is.
	Confidence float64
}

// Confidence of each detector.
const (
	confPrivateKey = 0.99
	confCard       = 0.95
	confJWT        = 0.95
	confAPIKey     = 0.95
	confIBAN       = 0.9
	confEmail      = 0.9
	confE164       = 0.9
	confSSN        = 0.85
	confPhoneParen = 0.8
	confIP         = 0.8
	confPhoneNANP  = 0.7
	confSSNBare    = 0.5
)

// Find returns the sensitive values in text, ordered by Start and never
// overlapping.
func Find(text string) []Finding {
	s := scanner{text: text, nextAt: -1}
	return s.run()
}

type scanner struct {
	text string
	out  []Finding
	// nextAt is the index of the next '@' at or after the scan position,
	// len(text) when there is none, -1 before the first look-up.
	nextAt int
	// noEmailUntil: no email starts before this index (a local-part run
	// that ended without '@').
	noEmailUntil int
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }
func isLower(c byte) bool { return c >= 'a' && c <= 'z' }
func isAlpha(c byte) bool { return isUpper(c) || isLower(c) }
func isAlnum(c byte) bool { return isDigit(c) || isAlpha(c) }
func isHex(c byte) bool {
	return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}
func isB64URL(c byte) bool { return isAlnum(c) || c == '-' || c == '_' }
func isLocal(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-'
}

func (s *scanner) run() []Finding {
	t := s.text
	n := len(t)
	for i := 0; i < n; {
		c := t[i]
		if !isAlnum(c) && c != '+' && c != '(' && c != '-' && c != ':' {
			i++
			continue
		}
		var best Finding
		if !(i > 0 && isAlnum(t[i-1]) && isAlnum(c)) {
			best = s.detectAt(i)
		}
		if best.End > 0 {
			s.out = append(s.out, best)
			i = best.End
			continue
		}
		i++
		for i < n && isAlnum(t[i]) && isAlnum(c) {
			i++
		}
	}
	return s.out
}

// better reports whether a should be chosen over b.
func better(a, b Finding) bool {
	if b.End == 0 {
		return true
	}
	if a.Confidence != b.Confidence {
		return a.Confidence > b.Confidence
	}
	return a.End-a.Start > b.End-b.Start
}

// detectAt runs every detector that may start at i and returns the best
// match (End == 0 when none).
func (s *scanner) detectAt(i int) Finding {
	t := s.text
	c := t[i]
	var best Finding
	try := func(typ string, end int, conf float64) {
		if end > i {
			if f := (Finding{Type: typ, Start: i, End: end, Confidence: conf}); better(f, best) {
				best = f
			}
		}
	}
	switch {
	case isDigit(c):
		if s.numLeftOK(i) {
			try(TypeCard, s.card(i), confCard)
			end, conf := s.ssn(i)
			try(TypeSSN, end, conf)
			try(TypeIPv4, s.ipv4(i), confIP)
			try(TypePhone, s.phoneNANP(i), confPhoneNANP)
		}
	case c == '+':
		if i == 0 || !isAlnum(t[i-1]) {
			end, conf := s.e164(i)
			try(TypePhone, end, conf)
		}
	case c == '(':
		if i == 0 || !isAlnum(t[i-1]) {
			try(TypePhone, s.phoneParen(i), confPhoneParen)
		}
	case c == '-':
		if strings.HasPrefix(t[i:], "-----BEGIN ") {
			try(TypePrivateKey, s.pem(i), confPrivateKey)
		}
	case isAlpha(c):
		try(TypeAPIKey, s.apiKey(i), confAPIKey)
		if c == 'e' {
			try(TypeJWT, s.jwt(i), confJWT)
		}
		if isUpper(c) {
			try(TypeIBAN, s.iban(i), confIBAN)
		}
	}
	if isHex(c) || c == ':' {
		if i == 0 || (!isAlnum(t[i-1]) && t[i-1] != ':' && t[i-1] != '.') {
			try(TypeIPv6, s.ipv6(i), confIP)
		}
	}
	if isAlnum(c) {
		try(TypeEmail, s.email(i), confEmail)
	}
	return best
}

// numLeftOK: a number may start at i (not inside a word or a dotted number).
func (s *scanner) numLeftOK(i int) bool {
	if i == 0 {
		return true
	}
	p := s.text[i-1]
	if isAlnum(p) {
		return false
	}
	if (p == '.' || p == '-') && i >= 2 && isDigit(s.text[i-2]) {
		return false
	}
	return true
}

// numRightOK: a number may end at j.
func (s *scanner) numRightOK(j int) bool {
	t := s.text
	if j >= len(t) {
		return true
	}
	if isAlnum(t[j]) {
		return false
	}
	if (t[j] == '.' || t[j] == '-') && j+1 < len(t) && isDigit(t[j+1]) {
		return false
	}
	return true
}

// digitsAt returns the end of the run of digits starting at i.
func (s *scanner) digitsAt(i int) int {
	t := s.text
	j := i
	for j < len(t) && isDigit(t[j]) {
		j++
	}
	return j
}

// card returns the end of a card number starting at i, or 0.
func (s *scanner) card(i int) int {
	t := s.text
	var (
		d    [19]byte
		nd   int
		sep  byte
		ends [19]int // ends[k]: end offset after a group with k+1 digits total
		j    = i
	)
	for k := range ends {
		ends[k] = -1
	}
	for {
		e := s.digitsAt(j)
		for k := j; k < e; k++ {
			if nd < len(d) {
				d[nd] = t[k] - '0'
			}
			nd++
		}
		if nd > len(d) {
			break
		}
		ends[nd-1] = e
		j = e
		if j+1 >= len(t) || !isDigit(t[j+1]) || (t[j] != ' ' && t[j] != '-') {
			break
		}
		if sep == 0 {
			sep = t[j]
		} else if t[j] != sep {
			break
		}
		j++
	}
	for k := 18; k >= 12; k-- {
		e := ends[k]
		if e < 0 || !s.numRightOK(e) {
			continue
		}
		if luhn(d[:k+1]) && knownIIN(d[:k+1]) {
			return e
		}
	}
	return 0
}

// luhn reports whether the digits pass the Luhn check.
func luhn(d []byte) bool {
	sum := 0
	for i := range d {
		x := int(d[len(d)-1-i])
		if i%2 == 1 {
			if x *= 2; x > 9 {
				x -= 9
			}
		}
		sum += x
	}
	return sum%10 == 0
}

// knownIIN reports whether d starts with a known issuer prefix and has a
// length that issuer uses.
func knownIIN(d []byte) bool {
	n := len(d)
	p := func(k int) int {
		v := 0
		for _, x := range d[:k] {
			v = v*10 + int(x)
		}
		return v
	}
	between := func(lo, hi int) bool { return n >= lo && n <= hi }
	switch {
	case d[0] == 4: // Visa
		return n == 13 || n == 16 || n == 19
	case p(2) >= 51 && p(2) <= 55, p(4) >= 2221 && p(4) <= 2720: // Mastercard
		return n == 16
	case p(2) == 34 || p(2) == 37: // Amex
		return n == 15
	case p(4) == 6011, p(2) == 65, p(3) >= 644 && p(3) <= 649: // Discover
		return between(16, 19)
	case p(4) >= 3528 && p(4) <= 3589: // JCB
		return between(16, 19)
	case p(2) == 36, p(2) == 38, p(3) >= 300 && p(3) <= 305: // Diners
		return between(14, 19)
	case p(2) == 62: // UnionPay
		return between(16, 19)
	}
	return false
}

// ssn returns the end and confidence of an SSN starting at i.
func (s *scanner) ssn(i int) (int, float64) {
	t := s.text
	if e := i + 11; e <= len(t) && t[i+3] == '-' && t[i+6] == '-' &&
		s.digitsAt(i) == i+3 && s.digitsAt(i+4) == i+6 && s.digitsAt(i+7) == e &&
		s.numRightOK(e) && validSSN(t[i:i+3], t[i+4:i+6], t[i+7:e]) {
		return e, confSSN
	}
	if e := s.digitsAt(i); e == i+9 && s.numRightOK(e) &&
		validSSN(t[i:i+3], t[i+3:i+5], t[i+5:e]) && ssnKeywordBefore(t, i) {
		return e, confSSNBare
	}
	return 0, 0
}

func validSSN(area, group, serial string) bool {
	return area != "000" && area != "666" && area[0] != '9' && group != "00" && serial != "0000"
}

// ssnKeywordBefore reports whether "ssn" or "social security" occurs in the
// 32 bytes before i.
func ssnKeywordBefore(t string, i int) bool {
	w := t[max(0, i-32):i]
	for _, k := range []string{"ssn", "social security", "social_security"} {
		if containsFold(w, k) {
			return true
		}
	}
	return false
}

// containsFold reports whether s contains the lower-case ASCII word k,
// ignoring ASCII case.
func containsFold(s, k string) bool {
	for i := 0; i+len(k) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(k)], k) {
			return true
		}
	}
	return false
}

// ipv4 returns the end of a dotted-quad IPv4 address starting at i, or 0.
func (s *scanner) ipv4(i int) int {
	t := s.text
	j := i
	for part := range 4 {
		if part > 0 {
			if j >= len(t) || t[j] != '.' {
				return 0
			}
			j++
		}
		e := s.digitsAt(j)
		l := e - j
		if l == 0 || l > 3 || (l > 1 && t[j] == '0') {
			return 0
		}
		v := 0
		for _, c := range []byte(t[j:e]) {
			v = v*10 + int(c-'0')
		}
		if v > 255 {
			return 0
		}
		j = e
	}
	if !s.numRightOK(j) {
		return 0
	}
	return j
}

// ipv6 returns the end of an IPv6 address starting at i, or 0.
func (s *scanner) ipv6(i int) int {
	t := s.text
	// Cheap rejection: a hex group of at most four digits, then ':'.
	k := i
	for k < len(t) && k-i < 5 && isHex(t[k]) {
		k++
	}
	if k >= len(t) || t[k] != ':' {
		return 0
	}
	j := i
	colons, dots, double := 0, 0, false
	for j < len(t) && j-i < 45 {
		c := t[j]
		switch {
		case isHex(c):
		case c == ':':
			colons++
			if j > i && t[j-1] == ':' {
				double = true
			}
		case c == '.':
			dots++
		default:
			goto done
		}
		j++
	}
done:
	if j < len(t) && (isAlnum(t[j]) || t[j] == ':') {
		return 0
	}
	// Trim a sentence's trailing dot or a single trailing colon.
	for j > i && (t[j-1] == '.' || (t[j-1] == ':' && !(j-2 >= i && t[j-2] == ':'))) {
		if t[j-1] == '.' {
			dots--
		} else {
			colons--
		}
		j--
	}
	if !double && colons != 7 && !(colons == 6 && dots == 3) {
		return 0
	}
	a, err := netip.ParseAddr(t[i:j])
	if err != nil || !a.Is6() || a.IsUnspecified() {
		return 0
	}
	return j
}

// e164 returns the end and confidence of an international phone number
// starting with '+' at i: digits in groups split by single spaces, dashes
// or dots, with at most one parenthesised group.
func (s *scanner) e164(i int) (int, float64) {
	t := s.text
	if i+1 >= len(t) || t[i+1] < '1' || t[i+1] > '9' {
		return 0, 0
	}
	var ends [16]int // ends[k]: end of a digit group with k digits in all
	j, nd, last := i+1, 0, i+1
	open, plain := false, true
	for j < len(t) {
		c := t[j]
		switch {
		case isDigit(c):
			e := s.digitsAt(j)
			nd += e - j
			j, last = e, e
			if nd > 15 {
				goto done
			}
			if !open {
				ends[nd] = e
			}
			continue
		case (c == ' ' || c == '-' || c == '.') && last == j && j+1 < len(t) && (isDigit(t[j+1]) || t[j+1] == '('):
		case c == '(' && !open && (last == j || last == j-1) && j+1 < len(t) && isDigit(t[j+1]):
			open = true
		case c == ')' && open && last == j:
			open = false
			last = j + 1
		default:
			goto done
		}
		plain = false
		j++
	}
done:
	conf := confE164
	if !plain {
		conf -= 0.05
	}
	// North American numbers (+1) have 11 digits; others take the longest
	// grouping of 8–15 digits.
	if t[i+1] == '1' && ends[11] > 0 && s.numRightOK(ends[11]) {
		return ends[11], conf
	}
	for k := 15; k >= 8; k-- {
		if e := ends[k]; e > 0 && s.numRightOK(e) {
			return e, conf
		}
	}
	return 0, 0
}

// nanpRest matches "ddd[-. ]dddd" or "ddd-dddd" at j with a 2–9 exchange
// and returns its end, or 0. seps lists the separators allowed after the
// exchange.
func (s *scanner) nanpRest(j int, seps string) int {
	t := s.text
	if j+8 > len(t) || t[j] < '2' || s.digitsAt(j) != j+3 || !strings.ContainsRune(seps, rune(t[j+3])) {
		return 0
	}
	if e := j + 8; s.digitsAt(j+4) == e && s.numRightOK(e) {
		return e
	}
	return 0
}

// phoneNANP matches "415-555-0123" or "415.555.0123".
func (s *scanner) phoneNANP(i int) int {
	t := s.text
	if i+12 > len(t) || t[i] < '2' || s.digitsAt(i) != i+3 || (t[i+3] != '-' && t[i+3] != '.') {
		return 0
	}
	return s.nanpRest(i+4, string(t[i+3]))
}

// phoneParen matches "(415) 555-0123" and "(415)555-0123".
func (s *scanner) phoneParen(i int) int {
	t := s.text
	if i+5 > len(t) || t[i+1] < '2' || s.digitsAt(i+1) != i+4 || t[i+4] != ')' {
		return 0
	}
	j := i + 5
	if j < len(t) && t[j] == ' ' {
		j++
	}
	return s.nanpRest(j, "-. ")
}

// email returns the end of an email address whose local part starts at i.
func (s *scanner) email(i int) int {
	t := s.text
	if i < s.noEmailUntil || (i > 0 && isLocal(t[i-1])) {
		return 0
	}
	if s.nextAt < i {
		s.nextAt = strings.IndexByte(t[i:], '@')
		if s.nextAt < 0 {
			s.nextAt = len(t)
		} else {
			s.nextAt += i
		}
	}
	if s.nextAt-i > 64 || s.nextAt >= len(t) {
		return 0
	}
	j := i
	for j < len(t) && j-i <= 64 && isLocal(t[j]) {
		j++
	}
	if j >= len(t) || t[j] != '@' || t[j-1] == '.' {
		s.noEmailUntil = j
		return 0
	}
	// Domain: labels of letters, digits and inner dashes, two or more,
	// the last alphabetic with at least two letters.
	k := j + 1
	labels, end := 0, 0
	for k < len(t) && k-j <= 254 {
		l := k
		for k < len(t) && (isAlnum(t[k]) || t[k] == '-') {
			k++
		}
		if k == l || t[l] == '-' || t[k-1] == '-' {
			break
		}
		labels++
		if labels >= 2 && k-l >= 2 && allAlpha(t[l:k]) {
			end = k
		}
		if k+1 < len(t) && t[k] == '.' && isAlnum(t[k+1]) {
			k++
			continue
		}
		break
	}
	if end == 0 || (end < len(t) && (isAlnum(t[end]) || t[end] == '-' || t[end] == '@')) {
		return 0
	}
	return end
}

func allAlpha(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isAlpha(s[i]) {
			return false
		}
	}
	return true
}

// runOf returns the end of the run of characters in class starting at i.
func (s *scanner) runOf(i int, class func(byte) bool) int {
	t := s.text
	for i < len(t) && class(t[i]) {
		i++
	}
	return i
}

// apiKey returns the end of an API key starting at i, or 0.
func (s *scanner) apiKey(i int) int {
	t := s.text[i:]
	if i > 0 && isB64URL(s.text[i-1]) {
		return 0
	}
	// body checks that a run of class of at least min characters follows
	// the prefix and ends the key.
	body := func(prefix int, class func(byte) bool, min, max int) int {
		e := s.runOf(i+prefix, class)
		l := e - i - prefix
		if l < min || l > max || (e < len(s.text) && isB64URL(s.text[e])) {
			return 0
		}
		return e
	}
	upperDigit := func(c byte) bool { return isUpper(c) || isDigit(c) }
	switch t[0] {
	case 'A':
		if strings.HasPrefix(t, "AKIA") || strings.HasPrefix(t, "ASIA") {
			return body(4, upperDigit, 16, 16)
		}
		if strings.HasPrefix(t, "AIza") {
			return body(4, isB64URL, 35, 35)
		}
	case 'g':
		if len(t) > 4 && strings.HasPrefix(t, "gh") && strings.IndexByte("pousr", t[2]) >= 0 && t[3] == '_' {
			return body(4, isAlnum, 36, 255)
		}
		if strings.HasPrefix(t, "github_pat_") {
			return body(11, func(c byte) bool { return isAlnum(c) || c == '_' }, 22, 255)
		}
	case 'x':
		if len(t) > 5 && strings.HasPrefix(t, "xox") && strings.IndexByte("abpers", t[3]) >= 0 && t[4] == '-' {
			return body(5, func(c byte) bool { return isAlnum(c) || c == '-' }, 10, 255)
		}
	case 's', 'r':
		if strings.HasPrefix(t[1:], "k_live_") || strings.HasPrefix(t[1:], "k_test_") {
			return body(8, isAlnum, 10, 255)
		}
	}
	return 0
}

// jwt returns the end of a JSON Web Token starting at i, or 0.
func (s *scanner) jwt(i int) int {
	t := s.text
	if !strings.HasPrefix(t[i:], "eyJ") || (i > 0 && (isB64URL(t[i-1]) || t[i-1] == '.')) {
		return 0
	}
	h := s.runOf(i, isB64URL)
	if h >= len(t) || t[h] != '.' {
		return 0
	}
	p := s.runOf(h+1, isB64URL)
	if p == h+1 || p >= len(t) || t[p] != '.' {
		return 0
	}
	e := s.runOf(p+1, isB64URL)
	if h-i > 4096 {
		return 0
	}
	hdr, err := base64.RawURLEncoding.DecodeString(t[i:h])
	if err != nil {
		return 0
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(hdr, &m) != nil {
		return 0
	}
	if _, ok := m["alg"]; !ok {
		return 0
	}
	return e
}

// pem returns the end of a PEM private key block starting at i, or 0.
func (s *scanner) pem(i int) int {
	t := s.text
	const begin = "-----BEGIN "
	rest := t[i+len(begin):]
	nl := strings.Index(rest, "-----")
	if nl < 0 || nl > 64 {
		return 0
	}
	label := rest[:nl]
	if !strings.HasSuffix(label, "PRIVATE KEY") || strings.ContainsAny(label, "\r\n") {
		return 0
	}
	hdrEnd := i + len(begin) + nl + 5
	endMark := "-----END " + label + "-----"
	window := t[hdrEnd:min(len(t), hdrEnd+64<<10)]
	if k := strings.Index(window, endMark); k >= 0 {
		return hdrEnd + k + len(endMark)
	}
	return hdrEnd
}

// iban returns the end of an IBAN starting at i, or 0.
func (s *scanner) iban(i int) int {
	t := s.text
	if i+4 > len(t) || !isUpper(t[i+1]) || !isDigit(t[i+2]) || !isDigit(t[i+3]) || (i > 0 && isAlnum(t[i-1])) {
		return 0
	}
	want := ibanLength(t[i : i+2])
	if want == 0 {
		return 0
	}
	var buf [34]byte
	n, j := 0, i
	for j < len(t) && n < want {
		c := t[j]
		switch {
		case isDigit(c) || isUpper(c):
			buf[n] = c
			n++
		case c == ' ' && n%4 == 0 && n > 0 && j+1 < len(t) && isAlnum(t[j+1]) && t[j-1] != ' ':
		default:
			return 0
		}
		j++
	}
	if n != want || (j < len(t) && isAlnum(t[j])) {
		return 0
	}
	if !ibanChecksum(buf[:n]) {
		return 0
	}
	return j
}

// ibanChecksum computes mod 97 of the rearranged IBAN (ISO 13616).
func ibanChecksum(b []byte) bool {
	r := 0
	add := func(c byte) {
		if isDigit(c) {
			r = (r*10 + int(c-'0')) % 97
		} else {
			r = (r*100 + int(c-'A') + 10) % 97
		}
	}
	for _, c := range b[4:] {
		add(c)
	}
	for _, c := range b[:4] {
		add(c)
	}
	return r == 1
}

// ibanLengths lists registered IBAN lengths by country (SWIFT IBAN registry).
const ibanLengths = "AD24AE23AL28AT20AZ28BA20BE16BG22BH22BR29BY28CH21CR22CY28CZ24DE22DK18DO28" +
	"EE20EG29ES24FI18FO18FR27GB22GE22GI23GL18GR27GT28HR21HU28IE22IL23IQ23IS26IT27JO30" +
	"KW30KZ20LB28LC32LI21LT20LU20LV21LY25MC27MD24ME22MK19MR27MT31MU30NL18NO15PK24PL28" +
	"PS29PT25QA29RO24RS22SA24SC31SD18SE24SI19SK24SM27ST25SV28TL23TN24TR26UA29VA22VG24XK20"

// ibanLength returns the IBAN length of a country, or 0.
func ibanLength(cc string) int {
	for k := 0; k+4 <= len(ibanLengths); k += 4 {
		if ibanLengths[k:k+2] == cc {
			return int(ibanLengths[k+2]-'0')*10 + int(ibanLengths[k+3]-'0')
		}
	}
	return 0
}
