"""A ``logging`` filter that redacts sensitive values, as Coffer's Go
``redact.NewHandler`` does for ``log/slog``.

Attach it to the handlers that write (a filter on a logger does not see the
records its child loggers propagate)::

    import logging
    from coffer.logging import RedactingFilter

    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    logging.info("charged %s for %s", "4111 1111 1111 1111", "alice@example.com")
    # INFO:root:charged **** **** **** 1111 for a****@e******.com

It redacts the formatted message, every ``extra`` attribute (strings, bytes,
and through dicts, lists and tuples; other objects when their ``str`` holds
a finding), the exception and stack text; and it replaces the whole value
of any attribute or ``%(name)s`` argument whose key names a secret
(``password``, ``api_key``, ``authorization``, …).
"""

from __future__ import annotations

import logging as _logging
from typing import Any, Collection, Dict, Iterable, List, Mapping, Optional, Tuple, cast

from . import redact as _redact

__all__ = ["RedactingFilter", "REDACTED", "default_sensitive_keys"]

REDACTED = "[REDACTED]"
"""What replaces the whole value of an attribute whose key is sensitive."""

# The attributes every LogRecord has; anything else came from ``extra``.
_STANDARD = frozenset(vars(_logging.LogRecord("", 0, "", 0, "", None, None)).keys()) | {"message", "asctime"}


def default_sensitive_keys() -> List[str]:
    """The keys whose values are replaced by default (a new list each call)."""
    return [
        "password", "passwd", "pwd", "passphrase", "secret", "token",
        "access_token", "refresh_token", "id_token", "client_secret",
        "authorization", "cookie", "set_cookie", "api_key", "apikey",
        "private_key", "session", "ssn", "card_number", "cvv", "cvc",
    ]


def _norm_key(k: str) -> str:
    return "".join(c.lower() if "A" <= c <= "Z" else c for c in k if c not in "-_. ")


class RedactingFilter(_logging.Filter):
    """Redacts each record in place and lets it through.

    Args:
        mode: ``"mask"`` (default: cards keep their last four, emails their
            initials, …) or ``"placeholder"`` (``[EMAIL]``).
        sensitive_keys: keys whose whole value becomes ``[REDACTED]``;
            matching ignores ASCII case, ``-``, ``_``, ``.`` and spaces, and
            hits keys ending with a listed key (``db_password``). ``None``
            means :func:`default_sensitive_keys`; an empty list turns key
            matching off.
        keep_types: finding types left as they are (``["ipv4"]`` for logs
            where addresses are operational, not personal).
    """

    def __init__(self, mode: str = _redact.MODE_MASK, sensitive_keys: Optional[Iterable[str]] = None,
                 keep_types: Collection[str] = (), name: str = "") -> None:
        super().__init__(name)
        if mode not in (_redact.MODE_MASK, _redact.MODE_PLACEHOLDER):
            raise ValueError("mode must be 'mask' or 'placeholder'")
        self.mode = mode
        keys = default_sensitive_keys() if sensitive_keys is None else list(sensitive_keys)
        self._keys = [n for n in (_norm_key(k) for k in keys) if n]
        self._keep = frozenset(keep_types)

    def sensitive(self, key: str) -> bool:
        """Whether ``key`` names a secret."""
        k = _norm_key(key)
        return any(k.endswith(s) for s in self._keys)

    def redact(self, text: str) -> str:
        """``text`` with its findings (but those of kept types) replaced."""
        fs = [f for f in _redact.find(text) if f.type not in self._keep]
        return _redact.redact_findings(text, fs, self.mode)

    def filter(self, record: _logging.LogRecord) -> bool:  # noqa: A003 - logging's name
        args: Any = record.args
        if isinstance(args, Mapping):
            record.args = self._mapping(cast("Mapping[Any, Any]", args), 0, redact_values=False)
        try:
            msg = record.getMessage()
        except Exception:  # a bad format string: keep the text, drop the arguments
            msg = str(record.msg)
        record.msg, record.args = self.redact(msg), None
        for key in list(vars(record)):
            if key not in _STANDARD:
                setattr(record, key, REDACTED if self.sensitive(key) else self._value(getattr(record, key)))
        if record.exc_info and not record.exc_text:
            record.exc_text = _logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True

    def _mapping(self, m: "Mapping[Any, Any]", depth: int, redact_values: bool) -> Dict[Any, Any]:
        out: Dict[Any, Any] = {}
        for k, x in m.items():
            if isinstance(k, str) and self.sensitive(k):
                out[k] = REDACTED
            else:
                out[k] = self._value(x, depth) if redact_values else x
        return out

    def _value(self, v: Any, depth: int = 0) -> Any:
        if isinstance(v, str):
            return self.redact(v)
        if isinstance(v, (bytes, bytearray)):
            return self.redact(bytes(v).decode("utf-8", "replace"))
        if isinstance(v, (bool, int, float)) or v is None:
            return v
        if depth < 8:
            if isinstance(v, Mapping):
                return self._mapping(cast("Mapping[Any, Any]", v), depth + 1, redact_values=True)
            if isinstance(v, list):
                return [self._value(x, depth + 1) for x in cast("List[Any]", v)]
            if isinstance(v, tuple):
                return tuple(self._value(x, depth + 1) for x in cast("Tuple[Any, ...]", v))
        # Keep the object unless its printed form holds a finding.
        try:
            s = str(v)
        except Exception:
            return REDACTED
        red = self.redact(s)
        return v if red == s else red
