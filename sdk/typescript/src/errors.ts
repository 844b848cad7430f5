/**
 * An answer of the Coffer server that is an error. Coffer answers every
 * error as application/problem+json (RFC 9457); its fields are this
 * error's properties. `detail` never holds a value the request submitted.
 */
export class CofferError extends Error {
  /** The HTTP status (0 for a {@link TransportError}). */
  readonly status: number;
  /** The problem type URI, e.g. `https://coffer.dev/problems/not_found`. */
  readonly type: string;
  /** The HTTP status text, e.g. `Not Found`. */
  readonly title: string;
  /** What went wrong, for a person. */
  readonly detail: string;
  /** The server's id of the request (in its logs and audit events). */
  readonly requestId: string | undefined;
  /** Every problem of a request that breaks the schema (422). */
  readonly problems: string[];
  /** Seconds the server asked to wait (429, 503). */
  readonly retryAfter: number | undefined;

  constructor(init: {
    status: number;
    type: string;
    title: string;
    detail: string;
    requestId?: string | undefined;
    problems?: string[] | undefined;
    retryAfter?: number | undefined;
  }) {
    super(
      (init.status ? `${init.status} ${init.title}: ${init.detail}` : `${init.title}: ${init.detail}`) +
        (init.requestId ? ` (request ${init.requestId})` : ""),
    );
    this.name = "CofferError";
    this.status = init.status;
    this.type = init.type;
    this.title = init.title;
    this.detail = init.detail;
    this.requestId = init.requestId;
    this.problems = init.problems ?? [];
    this.retryAfter = init.retryAfter;
  }
}

/**
 * No answer came from the server: the connection or TLS failed (an unknown
 * CA, a refused connection, a timeout). `status` is 0 and `cause` is the
 * underlying error.
 */
export class TransportError extends CofferError {
  constructor(detail: string, cause: unknown) {
    super({ status: 0, type: "about:blank", title: "transport error", detail });
    this.name = "TransportError";
    this.cause = cause;
  }
}

/** Builds the error of an answer: a problem+json body or an OAuth error body. */
export function errorOf(
  status: number,
  reason: string,
  body: unknown,
  requestId: string | undefined,
  retryAfter: number | undefined,
): CofferError {
  const b: Record<string, unknown> = body !== null && typeof body === "object" ? (body as Record<string, unknown>) : {};
  const str = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : undefined);
  if (b["error"] !== undefined && b["type"] === undefined) {
    // RFC 6749 section 5.2
    const err = String(b["error"]);
    return new CofferError({
      status,
      type: "urn:ietf:params:oauth:error:" + err,
      title: reason,
      detail: str(b["error_description"]) ?? err,
      requestId,
      retryAfter,
    });
  }
  const problems = Array.isArray(b["problems"]) ? b["problems"].map((p) => String(p)) : undefined;
  return new CofferError({
    status: typeof b["status"] === "number" ? b["status"] : status,
    type: str(b["type"]) ?? "about:blank",
    title: str(b["title"]) ?? reason,
    detail: str(b["detail"]) ?? reason,
    requestId: str(b["request_id"]) ?? requestId,
    problems,
    retryAfter,
  });
}
