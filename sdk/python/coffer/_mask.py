"""Masks for redaction, as Coffer's internal/mask applies them."""

from __future__ import annotations

from typing import Callable, List

__all__ = ["mask_card", "mask_ssn", "mask_phone", "mask_email", "mask_partial"]


def _digits(s: str) -> int:
    return sum(1 for c in s if "0" <= c <= "9")


def _keep_last_digits(s: str, keep: int, sep: Callable[[str], bool]) -> str:
    """Shows the last ``keep`` ASCII digits and the separators; every other
    character becomes ``*``."""
    out = list(s)
    for i in range(len(s) - 1, -1, -1):
        c = s[i]
        if "0" <= c <= "9" and keep > 0:
            keep -= 1
        elif sep(c):
            pass
        else:
            out[i] = "*"
    return "".join(out)


def _card_sep(c: str) -> bool:
    return c in (" ", "-")


def _phone_sep(c: str) -> bool:
    return c in ("+", "-", ".", " ", "(", ")")


def mask_card(s: str) -> str:
    """``4111 1111 1111 1111`` → ``**** **** **** 1111``."""
    return _keep_last_digits(s, 4 if _digits(s) >= 12 else 0, _card_sep)


def mask_ssn(s: str) -> str:
    """``123-45-6789`` → ``***-**-6789``."""
    return _keep_last_digits(s, 4 if _digits(s) >= 9 else 0, _card_sep)


def mask_phone(s: str) -> str:
    """``+14155550123`` → ``+*******0123``."""
    n = _digits(s)
    keep = 4 if n >= 10 else 3 if n >= 7 else 2 if n >= 5 else 0
    return _keep_last_digits(s, keep, _phone_sep)


def _label(part: str) -> str:
    if not part:
        return ""
    if len(part) == 1:
        return "*"
    return part[0] + "*" * (len(part) - 1)


def mask_email(s: str) -> str:
    """``alice@example.com`` → ``a****@e******.com``."""
    at = s.rfind("@")
    if at < 0:
        return _label(s)
    labels = s[at + 1:].split(".")
    out: List[str] = []
    for i, part in enumerate(labels):
        out.append(part if i == len(labels) - 1 and i > 0 else _label(part))
    return _label(s[:at]) + "@" + ".".join(out)


def mask_partial(s: str, first: int, last: int, char: str = "*") -> str:
    """Keeps the first and last characters and replaces the rest."""
    if first + last >= len(s):
        first, last = 0, 0
    return s[:first] + char * (len(s) - first - last) + s[len(s) - last:]
