"""429 with Retry-After from a deployment limited to one request a second
per principal: idempotent calls wait and retry, others raise."""

from __future__ import annotations

import unittest
import uuid
from typing import Any, List, Optional

import harness
from coffer import Client, CofferError


class CountingClient(Client):
    """Counts the requests it sends (the token request included)."""

    sent: List[str]

    def _send(self, method: str, target: str, data: Optional[bytes], headers: Any) -> Any:
        self.sent.append(method + " " + target.split("?")[0])
        return super()._send(method, target, data, headers)


class RateLimitTest(unittest.TestCase):
    srv: harness.Server

    @classmethod
    def setUpClass(cls) -> None:
        cls.srv = harness.Server({"COFFER_LIMITS_RATE_LIMIT": "1", "COFFER_LIMITS_RATE_BURST": "1"})
        with cls.srv.client() as c:
            c.request("POST", "/v1/keys", {"name": "k"}, idempotent=True)  # waits out its own 429s

    @classmethod
    def tearDownClass(cls) -> None:
        cls.srv.stop()

    def client(self, **kw: Any) -> CountingClient:
        c = CountingClient(self.srv.url, client_id=self.srv.client_id, client_secret=self.srv.client_secret,
                           ca_file=self.srv.ca_file, **kw)
        c.sent = []
        self.addCleanup(c.close)
        return c

    def test_429_raises_with_retry_after(self) -> None:
        c = self.client(max_retries=0)
        with self.assertRaises(CofferError) as cm:
            for _ in range(3):
                c.request("GET", "/v1/keys/k")
        err = cm.exception
        self.assertEqual(err.status, 429)
        self.assertEqual(err.type, "https://coffer.dev/problems/rate_limited")
        self.assertEqual(err.detail, "rate limit exceeded")
        self.assertEqual(err.retry_after, 1.0)

    def test_idempotent_calls_wait_and_retry(self) -> None:
        c = self.client(max_retries=5)
        for _ in range(2):
            ct = c.encrypt("k", b"x")  # encrypt stores nothing: safe to retry
            self.assertTrue(ct.startswith("coffer:v1:"))
            self.assertEqual(c.decrypt("k", ct), b"x")
        calls = [s for s in c.sent if s.startswith("POST /v1/keys/")]
        self.assertGreater(len(calls), 4, "no request was retried")

    def test_other_calls_are_not_retried(self) -> None:
        c = self.client(max_retries=5)
        attempts = 0
        with self.assertRaises(CofferError) as cm:
            for _ in range(3):
                attempts += 1
                c.tokenize([{"value": str(uuid.uuid4()), "type": "string"}])
        self.assertEqual(cm.exception.status, 429)
        self.assertEqual(sum(s == "POST /v1/tokenize" for s in c.sent), attempts)

    def test_a_retry_after_beyond_the_bound_raises_at_once(self) -> None:
        c = self.client(max_retries=5, max_retry_wait=0.5)
        with self.assertRaises(CofferError) as cm:
            for _ in range(3):
                c.request("GET", "/v1/keys/k")
        self.assertEqual(cm.exception.status, 429)


if __name__ == "__main__":
    unittest.main()
