"""What the processor trusts in stored workflows (README, Reliability, item 9).

The broker and the result backend are the trust boundary. When the Celery config holds
``dyrygent_signing_key`` (a secret shared by clients and workers, like Celery's own message
signing keys), clients sign each workflow's graph and header with HMAC-SHA256 and the processor
refuses any workflow whose signature does not match: options the author never set cannot be
smuggled into stored state. Without a key, workflows are unsigned and every other check still
applies (schema, known task names, no pickle).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from dyrygent.errors import PayloadError

__all__ = ["UNSAFE_SERIALIZERS", "seal", "seal_segment", "unseal", "unseal_segment"]

#: Serializers a node may not ask for unless the processor allows pickle.
UNSAFE_SERIALIZERS = frozenset(
    {"pickle", "yaml", "application/x-python-serialize", "application/x-yaml"}
)
_SEP = b"\n"


def _key(app: Any) -> bytes | None:
    key = app.conf.get("dyrygent_signing_key")
    if not key:
        return None
    return key.encode() if isinstance(key, str) else bytes(key)


def _mac(key: bytes, graph: bytes, header: bytes) -> bytes:
    return hmac.new(key, graph + b"\0" + header, hashlib.sha256).hexdigest().encode()


def seal(app: Any, graph: bytes, header: bytes) -> bytes:
    """The header as stored: itself, a newline, and the signature (empty when unsigned)."""
    key = _key(app)
    return header + _SEP + (_mac(key, graph, header) if key else b"")


def unseal(app: Any, wf: str, graph: bytes, stored: bytes) -> bytes:
    """The header of a stored workflow, after checking its signature when a key is set.

    Raises PayloadError when the signature is missing or wrong.
    """
    header, sep, mac = bytes(stored).rpartition(_SEP)
    if not sep:
        raise PayloadError(
            f"workflow {wf}: its stored header is not sealed (not written by "
            f"dyrygent's Workflow.apply_async)",
            bytes(stored),
        )
    key = _key(app)
    if key is None:
        return header
    if not mac:
        raise PayloadError(
            f"workflow {wf} is not signed, but this worker has a "
            f"dyrygent_signing_key: sign on the client with the same key"
        )
    if not hmac.compare_digest(mac, _mac(key, graph, header)):
        raise PayloadError(
            f"workflow {wf} has a wrong signature: its stored graph was altered, "
            f"or signed with another dyrygent_signing_key"
        )
    return header


def seal_segment(app: Any, wf: str, segment: bytes) -> bytes:
    """A graph segment as stored: the signature (empty when unsigned), a newline, the segment.
    The workflow id is signed with it, so a segment cannot be moved to another workflow."""
    key = _key(app)
    return (_mac(key, wf.encode(), segment) if key else b"") + _SEP + segment


def unseal_segment(app: Any, wf: str, stored: bytes) -> bytes:
    """The segment of a stored one, after checking its signature when a key is set.

    Raises PayloadError when the signature is missing or wrong."""
    mac, sep, segment = bytes(stored).partition(_SEP)
    if not sep:
        raise PayloadError(f"workflow {wf}: a stored graph segment is not sealed", bytes(stored))
    key = _key(app)
    if key is None:
        return segment
    if not mac or not hmac.compare_digest(mac, _mac(key, wf.encode(), segment)):
        raise PayloadError(
            f"workflow {wf}: a stored graph segment has a missing or wrong signature: it was "
            f"altered, or signed with another dyrygent_signing_key"
        )
    return segment
