/**
 * Coffer's TypeScript client: records, tokens, transit keys, free-text
 * inspection and audit events over HTTPS, with client credentials.
 *
 * @packageDocumentation
 */
export { Client } from "./client.js";
export type {
  AuditEvent,
  AuditFilters,
  BatchItem,
  Bytes,
  CiphertextItem,
  ClientOptions,
  CofferRecord,
  DecryptResult,
  EncryptResult,
  Finding,
  RequestOptions,
  TokenItem,
} from "./client.js";
export { CofferError, TransportError } from "./errors.js";
