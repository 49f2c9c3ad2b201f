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

#: Header versions this release reads (1: dyrygent 0.1; 2 adds fail_fast and the expansion
#: limits; 3 adds the custom payloads, hooks and workflow callbacks, written only when one is
#: set). Workflows stored by dyrygent 0.1 run on this release's workers; the reverse does not
#: hold (0.1 reads neither this header nor graph format 2): upgrade workers before clients.
HEADER_VERSIONS = (1, 2, 3)
#: The header fields version 3 adds, with their types.
_V3_FIELDS: dict[str, type] = {
    "custom_payload": dict,
    "node_payloads": dict,
    "hooks": dict,
    "link": dict,
    "link_error": dict,
}


@dataclass(frozen=True)
class Header:
    """Workflow-level settings stored beside the graph.

    ``node_options``: apply_async options for every node; ``processor_options``: for the
    processor's own messages; ``fail_fast``: the first failure ends the workflow;
    ``custom_payload``: the workflow's, and ``node_payloads`` each node's by id (JSON);
    ``hooks``: hook name -> dotted paths of its handlers (``Workflow.connect``);
    ``link`` / ``link_error``: the workflow's callbacks, as signature dicts.
    """

    node_options: dict[str, Any] = field(default_factory=dict)
    processor_options: dict[str, Any] = field(default_factory=dict)
    fail_fast: bool = False
    version: int = 2
    max_expand: int = 10_000
    max_nodes: int = 100_000
    custom_payload: dict[str, Any] | None = None
    node_payloads: dict[str, Any] = field(default_factory=dict)
    hooks: dict[str, list[str]] = field(default_factory=dict)
    link: dict[str, Any] | None = None
    link_error: dict[str, Any] | None = None

    @property
    def extended(self) -> bool:
        """Whether a version-3 field is set (then the header is written as version 3)."""
        return any(getattr(self, name) for name in _V3_FIELDS)


def _json(value: Any) -> bytes:
    """``value`` as JSON bytes (kombu's encoder: datetimes, UUIDs, Decimals)."""
    text: str = dumps(value)
    return text.encode()


def encode_spec(
    node_id: str,
    task: str,
    args: list[Any],
    kwargs: dict[str, Any],
    options: dict[str, Any],
    extras: dict[str, Any] | None = None,
) -> bytes:
    """``extras`` is what the processor needs besides the call (e.g. the errbacks of the
    chords whose header holds this node); it is never sent with the task."""
    try:
        return _json([args, kwargs, options, extras] if extras else [args, kwargs, options])
    except TypeError as exc:
        from dyrygent.errors import InvalidNodeError  # noqa: PLC0415 (only on errors)

        raise InvalidNodeError(
            f"node {node_id!r} ({task}) has arguments or options JSON cannot carry ({exc}): "
            f"pass plain values (str, numbers, lists, dicts, datetimes)",
            node=node_id,
        ) from exc


def decode_spec(spec: bytes) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    """(args, kwargs, options) of a node."""
    args, kwargs, options = loads(spec)[:3]
    return list(args), dict(kwargs), dict(options)


def spec_extras(spec: bytes) -> dict[str, Any]:
    """The extras of a node (empty for most)."""
    decoded = loads(spec)
    return dict(decoded[3]) if len(decoded) > 3 and decoded[3] else {}


def with_extras(spec: bytes, **extras: Any) -> bytes:
    """``spec`` with ``extras`` merged into its extras."""
    decoded = loads(spec)
    merged = {**(decoded[3] if len(decoded) > 3 and decoded[3] else {}), **extras}
    return _json([*decoded[:3], merged])


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
    raw: dict[str, Any] = {
        "version": 3 if header.extended else header.version,
        "node_options": header.node_options,
        "processor_options": header.processor_options,
        "fail_fast": header.fail_fast,
        "max_expand": header.max_expand,
        "max_nodes": header.max_nodes,
    }
    if header.extended:
        raw.update({name: getattr(header, name) for name in _V3_FIELDS})
    return _json(raw)


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
    limits = [raw.get("max_expand", 10_000), raw.get("max_nodes", 100_000)]
    if not (
        isinstance(node_options, dict)
        and isinstance(processor_options, dict)
        and isinstance(fail_fast, bool)
        and all(type(v) is int and v >= 0 for v in limits)
    ):
        raise PayloadError("the workflow header has a field of the wrong type", data)
    extra = {name: raw.get(name) for name in _V3_FIELDS}
    for name, value in extra.items():
        if value is not None and not isinstance(value, _V3_FIELDS[name]):
            raise PayloadError(f"the workflow header's {name} is not a {_V3_FIELDS[name]}", data)
    return Header(
        dict(node_options),
        dict(processor_options),
        fail_fast,
        raw["version"],
        max_expand=limits[0],
        max_nodes=limits[1],
        custom_payload=extra["custom_payload"],
        node_payloads=dict(extra["node_payloads"] or {}),
        hooks=dict(extra["hooks"] or {}),
        link=extra["link"],
        link_error=extra["link_error"],
    )
