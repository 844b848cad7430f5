"""python-shop: a shop backend that keeps its customers' personal data in Coffer.

Each customer is a Coffer record in the collection ``customers``; the card
number becomes a format-preserving Coffer token, detokenized only at the
payment step; the shop keeps nothing but record ids and tokens. Every log
record passes through the Coffer SDK's ``RedactingFilter``, so a card or an
email that slips into a log line is masked on the way out.

Run it against a Coffer (``coffer dev`` prints the values)::

    PYTHONPATH=sdk/python COFFER_URL=https://127.0.0.1:8443 \\
    COFFER_CA_FILE=.coffer-dev/tls/ca.pem SHOP_CLIENT_ID=… SHOP_CLIENT_SECRET=… \\
    python3 examples/python-shop/shop.py --listen 127.0.0.1:8081
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional

from coffer import Client, CofferError
from coffer.logging import RedactingFilter

COLLECTION = "customers"

SCHEMA: Dict[str, Any] = {
    "name": COLLECTION,
    "fields": [
        {"name": "name", "type": "string"},
        {"name": "email", "type": "email", "searchable": True},
        {"name": "phone", "type": "phone"},
        {"name": "address", "type": "string"},
    ],
}

log = logging.getLogger("shop")


def redacting_handler(stream: Any = None) -> logging.Handler:
    """A log handler whose records pass through Coffer's redacting filter
    (filters belong on handlers: a logger's filters miss its children's
    records)."""
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    return handler


class NotFound(Exception):
    """No such customer."""


class Shop:
    """The service: customers in Coffer, only ids and tokens here."""

    def __init__(self, coffer: Client) -> None:
        self.coffer = coffer
        self._lock = threading.Lock()
        self._accounts: Dict[str, Dict[str, str]] = {}  # record id → {"card_token"}

    def setup(self) -> None:
        """Creates the collection if missing (needs an admin client: the
        shop's own role may not change schemas)."""
        try:
            self.coffer.request("GET", "/v1/collections/" + COLLECTION)
        except CofferError as e:
            if e.status != 404:
                raise
            self.coffer.request("POST", "/v1/collections", SCHEMA)

    def add_customer(self, name: str, email: str, phone: str = "", address: str = "", card: str = "") -> str:
        """Stores a customer; returns its record id."""
        if not name or not email:
            raise ValueError("name and email are required")
        token = ""
        if card:
            # Format-preserving: the token keeps the last four digits.
            token = self.coffer.tokenize([{"value": card, "type": "card_number", "mode": "format_preserving"}])[0]
        data = {"name": name, "email": email}
        if phone:
            data["phone"] = phone
        if address:
            data["address"] = address
        rid = str(self.coffer.create_record(COLLECTION, data)["id"])
        with self._lock:
            self._accounts[rid] = {"card_token": token}
        # Logged on purpose, to show the filter at work: it leaves masked.
        log.info("customer added: %s <%s>", rid, email)
        return rid

    def customer(self, rid: str) -> Dict[str, Any]:
        """A customer as the shop's client may see it (the policy masks the phone)."""
        with self._lock:
            acc = self._accounts.get(rid)
        if acc is None:
            raise NotFound(rid)
        rec = self.coffer.get_record(COLLECTION, rid)
        out = {"id": rec["id"], **rec.get("data", {})}
        if acc["card_token"]:
            out["card_last4"] = acc["card_token"][-4:]
        return out

    def find_by_email(self, email: str) -> List[str]:
        """Record ids with this email, found through Coffer's blind index."""
        return [str(r["id"]) for r in self.coffer.search_records(COLLECTION, {"email": email}, limit=10)]

    def charge(self, rid: str, cents: int) -> None:
        """Pays with the customer's card: the only place that detokenizes."""
        with self._lock:
            acc = self._accounts.get(rid)
        if acc is None or not acc["card_token"]:
            raise NotFound(rid)
        card = self.coffer.detokenize([acc["card_token"]])[0]
        # A payment provider would take `card` here; a careless log line
        # with it is still masked by the filter.
        log.info("charging %d cents to card %s for %s", cents, card, rid)


def make_server(shop: Shop, host: str, port: int) -> ThreadingHTTPServer:
    """The shop's HTTP API: POST /customers, GET /customers/{id},
    GET /customers?email=…, POST /customers/{id}/charge."""

    class Handler(BaseHTTPRequestHandler):
        def _json(self, status: int, body: Optional[Any]) -> None:
            raw = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            if body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _fail(self, e: Exception) -> None:
            if isinstance(e, NotFound) or (isinstance(e, CofferError) and e.status == 404):
                self._json(404, {"error": "not found"})
            elif isinstance(e, (ValueError, KeyError)) or (isinstance(e, CofferError) and e.status == 422):
                self._json(422, {"error": "invalid customer"})
            else:
                log.error("request failed: %s", e)
                self._json(500, {"error": "internal error"})

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            parts = self.path.strip("/").split("/")
            try:
                if parts == ["customers"]:
                    n = min(int(self.headers.get("Content-Length", "0")), 1 << 16)
                    c = json.loads(self.rfile.read(n) or b"{}")
                    rid = shop.add_customer(c.get("name", ""), c.get("email", ""), c.get("phone", ""),
                                            c.get("address", ""), c.get("card", ""))
                    self._json(201, {"id": rid})
                elif len(parts) == 3 and parts[0] == "customers" and parts[2] == "charge":
                    shop.charge(parts[1], 100)
                    self._json(204, None)
                else:
                    self._json(404, {"error": "not found"})
            except Exception as e:  # noqa: BLE001 (answered, never echoed)
                self._fail(e)

        def do_GET(self) -> None:  # noqa: N802
            path, _, query = self.path.partition("?")
            parts = path.strip("/").split("/")
            try:
                if parts == ["customers"]:
                    from urllib.parse import parse_qs
                    email = parse_qs(query).get("email", [""])[0]
                    self._json(200, {"ids": shop.find_by_email(email)})
                elif len(parts) == 2 and parts[0] == "customers":
                    self._json(200, shop.customer(parts[1]))
                else:
                    self._json(404, {"error": "not found"})
            except Exception as e:  # noqa: BLE001
                self._fail(e)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.info("%s " + format, self.address_string(), *args)

    return ThreadingHTTPServer((host, port), Handler)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", default="127.0.0.1:8081")
    ap.add_argument("--setup", action="store_true", help="create the collection (admin credentials) and exit")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, handlers=[redacting_handler()])
    coffer = Client(os.environ["COFFER_URL"], client_id=os.environ["SHOP_CLIENT_ID"],
                    client_secret=os.environ["SHOP_CLIENT_SECRET"], ca_file=os.environ["COFFER_CA_FILE"])
    shop = Shop(coffer)
    if args.setup:
        shop.setup()
        return
    host, _, port = args.listen.rpartition(":")
    srv = make_server(shop, host, int(port))
    log.info("shop listening on %s", args.listen)
    srv.serve_forever()


if __name__ == "__main__":
    main()
