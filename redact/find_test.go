package redact

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

type want struct{ typ, value string }

func checkFind(t *testing.T, text string, wants []want) {
	t.Helper()
	got := Find(text)
	var gotW []want
	for _, f := range got {
		gotW = append(gotW, want{f.Type, text[f.Start:f.End]})
	}
	if fmt.Sprint(gotW) != fmt.Sprint(wants) {
		t.Fatalf("Find(%q)\n got  %v\n want %v", text, gotW, wants)
	}
}

const jwtHS256 = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"

func TestFindDetectors(t *testing.T) {
	ghp := "ghp_" + strings.Repeat("aB3", 12)
	pem := "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END RSA PRIVATE KEY-----"
	tests := []struct {
		name string
		text string
		want []want
	}{
		// Cards.
		{"card/visa-plain", "card 4111111111111111 ok", []want{{TypeCard, "4111111111111111"}}},
		{"card/visa-spaces", "pay 4111 1111 1111 1111.", []want{{TypeCard, "4111 1111 1111 1111"}}},
		{"card/visa-dashes", "4111-1111-1111-1111", []want{{TypeCard, "4111-1111-1111-1111"}}},
		{"card/visa-13", "old 4222222222222 card", []want{{TypeCard, "4222222222222"}}},
		{"card/amex-grouped", "amex 3782 822463 10005", []want{{TypeCard, "3782 822463 10005"}}},
		{"card/amex-37", "371449635398431", []want{{TypeCard, "371449635398431"}}},
		{"card/mastercard-5", "5555555555554444", []want{{TypeCard, "5555555555554444"}}},
		{"card/mastercard-2-series", "2223003122003222", []want{{TypeCard, "2223003122003222"}}},
		{"card/discover", "6011111111111117", []want{{TypeCard, "6011111111111117"}}},
		{"card/jcb", "3530111333300000", []want{{TypeCard, "3530111333300000"}}},
		{"card/diners-14", "30569309025904", []want{{TypeCard, "30569309025904"}}},
		{"card/unionpay", "6200000000000005", []want{{TypeCard, "6200000000000005"}}},
		{"card/followed-by-number", "4111 1111 1111 1111 22 items", []want{{TypeCard, "4111 1111 1111 1111"}}},
		{"card/in-json", `{"pan":"4111111111111111"}`, []want{{TypeCard, "4111111111111111"}}},
		{"no-card/luhn-invalid-16", "4111111111111112", nil},
		{"no-card/unknown-iin", "1234567812345670", nil},
		{"no-card/mixed-separators", "4111-1111 1111-1111", nil},
		{"no-card/double-space", "4111  1111 1111 1111", nil},
		{"no-card/20-digits", "41111111111111111111", nil},
		{"no-card/inside-word", "id4111111111111111", nil},
		{"no-card/amex-wrong-length", "3782822463100055", nil},
		// SSNs.
		{"ssn/dashed", "ssn 123-45-6789 on file", []want{{TypeSSN, "123-45-6789"}}},
		{"ssn/bare-with-keyword", "SSN: 123456789", []want{{TypeSSN, "123456789"}}},
		{"ssn/bare-social-security", "social security no 078051120", []want{{TypeSSN, "078051120"}}},
		{"no-ssn/area-000", "000-12-3456", nil},
		{"no-ssn/area-666", "666-12-3456", nil},
		{"no-ssn/area-9xx", "912-12-3456", nil},
		{"no-ssn/group-00", "123-00-4567", nil},
		{"no-ssn/serial-0000", "123-45-0000", nil},
		{"no-ssn/bare-without-keyword", "id 123456789", nil},
		{"no-ssn/too-long", "123-45-67890", nil},
		// Phones.
		{"phone/e164", "call +14155550123 now", []want{{TypePhone, "+14155550123"}}},
		{"phone/e164-spaced", "+1 415 555 0123", []want{{TypePhone, "+1 415 555 0123"}}},
		{"phone/e164-paren", "+1 (415) 555-0123", []want{{TypePhone, "+1 (415) 555-0123"}}},
		{"phone/uk", "tel: +44 20 7946 0958", []want{{TypePhone, "+44 20 7946 0958"}}},
		{"phone/nanp-paren", "(415) 555-0123", []want{{TypePhone, "(415) 555-0123"}}},
		{"phone/nanp-dashes", "415-555-0123", []want{{TypePhone, "415-555-0123"}}},
		{"phone/nanp-dots", "415.555.0123", []want{{TypePhone, "415.555.0123"}}},
		{"phone/nanp-plus-year", "+1 415 555 0123 2024", []want{{TypePhone, "+1 415 555 0123"}}},
		{"no-phone/area-1", "115-555-0123", nil},
		{"no-phone/plus-zero", "+0123456789", nil},
		{"no-phone/too-short", "+1234567", nil},
		{"no-phone/too-long", "+1234567890123456", nil},
		{"no-phone/unix-time", "ts=1700000000", nil},
		{"no-phone/date", "2024-01-31", nil},
		// Emails.
		{"email/plain", "to alice@example.com.", []want{{TypeEmail, "alice@example.com"}}},
		{"email/subaddress", "<bob.smith+tag@mail.example.co.uk>", []want{{TypeEmail, "bob.smith+tag@mail.example.co.uk"}}},
		{"email/digits-local", "415-555-0123@example.com", []want{{TypeEmail, "415-555-0123@example.com"}}},
		{"no-email/no-tld", "alice@localhost", nil},
		{"no-email/one-letter-tld", "a@b.c", nil},
		{"no-email/no-local", "@example.com", nil},
		{"no-email/numeric-tld", "a@1.2", nil},
		// IBANs.
		{"iban/de-grouped", "IBAN DE89 3704 0044 0532 0130 00", []want{{TypeIBAN, "DE89 3704 0044 0532 0130 00"}}},
		{"iban/gb-compact", "GB82WEST12345698765432", []want{{TypeIBAN, "GB82WEST12345698765432"}}},
		{"iban/fr-letter-in-bban", "FR1420041010050500013M02606", []want{{TypeIBAN, "FR1420041010050500013M02606"}}},
		{"no-iban/bad-checksum", "DE89 3704 0044 0532 0130 01", nil},
		{"no-iban/unknown-country", "XX89370400440532013000", nil},
		{"no-iban/wrong-length", "DE8937040044053201300", nil},
		// IP addresses.
		{"ipv4/plain", "from 10.0.0.1 ok", []want{{TypeIPv4, "10.0.0.1"}}},
		{"ipv4/with-port", "192.168.1.254:8080", []want{{TypeIPv4, "192.168.1.254"}}},
		{"ipv4/version-number-is-an-address", "version 1.2.3.4", []want{{TypeIPv4, "1.2.3.4"}}},
		{"no-ipv4/octet-999", "999.1.1.1", nil},
		{"no-ipv4/three-parts", "1.2.3", nil},
		{"no-ipv4/five-parts", "1.2.3.4.5", nil},
		{"no-ipv4/leading-zero", "01.2.3.4", nil},
		{"no-ipv4/v-prefix", "v1.2.3.4", nil},
		{"ipv6/compressed", "peer 2001:db8::1 up", []want{{TypeIPv6, "2001:db8::1"}}},
		{"ipv6/full", "2001:0db8:0000:0000:0000:ff00:0042:8329", []want{{TypeIPv6, "2001:0db8:0000:0000:0000:ff00:0042:8329"}}},
		{"ipv6/zone-cut", "fe80::1%eth0", []want{{TypeIPv6, "fe80::1"}}},
		{"ipv6/loopback-end-of-sentence", "bound to ::1.", []want{{TypeIPv6, "::1"}}},
		{"no-ipv6/time", "at 12:34:56", nil},
		{"no-ipv6/mac", "00:1a:2b:3c:4d:5e", nil},
		{"no-ipv6/cpp", "std::vector", nil},
		{"no-ipv6/unspecified", "a :: b", nil},
		// JWTs.
		{"jwt/bearer", "Authorization: Bearer " + jwtHS256, []want{{TypeJWT, jwtHS256}}},
		{"no-jwt/header-without-alg", "eyJub3QiOiJqd3QifQ.eyJ4IjoxfQ.sig", nil},
		{"no-jwt/two-parts", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ4IjoxfQ", nil},
		// API keys.
		{"api/aws", "key=AKIAIOSFODNN7EXAMPLE", []want{{TypeAPIKey, "AKIAIOSFODNN7EXAMPLE"}}},
		{"api/github", "token " + ghp, []want{{TypeAPIKey, ghp}}},
		{"api/github-pat", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", []want{{TypeAPIKey, "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz"}}},
		{"api/slack", "xoxb-123456789012-abcdefghijkl", []want{{TypeAPIKey, "xoxb-123456789012-abcdefghijkl"}}},
		{"api/stripe", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", []want{{TypeAPIKey, "sk_live_4eC39HqLyjWDarjtT1zdp7dc"}}},
		{"api/stripe-restricted", "rk_live_4eC39HqLyjWDarjtT1zdp7dc", []want{{TypeAPIKey, "rk_live_4eC39HqLyjWDarjtT1zdp7dc"}}},
		{"api/google", "AIzaSyA-1234567890abcdefghijklmnopqrstu", []want{{TypeAPIKey, "AIzaSyA-1234567890abcdefghijklmnopqrstu"}}},
		{"no-api/aws-short", "AKIA1234", nil},
		{"no-api/github-short", "ghp_short", nil},
		{"no-api/stripe-bare-prefix", "sk_live_", nil},
		{"pem/private-key-block", "key:\n" + pem + "\nend", []want{{TypePrivateKey, pem}}},
		{"pem/header-only", "-----BEGIN PRIVATE KEY-----", []want{{TypePrivateKey, "-----BEGIN PRIVATE KEY-----"}}},
		{"no-pem/public-key", "-----BEGIN PUBLIC KEY-----", nil},
		{"no-pem/certificate", "-----BEGIN CERTIFICATE-----", nil},
		// Things in every log that are none of the above.
		{"none/timestamp", "2024-05-01T12:34:56.789Z INFO started in 12.5ms", nil},
		{"none/order-id", "order_id=ORD-20240501-000123 qty=3", nil},
		{"none/request-id", "request_id=4f9c2a1b-7d3e-4c1a-9b2e-0a1b2c3d4e5f", nil},
		{"none/empty", "", nil},
		// Several in one line, in order.
		{"many/in-order", "user=alice@example.com ip=10.0.0.1 card=4111111111111111", []want{
			{TypeEmail, "alice@example.com"}, {TypeIPv4, "10.0.0.1"}, {TypeCard, "4111111111111111"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkFind(t, tt.text, tt.want)
		})
	}
}

func TestFindConfidence(t *testing.T) {
	dashed := Find("123-45-6789")
	bare := Find("ssn 123456789")
	if len(dashed) != 1 || len(bare) != 1 {
		t.Fatalf("want one finding each, got %v and %v", dashed, bare)
	}
	if bare[0].Confidence >= dashed[0].Confidence {
		t.Fatalf("bare SSN confidence %v should be below dashed %v", bare[0].Confidence, dashed[0].Confidence)
	}
	for _, f := range append(dashed, bare...) {
		if f.Confidence <= 0 || f.Confidence > 1 {
			t.Fatalf("confidence %v outside (0,1]", f.Confidence)
		}
	}
}

func TestRedact(t *testing.T) {
	text := "card 4111-1111-1111-1111 mail alice@example.com ssn 123-45-6789 ip 10.0.0.1 tel +14155550123 iban GB82WEST12345698765432 key AKIAIOSFODNN7EXAMPLE"
	tests := []struct {
		name string
		mode Mode
		want string
	}{
		{"mask", ModeMask, "card ****-****-****-1111 mail a****@e******.com ssn ***-**-6789 ip [IPV4] tel +*******0123 iban GB****************5432 key [API_KEY]"},
		{"placeholder", ModePlaceholder, "card [CARD_NUMBER] mail [EMAIL] ssn [SSN] ip [IPV4] tel [PHONE] iban [IBAN] key [API_KEY]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Redact(text, tt.mode); got != tt.want {
				t.Fatalf("Redact\n got  %q\n want %q", got, tt.want)
			}
		})
	}
	if got := Redact("nothing to see", ModeMask); got != "nothing to see" {
		t.Fatalf("Redact changed clean text: %q", got)
	}
}

// checkFindings asserts the invariants every Find result must keep.
func checkFindings(t *testing.T, text string, fs []Finding) {
	t.Helper()
	prev := 0
	for _, f := range fs {
		if f.Start < prev || f.End <= f.Start || f.End > len(text) {
			t.Fatalf("bad finding %+v after offset %d in text of %d bytes", f, prev, len(text))
		}
		if f.Confidence <= 0 || f.Confidence > 1 || f.Type == "" {
			t.Fatalf("bad finding %+v", f)
		}
		prev = f.End
	}
}

func FuzzFind(f *testing.F) {
	for _, s := range []string{
		"card 4111 1111 1111 1111 mail alice@example.com",
		"+1 (415) 555-0123 / (415) 555-0123 / 415.555.0123",
		"ssn 123-45-6789, SSN 123456789",
		"DE89 3704 0044 0532 0130 00 GB82WEST12345698765432",
		"10.0.0.1 2001:db8::1 ::ffff:10.0.0.1 fe80::1%eth0",
		jwtHS256, "AKIAIOSFODNN7EXAMPLE xoxb-123456789012-abc",
		"-----BEGIN EC PRIVATE KEY-----\nabc\n-----END EC PRIVATE KEY-----",
		"a@b@c.de@@..@x.yz", "+(((", "::::::::", "eyJ.eyJ.", "\xff\xfe@\x00.com",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		fs := Find(text)
		checkFindings(t, text, fs)
		for _, m := range []Mode{ModeMask, ModePlaceholder} {
			out := Redact(text, m)
			if len(fs) == 0 && out != text {
				t.Fatalf("Redact changed text without findings: %q → %q", text, out)
			}
		}
	})
}

func TestFindRandomText(t *testing.T) {
	rng := rand.New(rand.NewChaCha8([32]byte{'r', 'e', 'd'}))
	alphabet := "0123456789 -.:@+()abcdefABCDEFxyzXYZ_\n"
	for range 2000 {
		b := make([]byte, rng.IntN(200))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		checkFindings(t, string(b), Find(string(b)))
	}
}

// logText returns about n bytes of realistic log lines with a few findings.
func logText(n int) string {
	lines := []string{
		`2024-05-01T12:34:56.789Z INFO request_id=4f9c2a1b-7d3e-4c1a-9b2e-0a1b2c3d4e5f method=GET path=/v1/orders/123456 status=200 duration=12.3ms`,
		`2024-05-01T12:34:56.791Z DEBUG cache hit key=orders:123456 size=2048 ttl=300s node=api-7f9c`,
		`2024-05-01T12:34:56.802Z INFO user signed in user=alice@example.com ip=10.20.30.40 agent="Mozilla/5.0 (X11; Linux x86_64)"`,
		`2024-05-01T12:34:56.803Z WARN slow query took=1.204s rows=5000 table=order_items shard=3`,
		`2024-05-01T12:34:56.811Z INFO payment accepted order=ORD-20240501-000123 amount=42.50 currency=EUR card=4111 1111 1111 1111`,
		`2024-05-01T12:34:56.820Z ERROR upstream timeout service=inventory attempt=3 backoff=250ms err="context deadline exceeded"`,
		`2024-05-01T12:34:56.830Z INFO job finished job=rewrap batch=17 moved=500 remaining=12000 version=1.4.2`,
	}
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		b.WriteString(lines[i%len(lines)])
		b.WriteByte('\n')
	}
	return b.String()[:n]
}

func benchmarkFind(b *testing.B, n int) {
	text := logText(n)
	if len(Find(text)) == 0 && n > 1000 {
		b.Fatal("benchmark text has no findings")
	}
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		Find(text)
	}
}

func BenchmarkFind1KB(b *testing.B) { benchmarkFind(b, 1<<10) }
func BenchmarkFind1MB(b *testing.B) { benchmarkFind(b, 1<<20) }

func BenchmarkRedact1KB(b *testing.B) {
	text := logText(1 << 10)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		Redact(text, ModeMask)
	}
}
