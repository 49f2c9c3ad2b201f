"""A node's call (args, kwargs, options) as opaque bytes, and the workflow header.

Encoded with kombu's JSON, the default Celery task serializer: a node receives exactly what a
natively published task would (datetimes, UUIDs and Decimals included), and nothing is ever
unpickled.
"""

from __future__ import annotations

from typing import Any

from kombu.utils.json import dumps, loads

__all__ = ["decode_header", "decode_spec", "encode_header", "encode_spec", "spec_extras"]


def encode_spec(
    node_id: str, task: str, args: list, kwargs: dict, options: dict, extras: dict | None = None
) -> bytes:
    """``extras`` is what the processor needs besides the call (e.g. the errbacks of the
    chords whose header holds this node); it is never sent with the task."""
    try:
        return dumps(
            [args, kwargs, options, extras] if extras else [args, kwargs, options]
        ).encode()
    except TypeError as exc:
        from dyrygent.errors import InvalidNodeError

        raise InvalidNodeError(
            f"node {node_id!r} ({task}) has arguments or options JSON cannot carry ({exc}): "
            f"pass plain values (str, numbers, lists, dicts, datetimes)",
            node=node_id,
        ) from exc


def decode_spec(spec: bytes) -> tuple[list, dict, dict]:
    """(args, kwargs, options) of a node."""
    args, kwargs, options = loads(spec)[:3]
    return list(args), dict(kwargs), dict(options)


def spec_extras(spec: bytes) -> dict:
    """The extras of a node (empty for most)."""
    decoded = loads(spec)
    return dict(decoded[3]) if len(decoded) > 3 and decoded[3] else {}


def encode_header(header: dict[str, Any]) -> bytes:
    return dumps(header).encode()


def decode_header(data: bytes) -> dict[str, Any]:
    return dict(loads(data))
