"""The event log of a workflow: every node state change, in commit order, packed compactly.

A log is this version byte, then one group per commit: the commit's time (``>d``, seconds
since the epoch by the store's clock) and its event count (``>I``), then per event the node
index (``>I``), old and new state (``B``): 6 bytes per event plus 12 per commit. Redis
appends the same bytes from its Lua commit script; SQL stores one group per commit row.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

from dyrygent.core.states import NodeState
from dyrygent.errors import PayloadError

__all__ = ["EVENTS_VERSION", "NodeEvent", "diff", "pack_events", "unpack_events"]

#: The first byte of every log (a log of another version is refused, not misread).
EVENTS_VERSION = b"\x01"
_GROUP = struct.Struct(">dI")
_EVENT = struct.Struct(">IBB")


@dataclass(frozen=True)
class NodeEvent:
    """A node's state change, committed at ``at`` (seconds since the epoch, store clock)."""

    node: int
    old: NodeState
    new: NodeState
    at: float


def pack_events(at: float, events: list[tuple[int, int, int]]) -> bytes:
    """One commit's group of (node, old, new) events for the event log (no version byte)."""
    return _GROUP.pack(at, len(events)) + b"".join(_EVENT.pack(*e) for e in events)


def unpack_events(data: bytes | None) -> list[NodeEvent]:
    """The events of a log written by :func:`pack_events` (with its version byte first).

    Raises PayloadError if the log is truncated or of an unknown version.
    """
    if not data:
        return []
    if data[:1] != EVENTS_VERSION:
        raise PayloadError(f"event log of unknown version {data[:1]!r}", data=data)
    events: list[NodeEvent] = []
    pos, end = 1, len(data)
    try:
        while pos < end:
            at, count = _GROUP.unpack_from(data, pos)
            pos += _GROUP.size
            stop = pos + count * _EVENT.size
            if stop > end:
                raise struct.error("truncated group")
            for node, old, new in _EVENT.iter_unpack(data[pos:stop]):
                events.append(NodeEvent(node, NodeState(old), NodeState(new), at))
            pos = stop
    except (struct.error, ValueError) as exc:
        raise PayloadError(f"event log corrupt at byte {pos}: {exc}", data=data, error=exc)
    return events


def diff(states: bytes, changes: Mapping[int, int]) -> list[tuple[int, int, int]]:
    """The (node, old, new) events of applying ``changes`` to ``states``, in node order;
    a byte rewritten to its own value is no change."""
    size = len(states)
    out = []
    for i in sorted(changes):
        old = states[i] if i < size else 0
        new = int(changes[i])
        if old != new:
            out.append((i, old, new))
    return out
