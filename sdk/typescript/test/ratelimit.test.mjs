// 429 with Retry-After from a deployment limited to one request a second per
// principal: idempotent calls wait and retry, other calls reject at once.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import dc from "node:diagnostics_channel";
import { after, before, test } from "node:test";

import { CofferError } from "../dist/index.js";
import { Server } from "../support/harness.mjs";

let srv;

before(async () => {
  srv = await Server.start({ COFFER_LIMITS_RATE_LIMIT: "1", COFFER_LIMITS_RATE_BURST: "1" });
  const c = srv.client();
  await c.request("POST", "/v1/keys", { name: "k" }, { idempotent: true }); // waits out its own 429s
  c.close();
});

after(async () => {
  await srv?.stop();
});

/** Counts the HTTP requests this process sends, by "METHOD path". */
const sent = [];
dc.subscribe("http.client.request.start", ({ request }) => sent.push(`${request.method} ${request.path.split("?")[0]}`));
const count = (what) => sent.filter((s) => s === what).length;

async function rejection(p) {
  return p.then(() => assert.fail("resolved, want a 429"), (e) => e);
}

test("429 rejects with Retry-After when no retry is allowed", async () => {
  const c = srv.client({ maxRetries: 0 });
  try {
    const err = await rejection((async () => {
      for (let i = 0; i < 3; i++) await c.request("GET", "/v1/keys/k");
    })());
    assert.ok(err instanceof CofferError);
    assert.equal(err.status, 429);
    assert.equal(err.type, "https://coffer.dev/problems/rate_limited");
    assert.equal(err.detail, "rate limit exceeded");
    assert.equal(err.retryAfter, 1);
  } finally {
    c.close();
  }
});

test("idempotent calls wait as Retry-After says and go through", async () => {
  const c = srv.client({ maxRetries: 5 });
  const before = count("POST /v1/keys/k/encrypt") + count("POST /v1/keys/k/decrypt");
  try {
    for (let i = 0; i < 2; i++) {
      const ct = await c.encrypt("k", "x"); // encrypt stores nothing: safe to retry
      assert.match(ct, /^coffer:v1:/);
      assert.equal((await c.decrypt("k", ct)).toString(), "x");
    }
    const attempts = count("POST /v1/keys/k/encrypt") + count("POST /v1/keys/k/decrypt") - before;
    assert.ok(attempts > 4, `${attempts} requests for 4 calls: none was retried`);
  } finally {
    c.close();
  }
});

test("other calls are not retried", async () => {
  const c = srv.client({ maxRetries: 5 });
  try {
    const before = count("POST /v1/tokenize");
    let calls = 0;
    const err = await rejection((async () => {
      for (let i = 0; i < 3; i++) {
        calls++;
        await c.tokenize([{ value: randomUUID(), type: "string" }]);
      }
    })());
    assert.equal(err.status, 429);
    assert.equal(count("POST /v1/tokenize") - before, calls, "a tokenize was sent twice");
  } finally {
    c.close();
  }
});

test("a Retry-After beyond the bound rejects at once", async () => {
  const c = srv.client({ maxRetries: 5, maxRetryWaitMs: 500 });
  try {
    const err = await rejection((async () => {
      for (let i = 0; i < 3; i++) await c.request("GET", "/v1/keys/k");
    })());
    assert.equal(err.status, 429);
  } finally {
    c.close();
  }
});
