// The client against a real Coffer over HTTPS.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";

import { Client, CofferError, TransportError } from "../dist/index.js";
import { Server, customers, otherCA } from "../support/harness.mjs";

const PROBLEM = "https://coffer.dev/problems/";

/** Awaits a rejection with a CofferError and checks its problem fields. */
async function problem(promise, status, code, detail) {
  const err = await promise.then(
    () => assert.fail("resolved, want a CofferError"),
    (e) => e,
  );
  assert.ok(err instanceof CofferError, `want a CofferError, got ${err}`);
  assert.equal(err.status, status, err.message);
  if (code) assert.equal(err.type, PROBLEM + code);
  if (detail) assert.equal(err.detail, detail);
  if (status) {
    assert.ok(err.title);
    assert.match(err.requestId ?? "", /^[0-9a-f]{24}$/);
  }
  return err;
}

let srv;
let c;

before(async () => {
  srv = await Server.start();
  c = srv.client();
  await c.request("POST", "/v1/collections", customers);
  await c.request("POST", "/v1/keys", { name: "payments" });
});

after(async () => {
  c?.close();
  await srv?.stop();
});

describe("records", () => {
  test("create, get, update, search, delete", async () => {
    const email = `ada-${randomUUID().slice(0, 8)}@example.com`;
    const { id } = await c.createRecord("customers", { name: "Ada Lovelace", email, card_number: "4111111111111111" }, {
      owner: "u-ada",
      subject: "subject-ada",
    });
    const rec = await c.getRecord("customers", id);
    assert.equal(rec.id, id);
    assert.equal(rec.owner, "u-ada");
    assert.deepEqual(rec.data, { name: "Ada Lovelace", email, card_number: "4111111111111111" });
    const upd = await c.updateRecord("customers", id, { name: "Ada King" });
    assert.equal(upd.data.name, "Ada King");
    assert.equal(upd.data.email, email);
    assert.deepEqual((await c.searchRecords("customers", { email })).map((r) => r.id), [id]);
    assert.deepEqual(await c.searchRecords("customers", { email: "nobody@example.com" }), []);
    assert.equal(await c.deleteRecord("customers", id), undefined);
    await problem(c.getRecord("customers", id), 404, "not_found", "record not found");
  });

  test("404 and 422 are problems", async () => {
    const err = await problem(c.getRecord("customers", randomUUID()), 404, "not_found", "record not found");
    assert.match(err.message, /^404 Not Found: record not found \(request [0-9a-f]{24}\)$/);
    const bad = await problem(c.createRecord("customers", { nickname: "x", email: "not an email" }), 422, "invalid");
    assert.ok(bad.problems.length > 0);
    assert.ok(!bad.message.includes("not an email"));
  });
});

describe("tokens", () => {
  test("tokenize and detokenize", async () => {
    const toks = await c.tokenize([
      { value: "4111111111111111", type: "card_number" },
      { value: "ada@example.com", type: "email", mode: "deterministic" },
    ]);
    assert.equal(toks.length, 2);
    assert.ok(!toks[0].includes("4111111111111111"));
    assert.deepEqual(await c.detokenize(toks), ["4111111111111111", "ada@example.com"]);
    await problem(c.detokenize(["tok_nope"]), 404);
  });
});

describe("transit", () => {
  test("encrypt and decrypt, with a context", async () => {
    const ct = await c.encrypt("payments", Buffer.from("4111 1111"), { context: "tenant-1" });
    assert.match(ct, /^coffer:v1:/);
    assert.deepEqual(await c.decrypt("payments", ct, { context: "tenant-1" }), Buffer.from("4111 1111"));
    assert.equal((await c.decrypt("payments", await c.encrypt("payments", ""))).length, 0);
    await problem(c.decrypt("payments", ct, { context: "tenant-2" }), 400, "malformed", "ciphertext cannot be decrypted");
    await problem(c.encrypt("missing-key", "x"), 404, "not_found", "transit key not found");
  });

  test("batches: each item succeeds or fails alone", async () => {
    const res = await c.encryptBatch("payments", ["first", { plaintext: Buffer.from("second"), context: "t", reference: "r2" }, ""]);
    assert.deepEqual(res.map((r) => [r.ok, r.keyVersion]), [[true, 1], [true, 1], [true, 1]]);
    assert.equal(res[1].reference, "r2");
    const raw = Buffer.from(res[0].ciphertext.split(":")[2], "base64");
    raw[raw.length - 1] ^= 1;
    const tampered = "coffer:v1:" + raw.toString("base64");
    const dec = await c.decryptBatch("payments", [
      res[0].ciphertext, tampered, { ciphertext: res[1].ciphertext, context: "t", reference: "x" },
      { ciphertext: res[1].ciphertext, context: "wrong" }, "coffer:v1:@@", res[2].ciphertext,
    ]);
    assert.deepEqual(dec.map((d) => d.plaintext?.toString()), ["first", undefined, "second", undefined, undefined, ""]);
    assert.deepEqual(dec.map((d) => d.error), [undefined, "ciphertext cannot be decrypted", undefined,
      "ciphertext cannot be decrypted", "ciphertext must be coffer:vN:BASE64 as encrypt returns it", undefined]);
    assert.deepEqual(dec.map((d) => d.ok), [true, false, true, false, false, true]);
    assert.equal(dec[2].reference, "x");
  });
});

describe("free text and audit", () => {
  test("inspect and redact", async () => {
    const text = "mail alice@example.com card 4111 1111 1111 1111";
    assert.deepEqual((await c.inspect(text)).map((f) => [f.type, f.start, f.end]), [["email", 5, 22], ["card_number", 28, 47]]);
    assert.equal(await c.redact(text), "mail a****@e******.com card **** **** **** 1111");
    assert.equal(await c.redact(text, "placeholder"), "mail [EMAIL] card [CARD_NUMBER]");
  });

  test("audit events, filtered, without values", async () => {
    const since = new Date(Date.now() - 1000);
    await c.encrypt("payments", "audited");
    const evs = await c.auditEvents({ action: "encrypt", since, limit: 50 });
    assert.ok(evs.length > 0);
    assert.ok(evs.some((e) => e.resource === "keys/payments" && e.status === 200));
    for (const e of evs) {
      assert.equal(e.action, "encrypt");
      assert.match(e.resource, /^keys\//);
      assert.ok(!JSON.stringify(e).includes(Buffer.from("audited").toString("base64")));
    }
    assert.equal((await c.auditEvents({ limit: 2 })).length, 2);
    const page = await c.auditPage({ limit: 1 });
    assert.equal(page.events.length, 1);
    assert.ok(page.next);
    await assert.rejects(c.auditEvents({ who: "me" }), TypeError);
    await problem(c.auditEvents({ limit: 0 }), 422, "invalid");
  });
});

describe("authentication", () => {
  test("a revoked token is renewed once, and the call goes through", async () => {
    const k = srv.client();
    try {
      const revoked = await k.accessToken();
      assert.equal(await srv.postForm("/v1/oauth/revoke", { token: revoked }), 200);
      assert.match(await k.encrypt("payments", "x"), /^coffer:v1:/);
      assert.notEqual(await k.accessToken(), revoked);
    } finally {
      k.close();
    }
  });

  test("bad credentials are an OAuth error", async () => {
    const k = srv.client({ clientSecret: "cs_wrong" });
    try {
      const err = await problem(k.getRecord("customers", randomUUID()), 401, "");
      assert.equal(err.type, "urn:ietf:params:oauth:error:invalid_client");
      assert.ok(!err.message.includes("cs_wrong"));
    } finally {
      k.close();
    }
  });
});

describe("access", () => {
  test("a narrow role gets 403 for what the policy does not grant", async () => {
    const made = await c.request("POST", "/v1/clients", { name: "sdk-reader", roles: ["reader"] });
    await c.request("PUT", "/v1/policy", {
      roles: {
        admin: [{ resources: ["*"], actions: ["*"] }],
        reader: [{ resources: ["collections/customers"], actions: ["read"], fields: { "*": "plain" } }],
      },
    });
    const { id } = await c.createRecord("customers", { name: "Reader Test" });
    const reader = srv.client({ clientId: made.client_id, clientSecret: made.client_secret });
    try {
      assert.equal((await reader.getRecord("customers", id)).data.name, "Reader Test");
      await problem(reader.createRecord("customers", { name: "x" }), 403, "forbidden", "not allowed to create collections/customers");
      await problem(reader.encrypt("payments", "x"), 403, "forbidden", "not allowed to encrypt keys/payments");
      await problem(reader.auditEvents(), 403, "forbidden", "not allowed to read audit");
    } finally {
      reader.close();
    }
  });
});

describe("TLS", () => {
  test("the deployment's CA is needed, and no other one will do", async () => {
    for (const caFile of [undefined, otherCA()]) {
      const k = new Client({ url: srv.url, clientId: srv.clientId, clientSecret: srv.clientSecret, ...(caFile ? { caFile } : {}) });
      try {
        const err = await k.encrypt("payments", "x").then(() => assert.fail("no TLS error"), (e) => e);
        assert.ok(err instanceof TransportError, String(err));
        assert.equal(err.status, 0);
        assert.match(err.message, /^transport error: TLS with https:\/\/127\.0\.0\.1:\d+ failed/);
      } finally {
        k.close();
      }
    }
  });

  test("HTTPS only", () => {
    assert.throws(() => new Client({ url: "http://127.0.0.1:8443", clientId: "a", clientSecret: "b" }), TypeError);
  });
});
