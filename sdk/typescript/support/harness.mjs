// A real Coffer for the SDK's tests: $COFFER_BIN, or coffer built from this
// repository with go1.27.3; a deployment made by `coffer init --json` in a
// temporary directory, served on a free loopback port until stop().
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import * as https from "node:https";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { Client } from "../dist/index.js";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
let bin;

/** The coffer binary: $COFFER_BIN, or one built once for this process. */
export function cofferBin() {
  if (!bin) {
    bin = process.env.COFFER_BIN;
    if (!bin) {
      const dir = mkdtempSync(join(tmpdir(), "coffer-bin-"));
      bin = join(dir, "coffer");
      execFileSync("go", ["build", "-o", bin, "./cmd/coffer"], {
        cwd: repo,
        stdio: "inherit",
        env: { ...process.env, GOTOOLCHAIN: "go1.27.3", GOFLAGS: "-mod=readonly" },
      });
      process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
    }
  }
  return bin;
}

function freePort() {
  return new Promise((ok, fail) => {
    const s = net.createServer();
    s.on("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

function init(root) {
  const out = execFileSync(cofferBin(), ["init", "--data-dir", join(root, "data"), "--json"], { encoding: "utf8" });
  return JSON.parse(out);
}

/** The CA file of another deployment, never served. */
export function otherCA() {
  const root = mkdtempSync(join(tmpdir(), "coffer-ts-other-"));
  process.on("exit", () => rmSync(root, { recursive: true, force: true }));
  return init(root).ca_cert;
}

function healthy(url, ca) {
  return new Promise((ok) => {
    const req = https.get(url + "/healthz", { ca, timeout: 2000 }, (res) => {
      res.resume();
      ok(res.statusCode === 200);
    });
    req.on("error", () => ok(false));
    req.on("timeout", () => req.destroy());
  });
}

export class Server {
  /** Starts a deployment; env adds COFFER_* settings. */
  static async start(env = {}) {
    const s = new Server();
    s.root = mkdtempSync(join(tmpdir(), "coffer-ts-"));
    const info = init(s.root);
    s.clientId = info.client_id;
    s.clientSecret = info.client_secret;
    s.caFile = info.ca_cert;
    const ca = readFileSync(s.caFile);
    // The server's config comes from its directory and env only, never
    // from the caller's COFFER_* settings.
    const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("COFFER_")));
    s.log = join(s.root, "server.log");
    for (let attempt = 0; attempt < 3; attempt++) {
      const port = await freePort();
      s.url = `https://127.0.0.1:${port}`;
      const fd = openSync(s.log, "a");
      s.proc = spawn(cofferBin(), ["serve", "--data-dir", join(s.root, "data"), "--listen", `127.0.0.1:${port}`,
        "--metrics-listen", "127.0.0.1:0"], { env: { ...base, ...env }, stdio: ["ignore", fd, fd] });
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline && s.proc.exitCode === null) {
        if (await healthy(s.url, ca)) return s;
        await new Promise((r) => setTimeout(r, 50));
      }
      s.proc.kill("SIGKILL");
    }
    const log = readFileSync(s.log, "utf8");
    await s.stop();
    throw new Error("coffer serve did not become healthy:\n" + log.slice(-4000));
  }

  /** A client of the bootstrap admin, or of the credentials given. */
  client(opts = {}) {
    return new Client({ url: this.url, clientId: this.clientId, clientSecret: this.clientSecret, caFile: this.caFile, ...opts });
  }

  /** POSTs a form without a token; resolves to the status. */
  postForm(path, form) {
    return new Promise((ok, fail) => {
      const body = new URLSearchParams(form).toString();
      const req = https.request(this.url + path, {
        method: "POST", ca: readFileSync(this.caFile),
        headers: { "Content-Type": "application/x-www-form-urlencoded", "Content-Length": Buffer.byteLength(body) },
      }, (res) => {
        res.resume();
        ok(res.statusCode);
      });
      req.on("error", fail);
      req.end(body);
    });
  }

  async stop() {
    if (this.proc && this.proc.exitCode === null) {
      const done = new Promise((r) => this.proc.once("exit", r));
      this.proc.kill("SIGTERM");
      const t = setTimeout(() => this.proc.kill("SIGKILL"), 20_000);
      await done;
      clearTimeout(t);
    }
    rmSync(this.root, { recursive: true, force: true });
  }
}

export const customers = {
  name: "customers",
  fields: [
    { name: "name", type: "string" },
    { name: "email", type: "email", searchable: true },
    { name: "card_number", type: "card_number" },
    { name: "ssn", type: "ssn" },
  ],
};
