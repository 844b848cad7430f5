"""Find sensitive values in free text and hide them.

A port of Coffer's Go package ``redact`` (the same detectors, overlap rules
and masks), so an application's Python logs are redacted as its Go logs
are. ``find`` scans the text once, left to right, without regular
expressions; each detector validates what it matches:

- ``card_number``: 13–19 digits, optionally grouped by single spaces or by
  single dashes, Luhn-valid, in a known issuer range and length;
- ``email``: local@domain with two or more labels and an alphabetic TLD;
- ``phone``: E.164 (``+14155550123``, grouped) and North American forms
  ``(415) 555-0123``, ``415-555-0123``, ``415.555.0123``;
- ``ssn``: ``AAA-GG-SSSS`` with a valid area, group and serial; nine bare
  digits only after "ssn" or "social security";
- ``iban`` (registered length and mod-97), ``ipv4``, ``ipv6``, ``jwt``,
  ``api_key`` (AWS, GitHub, Slack, Stripe, Google), ``private_key`` (PEM).

Offsets are indexes into the Python string. For ASCII text they are the
byte offsets Coffer's ``/v1/inspect`` answers, and the findings are the
same; the detectors only ever match ASCII.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from . import _mask

__all__ = [
    "Finding", "find", "redact", "placeholder", "MODE_MASK", "MODE_PLACEHOLDER",
    "TYPE_CARD", "TYPE_EMAIL", "TYPE_PHONE", "TYPE_SSN", "TYPE_IBAN", "TYPE_IPV4",
    "TYPE_IPV6", "TYPE_JWT", "TYPE_API_KEY", "TYPE_PRIVATE_KEY",
]

TYPE_CARD = "card_number"
TYPE_EMAIL = "email"
TYPE_PHONE = "phone"
TYPE_SSN = "ssn"
TYPE_IBAN = "iban"
TYPE_IPV4 = "ipv4"
TYPE_IPV6 = "ipv6"
TYPE_JWT = "jwt"
TYPE_API_KEY = "api_key"
TYPE_PRIVATE_KEY = "private_key"

MODE_MASK = "mask"
"""Replace a finding with its mask (cards keep their last four, emails their
initials and TLD, phones and SSNs their last digits, IBANs their country and
last four); types without a mask get their placeholder."""
MODE_PLACEHOLDER = "placeholder"
"""Replace a finding with ``[TYPE]``, e.g. ``[EMAIL]``."""

_CONF_PRIVATE_KEY = 0.99
_CONF_CARD = 0.95
_CONF_JWT = 0.95
_CONF_API_KEY = 0.95
_CONF_IBAN = 0.9
_CONF_EMAIL = 0.9
_CONF_E164 = 0.9
_CONF_SSN = 0.85
_CONF_PHONE_PAREN = 0.8
_CONF_IP = 0.8
_CONF_PHONE_NANP = 0.7
_CONF_SSN_BARE = 0.5


@dataclass(frozen=True)
class Finding:
    """One sensitive value: ``text[start:end]``, of ``type``, found with
    ``confidence`` in (0, 1]."""

    type: str
    start: int
    end: int
    confidence: float


def _digit(c: str) -> bool:
    return "0" <= c <= "9"


def _upper(c: str) -> bool:
    return "A" <= c <= "Z"


def _alpha(c: str) -> bool:
    return "A" <= c <= "Z" or "a" <= c <= "z"


def _alnum(c: str) -> bool:
    return _digit(c) or _alpha(c)


def _hex(c: str) -> bool:
    return _digit(c) or "a" <= c <= "f" or "A" <= c <= "F"


def _b64url(c: str) -> bool:
    return _alnum(c) or c == "-" or c == "_"


def _local(c: str) -> bool:
    return _alnum(c) or c in (".", "_", "%", "+", "-")


def find(text: str) -> List[Finding]:
    """Returns the sensitive values in ``text``, ordered by start and never
    overlapping (where two detectors overlap, the higher confidence wins,
    then the longer match)."""
    return _Scanner(text).run()


def placeholder(typ: str) -> str:
    """The placeholder of a finding type: ``[EMAIL]`` for ``email``."""
    return "[" + typ.upper() + "]"


def _mask_iban(v: str) -> str:
    return _mask.mask_partial(v, 2, 4)


_MASKS: Dict[str, Callable[[str], str]] = {
    TYPE_CARD: _mask.mask_card,
    TYPE_EMAIL: _mask.mask_email,
    TYPE_PHONE: _mask.mask_phone,
    TYPE_SSN: _mask.mask_ssn,
    TYPE_IBAN: _mask_iban,
}


def redact(text: str, mode: str = MODE_MASK) -> str:
    """Returns ``text`` with every finding replaced as ``mode`` says."""
    return redact_findings(text, find(text), mode)


def redact_findings(text: str, findings: List[Finding], mode: str = MODE_MASK) -> str:
    """Returns ``text`` with the given findings replaced as ``mode`` says."""
    if mode not in (MODE_MASK, MODE_PLACEHOLDER):
        raise ValueError("mode must be 'mask' or 'placeholder'")
    if not findings:
        return text
    out: List[str] = []
    prev = 0
    for f in findings:
        out.append(text[prev:f.start])
        m = _MASKS.get(f.type)
        out.append(m(text[f.start:f.end]) if m is not None and mode == MODE_MASK else placeholder(f.type))
        prev = f.end
    out.append(text[prev:])
    return "".join(out)


def _luhn(d: List[int]) -> bool:
    total = 0
    for i in range(len(d)):
        x = d[len(d) - 1 - i]
        if i % 2 == 1:
            x *= 2
            if x > 9:
                x -= 9
        total += x
    return total % 10 == 0


def _known_iin(d: List[int]) -> bool:
    n = len(d)

    def p(k: int) -> int:
        v = 0
        for x in d[:k]:
            v = v * 10 + x
        return v

    if d[0] == 4:  # Visa
        return n in (13, 16, 19)
    if 51 <= p(2) <= 55 or 2221 <= p(4) <= 2720:  # Mastercard
        return n == 16
    if p(2) in (34, 37):  # Amex
        return n == 15
    if p(4) == 6011 or p(2) == 65 or 644 <= p(3) <= 649:  # Discover
        return 16 <= n <= 19
    if 3528 <= p(4) <= 3589:  # JCB
        return 16 <= n <= 19
    if p(2) in (36, 38) or 300 <= p(3) <= 305:  # Diners
        return 14 <= n <= 19
    if p(2) == 62:  # UnionPay
        return 16 <= n <= 19
    return False


def _valid_ssn(area: str, group: str, serial: str) -> bool:
    return area != "000" and area != "666" and area[0] != "9" and group != "00" and serial != "0000"


def _ssn_keyword_before(t: str, i: int) -> bool:
    w = t[max(0, i - 32):i].lower()
    return any(k in w for k in ("ssn", "social security", "social_security"))


_IBAN_LENGTHS = (
    "AD24AE23AL28AT20AZ28BA20BE16BG22BH22BR29BY28CH21CR22CY28CZ24DE22DK18DO28"
    "EE20EG29ES24FI18FO18FR27GB22GE22GI23GL18GR27GT28HR21HU28IE22IL23IQ23IS26IT27JO30"
    "KW30KZ20LB28LC32LI21LT20LU20LV21LY25MC27MD24ME22MK19MR27MT31MU30NL18NO15PK24PL28"
    "PS29PT25QA29RO24RS22SA24SC31SD18SE24SI19SK24SM27ST25SV28TL23TN24TR26UA29VA22VG24XK20"
)
_IBAN = {_IBAN_LENGTHS[k:k + 2]: int(_IBAN_LENGTHS[k + 2:k + 4]) for k in range(0, len(_IBAN_LENGTHS), 4)}


def _iban_checksum(b: str) -> bool:
    r = 0
    for c in b[4:] + b[:4]:
        if _digit(c):
            r = (r * 10 + ord(c) - 48) % 97
        else:
            r = (r * 100 + ord(c) - 65 + 10) % 97
    return r == 1


def _reject_constant(_: str) -> None:
    raise ValueError("not JSON")


class _Scanner:
    def __init__(self, text: str) -> None:
        self.t = text
        self.out: List[Finding] = []
        self.next_at = -1  # index of the next '@' at or after the scan, len(t) if none
        self.no_email_until = 0

    def run(self) -> List[Finding]:
        t = self.t
        n = len(t)
        i = 0
        while i < n:
            c = t[i]
            if not _alnum(c) and c not in ("+", "(", "-", ":"):
                i += 1
                continue
            best: Optional[Finding] = None
            if not (i > 0 and _alnum(t[i - 1]) and _alnum(c)):
                best = self.detect_at(i)
            if best is not None:
                self.out.append(best)
                i = best.end
                continue
            i += 1
            while i < n and _alnum(t[i]) and _alnum(c):
                i += 1
        return self.out

    def detect_at(self, i: int) -> Optional[Finding]:
        t = self.t
        c = t[i]
        best: List[Optional[Finding]] = [None]

        def tryf(typ: str, end: int, conf: float) -> None:
            if end > i:
                f = Finding(typ, i, end, conf)
                b = best[0]
                if b is None or (f.confidence > b.confidence if f.confidence != b.confidence
                                 else f.end - f.start > b.end - b.start):
                    best[0] = f

        if _digit(c):
            if self.num_left_ok(i):
                tryf(TYPE_CARD, self.card(i), _CONF_CARD)
                end, conf = self.ssn(i)
                tryf(TYPE_SSN, end, conf)
                tryf(TYPE_IPV4, self.ipv4(i), _CONF_IP)
                tryf(TYPE_PHONE, self.phone_nanp(i), _CONF_PHONE_NANP)
        elif c == "+":
            if i == 0 or not _alnum(t[i - 1]):
                end, conf = self.e164(i)
                tryf(TYPE_PHONE, end, conf)
        elif c == "(":
            if i == 0 or not _alnum(t[i - 1]):
                tryf(TYPE_PHONE, self.phone_paren(i), _CONF_PHONE_PAREN)
        elif c == "-":
            if t.startswith("-----BEGIN ", i):
                tryf(TYPE_PRIVATE_KEY, self.pem(i), _CONF_PRIVATE_KEY)
        elif _alpha(c):
            tryf(TYPE_API_KEY, self.api_key(i), _CONF_API_KEY)
            if c == "e":
                tryf(TYPE_JWT, self.jwt(i), _CONF_JWT)
            if _upper(c):
                tryf(TYPE_IBAN, self.iban(i), _CONF_IBAN)
        if _hex(c) or c == ":":
            if i == 0 or (not _alnum(t[i - 1]) and t[i - 1] != ":" and t[i - 1] != "."):
                tryf(TYPE_IPV6, self.ipv6(i), _CONF_IP)
        if _alnum(c):
            tryf(TYPE_EMAIL, self.email(i), _CONF_EMAIL)
        return best[0]

    def num_left_ok(self, i: int) -> bool:
        if i == 0:
            return True
        t = self.t
        p = t[i - 1]
        if _alnum(p):
            return False
        if p in (".", "-") and i >= 2 and _digit(t[i - 2]):
            return False
        return True

    def num_right_ok(self, j: int) -> bool:
        t = self.t
        if j >= len(t):
            return True
        if _alnum(t[j]):
            return False
        if t[j] in (".", "-") and j + 1 < len(t) and _digit(t[j + 1]):
            return False
        return True

    def digits_at(self, i: int) -> int:
        t = self.t
        j = i
        while j < len(t) and _digit(t[j]):
            j += 1
        return j

    def run_of(self, i: int, cls: Callable[[str], bool]) -> int:
        t = self.t
        while i < len(t) and cls(t[i]):
            i += 1
        return i

    def card(self, i: int) -> int:
        t = self.t
        d: List[int] = []
        nd = 0
        sep = ""
        ends = [-1] * 19
        j = i
        while True:
            e = self.digits_at(j)
            for k in range(j, e):
                if nd < 19:
                    d.append(ord(t[k]) - 48)
                nd += 1
            if nd > 19:
                break
            ends[nd - 1] = e
            j = e
            if j + 1 >= len(t) or not _digit(t[j + 1]) or (t[j] != " " and t[j] != "-"):
                break
            if sep == "":
                sep = t[j]
            elif t[j] != sep:
                break
            j += 1
        for k in range(18, 11, -1):
            e = ends[k]
            if e < 0 or not self.num_right_ok(e):
                continue
            if _luhn(d[:k + 1]) and _known_iin(d[:k + 1]):
                return e
        return 0

    def ssn(self, i: int) -> Tuple[int, float]:
        t = self.t
        e = i + 11
        if (e <= len(t) and t[i + 3] == "-" and t[i + 6] == "-" and self.digits_at(i) == i + 3
                and self.digits_at(i + 4) == i + 6 and self.digits_at(i + 7) == e and self.num_right_ok(e)
                and _valid_ssn(t[i:i + 3], t[i + 4:i + 6], t[i + 7:e])):
            return e, _CONF_SSN
        e = self.digits_at(i)
        if (e == i + 9 and self.num_right_ok(e) and _valid_ssn(t[i:i + 3], t[i + 3:i + 5], t[i + 5:e])
                and _ssn_keyword_before(t, i)):
            return e, _CONF_SSN_BARE
        return 0, 0.0

    def ipv4(self, i: int) -> int:
        t = self.t
        j = i
        for part in range(4):
            if part > 0:
                if j >= len(t) or t[j] != ".":
                    return 0
                j += 1
            e = self.digits_at(j)
            n = e - j
            if n == 0 or n > 3 or (n > 1 and t[j] == "0"):
                return 0
            if int(t[j:e]) > 255:
                return 0
            j = e
        if not self.num_right_ok(j):
            return 0
        return j

    def ipv6(self, i: int) -> int:
        t = self.t
        k = i
        while k < len(t) and k - i < 5 and _hex(t[k]):
            k += 1
        if k >= len(t) or t[k] != ":":
            return 0
        j = i
        colons = dots = 0
        double = False
        while j < len(t) and j - i < 45:
            c = t[j]
            if _hex(c):
                pass
            elif c == ":":
                colons += 1
                if j > i and t[j - 1] == ":":
                    double = True
            elif c == ".":
                dots += 1
            else:
                break
            j += 1
        if j < len(t) and (_alnum(t[j]) or t[j] == ":"):
            return 0
        # Trim a sentence's trailing dot or a single trailing colon.
        while j > i and (t[j - 1] == "." or (t[j - 1] == ":" and not (j - 2 >= i and t[j - 2] == ":"))):
            if t[j - 1] == ".":
                dots -= 1
            else:
                colons -= 1
            j -= 1
        if not double and colons != 7 and not (colons == 6 and dots == 3):
            return 0
        try:
            a = ipaddress.IPv6Address(t[i:j])
        except ValueError:
            return 0
        if a.is_unspecified:
            return 0
        return j

    def e164(self, i: int) -> Tuple[int, float]:
        t = self.t
        if i + 1 >= len(t) or not ("1" <= t[i + 1] <= "9"):
            return 0, 0.0
        ends = [0] * 16  # ends[k]: end of a digit group with k digits in all
        j, nd, last = i + 1, 0, i + 1
        is_open, plain = False, True
        while j < len(t):
            c = t[j]
            if _digit(c):
                e = self.digits_at(j)
                nd += e - j
                j, last = e, e
                if nd > 15:
                    break
                if not is_open:
                    ends[nd] = e
                continue
            if c in (" ", "-", ".") and last == j and j + 1 < len(t) and (_digit(t[j + 1]) or t[j + 1] == "("):
                pass
            elif c == "(" and not is_open and (last == j or last == j - 1) and j + 1 < len(t) and _digit(t[j + 1]):
                is_open = True
            elif c == ")" and is_open and last == j:
                is_open = False
                last = j + 1
            else:
                break
            plain = False
            j += 1
        conf = _CONF_E164
        if not plain:
            conf -= 0.05
        # North American numbers (+1) have 11 digits; others take the
        # longest grouping of 8–15 digits.
        if t[i + 1] == "1" and ends[11] > 0 and self.num_right_ok(ends[11]):
            return ends[11], conf
        for k in range(15, 7, -1):
            e = ends[k]
            if e > 0 and self.num_right_ok(e):
                return e, conf
        return 0, 0.0

    def nanp_rest(self, j: int, seps: str) -> int:
        t = self.t
        if j + 8 > len(t) or t[j] < "2" or self.digits_at(j) != j + 3 or t[j + 3] not in seps:
            return 0
        e = j + 8
        if self.digits_at(j + 4) == e and self.num_right_ok(e):
            return e
        return 0

    def phone_nanp(self, i: int) -> int:
        t = self.t
        if i + 12 > len(t) or t[i] < "2" or self.digits_at(i) != i + 3 or t[i + 3] not in ("-", "."):
            return 0
        return self.nanp_rest(i + 4, t[i + 3])

    def phone_paren(self, i: int) -> int:
        t = self.t
        if i + 5 > len(t) or t[i + 1] < "2" or self.digits_at(i + 1) != i + 4 or t[i + 4] != ")":
            return 0
        j = i + 5
        if j < len(t) and t[j] == " ":
            j += 1
        return self.nanp_rest(j, "-. ")

    def email(self, i: int) -> int:
        t = self.t
        if i < self.no_email_until or (i > 0 and _local(t[i - 1])):
            return 0
        if self.next_at < i:
            k = t.find("@", i)
            self.next_at = len(t) if k < 0 else k
        if self.next_at - i > 64 or self.next_at >= len(t):
            return 0
        j = i
        while j < len(t) and j - i <= 64 and _local(t[j]):
            j += 1
        if j >= len(t) or t[j] != "@" or t[j - 1] == ".":
            self.no_email_until = j
            return 0
        # Domain: labels of letters, digits and inner dashes, two or more,
        # the last alphabetic with at least two letters.
        k = j + 1
        labels = end = 0
        while k < len(t) and k - j <= 254:
            start = k
            while k < len(t) and (_alnum(t[k]) or t[k] == "-"):
                k += 1
            if k == start or t[start] == "-" or t[k - 1] == "-":
                break
            labels += 1
            if labels >= 2 and k - start >= 2 and all(_alpha(x) for x in t[start:k]):
                end = k
            if k + 1 < len(t) and t[k] == "." and _alnum(t[k + 1]):
                k += 1
                continue
            break
        if end == 0 or (end < len(t) and (_alnum(t[end]) or t[end] in ("-", "@"))):
            return 0
        return end

    def api_key(self, i: int) -> int:
        t = self.t
        if i > 0 and _b64url(t[i - 1]):
            return 0

        def body(prefix: int, cls: Callable[[str], bool], lo: int, hi: int) -> int:
            e = self.run_of(i + prefix, cls)
            n = e - i - prefix
            if n < lo or n > hi or (e < len(t) and _b64url(t[e])):
                return 0
            return e

        def upper_digit(c: str) -> bool:
            return _upper(c) or _digit(c)

        rest = len(t) - i
        c = t[i]
        if c == "A":
            if t.startswith("AKIA", i) or t.startswith("ASIA", i):
                return body(4, upper_digit, 16, 16)
            if t.startswith("AIza", i):
                return body(4, _b64url, 35, 35)
        elif c == "g":
            if rest > 4 and t.startswith("gh", i) and t[i + 2] in "pousr" and t[i + 3] == "_":
                return body(4, _alnum, 36, 255)
            if t.startswith("github_pat_", i):
                return body(11, lambda x: _alnum(x) or x == "_", 22, 255)
        elif c == "x":
            if rest > 5 and t.startswith("xox", i) and t[i + 3] in "abpers" and t[i + 4] == "-":
                return body(5, lambda x: _alnum(x) or x == "-", 10, 255)
        elif c in ("s", "r"):
            if t.startswith("k_live_", i + 1) or t.startswith("k_test_", i + 1):
                return body(8, _alnum, 10, 255)
        return 0

    def jwt(self, i: int) -> int:
        t = self.t
        if not t.startswith("eyJ", i) or (i > 0 and (_b64url(t[i - 1]) or t[i - 1] == ".")):
            return 0
        h = self.run_of(i, _b64url)
        if h >= len(t) or t[h] != ".":
            return 0
        p = self.run_of(h + 1, _b64url)
        if p == h + 1 or p >= len(t) or t[p] != ".":
            return 0
        e = self.run_of(p + 1, _b64url)
        if h - i > 4096:
            return 0
        raw = t[i:h]
        try:
            hdr = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
            m = json.loads(hdr.decode("utf-8", "replace"), parse_constant=_reject_constant)
        except (binascii.Error, ValueError):
            return 0
        if not isinstance(m, dict) or "alg" not in m:
            return 0
        return e

    def pem(self, i: int) -> int:
        t = self.t
        lab = i + len("-----BEGIN ")
        nl = t.find("-----", lab)
        if nl < 0 or nl - lab > 64:
            return 0
        label = t[lab:nl]
        if not label.endswith("PRIVATE KEY") or "\r" in label or "\n" in label:
            return 0
        hdr_end = nl + 5
        end_mark = "-----END " + label + "-----"
        k = t.find(end_mark, hdr_end, min(len(t), hdr_end + (64 << 10)))
        if k >= 0:
            return k + len(end_mark)
        return hdr_end

    def iban(self, i: int) -> int:
        t = self.t
        if i + 4 > len(t) or not _upper(t[i + 1]) or not _digit(t[i + 2]) or not _digit(t[i + 3]) or (i > 0 and _alnum(t[i - 1])):
            return 0
        want = _IBAN.get(t[i:i + 2], 0)
        if want == 0:
            return 0
        buf: List[str] = []
        j = i
        while j < len(t) and len(buf) < want:
            c = t[j]
            n = len(buf)
            if _digit(c) or _upper(c):
                buf.append(c)
            elif not (c == " " and n % 4 == 0 and n > 0 and j + 1 < len(t) and _alnum(t[j + 1]) and t[j - 1] != " "):
                return 0
            j += 1
        if len(buf) != want or (j < len(t) and _alnum(t[j])):
            return 0
        if not _iban_checksum("".join(buf)):
            return 0
        return j
