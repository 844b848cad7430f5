"""python-shop against a real Coffer.

It runs ``$COFFER_BIN`` or builds ``coffer`` from this repository, makes a
deployment with ``coffer init --json`` in a temporary directory and serves it
on a free port (the URL read from the server's "coffer serving" log line).
An operator creates the collection, puts policy.json in force and makes the
shop's client; the test then drives the shop's HTTP API and checks what the
shop keeps and what its logs show.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

HERE = Path(__file__).resolve().parent
SHOP = HERE.parent
REPO = SHOP.parents[1]
sys.path.insert(0, str(REPO / "sdk" / "python"))
sys.path.insert(0, str(SHOP))

import shop  # noqa: E402  (after the path is set)
from coffer import Client  # noqa: E402


class Coffer:
    """One Coffer deployment, served until stop()."""

    def __init__(self) -> None:
        self.root = tempfile.mkdtemp(prefix="coffer-shop-")
        binary = os.environ.get("COFFER_BIN")
        if not binary:
            binary = os.path.join(self.root, "coffer")
            env = {**os.environ, "GOTOOLCHAIN": "go1.27.3", "GOFLAGS": "-mod=readonly"}
            subprocess.run(["go", "build", "-o", binary, "./cmd/coffer"], cwd=REPO, env=env, check=True)
        data = os.path.join(self.root, "data")
        env = {k: v for k, v in os.environ.items() if not k.startswith("COFFER_")}
        info = json.loads(subprocess.run([binary, "init", "--data-dir", data, "--json"], env=env,
                                         capture_output=True, text=True, check=True).stdout)
        self.admin_id, self.admin_secret, self.ca_file = info["client_id"], info["client_secret"], info["ca_cert"]
        # Two free ports (equal addresses are refused).
        self.proc = subprocess.Popen([binary, "serve", "--data-dir", data, "--listen", "127.0.0.1:0",
                                      "--metrics-listen", "localhost:0"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.url = ""
        seen = []
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            seen.append(line)
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("msg") == "coffer serving":
                self.url = rec["url"]
                break
        if not self.url:
            self.stop()
            raise RuntimeError("coffer serve did not start:\n" + "".join(seen))
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def client(self, client_id: str, client_secret: str) -> Client:
        return Client(self.url, client_id=client_id, client_secret=client_secret, ca_file=self.ca_file)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def call(method: str, url: str, body: Optional[Dict[str, Any]] = None) -> Tuple[int, Any]:
    """Calls the shop's API; returns the status and the decoded answer."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as res:  # noqa: S310 (a local http URL)
            raw = res.read()
            return res.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        return e.code, None


class ShopTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.coffer = Coffer()
        cls.addClassCleanup(cls.coffer.stop)
        with cls.coffer.client(cls.coffer.admin_id, cls.coffer.admin_secret) as admin:
            shop.Shop(admin).setup()
            policy = json.loads((SHOP / "policy.json").read_text())
            policy["roles"]["admin"] = [{"resources": ["*"], "actions": ["*"]}]
            admin.request("PUT", "/v1/policy", policy)
            creds = admin.request("POST", "/v1/clients", {"name": "shop", "roles": ["shop"]})
        cls.shop_client = cls.coffer.client(creds["client_id"], creds["client_secret"])
        cls.addClassCleanup(cls.shop_client.close)

        cls.logs = io.StringIO()
        logger = logging.getLogger("shop")
        logger.setLevel(logging.INFO)
        logger.propagate = False
        logger.addHandler(shop.redacting_handler(cls.logs))

        cls.shop = shop.Shop(cls.shop_client)
        cls.api = shop.make_server(cls.shop, "127.0.0.1", 0)
        threading.Thread(target=cls.api.serve_forever, daemon=True).start()
        cls.addClassCleanup(cls.api.server_close)
        cls.addClassCleanup(cls.api.shutdown)
        cls.base = "http://127.0.0.1:%d" % cls.api.server_address[1]

    def test_customer_lifecycle(self) -> None:
        status, created = call("POST", self.base + "/customers", {
            "name": "Ada Lovelace", "email": "ada@example.com", "phone": "+14155550123",
            "address": "12 St James's Square", "card": "4111 1111 1111 1111"})
        self.assertEqual(status, 201)
        rid = created["id"]

        # The shop keeps a token, never the card.
        token = self.shop._accounts[rid]["card_token"]
        self.assertTrue(token)
        self.assertNotEqual(token.replace(" ", ""), "4111111111111111")

        status, got = call("GET", self.base + "/customers/" + rid)
        self.assertEqual(status, 200)
        self.assertEqual((got["name"], got["email"], got["card_last4"]), ("Ada Lovelace", "ada@example.com", "1111"))
        self.assertNotEqual(got["phone"], "+14155550123", "the policy shows the phone masked to the shop")
        self.assertTrue(got["phone"].endswith("23"))

        status, found = call("GET", self.base + "/customers?email=ADA@example.com")
        self.assertEqual((status, found["ids"]), (200, [rid]))

        status, _ = call("POST", self.base + "/customers/" + rid + "/charge")
        self.assertEqual(status, 204)

        out = self.logs.getvalue()
        self.assertIn("customer added", out)
        self.assertIn("charging 100 cents", out)
        for secret in ("4111 1111 1111 1111", "4111111111111111", "ada@example.com"):
            self.assertNotIn(secret, out)

    def test_unknown_customer(self) -> None:
        self.assertEqual(call("GET", self.base + "/customers/nope")[0], 404)
        self.assertEqual(call("POST", self.base + "/customers/nope/charge")[0], 404)

    def test_the_shop_cannot_change_schemas(self) -> None:
        from coffer import CofferError
        with self.assertRaises(CofferError) as cm:
            self.shop_client.request("POST", "/v1/collections", {"name": "other", "fields": [{"name": "x", "type": "string"}]})
        self.assertEqual(cm.exception.status, 403)

    def test_invalid_customer(self) -> None:
        self.assertEqual(call("POST", self.base + "/customers", {"name": "No Email"})[0], 422)


if __name__ == "__main__":
    unittest.main()
