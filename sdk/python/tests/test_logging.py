"""coffer.logging.RedactingFilter: what redact.NewHandler's tests ask of
the Go handler, asked of Python's logging."""

from __future__ import annotations

import io
import json
import logging
import unittest
from typing import Any, Dict, Tuple

import harness  # noqa: F401  (puts the package on the path)
from coffer.logging import REDACTED, RedactingFilter
from test_redact import JWT


class JSONFormatter(logging.Formatter):
    """The message and every extra attribute, as one JSON object."""

    def format(self, record: logging.LogRecord) -> str:
        std = vars(logging.LogRecord("", 0, "", 0, "", None, None))
        out: Dict[str, Any] = {"msg": record.getMessage()}
        out.update({k: v for k, v in vars(record).items() if k not in std})
        if record.exc_text:
            out["exc"] = record.exc_text
        elif record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def logger(name: str, f: RedactingFilter, fmt: logging.Formatter) -> Tuple[logging.Logger, io.StringIO]:
    buf = io.StringIO()
    h = logging.StreamHandler(buf)
    h.setFormatter(fmt)
    h.addFilter(f)
    log = logging.getLogger("coffer-test." + name)
    log.handlers[:] = [h]
    log.propagate = False
    log.setLevel(logging.DEBUG)
    return log, buf


class Secret:
    def __str__(self) -> str:
        return "card 4111111111111111"


class FilterTest(unittest.TestCase):
    def test_the_go_example(self) -> None:
        log, buf = logger("example", RedactingFilter(), logging.Formatter("%(levelname)s %(message)s"))
        log.info("charged %s for %s", "4111 1111 1111 1111", "alice@example.com")
        self.assertEqual(buf.getvalue(), "INFO charged **** **** **** 1111 for a****@e******.com\n")

    def test_extras_keys_and_values(self) -> None:
        log, buf = logger("extras", RedactingFilter(mode="placeholder"), JSONFormatter())
        log.info("login from 10.0.0.1", extra={
            "Password": "hunter2", "X-Api-Key": "abc", "db_password": "pw", "Authorization": "Bearer " + JWT,
            "email": "alice@example.com", "count": 42, "obj": Secret(), "raw": b"ssn 123-45-6789",
            "g": {"token": "t0k", "inner": {"ip": "2001:db8::1"}, "list": ["bob@example.org", 7]},
        })
        m = json.loads(buf.getvalue())
        want = {"msg": "login from [IPV4]", "Password": REDACTED, "X-Api-Key": REDACTED, "db_password": REDACTED,
                "Authorization": REDACTED, "email": "[EMAIL]", "count": 42, "obj": "card [CARD_NUMBER]",
                "raw": "ssn [SSN]"}
        for k, v in want.items():
            self.assertEqual(m[k], v, k)
        self.assertEqual(m["g"], {"token": REDACTED, "inner": {"ip": "[IPV6]"}, "list": ["[EMAIL]", 7]})
        for secret in ("hunter2", "4111111111111111", "alice@example.com", "123-45-6789", JWT, "t0k", "2001:db8::1"):
            self.assertNotIn(secret, buf.getvalue())

    def test_mapping_arguments_exceptions_and_kept_types(self) -> None:
        f = RedactingFilter(keep_types=["ipv4"])
        log, buf = logger("args", f, JSONFormatter())
        log.info("user %(user)s pw %(password)s from %(ip)s", {"user": "bob@example.org", "password": "s3cr3t", "ip": "10.1.2.3"})
        try:
            raise ValueError("bad card 4111111111111111")
        except ValueError:
            log.exception("failed for %s", "alice@example.com")
        first, second = (json.loads(line) for line in buf.getvalue().splitlines())
        self.assertEqual(first["msg"], "user b**@e******.org pw [REDACTED] from 10.1.2.3")
        self.assertEqual(second["msg"], "failed for a****@e******.com")
        self.assertIn("ValueError: bad card ************1111", second["exc"])
        self.assertNotIn("4111111111111111", buf.getvalue())
        self.assertNotIn("s3cr3t", buf.getvalue())

    def test_options(self) -> None:
        off = RedactingFilter(sensitive_keys=[])
        self.assertFalse(off.sensitive("password"))
        custom = RedactingFilter(sensitive_keys=["pin"])
        self.assertTrue(custom.sensitive("Card-PIN"))
        self.assertFalse(custom.sensitive("password"))
        with self.assertRaises(ValueError):
            RedactingFilter(mode="loud")
        log, buf = logger("badformat", RedactingFilter(), logging.Formatter("%(message)s"))
        log.info("%d items for alice@example.com", "not a number")
        self.assertEqual(buf.getvalue(), "%d items for a****@e******.com\n")


if __name__ == "__main__":
    unittest.main()
