"""coffer.redact: the cases of the Go redact package's tests, and the same
findings as the server's own redact package (/v1/inspect, /v1/redact)."""

from __future__ import annotations

import random
import unittest
from typing import List, Optional, Tuple

import harness
from coffer import redact

JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIy"
       "fQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
GHP = "ghp_" + "aB3" * 12
PEM = ("-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n"
       "-----END RSA PRIVATE KEY-----")

# (name, text, [(type, value)]) — TestFindDetectors of redact/find_test.go.
CASES: List[Tuple[str, str, List[Tuple[str, str]]]] = [
    ("card/visa-plain", "card 4111111111111111 ok", [("card_number", "4111111111111111")]),
    ("card/visa-spaces", "pay 4111 1111 1111 1111.", [("card_number", "4111 1111 1111 1111")]),
    ("card/visa-dashes", "4111-1111-1111-1111", [("card_number", "4111-1111-1111-1111")]),
    ("card/visa-13", "old 4222222222222 card", [("card_number", "4222222222222")]),
    ("card/amex-grouped", "amex 3782 822463 10005", [("card_number", "3782 822463 10005")]),
    ("card/amex-37", "371449635398431", [("card_number", "371449635398431")]),
    ("card/mastercard-5", "5555555555554444", [("card_number", "5555555555554444")]),
    ("card/mastercard-2-series", "2223003122003222", [("card_number", "2223003122003222")]),
    ("card/discover", "6011111111111117", [("card_number", "6011111111111117")]),
    ("card/jcb", "3530111333300000", [("card_number", "3530111333300000")]),
    ("card/diners-14", "30569309025904", [("card_number", "30569309025904")]),
    ("card/unionpay", "6200000000000005", [("card_number", "6200000000000005")]),
    ("card/followed-by-number", "4111 1111 1111 1111 22 items", [("card_number", "4111 1111 1111 1111")]),
    ("card/in-json", '{"pan":"4111111111111111"}', [("card_number", "4111111111111111")]),
    ("no-card/luhn-invalid-16", "4111111111111112", []),
    ("no-card/unknown-iin", "1234567812345670", []),
    ("no-card/mixed-separators", "4111-1111 1111-1111", []),
    ("no-card/double-space", "4111  1111 1111 1111", []),
    ("no-card/20-digits", "41111111111111111111", []),
    ("no-card/inside-word", "id4111111111111111", []),
    ("no-card/amex-wrong-length", "3782822463100055", []),
    ("ssn/dashed", "ssn 123-45-6789 on file", [("ssn", "123-45-6789")]),
    ("ssn/bare-with-keyword", "SSN: 123456789", [("ssn", "123456789")]),
    ("ssn/bare-social-security", "social security no 078051120", [("ssn", "078051120")]),
    ("no-ssn/area-000", "000-12-3456", []),
    ("no-ssn/area-666", "666-12-3456", []),
    ("no-ssn/area-9xx", "912-12-3456", []),
    ("no-ssn/group-00", "123-00-4567", []),
    ("no-ssn/serial-0000", "123-45-0000", []),
    ("no-ssn/bare-without-keyword", "id 123456789", []),
    ("no-ssn/too-long", "123-45-67890", []),
    ("phone/e164", "call +14155550123 now", [("phone", "+14155550123")]),
    ("phone/e164-spaced", "+1 415 555 0123", [("phone", "+1 415 555 0123")]),
    ("phone/e164-paren", "+1 (415) 555-0123", [("phone", "+1 (415) 555-0123")]),
    ("phone/uk", "tel: +44 20 7946 0958", [("phone", "+44 20 7946 0958")]),
    ("phone/nanp-paren", "(415) 555-0123", [("phone", "(415) 555-0123")]),
    ("phone/nanp-dashes", "415-555-0123", [("phone", "415-555-0123")]),
    ("phone/nanp-dots", "415.555.0123", [("phone", "415.555.0123")]),
    ("phone/nanp-plus-year", "+1 415 555 0123 2024", [("phone", "+1 415 555 0123")]),
    ("no-phone/area-1", "115-555-0123", []),
    ("no-phone/plus-zero", "+0123456789", []),
    ("no-phone/too-short", "+1234567", []),
    ("no-phone/too-long", "+1234567890123456", []),
    ("no-phone/unix-time", "ts=1700000000", []),
    ("no-phone/date", "2024-01-31", []),
    ("email/plain", "to alice@example.com.", [("email", "alice@example.com")]),
    ("email/subaddress", "<bob.smith+tag@mail.example.co.uk>", [("email", "bob.smith+tag@mail.example.co.uk")]),
    ("email/digits-local", "415-555-0123@example.com", [("email", "415-555-0123@example.com")]),
    ("no-email/no-tld", "alice@localhost", []),
    ("no-email/one-letter-tld", "a@b.c", []),
    ("no-email/no-local", "@example.com", []),
    ("no-email/numeric-tld", "a@1.2", []),
    ("iban/de-grouped", "IBAN DE89 3704 0044 0532 0130 00", [("iban", "DE89 3704 0044 0532 0130 00")]),
    ("iban/gb-compact", "GB82WEST12345698765432", [("iban", "GB82WEST12345698765432")]),
    ("iban/fr-letter-in-bban", "FR1420041010050500013M02606", [("iban", "FR1420041010050500013M02606")]),
    ("no-iban/bad-checksum", "DE89 3704 0044 0532 0130 01", []),
    ("no-iban/unknown-country", "XX89370400440532013000", []),
    ("no-iban/wrong-length", "DE8937040044053201300", []),
    ("ipv4/plain", "from 10.0.0.1 ok", [("ipv4", "10.0.0.1")]),
    ("ipv4/with-port", "192.168.1.254:8080", [("ipv4", "192.168.1.254")]),
    ("ipv4/version-number-is-an-address", "version 1.2.3.4", [("ipv4", "1.2.3.4")]),
    ("no-ipv4/octet-999", "999.1.1.1", []),
    ("no-ipv4/three-parts", "1.2.3", []),
    ("no-ipv4/five-parts", "1.2.3.4.5", []),
    ("no-ipv4/leading-zero", "01.2.3.4", []),
    ("no-ipv4/v-prefix", "v1.2.3.4", []),
    ("ipv6/compressed", "peer 2001:db8::1 up", [("ipv6", "2001:db8::1")]),
    ("ipv6/full", "2001:0db8:0000:0000:0000:ff00:0042:8329", [("ipv6", "2001:0db8:0000:0000:0000:ff00:0042:8329")]),
    ("ipv6/zone-cut", "fe80::1%eth0", [("ipv6", "fe80::1")]),
    ("ipv6/loopback-end-of-sentence", "bound to ::1.", [("ipv6", "::1")]),
    ("no-ipv6/time", "at 12:34:56", []),
    ("no-ipv6/mac", "00:1a:2b:3c:4d:5e", []),
    ("no-ipv6/cpp", "std::vector", []),
    ("no-ipv6/unspecified", "a :: b", []),
    ("jwt/bearer", "Authorization: Bearer " + JWT, [("jwt", JWT)]),
    ("no-jwt/header-without-alg", "eyJub3QiOiJqd3QifQ.eyJ4IjoxfQ.sig", []),
    ("no-jwt/two-parts", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ4IjoxfQ", []),
    ("api/aws", "key=AKIAIOSFODNN7EXAMPLE", [("api_key", "AKIAIOSFODNN7EXAMPLE")]),
    ("api/github", "token " + GHP, [("api_key", GHP)]),
    ("api/github-pat", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
     [("api_key", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz")]),
    ("api/slack", "xoxb-123456789012-abcdefghijkl", [("api_key", "xoxb-123456789012-abcdefghijkl")]),
    ("api/stripe", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", [("api_key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc")]),
    ("api/stripe-restricted", "rk_live_4eC39HqLyjWDarjtT1zdp7dc", [("api_key", "rk_live_4eC39HqLyjWDarjtT1zdp7dc")]),
    ("api/google", "AIzaSyA-1234567890abcdefghijklmnopqrstu", [("api_key", "AIzaSyA-1234567890abcdefghijklmnopqrstu")]),
    ("no-api/aws-short", "AKIA1234", []),
    ("no-api/github-short", "ghp_short", []),
    ("no-api/stripe-bare-prefix", "sk_live_", []),
    ("pem/private-key-block", "key:\n" + PEM + "\nend", [("private_key", PEM)]),
    ("pem/header-only", "-----BEGIN PRIVATE KEY-----", [("private_key", "-----BEGIN PRIVATE KEY-----")]),
    ("no-pem/public-key", "-----BEGIN PUBLIC KEY-----", []),
    ("no-pem/certificate", "-----BEGIN CERTIFICATE-----", []),
    ("none/timestamp", "2024-05-01T12:34:56.789Z INFO started in 12.5ms", []),
    ("none/order-id", "order_id=ORD-20240501-000123 qty=3", []),
    ("none/request-id", "request_id=4f9c2a1b-7d3e-4c1a-9b2e-0a1b2c3d4e5f", []),
    ("none/empty", "", []),
    ("many/in-order", "user=alice@example.com ip=10.0.0.1 card=4111111111111111",
     [("email", "alice@example.com"), ("ipv4", "10.0.0.1"), ("card_number", "4111111111111111")]),
]

REDACT_TEXT = ("card 4111-1111-1111-1111 mail alice@example.com ssn 123-45-6789 ip 10.0.0.1 tel +14155550123 "
               "iban GB82WEST12345698765432 key AKIAIOSFODNN7EXAMPLE")


def random_texts(n: int, seed: int) -> List[str]:
    rng = random.Random(seed)
    alphabet = "0123456789 -.:@+()abcdefABCDEFxyzXYZ_\n"
    return ["".join(rng.choice(alphabet) for _ in range(rng.randrange(200))) for _ in range(n)]


class FindTest(unittest.TestCase):
    def test_detectors(self) -> None:
        for name, text, want in CASES:
            with self.subTest(name):
                got = [(f.type, text[f.start:f.end]) for f in redact.find(text)]
                self.assertEqual(got, want)

    def test_confidence(self) -> None:
        dashed, bare = redact.find("123-45-6789"), redact.find("ssn 123456789")
        self.assertEqual((len(dashed), len(bare)), (1, 1))
        self.assertLess(bare[0].confidence, dashed[0].confidence)
        for f in dashed + bare:
            self.assertTrue(0 < f.confidence <= 1)

    def test_redact(self) -> None:
        self.assertEqual(redact.redact(REDACT_TEXT, redact.MODE_MASK),
                         "card ****-****-****-1111 mail a****@e******.com ssn ***-**-6789 ip [IPV4] tel +*******0123 "
                         "iban GB****************5432 key [API_KEY]")
        self.assertEqual(redact.redact(REDACT_TEXT, redact.MODE_PLACEHOLDER),
                         "card [CARD_NUMBER] mail [EMAIL] ssn [SSN] ip [IPV4] tel [PHONE] iban [IBAN] key [API_KEY]")
        self.assertEqual(redact.redact("nothing to see"), "nothing to see")
        with self.assertRaises(ValueError):
            redact.redact("x", "shout")

    def test_random_text_invariants(self) -> None:
        for text in random_texts(2000, 7):
            prev = 0
            for f in redact.find(text):
                self.assertTrue(prev <= f.start < f.end <= len(text), (text, f))
                self.assertTrue(0 < f.confidence <= 1 and f.type)
                prev = f.end
            if not redact.find(text):
                self.assertEqual(redact.redact(text), text)

    def test_non_ascii_never_matches_inside_values(self) -> None:
        # Non-ASCII digits and letters are not ASCII ones.
        self.assertEqual(redact.find("٤١١١١١١١١١١١١١١١ ａlice@example.com"), [redact.Finding("email", 18, 34, 0.9)])


class SameAsServerTest(unittest.TestCase):
    """The server runs the Go package: its findings must be ours."""

    srv: Optional[harness.Server] = None

    @classmethod
    def setUpClass(cls) -> None:
        cls.srv = harness.shared()

    def test_findings_and_redactions_match_the_go_package(self) -> None:
        assert self.srv is not None
        texts = [text for _, text, _ in CASES if text.isascii()] + [REDACT_TEXT] + random_texts(60, 11)
        with self.srv.client() as c:
            for text in texts:
                if not text:
                    continue
                with self.subTest(text=text[:60]):
                    ours = [(f.type, f.start, f.end, f.confidence) for f in redact.find(text)]
                    theirs = [(f["type"], f["start"], f["end"], f["confidence"]) for f in c.inspect(text)]
                    self.assertEqual(ours, theirs)
                    if ours:
                        for mode in (redact.MODE_MASK, redact.MODE_PLACEHOLDER):
                            self.assertEqual(redact.redact(text, mode), c.redact(text, mode=mode))


if __name__ == "__main__":
    unittest.main()
