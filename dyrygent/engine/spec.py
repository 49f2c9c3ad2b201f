"""A node's call (args, kwargs, options) as opaque bytes, and the workflow header.

Encoded with kombu's JSON, the default Celery task serializer: a node receives exactly what a
natively published task would (datetimes, UUIDs and Decimals included), and nothing is ever
unpickled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kombu.utils.json import dumps, loads

from dyrygent.errors import PayloadError

__all__ = [
    "HEADER_VERSIONS",
    "Header",
    "check_spec",
    "decode_header",
    "decode_spec",
    "encode_header",
    "encode_spec",
    "spec_extras",
    "with_extras",
]

#: Header versions this release reads (1: dyrygent 0.1; 2 adds fail_fast).
HEADER_VERSIONS = (1, 2)


@dataclass(frozen=True)
class Header:
    """Workflow-level settings stored beside the graph.

    ``node_options``: apply_async options for every node; ``processor_options``: for the
    processor's own messages; ``fail_fast``: the first failure ends the workflow.
    """

    node_options: dict[str, Any] = field(default_factory=dict)
    processor_options: dict[str, Any] = field(default_factory=dict)
    fail_fast: bool = False
    version: int = 2


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
        from dyrygent.errors import InvalidNodeError  # noqa: PLC0415 (only on errors)

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


def with_extras(spec: bytes, **extras: Any) -> bytes:
    """``spec`` with ``extras`` merged into its extras."""
    decoded = loads(spec)
    merged = {**(decoded[3] if len(decoded) > 3 and decoded[3] else {}), **extras}
    return dumps([*decoded[:3], merged]).encode()


def check_spec(node_id: str, spec: bytes) -> None:
    """Raise PayloadError unless ``spec`` is [args, kwargs, options] (+ extras) as JSON."""
    try:
        decoded = loads(spec)
    except Exception as exc:  # kombu's JSON raises several types
        raise PayloadError(f"node {node_id}: its call is not JSON ({exc})", spec, exc) from exc
    if not (
        isinstance(decoded, list)
        and len(decoded) in (3, 4)
        and isinstance(decoded[0], list)
        and isinstance(decoded[1], dict)
        and isinstance(decoded[2], dict)
        and (len(decoded) == 3 or isinstance(decoded[3], dict))
        and all(isinstance(k, str) for k in decoded[1])
    ):
        raise PayloadError(
            f"node {node_id}: its call is not [args, kwargs, options] (+ extras)", spec
        )


def encode_header(header: Header) -> bytes:
    return dumps(
        {
            "version": header.version,
            "node_options": header.node_options,
            "processor_options": header.processor_options,
            "fail_fast": header.fail_fast,
        }
    ).encode()


def decode_header(data: bytes) -> Header:
    """The stored header; raises PayloadError on an unknown version or a wrong type."""
    try:
        raw = loads(data)
    except Exception as exc:  # kombu's JSON raises several types
        raise PayloadError(f"the workflow header is not JSON ({exc})", data, exc) from exc
    if not isinstance(raw, dict) or raw.get("version") not in HEADER_VERSIONS:
        version = raw.get("version") if isinstance(raw, dict) else None
        raise PayloadError(
            f"unknown workflow header version {version!r} (this dyrygent reads "
            f"{HEADER_VERSIONS}): run the same dyrygent version on clients and workers",
            data,
        )
    node_options = raw.get("node_options") or {}
    processor_options = raw.get("processor_options") or {}
    fail_fast = raw.get("fail_fast", False)
    if not (
        isinstance(node_options, dict)
        and isinstance(processor_options, dict)
        and isinstance(fail_fast, bool)
    ):
        raise PayloadError("the workflow header has a field of the wrong type", data)
    return Header(dict(node_options), dict(processor_options), fail_fast, raw["version"])
