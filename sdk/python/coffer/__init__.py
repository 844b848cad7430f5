"""Coffer's Python client.

``Client`` calls a Coffer server (records, tokens, transit keys, free-text
inspection, audit events); ``coffer.redact`` finds and hides sensitive
values in text as Coffer's Go ``redact`` package does; and
``coffer.logging.RedactingFilter`` redacts an application's logs with it.
Standard library only; Python 3.9 or later.
"""

from ._version import __version__
from .client import BatchItem, CiphertextItem, Client, DecryptResult, EncryptResult
from .errors import CofferError, TransportError

__all__ = [
    "Client", "CofferError", "TransportError", "BatchItem", "CiphertextItem",
    "EncryptResult", "DecryptResult", "__version__",
]
