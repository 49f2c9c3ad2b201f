"""Graphs that grow at run time: the nodes an expansion appends, and how they are stored.

An EXPAND node stands for a canvas to run once per item of its input, known only at run time.
When it becomes ready, the processor builds one sub-graph per item and appends them all to the
workflow as a :class:`Segment`: nodes numbered from ``offset`` (the graph's size then), whose
parents are either earlier nodes of the segment or nodes of the graph before it
(``external``: the EXPAND node's own parents, already settled), and the ``gather``
expression of the EXPAND node's value (the list of the items' results, in item order).

Stored as bytes (:func:`encode_segment`): a format-2 graph of the segment alone (local
indices; validated as any graph) plus the offset, the EXPAND node, the external parents and
the gather expression, each checked on decode (:func:`decode_segment`). Pure Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from dyrygent.core.codec import decode_graph, encode_graph
from dyrygent.core.graph import Expr, Graph, Node
from dyrygent.errors import PayloadError

__all__ = ["Segment", "decode_segment", "encode_segment", "extend_graph"]

_MAGIC = "dyrygent-segment"
_VERSION = 1


@dataclass(frozen=True)
class Segment:
    """Nodes appended by the expansion of node ``expand`` (see the module docstring).

    ``local`` is the segment as a graph of its own; ``external[j]`` the parents of its node
    ``j`` in the graph before it; ``gather`` the EXPAND node's value, in local indices.
    """

    offset: int
    expand: int
    local: Graph
    external: tuple[tuple[int, ...], ...]
    gather: Expr


def encode_segment(segment: Segment) -> bytes:
    """The segment as bytes."""
    data: bytes = msgpack.packb(
        [
            _MAGIC,
            _VERSION,
            segment.offset,
            segment.expand,
            [list(e) for e in segment.external],
            segment.gather,
            encode_graph(segment.local),
        ],
        use_bin_type=True,
    )
    return data


def _fail(message: str, data: bytes) -> PayloadError:
    return PayloadError(f"stored graph segment rejected: {message}", data)


def _local_refs_ok(expr: Any, n: int, depth: int = 0) -> bool:
    if depth > 64:
        return False
    if expr is None:
        return True
    if isinstance(expr, list):
        return all(_local_refs_ok(e, n, depth + 1) for e in expr)
    return type(expr) is int and 0 <= expr < n


def decode_segment(data: bytes, size: int) -> Segment:
    """Decode a segment appended to a graph of ``size`` nodes; raises PayloadError unless it
    is well formed, starts at ``size``, and its external parents and EXPAND node are
    nodes of the graph before it."""
    try:
        payload = msgpack.unpackb(bytes(data), raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise PayloadError(f"stored graph segment rejected: not msgpack ({exc})", data, exc)
    if not (isinstance(payload, list) and len(payload) == 7 and payload[:2] == [_MAGIC, 1]):
        raise _fail("not a dyrygent graph segment of a known version", data)
    _, _, offset, expand, external, gather, graph_bytes = payload
    if offset != size:
        raise _fail(f"it starts at node {offset!r}, but the graph has {size} nodes", data)
    if type(expand) is not int or not 0 <= expand < size:
        raise _fail(f"its EXPAND node {expand!r} is not in the graph", data)
    if not isinstance(graph_bytes, bytes):
        raise _fail("its nodes are not bytes", data)
    local = decode_graph(graph_bytes)
    n = len(local)
    if not (isinstance(external, list) and len(external) == n):
        raise _fail("its external parents do not match its nodes", data)
    for ps in external:
        if not (isinstance(ps, list) and all(type(p) is int and 0 <= p < size for p in ps)):
            raise _fail("an external parent is not a node of the graph before it", data)
    if not _local_refs_ok(gather, n):
        raise _fail("its gather expression refers outside the segment", data)
    return Segment(offset, expand, local, tuple(tuple(ps) for ps in external), gather)


def _shift(expr: Expr, by: int) -> Expr:
    if isinstance(expr, list):
        return [_shift(e, by) for e in expr]
    if expr is None:
        return None
    return int(expr) + by


def extend_graph(graph: Graph, segments: Sequence[Segment]) -> Graph:
    """``graph`` with ``segments`` appended in order (each must start where the last ended).

    Raises PayloadError for a segment out of place or a node id already in the graph."""
    nodes = list(graph.nodes)
    expansions = dict(graph.expansions)
    for seg in segments:
        if seg.offset != len(nodes):
            raise PayloadError(
                f"a graph segment starts at node {seg.offset}, but the graph has {len(nodes)}"
            )
        index = {n.id for n in nodes}
        for j, node in enumerate(seg.local.nodes):
            if node.id in index:
                raise PayloadError(f"a graph segment repeats node id {node.id!r}")
            parents = seg.external[j] + tuple(p + seg.offset for p in node.parents)
            nodes.append(
                Node(
                    node.id,
                    node.task,
                    node.spec,
                    parents,
                    _shift(node.input, seg.offset),
                    node.label,
                    node.rule,
                    node.kind,
                )
            )
        expansions[seg.expand] = (seg.offset, len(nodes), _shift(seg.gather, seg.offset))
    return Graph(nodes, graph.output, expansions)
