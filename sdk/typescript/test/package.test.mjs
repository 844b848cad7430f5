// The package: ESM, typed, no runtime dependencies, Node 20 or later.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { test } from "node:test";

const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));

test("ESM with types and no runtime dependencies", async () => {
  assert.equal(pkg.name, "@coffer/client");
  assert.equal(pkg.type, "module");
  assert.equal(pkg.engines.node, ">=20");
  assert.equal(pkg.dependencies, undefined);
  for (const f of ["index.js", "index.d.ts", "client.d.ts", "errors.d.ts"]) {
    assert.ok(existsSync(new URL(`../dist/${f}`, import.meta.url)), `dist/${f} was not built`);
  }
  const types = readFileSync(new URL("../dist/index.d.ts", import.meta.url), "utf8");
  for (const name of ["Client", "CofferError", "TransportError", "ClientOptions", "EncryptResult"]) {
    assert.match(types, new RegExp(`\\b${name}\\b`));
  }
  const mod = await import("@coffer/client");
  assert.equal(typeof mod.Client, "function");
  assert.ok(new mod.CofferError({ status: 404, type: "t", title: "Not Found", detail: "d" }) instanceof Error);
});
