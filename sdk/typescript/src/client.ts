import { readFileSync } from "node:fs";
import * as https from "node:https";
import { STATUS_CODES } from "node:http";
import { setTimeout as sleep } from "node:timers/promises";

import { CofferError, TransportError, errorOf } from "./errors.js";

const VERSION = "0.1.0";

/** How a {@link Client} reaches and authenticates to one Coffer server. */
export interface ClientOptions {
  /** The server's base URL, `https://…`. */
  url: string;
  /** The service client's id and secret (client credentials). */
  clientId: string;
  clientSecret: string;
  /**
   * The PEM file of the CA that issued the server's certificate
   * (`DIR/tls/ca.pem` of a deployment made by `coffer init`). Without it
   * (and without `ca`) Node's CAs are trusted.
   */
  caFile?: string;
  /** The CA's PEM itself, instead of `caFile`. */
  ca?: string | Buffer;
  /** Milliseconds to wait for an answer (default 30 000). */
  timeoutMs?: number;
  /** How many times an idempotent call is retried after 429 or 503 (default 3). */
  maxRetries?: number;
  /** The longest single wait in milliseconds (default 30 000); a longer Retry-After fails at once. */
  maxRetryWaitMs?: number;
}

/** A record as the policy lets the caller see it. */
export interface CofferRecord {
  id: string;
  owner?: string;
  created_at?: string;
  data: Record<string, unknown>;
  [key: string]: unknown;
}

/** One value to tokenize. */
export interface TokenItem {
  value: string;
  type: string;
  mode?: "random" | "deterministic" | "format_preserving";
}

/** Bytes, or text sent as UTF-8. */
export type Bytes = Uint8Array | string;

/** One value of {@link Client.encryptBatch}. */
export interface BatchItem {
  plaintext: Bytes;
  /** Bound to the ciphertext: decrypting needs the same context. */
  context?: Bytes;
  /** Echoed in the item's result. */
  reference?: string;
}

/** One ciphertext of {@link Client.decryptBatch}. */
export interface CiphertextItem {
  ciphertext: string;
  context?: Bytes;
  reference?: string;
}

/** One item's outcome in {@link Client.encryptBatch}: a ciphertext or an error. */
export interface EncryptResult {
  ok: boolean;
  ciphertext?: string;
  keyVersion?: number;
  /** Why the item failed: names the problem, never the value. */
  error?: string;
  reference?: string;
}

/** One item's outcome in {@link Client.decryptBatch}: a plaintext or an error. */
export interface DecryptResult {
  ok: boolean;
  plaintext?: Buffer;
  /** Every ciphertext that does not open has the same error. */
  error?: string;
  reference?: string;
}

/** A sensitive value found in text, by UTF-8 byte offsets. */
export interface Finding {
  type: string;
  start: number;
  end: number;
  confidence: number;
}

/** Filters of {@link Client.auditEvents}. */
export interface AuditFilters {
  limit?: number;
  principal?: string;
  action?: string;
  since?: Date | string;
  /** The `next` cursor of a previous page. */
  after?: string;
}

/** An audit event: names, counts and keyed MACs, never a value. */
export interface AuditEvent {
  id: string;
  time: string;
  principal: string;
  action: string;
  resource: string;
  decision: string;
  reason: string;
  status: number;
  request_id: string;
  hash: string;
  prev_hash: string;
  /** What the action touched, by path (`collections/C/records/ID`, `subjects/S`, …): ids, never values. Empty in events written before events named it. */
  targets?: string[];
  [key: string]: unknown;
}

/** Options of {@link Client.request}. */
export interface RequestOptions {
  query?: Record<string, string>;
  /** Whether a 429 or 503 may be retried (default: GET, HEAD, PUT, DELETE). */
  idempotent?: boolean;
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

const seg = (s: string): string => encodeURIComponent(s);

function b64(v: Bytes, what: string): string {
  if (typeof v === "string") return Buffer.from(v, "utf8").toString("base64");
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64");
  throw new TypeError(`${what} must be a Uint8Array or a string`);
}

/** Seconds of a Retry-After header: delta-seconds or an HTTP date. */
function retryAfter(v: string | string[] | undefined): number | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  if (!s) return undefined;
  if (/^\d+$/.test(s.trim())) return Number(s.trim());
  const t = Date.parse(s);
  return Number.isNaN(t) ? undefined : Math.max(0, (t - Date.now()) / 1000);
}

/**
 * A client of one Coffer server.
 *
 * It gets an access token with the OAuth 2.0 client-credentials grant at
 * `/v1/oauth/token`, renews it before it expires and once more when the
 * server answers 401, and retries idempotent calls (reads, decrypt,
 * detokenize, search, inspect, deletes) after a 429 or 503, waiting as
 * `Retry-After` says, at most `maxRetries` times. Every error answer
 * rejects with {@link CofferError}; a connection or TLS failure with
 * {@link TransportError}.
 */
export class Client {
  readonly url: string;
  readonly #host: string;
  readonly #port: number;
  readonly #prefix: string;
  readonly #agent: https.Agent;
  readonly #id: string;
  readonly #secret: string;
  readonly #timeoutMs: number;
  readonly #maxRetries: number;
  readonly #maxRetryWaitMs: number;
  #token: string | undefined;
  #expires = 0;
  #pending: Promise<string> | undefined;

  constructor(opts: ClientOptions) {
    const u = new URL(opts.url);
    if (u.protocol !== "https:") throw new TypeError("url must be https://HOST[:PORT]: Coffer serves HTTPS only");
    if (!opts.clientId || !opts.clientSecret) throw new TypeError("clientId and clientSecret are required");
    this.#host = u.hostname;
    this.#port = u.port ? Number(u.port) : 443;
    this.#prefix = u.pathname.replace(/\/+$/, "");
    this.url = `https://${u.host}${this.#prefix}`;
    const ca = opts.ca ?? (opts.caFile !== undefined ? readFileSync(opts.caFile) : undefined);
    this.#agent = new https.Agent({ keepAlive: true, minVersion: "TLSv1.2", ...(ca !== undefined ? { ca } : {}) });
    this.#id = opts.clientId;
    this.#secret = opts.clientSecret;
    this.#timeoutMs = opts.timeoutMs ?? 30_000;
    this.#maxRetries = opts.maxRetries ?? 3;
    this.#maxRetryWaitMs = opts.maxRetryWaitMs ?? 30_000;
  }

  /** Closes idle connections. */
  close(): void {
    this.#agent.destroy();
  }

  // --- records ---------------------------------------------------------

  /** Stores a record; resolves to `{ id }`. */
  async createRecord(
    collection: string,
    data: Record<string, unknown>,
    opts: { owner?: string; subject?: string } = {},
  ): Promise<{ id: string }> {
    return (await this.request("POST", `/v1/collections/${seg(collection)}/records`, { ...opts, data })) as { id: string };
  }

  /** A record, each field plain, masked or left out as the policy says. */
  async getRecord(collection: string, id: string): Promise<CofferRecord> {
    return (await this.request("GET", `/v1/collections/${seg(collection)}/records/${seg(id)}`)) as CofferRecord;
  }

  /** Changes the given fields; resolves to the record, or null when the caller may not read it back. */
  async updateRecord(collection: string, id: string, data: Record<string, unknown>): Promise<CofferRecord | null> {
    const out = await this.request("PATCH", `/v1/collections/${seg(collection)}/records/${seg(id)}`, { data });
    return (out ?? null) as CofferRecord | null;
  }

  /** Deletes a record. */
  async deleteRecord(collection: string, id: string): Promise<void> {
    await this.request("DELETE", `/v1/collections/${seg(collection)}/records/${seg(id)}`);
  }

  /** Records whose searchable fields equal `where`'s values. */
  async searchRecords(
    collection: string,
    where: Record<string, unknown>,
    opts: { limit?: number } = {},
  ): Promise<CofferRecord[]> {
    const out = (await this.request("POST", `/v1/collections/${seg(collection)}/records/search`, { where, ...opts }, {
      idempotent: true,
    })) as { records?: CofferRecord[] };
    return out.records ?? [];
  }

  // --- tokens ----------------------------------------------------------

  /** Tokens for the values, in order. */
  async tokenize(items: TokenItem[]): Promise<string[]> {
    return ((await this.request("POST", "/v1/tokenize", { items })) as { tokens: string[] }).tokens;
  }

  /** The values behind tokens, in order (all or nothing). */
  async detokenize(tokens: string[]): Promise<string[]> {
    return ((await this.request("POST", "/v1/detokenize", { tokens }, { idempotent: true })) as { values: string[] })
      .values;
  }

  // --- transit ---------------------------------------------------------

  /** Encrypts under the transit key's latest version: `coffer:vN:…`. */
  async encrypt(key: string, plaintext: Bytes, opts: { context?: Bytes } = {}): Promise<string> {
    const body: Record<string, string> = { plaintext: b64(plaintext, "plaintext") };
    if (opts.context !== undefined) body["context"] = b64(opts.context, "context");
    const out = (await this.request("POST", `/v1/keys/${seg(key)}/encrypt`, body, { idempotent: true })) as {
      ciphertext: string;
    };
    return out.ciphertext;
  }

  /** Decrypts a ciphertext of the transit key (with its context). */
  async decrypt(key: string, ciphertext: string, opts: { context?: Bytes } = {}): Promise<Buffer> {
    const body: Record<string, string> = { ciphertext };
    if (opts.context !== undefined) body["context"] = b64(opts.context, "context");
    const out = (await this.request("POST", `/v1/keys/${seg(key)}/decrypt`, body, { idempotent: true })) as {
      plaintext: string;
    };
    return Buffer.from(out.plaintext, "base64");
  }

  /**
   * Encrypts many values in one request (Vault's `batch_input`): one
   * result per item, in order; an item that cannot be encrypted carries
   * its `error` and the others succeed.
   */
  async encryptBatch(key: string, items: Array<Bytes | BatchItem>): Promise<EncryptResult[]> {
    const batch = items.map((it) => {
      const item: BatchItem = typeof it === "string" || it instanceof Uint8Array ? { plaintext: it } : it;
      const e: Record<string, string> = { plaintext: b64(item.plaintext, "plaintext") };
      if (item.context !== undefined) e["context"] = b64(item.context, "context");
      if (item.reference !== undefined) e["reference"] = item.reference;
      return e;
    });
    const out = (await this.request("POST", `/v1/keys/${seg(key)}/encrypt`, { batch_input: batch }, {
      idempotent: true,
    })) as { batch_results: Array<{ ciphertext?: string; key_version?: number; error?: string; reference?: string }> };
    return out.batch_results.map((r) => {
      const res: EncryptResult = { ok: r.error === undefined };
      if (r.ciphertext !== undefined) res.ciphertext = r.ciphertext;
      if (r.key_version !== undefined) res.keyVersion = r.key_version;
      if (r.error !== undefined) res.error = r.error;
      if (r.reference !== undefined) res.reference = r.reference;
      return res;
    });
  }

  /**
   * Decrypts many ciphertexts in one request (Vault's `batch_input`): one
   * result per item, in order; an item that does not decrypt carries its
   * `error` and the others succeed.
   */
  async decryptBatch(key: string, items: Array<string | CiphertextItem>): Promise<DecryptResult[]> {
    const batch = items.map((it) => {
      const item: CiphertextItem = typeof it === "string" ? { ciphertext: it } : it;
      const e: Record<string, string> = { ciphertext: item.ciphertext };
      if (item.context !== undefined) e["context"] = b64(item.context, "context");
      if (item.reference !== undefined) e["reference"] = item.reference;
      return e;
    });
    const out = (await this.request("POST", `/v1/keys/${seg(key)}/decrypt`, { batch_input: batch }, {
      idempotent: true,
    })) as { batch_results: Array<{ plaintext?: string; error?: string; reference?: string }> };
    return out.batch_results.map((r) => {
      const res: DecryptResult = { ok: r.error === undefined };
      if (r.plaintext !== undefined) res.plaintext = Buffer.from(r.plaintext, "base64");
      if (r.error !== undefined) res.error = r.error;
      if (r.reference !== undefined) res.reference = r.reference;
      return res;
    });
  }

  // --- free text -------------------------------------------------------

  /** The sensitive values in `text`, never the values themselves. */
  async inspect(text: string): Promise<Finding[]> {
    return ((await this.request("POST", "/v1/inspect", { text }, { idempotent: true })) as { findings: Finding[] })
      .findings;
  }

  /** `text` with each sensitive value masked, or replaced by `[TYPE]` in mode "placeholder". */
  async redact(text: string, mode: "mask" | "placeholder" = "mask"): Promise<string> {
    return ((await this.request("POST", "/v1/redact", { text, mode }, { idempotent: true })) as { text: string }).text;
  }

  // --- audit -----------------------------------------------------------

  /** One page of audit events. */
  async auditEvents(filters: AuditFilters = {}): Promise<AuditEvent[]> {
    return (await this.auditPage(filters)).events;
  }

  /** One page of audit events and the cursor of the next, if any. */
  async auditPage(filters: AuditFilters = {}): Promise<{ events: AuditEvent[]; next?: string }> {
    const query: Record<string, string> = {};
    for (const [k, v] of Object.entries(filters) as Array<[string, unknown]>) {
      if (!["limit", "principal", "action", "since", "after"].includes(k)) {
        throw new TypeError(`unknown audit filter ${k}`);
      }
      if (v === undefined || v === null) continue;
      query[k] = v instanceof Date ? v.toISOString() : String(v);
    }
    const out = (await this.request("GET", "/v1/audit/events", undefined, { query })) as {
      events?: AuditEvent[];
      next?: string;
    };
    return { events: out.events ?? [], ...(out.next ? { next: out.next } : {}) };
  }

  // --- transport -------------------------------------------------------

  /**
   * Calls any route of the API (`path` starts with `/v1/`) with a JSON
   * body; resolves to the decoded JSON answer (null for 204).
   */
  async request(method: string, path: string, body?: unknown, opts: RequestOptions = {}): Promise<unknown> {
    const idempotent = opts.idempotent ?? ["GET", "HEAD", "PUT", "DELETE"].includes(method);
    const qs = opts.query && Object.keys(opts.query).length ? "?" + new URLSearchParams(opts.query).toString() : "";
    const target = this.#prefix + path + qs;
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body), "utf8");
    let retries = 0;
    let renewed = false;
    for (;;) {
      const headers: Record<string, string> = { Authorization: "Bearer " + (await this.#accessToken()) };
      if (data !== undefined) headers["Content-Type"] = "application/json";
      const ans = await this.#send(method, target, data, headers);
      if (ans.status === 401 && !renewed) {
        renewed = true; // expired or revoked: one new token, one more try
        this.#token = undefined;
        continue;
      }
      if ((ans.status === 429 || ans.status === 503) && idempotent && retries < this.#maxRetries) {
        const wait = (retryAfter(ans.headers["retry-after"]) ?? Math.min(2 ** retries, 30)) * 1000;
        if (wait <= this.#maxRetryWaitMs) {
          await sleep(wait);
          retries++;
          continue;
        }
      }
      if (ans.status >= 400) throw this.#error(ans);
      if (ans.status === 204 || ans.body.length === 0) return null;
      return JSON.parse(ans.body.toString("utf8")) as unknown;
    }
  }

  /**
   * The bearer token this client sends now, fetched or renewed as needed:
   * for calls it does not wrap. It is a credential: never log it.
   */
  async accessToken(): Promise<string> {
    return this.#accessToken();
  }

  #error(ans: Answer): CofferError {
    let body: unknown = {};
    try {
      body = JSON.parse(ans.body.toString("utf8"));
    } catch {
      body = {};
    }
    const rid = ans.headers["x-request-id"];
    return errorOf(
      ans.status,
      STATUS_CODES[ans.status] ?? "Error",
      body,
      typeof rid === "string" ? rid : undefined,
      retryAfter(ans.headers["retry-after"]),
    );
  }

  async #accessToken(): Promise<string> {
    if (this.#token !== undefined && Date.now() < this.#expires) return this.#token;
    // One token request at a time; concurrent calls share it.
    this.#pending ??= this.#fetchToken().finally(() => {
      this.#pending = undefined;
    });
    return this.#pending;
  }

  async #fetchToken(): Promise<string> {
    const basic = Buffer.from(`${encodeURIComponent(this.#id)}:${encodeURIComponent(this.#secret)}`).toString("base64");
    const form = Buffer.from(new URLSearchParams({ grant_type: "client_credentials" }).toString());
    const ans = await this.#send("POST", this.#prefix + "/v1/oauth/token", form, {
      Authorization: "Basic " + basic,
      "Content-Type": "application/x-www-form-urlencoded",
    });
    if (ans.status !== 200) throw this.#error(ans);
    const tok = JSON.parse(ans.body.toString("utf8")) as { access_token: string; expires_in?: number };
    const ttl = tok.expires_in ?? 60;
    // Renew before expiry: a tenth of the lifetime early, at most a minute.
    this.#expires = Date.now() + (ttl - Math.min(60, ttl / 10)) * 1000;
    this.#token = tok.access_token;
    return tok.access_token;
  }

  #send(method: string, target: string, data: Buffer | undefined, headers: Record<string, string>): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const req = https.request(
        {
          host: this.#host,
          port: this.#port,
          method,
          path: target,
          agent: this.#agent,
          timeout: this.#timeoutMs,
          headers: {
            ...headers,
            Accept: "application/json",
            "User-Agent": "coffer-typescript/" + VERSION,
            ...(data !== undefined ? { "Content-Length": String(data.length) } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
          res.on("error", (e) => reject(new TransportError(`no answer from ${this.url}: ${e.message}`, e)));
        },
      );
      req.on("timeout", () => req.destroy(new Error(`no answer within ${this.#timeoutMs} ms`)));
      req.on("error", (e: Error & { code?: string }) => {
        const tls = e.code !== undefined && /CERT|SSL|TLS|SELF_SIGNED|VERIFY/.test(e.code);
        reject(new TransportError(`${tls ? "TLS with" : "no answer from"} ${this.url} failed: ${e.message}`, e));
      });
      req.end(data);
    });
  }
}

