"""The Coffer client: records, tokens, transit keys, inspection and audit
over HTTPS, authenticated with OAuth 2.0 client credentials."""

from __future__ import annotations

import base64
import datetime as _dt
import email.utils
import http.client
import json
import select
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple, Union, cast

from .errors import CofferError, TransportError

__all__ = [
    "Client", "BatchItem", "CiphertextItem", "EncryptResult", "DecryptResult",
]

from ._version import __version__ as _VERSION
_AUDIT_FILTERS = ("limit", "principal", "action", "since", "after")


@dataclass(frozen=True)
class BatchItem:
    """One value of :meth:`Client.encrypt_batch`: the plaintext, the context
    bound to it (optional) and a reference echoed in its result."""

    plaintext: bytes
    context: Optional[bytes] = None
    reference: Optional[str] = None

    def __repr__(self) -> str:
        return f"BatchItem(plaintext=<{len(self.plaintext)} bytes>, reference={self.reference!r})"


@dataclass(frozen=True)
class CiphertextItem:
    """One ciphertext of :meth:`Client.decrypt_batch`, with the context it
    was encrypted with and a reference echoed in its result."""

    ciphertext: str
    context: Optional[bytes] = None
    reference: Optional[str] = None


@dataclass(frozen=True)
class EncryptResult:
    """One item's outcome in :meth:`Client.encrypt_batch`: its ciphertext
    and key version, or its ``error`` (a message naming the problem, never
    the value)."""

    ciphertext: Optional[str] = None
    key_version: Optional[int] = None
    error: Optional[str] = None
    reference: Optional[str] = None

    @property
    def ok(self) -> bool:
        """Whether the item was encrypted."""
        return self.error is None


@dataclass(frozen=True)
class DecryptResult:
    """One item's outcome in :meth:`Client.decrypt_batch`: its plaintext,
    or its ``error`` (every ciphertext that does not open has the same one)."""

    plaintext: Optional[bytes] = None
    error: Optional[str] = None
    reference: Optional[str] = None

    @property
    def ok(self) -> bool:
        """Whether the item was decrypted."""
        return self.error is None

    def __repr__(self) -> str:
        shown = None if self.plaintext is None else f"<{len(self.plaintext)} bytes>"
        return f"DecryptResult(plaintext={shown}, error={self.error!r}, reference={self.reference!r})"


def _b64(b: object, what: str) -> Optional[str]:
    """Standard base64 of bytes; a str is refused (its encoding is the
    caller's choice to make)."""
    if b is None:
        return None
    if isinstance(b, memoryview):
        b = b.tobytes()
    if not isinstance(b, (bytes, bytearray)):
        raise TypeError(f"{what} must be bytes, not {type(b).__name__}")
    return base64.b64encode(b).decode("ascii")


def _seg(s: str) -> str:
    return urllib.parse.quote(str(s), safe="")


def _retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds of a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return max(0.0, (when - _dt.datetime.now(_dt.timezone.utc)).total_seconds())


class _Pool:
    """Keep-alive HTTPS connections to one server, safe for threads."""

    def __init__(self, host: str, port: int, ctx: ssl.SSLContext, timeout: float) -> None:
        self.host, self.port, self.ctx, self.timeout = host, port, ctx, timeout
        self._idle: List[http.client.HTTPSConnection] = []
        self._lock = threading.Lock()

    def get(self) -> http.client.HTTPSConnection:
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if not _dropped(conn):
                    return conn
                conn.close()
        return http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=self.timeout)

    def put(self, conn: http.client.HTTPSConnection) -> None:
        with self._lock:
            if len(self._idle) < 8:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _dropped(conn: http.client.HTTPSConnection) -> bool:
    """Whether the server closed an idle connection (it is readable: EOF)."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class Client:
    """A client of one Coffer server.

    It gets an access token with the OAuth 2.0 client-credentials grant at
    ``/v1/oauth/token``, renews it before it expires and once more when the
    server answers 401, and retries idempotent calls (reads, decrypt,
    detokenize, search, inspect, deletes) after a 429 or 503, waiting as
    ``Retry-After`` says, at most ``max_retries`` times and never longer
    than ``max_retry_wait`` seconds at once. Every error answer raises
    :class:`CofferError`; a connection or TLS failure raises
    :class:`TransportError`. It is safe to share between threads.

    Args:
        url: the server's base URL, ``https://…``.
        client_id, client_secret: the service client's credentials.
        ca_file: the PEM file of the CA that issued the server's
            certificate (``DIR/tls/ca.pem`` of a deployment made by
            ``coffer init``); ``None`` trusts the system's CAs.
        timeout: seconds to wait for a connection or an answer.
        max_retries: how many times an idempotent call is retried after a
            429 or 503.
        max_retry_wait: the longest single wait; a longer Retry-After
            raises at once.
    """

    def __init__(self, url: str, *, client_id: str, client_secret: str, ca_file: Optional[str] = None,
                 timeout: float = 30.0, max_retries: int = 3, max_retry_wait: float = 30.0) -> None:
        u = urllib.parse.urlsplit(url)
        if u.scheme != "https" or not u.hostname:
            raise ValueError("url must be https://HOST[:PORT]: Coffer serves HTTPS only")
        if not client_id or not client_secret:
            raise ValueError("client_id and client_secret are required")
        ctx = ssl.create_default_context(cafile=ca_file)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self._prefix = u.path.rstrip("/")
        self._pool = _Pool(u.hostname, u.port or 443, ctx, timeout)
        self._id = client_id
        self._secret = client_secret
        self.url = f"https://{u.netloc}{self._prefix}"
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self._token: Optional[str] = None
        self._expires = 0.0
        self._token_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Client(url={self.url!r}, client_id={self._id!r})"

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes idle connections."""
        self._pool.close()

    # --- records -------------------------------------------------------

    def create_record(self, collection: str, data: Mapping[str, Any], owner: Optional[str] = None,
                      subject: Optional[str] = None) -> Dict[str, Any]:
        """Stores a record; returns ``{"id": …}``."""
        body: Dict[str, Any] = {"data": dict(data)}
        if owner is not None:
            body["owner"] = owner
        if subject is not None:
            body["subject"] = subject
        return self.request("POST", f"/v1/collections/{_seg(collection)}/records", body)

    def get_record(self, collection: str, id: str) -> Dict[str, Any]:
        """A record, each field plain, masked or left out as the policy says."""
        return self.request("GET", f"/v1/collections/{_seg(collection)}/records/{_seg(id)}")

    def update_record(self, collection: str, id: str, data: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
        """Changes the given fields; returns the record as the caller may
        see it, or ``None`` when the caller may not read it back."""
        return self.request("PATCH", f"/v1/collections/{_seg(collection)}/records/{_seg(id)}", {"data": dict(data)})

    def delete_record(self, collection: str, id: str) -> None:
        """Deletes a record."""
        self.request("DELETE", f"/v1/collections/{_seg(collection)}/records/{_seg(id)}")

    def search_records(self, collection: str, where: Mapping[str, Any], limit: Optional[int] = None) -> List[Dict[str, Any]]:
        """Records whose searchable fields equal ``where``'s values."""
        body: Dict[str, Any] = {"where": dict(where)}
        if limit is not None:
            body["limit"] = limit
        out = self.request("POST", f"/v1/collections/{_seg(collection)}/records/search", body, idempotent=True)
        return list(out.get("records", []))

    # --- tokens --------------------------------------------------------

    def tokenize(self, items: Iterable[Mapping[str, str]]) -> List[str]:
        """Tokens for ``{"value", "type", "mode"?}`` items, in order. Modes:
        ``random`` (default), ``deterministic``, ``format_preserving``."""
        out = self.request("POST", "/v1/tokenize", {"items": [dict(i) for i in items]})
        return list(out["tokens"])

    def detokenize(self, tokens: Iterable[str]) -> List[str]:
        """The values behind tokens, in order (all or nothing)."""
        out = self.request("POST", "/v1/detokenize", {"tokens": list(tokens)}, idempotent=True)
        return list(out["values"])

    # --- transit -------------------------------------------------------

    def encrypt(self, key: str, plaintext: bytes, context: Optional[bytes] = None) -> str:
        """Encrypts under the transit key's latest version: ``coffer:vN:…``."""
        body: Dict[str, Any] = {"plaintext": _b64(plaintext, "plaintext")}
        if context is not None:
            body["context"] = _b64(context, "context")
        return str(self.request("POST", f"/v1/keys/{_seg(key)}/encrypt", body, idempotent=True)["ciphertext"])

    def decrypt(self, key: str, ciphertext: str, context: Optional[bytes] = None) -> bytes:
        """Decrypts a ciphertext of the transit key (with its context)."""
        body: Dict[str, Any] = {"ciphertext": ciphertext}
        if context is not None:
            body["context"] = _b64(context, "context")
        out = self.request("POST", f"/v1/keys/{_seg(key)}/decrypt", body, idempotent=True)
        return base64.b64decode(out["plaintext"], validate=True)

    def encrypt_batch(self, key: str, items: Iterable[Union[bytes, BatchItem]]) -> List[EncryptResult]:
        """Encrypts many values in one request (Vault's ``batch_input``):
        one result per item, in order; an item that cannot be encrypted
        carries its ``error`` and the others succeed."""
        batch: List[Dict[str, Any]] = []
        for it in items:
            if not isinstance(it, BatchItem):
                it = BatchItem(it)
            e: Dict[str, Any] = {"plaintext": _b64(it.plaintext, "plaintext")}
            if it.context is not None:
                e["context"] = _b64(it.context, "context")
            if it.reference is not None:
                e["reference"] = it.reference
            batch.append(e)
        out = self.request("POST", f"/v1/keys/{_seg(key)}/encrypt", {"batch_input": batch}, idempotent=True)
        return [EncryptResult(r.get("ciphertext"), r.get("key_version"), r.get("error"), r.get("reference"))
                for r in out["batch_results"]]

    def decrypt_batch(self, key: str, items: Iterable[Union[str, CiphertextItem]]) -> List[DecryptResult]:
        """Decrypts many ciphertexts in one request (Vault's
        ``batch_input``): one result per item, in order; an item that does
        not decrypt carries its ``error`` and the others succeed."""
        batch: List[Dict[str, Any]] = []
        for it in items:
            if not isinstance(it, CiphertextItem):
                it = CiphertextItem(it)
            e: Dict[str, Any] = {"ciphertext": it.ciphertext}
            if it.context is not None:
                e["context"] = _b64(it.context, "context")
            if it.reference is not None:
                e["reference"] = it.reference
            batch.append(e)
        out = self.request("POST", f"/v1/keys/{_seg(key)}/decrypt", {"batch_input": batch}, idempotent=True)
        res: List[DecryptResult] = []
        for r in out["batch_results"]:
            pt = r.get("plaintext")
            res.append(DecryptResult(None if pt is None else base64.b64decode(pt, validate=True), r.get("error"),
                                     r.get("reference")))
        return res

    # --- free text -----------------------------------------------------

    def inspect(self, text: str) -> List[Dict[str, Any]]:
        """The sensitive values in ``text``: ``{"type", "start", "end",
        "confidence"}`` with UTF-8 byte offsets, never the values."""
        return list(self.request("POST", "/v1/inspect", {"text": text}, idempotent=True)["findings"])

    def redact(self, text: str, mode: str = "mask") -> str:
        """``text`` with each sensitive value masked (``mode="mask"``) or
        replaced by ``[TYPE]`` (``mode="placeholder"``)."""
        return str(self.request("POST", "/v1/redact", {"text": text, "mode": mode}, idempotent=True)["text"])

    # --- audit ---------------------------------------------------------

    def audit_events(self, **filters: Any) -> List[Dict[str, Any]]:
        """One page of audit events, newest first. Filters: ``limit``,
        ``principal``, ``action``, ``since`` (a datetime or RFC 3339 text)
        and ``after`` (a page's ``next`` cursor; see
        :meth:`iter_audit_events`)."""
        return self._audit_page(filters)[0]

    def iter_audit_events(self, **filters: Any) -> Iterator[Dict[str, Any]]:
        """Every audit event matching the filters, page after page."""
        while True:
            events, nxt = self._audit_page(filters)
            yield from events
            if not nxt:
                return
            filters = {**filters, "after": nxt}

    def _audit_page(self, filters: Mapping[str, Any]) -> Tuple[List[Dict[str, Any]], Optional[str]]:
        unknown = set(filters) - set(_AUDIT_FILTERS)
        if unknown:
            raise TypeError(f"unknown audit filter(s): {', '.join(sorted(unknown))}")
        q: Dict[str, str] = {}
        for k, v in filters.items():
            if v is None:
                continue
            if isinstance(v, _dt.datetime):
                v = (v if v.tzinfo else v.replace(tzinfo=_dt.timezone.utc)).astimezone(_dt.timezone.utc)
                v = v.isoformat().replace("+00:00", "Z")
            q[k] = str(v)
        out = self.request("GET", "/v1/audit/events", query=q)
        return list(out.get("events", [])), out.get("next")

    # --- transport -----------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, *, query: Optional[Mapping[str, str]] = None,
                idempotent: Optional[bool] = None) -> Any:
        """Calls any route of the API (``path`` starts with ``/v1/``) with
        a JSON body and returns the decoded JSON answer (``None`` for 204).
        ``idempotent`` (default: GET, HEAD, PUT and DELETE) allows retries
        after 429 and 503."""
        if idempotent is None:
            idempotent = method in ("GET", "HEAD", "PUT", "DELETE")
        target = self._prefix + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode("utf-8")
        retries, renewed = 0, False
        while True:
            headers = {"Authorization": "Bearer " + self._access_token()}
            if data is not None:
                headers["Content-Type"] = "application/json"
            status, hdrs, raw = self._send(method, target, data, headers)
            if status == 401 and not renewed:
                renewed = True  # expired or revoked: one new token, one more try
                self._drop_token()
                continue
            if status in (429, 503) and idempotent and retries < self.max_retries:
                wait = _retry_after(hdrs.get("retry-after"))
                if wait is None:
                    wait = min(2.0 ** retries, self.max_retry_wait)
                if wait <= self.max_retry_wait:
                    time.sleep(wait)
                    retries += 1
                    continue
            if status >= 400:
                raise _error(status, hdrs, raw)
            if status == 204 or not raw:
                return None
            return json.loads(raw)

    def _send(self, method: str, target: str, data: Optional[bytes],
              headers: Dict[str, str]) -> Tuple[int, Dict[str, str], bytes]:
        headers = {**headers, "Accept": "application/json", "User-Agent": "coffer-python/" + _VERSION}
        conn = self._pool.get()
        try:
            conn.request(method, target, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except ssl.SSLError as e:
            conn.close()
            raise TransportError(f"TLS with {self.url} failed: {e}", e) from e
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise TransportError(f"no answer from {self.url}: {e}", e) from e
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        if resp.will_close:
            conn.close()
        else:
            self._pool.put(conn)
        return resp.status, hdrs, raw

    def _drop_token(self) -> None:
        with self._token_lock:
            self._token = None

    def _access_token(self) -> str:
        with self._token_lock:
            if self._token is not None and time.monotonic() < self._expires:
                return self._token
            form = urllib.parse.urlencode({"grant_type": "client_credentials"}).encode("ascii")
            basic = base64.b64encode(
                f"{urllib.parse.quote(self._id, safe='')}:{urllib.parse.quote(self._secret, safe='')}".encode("utf-8")
            ).decode("ascii")
            status, hdrs, raw = self._send("POST", self._prefix + "/v1/oauth/token", form, {
                "Authorization": "Basic " + basic, "Content-Type": "application/x-www-form-urlencoded"})
            if status != 200:
                raise _error(status, hdrs, raw)
            tok = json.loads(raw)
            ttl = float(tok.get("expires_in") or 60)
            # Renew before expiry: a tenth of the lifetime early, at most a minute.
            self._expires = time.monotonic() + ttl - min(60.0, ttl / 10)
            self._token = str(tok["access_token"])
            return self._token


def _error(status: int, hdrs: Mapping[str, str], raw: bytes) -> CofferError:
    reason = http.client.responses.get(status, "Error")
    rid = hdrs.get("x-request-id")
    wait = _retry_after(hdrs.get("retry-after"))
    try:
        decoded: Any = json.loads(raw) if raw else {}
    except ValueError:
        decoded = {}
    body: Dict[str, Any] = cast("Dict[str, Any]", decoded) if isinstance(decoded, dict) else {}
    return CofferError.from_problem(status, body, reason, rid, wait)
