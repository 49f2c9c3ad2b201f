"""Versioned msgpack encoding of a graph, validated on every decode.

Layout (format 2), columnar so that 10,000 nodes stay small and fast::

    ["dyrygent", 2, ids, task_names, task_of, specs, parents, inputs, output, attrs]

``task_names`` is the table of distinct task names and ``task_of[i]`` indexes it. ``attrs``
holds the optional per-node attributes, sparse (only nodes that differ from the default):
``{"label": [[i, text], ...], "rule": [[i, rule index], ...], "kind": [[i, kind], ...]}``;
a new attribute is a new key. Format 1 (written by dyrygent 0.1) is the same without
``attrs``; it still decodes, so workflows in flight survive a rolling upgrade. Stored data
crosses a trust boundary (the broker and the result backend), so :func:`decode_graph` checks
every type, index and size and raises :class:`~dyrygent.errors.PayloadError` on anything off.
"""

from __future__ import annotations

from typing import Any

import msgpack

from dyrygent.core.graph import Expr, Graph, Node, NodeKind, check_acyclic
from dyrygent.core.rules import RULES, TriggerRule
from dyrygent.errors import CycleError, PayloadError

__all__ = ["FORMAT", "MAGIC", "decode_graph", "encode_graph"]

MAGIC = "dyrygent"
FORMAT = 2
#: Every format this release decodes.
FORMATS = (1, 2)
_FIELDS = {1: 9, 2: 10}
_MAX_EXPR_DEPTH = 64
_MAX_LABEL = 200
_RULE_INDEX = {rule: i for i, rule in enumerate(RULES)}
_KINDS = frozenset(int(k) for k in NodeKind)


def encode_graph(graph: Graph) -> bytes:
    """The graph as bytes (format :data:`FORMAT`)."""
    names: dict[str, int] = {}
    task_of = [names.setdefault(n.task, len(names)) for n in graph.nodes]
    nodes = graph.nodes
    data: bytes = msgpack.packb(
        [
            MAGIC,
            FORMAT,
            [n.id for n in nodes],
            list(names),
            task_of,
            [n.spec for n in nodes],
            [list(n.parents) for n in nodes],
            [n.input for n in nodes],
            graph.output,
            _attrs(graph),
        ],
        use_bin_type=True,
    )
    return data


def _attrs(graph: Graph) -> dict[str, list[list[Any]]]:
    attrs: dict[str, list[list[Any]]] = {}
    labels = [[i, n.label] for i, n in enumerate(graph.nodes) if n.label is not None]
    rules = [
        [i, _RULE_INDEX[n.rule]]
        for i, n in enumerate(graph.nodes)
        if n.rule is not TriggerRule.ALL_SUCCESS
    ]
    kinds = [[i, int(n.kind)] for i, n in enumerate(graph.nodes) if n.kind is not NodeKind.TASK]
    for key, column in (("label", labels), ("rule", rules), ("kind", kinds)):
        if column:
            attrs[key] = column
    return attrs


def _fail(message: str, data: bytes, error: BaseException | None = None) -> PayloadError:
    return PayloadError(f"stored workflow graph rejected: {message}", data, error)


def _check_expr(expr: Any, n: int, allowed: frozenset[int] | None, depth: int = 0) -> bool:
    if depth > _MAX_EXPR_DEPTH:
        return False
    if expr is None:
        return True
    if isinstance(expr, list):
        return all(_check_expr(e, n, allowed, depth + 1) for e in expr)
    if type(expr) is not int or not 0 <= expr < n:
        return False
    return allowed is None or expr in allowed


def decode_graph(data: bytes, *, max_nodes: int = 100_000, max_bytes: int = 256 * 2**20) -> Graph:
    """Decode and validate bytes made by :func:`encode_graph`.

    Raises PayloadError when the bytes are not a graph of a known format, exceed the limits,
    hold a wrong type, an index out of range, an input that is not among the node's parents,
    duplicate ids, or a cycle.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise _fail(f"expected bytes, got {type(data).__name__}", b"")
    if len(data) > max_bytes:
        raise _fail(f"{len(data)} bytes is over the limit of {max_bytes}", bytes(data))
    try:
        payload = msgpack.unpackb(
            data, raw=False, strict_map_key=True, max_bin_len=max_bytes, max_str_len=max_bytes
        )
    except Exception as exc:  # msgpack raises several unrelated types
        raise _fail(f"not msgpack ({exc})", bytes(data), exc) from exc
    if not (isinstance(payload, list) and len(payload) >= 2 and payload[0] == MAGIC):
        raise _fail("not a dyrygent graph", bytes(data))
    version = payload[1]
    if type(version) is not int or version not in FORMATS:
        raise _fail(
            f"unknown format version {version!r} (this dyrygent reads {FORMATS}); "
            f"run the same dyrygent version on clients and workers",
            bytes(data),
        )
    if len(payload) != _FIELDS[version]:
        raise _fail(
            f"format {version} has {_FIELDS[version]} fields, got {len(payload)}", bytes(data)
        )
    _, _, ids, names, task_of, specs, parents, inputs, output = payload[:9]
    if not all(isinstance(x, list) for x in (ids, names, task_of, specs, parents, inputs)):
        raise _fail("a column is not a list", bytes(data))
    n = len(ids)
    if n > max_nodes:
        raise _fail(f"{n} nodes is over the limit of {max_nodes}", bytes(data))
    if not (len(task_of) == len(specs) == len(parents) == len(inputs) == n):
        raise _fail("columns have different lengths", bytes(data))
    if not all(isinstance(i, str) and 0 < len(i) <= 255 for i in ids):
        raise _fail("a node id is not a short string", bytes(data))
    if len(set(ids)) != n:
        raise _fail("duplicate node ids", bytes(data))
    if not all(isinstance(t, str) and t for t in names):
        raise _fail("a task name is not a string", bytes(data))
    if not all(type(t) is int and 0 <= t < len(names) for t in task_of):
        raise _fail("a task index is out of range", bytes(data))
    if not all(isinstance(s, bytes) for s in specs):
        raise _fail("a node spec is not bytes", bytes(data))
    attrs = _decode_attrs(payload[9] if version >= 2 else {}, n, bytes(data))
    nodes = []
    for i in range(n):
        ps = parents[i]
        if not (isinstance(ps, list) and all(type(p) is int and 0 <= p < n for p in ps)):
            raise _fail(f"node {ids[i]!r} has a parent index out of range", bytes(data))
        inp: Expr = inputs[i]
        if not _check_expr(inp, n, frozenset(ps)):
            raise _fail(f"node {ids[i]!r} has an input that is not among its parents", bytes(data))
        nodes.append(
            Node(
                ids[i],
                names[task_of[i]],
                specs[i],
                tuple(ps),
                inp,
                attrs["label"].get(i),
                attrs["rule"].get(i, TriggerRule.ALL_SUCCESS),
                attrs["kind"].get(i, NodeKind.TASK),
            )
        )
    if not _check_expr(output, n, None):
        raise _fail("the workflow output refers outside the graph", bytes(data))
    try:
        check_acyclic(range(n), [node.parents for node in nodes])
    except CycleError as exc:
        raise _fail(
            f"the dependencies form a cycle through {len(exc.cycle) - 1} nodes", bytes(data), exc
        ) from None
    return Graph(nodes, output)


def _decode_attrs(attrs: Any, n: int, data: bytes) -> dict[str, dict[int, Any]]:
    """The sparse attribute columns of format 2, each value checked."""
    if not isinstance(attrs, dict):
        raise _fail("the node attributes are not a map", data)
    unknown = sorted(set(attrs) - {"label", "rule", "kind"})
    if unknown:
        raise _fail(f"unknown node attribute {unknown[0]!r}", data)
    out: dict[str, dict[int, Any]] = {"label": {}, "rule": {}, "kind": {}}
    for key, column in attrs.items():
        if not isinstance(column, list):
            raise _fail(f"the {key} attributes are not a list", data)
        for entry in column:
            if not (isinstance(entry, list) and len(entry) == 2):
                raise _fail(f"a {key} attribute is not an [index, value] pair", data)
            i, value = entry
            if type(i) is not int or not 0 <= i < n or i in out[key]:
                raise _fail(f"a {key} attribute has a bad or repeated node index", data)
            if key == "label":
                if not (isinstance(value, str) and 0 < len(value) <= _MAX_LABEL):
                    raise _fail(f"node {i}: the label is not a short string", data)
            elif key == "rule":
                if type(value) is not int or not 0 <= value < len(RULES):
                    raise _fail(f"node {i}: unknown start rule {value!r}", data)
                value = RULES[value]
            elif type(value) is not int or value not in _KINDS:
                raise _fail(f"node {i}: unknown node kind {value!r}", data)
            else:
                value = NodeKind(value)
            out[key][i] = value
    return out
