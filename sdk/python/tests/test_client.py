"""The client against a real Coffer over HTTPS."""

from __future__ import annotations

import base64
import datetime as dt
import unittest
import uuid

import harness
from coffer import BatchItem, CiphertextItem, Client, CofferError, TransportError

PROBLEM = "https://coffer.dev/problems/"


class ClientTest(unittest.TestCase):
    srv: harness.Server
    c: Client

    @classmethod
    def setUpClass(cls) -> None:
        cls.srv = harness.shared()
        cls.c = cls.srv.client()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.c.close()

    def assertProblem(self, err: CofferError, status: int, code: str, detail: str) -> None:
        self.assertEqual(err.status, status, err)
        self.assertEqual(err.type, PROBLEM + code)
        self.assertEqual(err.detail, detail)
        self.assertTrue(err.title)
        self.assertRegex(err.request_id or "", r"^[0-9a-f]{24}$")

    def test_records_round_trip(self) -> None:
        c = self.c
        email = f"ada-{uuid.uuid4().hex[:8]}@example.com"
        made = c.create_record("customers", {"name": "Ada Lovelace", "email": email, "card_number": "4111111111111111"},
                               owner="u-ada", subject="subject-ada")
        rid = made["id"]
        rec = c.get_record("customers", rid)
        self.assertEqual(rec["id"], rid)
        self.assertEqual(rec["owner"], "u-ada")
        self.assertEqual(rec["data"]["email"], email)
        self.assertEqual(rec["data"]["card_number"], "4111111111111111")

        updated = c.update_record("customers", rid, {"name": "Ada King"})
        assert updated is not None
        self.assertEqual(updated["data"]["name"], "Ada King")
        self.assertEqual(updated["data"]["email"], email)

        found = c.search_records("customers", {"email": email})
        self.assertEqual([r["id"] for r in found], [rid])
        self.assertEqual(c.search_records("customers", {"email": "nobody@example.com"}), [])

        self.assertIsNone(c.delete_record("customers", rid))
        with self.assertRaises(CofferError) as cm:
            c.get_record("customers", rid)
        self.assertProblem(cm.exception, 404, "not_found", "record not found")

    def test_not_found_and_invalid_are_problems(self) -> None:
        with self.assertRaises(CofferError) as cm:
            self.c.get_record("customers", str(uuid.uuid4()))
        self.assertProblem(cm.exception, 404, "not_found", "record not found")
        self.assertIn("404 Not Found: record not found", str(cm.exception))
        with self.assertRaises(CofferError) as cm:
            self.c.create_record("customers", {"nickname": "x", "email": "not an email"})
        err = cm.exception
        self.assertEqual(err.status, 422)
        self.assertEqual(err.type, PROBLEM + "invalid")
        self.assertTrue(err.problems, err)
        self.assertNotIn("not an email", str(err))

    def test_tokens(self) -> None:
        toks = self.c.tokenize([
            {"value": "4111111111111111", "type": "card_number"},
            {"value": "ada@example.com", "type": "email", "mode": "deterministic"},
        ])
        self.assertEqual(len(toks), 2)
        self.assertNotIn("4111111111111111", toks[0])
        self.assertEqual(self.c.detokenize(toks), ["4111111111111111", "ada@example.com"])
        with self.assertRaises(CofferError) as cm:
            self.c.detokenize(["tok_nope"])
        self.assertEqual(cm.exception.status, 404)

    def test_transit(self) -> None:
        c = self.c
        ct = c.encrypt("payments", b"4111 1111", context=b"tenant-1")
        self.assertTrue(ct.startswith("coffer:v1:"), ct)
        self.assertEqual(c.decrypt("payments", ct, context=b"tenant-1"), b"4111 1111")
        self.assertEqual(c.decrypt("payments", c.encrypt("payments", b"")), b"")
        with self.assertRaises(CofferError) as cm:
            c.decrypt("payments", ct, context=b"tenant-2")
        self.assertProblem(cm.exception, 400, "malformed", "ciphertext cannot be decrypted")
        with self.assertRaises(TypeError):
            c.encrypt("payments", "text, not bytes")  # type: ignore[arg-type]
        with self.assertRaises(CofferError) as cm:
            c.encrypt("missing-key", b"x")
        self.assertProblem(cm.exception, 404, "not_found", "transit key not found")

    def test_transit_batches(self) -> None:
        c = self.c
        res = c.encrypt_batch("payments", [b"first", BatchItem(b"second", context=b"t", reference="r2"), b""])
        self.assertEqual([r.ok for r in res], [True, True, True])
        self.assertEqual(res[1].reference, "r2")
        self.assertEqual({r.key_version for r in res}, {1})
        raw = bytearray(base64.b64decode(res[0].ciphertext.split(":", 2)[2]))  # type: ignore[union-attr]
        raw[-1] ^= 1
        tampered = "coffer:v1:" + base64.b64encode(bytes(raw)).decode()
        cts = [r.ciphertext or "" for r in res]
        dec = c.decrypt_batch("payments", [
            cts[0], tampered, CiphertextItem(cts[1], context=b"t", reference="x"),
            CiphertextItem(cts[1], context=b"wrong"), "coffer:v1:@@", cts[2],
        ])
        self.assertEqual([d.plaintext for d in dec], [b"first", None, b"second", None, None, b""])
        self.assertEqual([d.error for d in dec], [
            None, "ciphertext cannot be decrypted", None, "ciphertext cannot be decrypted",
            "ciphertext must be coffer:vN:BASE64 as encrypt returns it", None])
        self.assertEqual(dec[2].reference, "x")
        self.assertNotIn("second", repr(dec))

    def test_inspect_and_redact(self) -> None:
        text = "mail alice@example.com card 4111 1111 1111 1111"
        found = self.c.inspect(text)
        self.assertEqual([(f["type"], f["start"], f["end"]) for f in found], [("email", 5, 22), ("card_number", 28, 47)])
        self.assertEqual(self.c.redact(text), "mail a****@e******.com card **** **** **** 1111")
        self.assertEqual(self.c.redact(text, mode="placeholder"), "mail [EMAIL] card [CARD_NUMBER]")

    def test_audit_events(self) -> None:
        since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
        self.c.encrypt("payments", b"audited")
        evs = self.c.audit_events(action="encrypt", since=since, limit=50)
        self.assertTrue(any(e["resource"] == "keys/payments" and e["status"] == 200 for e in evs))
        for e in evs:
            self.assertEqual(e["action"], "encrypt")
            self.assertTrue(e["resource"].startswith("keys/"), e)
            self.assertNotIn("audited", str(e))
            self.assertNotIn(base64.b64encode(b"audited").decode(), str(e))
        self.assertEqual(len(self.c.audit_events(limit=2)), 2)
        paged = list(self.c.iter_audit_events(action="encrypt", limit=1))
        self.assertGreaterEqual(len(paged), len(evs))
        with self.assertRaises(TypeError):
            self.c.audit_events(who="me")
        with self.assertRaises(CofferError) as cm:
            self.c.audit_events(limit=0)
        self.assertEqual(cm.exception.status, 422)

    def test_token_renewed_after_revocation(self) -> None:
        c = self.srv.client()
        self.addCleanup(c.close)
        first = c._access_token()
        self.assertEqual(self.srv.post_form("/v1/oauth/revoke", {"token": first}), 200)
        self.assertEqual(c.encrypt("payments", b"x")[:10], "coffer:v1:")
        second = c._access_token()
        self.assertNotEqual(second, first)
        # Renewed before it expires, without a 401 first.
        c._expires = 0.0
        self.assertTrue(c.encrypt("payments", b"x"))
        self.assertNotEqual(c._access_token(), second)

    def test_bad_credentials(self) -> None:
        c = self.srv.client(client_secret="cs_wrong")
        self.addCleanup(c.close)
        with self.assertRaises(CofferError) as cm:
            c.get_record("customers", str(uuid.uuid4()))
        self.assertEqual(cm.exception.status, 401)
        self.assertEqual(cm.exception.type, "urn:ietf:params:oauth:error:invalid_client")
        self.assertNotIn("cs_wrong", str(cm.exception) + repr(c))


class AccessTest(unittest.TestCase):
    """A client with a narrow role: what the policy does not grant is 403."""

    def test_forbidden(self) -> None:
        srv = harness.shared()
        creds = harness.make_client(srv, "sdk-reader", ["reader"])
        with srv.client() as admin:
            admin.request("PUT", "/v1/policy", {"roles": {
                "admin": [{"resources": ["*"], "actions": ["*"]}],
                "reader": [{"resources": ["collections/customers"], "actions": ["read"], "fields": {"*": "plain"}}],
            }})
            rid = admin.create_record("customers", {"name": "Reader Test"})["id"]
        with srv.client(**creds) as reader:
            self.assertEqual(reader.get_record("customers", rid)["data"]["name"], "Reader Test")
            for call, detail in [
                (lambda: reader.create_record("customers", {"name": "x"}), "not allowed to create collections/customers"),
                (lambda: reader.encrypt("payments", b"x"), "not allowed to encrypt keys/payments"),
                (lambda: reader.audit_events(), "not allowed to read audit"),
            ]:
                with self.assertRaises(CofferError) as cm:
                    call()
                self.assertEqual(cm.exception.status, 403)
                self.assertEqual(cm.exception.type, PROBLEM + "forbidden")
                self.assertEqual(cm.exception.detail, detail)


class TLSTest(unittest.TestCase):
    """The deployment's CA is needed, and no other one will do."""

    def test_needs_the_deployments_ca(self) -> None:
        srv = harness.shared()
        with srv.client() as good:
            self.assertTrue(good.encrypt("payments", b"x"))
        for ca in (None, harness.init_only()):
            c = Client(srv.url, client_id=srv.client_id, client_secret=srv.client_secret, ca_file=ca)
            self.addCleanup(c.close)
            with self.assertRaises(TransportError) as cm:
                c.encrypt("payments", b"x")
            self.assertEqual(cm.exception.status, 0)
            self.assertIn("certificate verify failed", str(cm.exception))

    def test_https_only(self) -> None:
        with self.assertRaises(ValueError):
            Client("http://127.0.0.1:8443", client_id="a", client_secret="b")


if __name__ == "__main__":
    unittest.main()
