"""The errors the Coffer client raises."""

from __future__ import annotations

from typing import Any, List, Mapping, Optional, cast

__all__ = ["CofferError", "TransportError"]


class CofferError(Exception):
    """An answer of the Coffer server that is an error.

    Coffer answers every error as ``application/problem+json`` (RFC 9457);
    the fields of the problem are the attributes of this exception. The
    ``detail`` never holds a value the request submitted.

    Attributes:
        status: the HTTP status (``0`` for a :class:`TransportError`).
        type: the problem type URI, e.g. ``https://coffer.dev/problems/not_found``.
        title: the HTTP status text, e.g. ``Not Found``.
        detail: what went wrong, for a person.
        request_id: the server's id of the request (in its logs and audit
            events), or ``None``.
        problems: every problem of a request that breaks the schema (422).
        retry_after: seconds the server asked to wait (429, 503), or ``None``.
    """

    def __init__(
        self,
        status: int,
        type: str,
        title: str,
        detail: str,
        request_id: Optional[str] = None,
        problems: Optional[List[str]] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.request_id = request_id
        self.problems: List[str] = list(problems or [])
        self.retry_after = retry_after
        super().__init__(str(self))

    def __str__(self) -> str:
        s = f"{self.status} {self.title}: {self.detail}" if self.status else f"{self.title}: {self.detail}"
        if self.request_id:
            s += f" (request {self.request_id})"
        return s

    def __repr__(self) -> str:
        return f"CofferError(status={self.status!r}, type={self.type!r}, detail={self.detail!r}, request_id={self.request_id!r})"

    @classmethod
    def from_problem(cls, status: int, body: Mapping[str, Any], reason: str,
                     request_id: Optional[str], retry_after: Optional[float]) -> "CofferError":
        """Builds the error of a problem+json body (or of an OAuth error body)."""
        if "error" in body and "type" not in body:  # RFC 6749 section 5.2
            err = str(body.get("error", ""))
            detail = str(body.get("error_description") or err)
            return cls(status, "urn:ietf:params:oauth:error:" + err, reason, detail, request_id, None, retry_after)
        problems: Any = body.get("problems")
        listed: Optional[List[str]] = [str(p) for p in cast("List[Any]", problems)] if isinstance(problems, list) else None
        return cls(
            status=int(body.get("status") or status),
            type=str(body.get("type") or "about:blank"),
            title=str(body.get("title") or reason),
            detail=str(body.get("detail") or reason),
            request_id=str(body.get("request_id") or request_id or "") or None,
            problems=listed,
            retry_after=retry_after,
        )


class TransportError(CofferError):
    """No answer came from the server: the connection or TLS failed (an
    unknown CA, a wrong host name, a refused connection, a timeout).

    ``status`` is 0; ``cause`` is the underlying exception.
    """

    def __init__(self, detail: str, cause: Optional[BaseException] = None) -> None:
        self.cause = cause
        super().__init__(0, "about:blank", "transport error", detail)
