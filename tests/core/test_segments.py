"""Graph segments appended at run time: encoding, validation, extension (pure core)."""

from __future__ import annotations

import msgpack
import pytest

from dyrygent.core.builder import GraphBuilder
from dyrygent.core.graph import NodeKind
from dyrygent.core.segments import Segment, decode_segment, encode_segment, extend_graph
from dyrygent.errors import PayloadError


def base():
    b = GraphBuilder()
    b.add("hosts", "t.hosts", b"[[],{},{}]")
    b.add("x", "dyrygent.expand", b"[[],{},{},{}]", ["hosts"], "hosts", kind=NodeKind.EXPAND)
    b.add("sum", "t.sum", b"[[],{},{}]", ["x"], "x")
    return b.freeze(output="sum")


def two_items():
    """check(item) -> note(result), for 2 items: local nodes 0,1 (item 0), 2,3 (item 1)."""
    b = GraphBuilder()
    for i in range(2):
        b.add(f"c{i}", "t.check", f"[[{i}],{{}},{{}}]".encode())
        b.add(f"n{i}", "t.note", b"[[],{},{}]", [f"c{i}"], f"c{i}")
    return b.freeze(output=["n0", "n1"])


def segment():
    local = two_items()
    external = tuple((0,) if not n.parents else () for n in local.nodes)
    return Segment(3, 1, local, external, local.output)


def test_a_segment_round_trips_and_extends_the_graph():
    # Given a graph with an EXPAND node, and the segment of its expansion over two items
    g = base()
    seg = decode_segment(encode_segment(segment()), len(g))
    grown = extend_graph(g, [seg])
    # Then the new nodes follow, with global parents and inputs
    assert [n.id for n in grown.nodes] == ["hosts", "x", "sum", "c0", "n0", "c1", "n1"]
    assert [n.parents for n in grown.nodes[3:]] == [(0,), (3,), (0,), (5,)]
    assert [n.input for n in grown.nodes[3:]] == [None, 3, None, 5]
    # and the EXPAND node knows its range and its value's expression
    assert grown.expansions == {1: (3, 7, [4, 6])}
    assert grown.expansion_of(5) == 1 and grown.expansion_of(2) is None


def tamper(index, value):
    payload = msgpack.unpackb(encode_segment(segment()))
    payload[index] = value
    return msgpack.packb(payload, use_bin_type=True)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\xc1", "not msgpack"),
        (tamper(0, "other"), "not a dyrygent graph segment"),
        (tamper(2, 4), "it starts at node 4, but the graph has 3 nodes"),
        (tamper(3, 9), "its EXPAND node 9 is not in the graph"),
        (tamper(4, [[0], [], [7], []]), "an external parent is not a node of the graph before"),
        (tamper(4, [[0]]), "its external parents do not match its nodes"),
        (tamper(5, [0, 9]), "its gather expression refers outside the segment"),
        (tamper(6, "nodes"), "its nodes are not bytes"),
    ],
)
def test_a_hostile_segment_is_rejected(data, message):
    with pytest.raises(PayloadError, match=message):
        decode_segment(data, 3)


def test_a_segment_repeating_a_node_id_is_rejected():
    local = GraphBuilder()
    local.add("sum", "t.sum", b"[[],{},{}]")
    seg = Segment(3, 1, local.freeze(), ((0,),), 0)
    with pytest.raises(PayloadError, match="repeats node id 'sum'"):
        extend_graph(base(), [seg])
