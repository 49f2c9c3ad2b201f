"""What a compat workflow keeps beside dyrygent's header: custom payloads and backup tick
bounds, as extra keys of the stored header's JSON.

The header decoder of this release ignores keys it does not know, so a workflow carrying
them runs on any worker; ``custom_payload`` and ``node_payloads`` are the names (and types)
header version 3 gives these fields.
"""

from __future__ import annotations

from typing import Any

from kombu.utils.json import dumps, loads

from dyrygent.engine.spec import Header, encode_header

__all__ = ["EXTRA_KEYS", "Extras", "encode_with_extras", "decode_extras"]

#: The extra header keys, with the type each must have.
EXTRA_KEYS: dict[str, type] = {
    "custom_payload": dict,
    "node_payloads": dict,
    "backup_interval": list,
}

Extras = dict[str, Any]


def encode_with_extras(header: Header, extras: Extras) -> bytes:
    """The header's bytes with the ``extras`` that are set (None and empty are left out).

    Raises ValueError for an unknown key or a value of the wrong type."""
    raw = loads(encode_header(header))
    for key, value in extras.items():
        if key not in EXTRA_KEYS:
            raise ValueError(f"unknown workflow extra {key!r}: use one of {sorted(EXTRA_KEYS)}")
        if value in (None, {}, []):
            continue
        if not isinstance(value, EXTRA_KEYS[key]):
            raise ValueError(f"workflow extra {key!r} must be a {EXTRA_KEYS[key].__name__}")
        raw[key] = value
    text: str = dumps(raw)
    return text.encode()


def decode_extras(header: bytes) -> Extras:
    """The extras of a stored (unsealed) header; keys of the wrong type are dropped."""
    try:
        raw = loads(header)
    except Exception:  # kombu's JSON raises several types; the loader reports bad headers
        return {}
    if not isinstance(raw, dict):
        return {}
    return {k: raw[k] for k, kind in EXTRA_KEYS.items() if isinstance(raw.get(k), kind)}


def backup_bounds(extras: Extras) -> tuple[float, float] | None:
    """The workflow's backup tick bounds ``(shortest, longest)`` in seconds, if it set them."""
    bounds = extras.get("backup_interval")
    if (
        isinstance(bounds, list)
        and len(bounds) == 2
        and all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
        and 0 < bounds[0] <= bounds[1]
    ):
        return float(bounds[0]), float(bounds[1])
    return None
