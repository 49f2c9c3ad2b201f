"""The versioned graph codec: round trips, and refusal of anything off (pure core)."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dyrygent.core.codec import FORMAT, MAGIC, decode_graph, encode_graph
from dyrygent.core.graph import GraphBuilder
from dyrygent.errors import PayloadError


def sample():
    b = GraphBuilder()
    b.add("a", "tasks.add", b"[[1,2],{},{}]")
    b.add("b", "tasks.add", b"[[3],{},{}]", parents=["a"], input="a")
    b.add("c", "tasks.sum", b"[[],{},{}]", parents=["a", "b"], input=[["a"], "b"])
    return b.freeze(output=["c", "a"])


def fields(graph):
    return [(n.id, n.task, n.spec, n.parents, n.input) for n in graph.nodes], graph.output


def test_round_trip():
    g = sample()
    assert fields(decode_graph(encode_graph(g))) == fields(g)


def tamper(**changes):
    payload = msgpack.unpackb(encode_graph(sample()))
    keys = ["magic", "format", "ids", "names", "task_of", "specs", "parents", "inputs", "output"]
    for k, v in changes.items():
        payload[keys.index(k)] = v
    return msgpack.packb(payload, use_bin_type=True)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\xc1garbage", "not msgpack"),
        (msgpack.packb({"a": 1}), "not a dyrygent graph"),
        (tamper(magic="other"), "not a dyrygent graph"),
        (tamper(format=FORMAT + 1), "unknown format version 2 .*same dyrygent version"),
        (tamper(ids=["a", "a", "c"]), "duplicate node ids"),
        (tamper(ids=["a", 5, "c"]), "node id is not a short string"),
        (tamper(ids=["a", "b"]), "columns have different lengths"),
        (tamper(task_of=[0, 0, 9]), "task index is out of range"),
        (tamper(specs=[b"", "str", b""]), "spec is not bytes"),
        (tamper(parents=[[], [7], [0, 1]]), "parent index out of range"),
        (tamper(inputs=[None, 2, None]), "input that is not among its parents"),
        (tamper(inputs=[None, 0, [[0], "x"]]), "input that is not among its parents"),
        (tamper(parents=[[2], [0], [0, 1]]), "cycle"),
        (tamper(output=[5]), "output refers outside"),
    ],
)
def test_hostile_payloads_are_rejected(data, message):
    with pytest.raises(PayloadError, match=message):
        decode_graph(data)


def test_limits():
    data = encode_graph(sample())
    with pytest.raises(PayloadError, match="3 nodes is over the limit of 2"):
        decode_graph(data, max_nodes=2)
    with pytest.raises(PayloadError, match="over the limit of 10"):
        decode_graph(data, max_bytes=10)


def test_not_bytes():
    with pytest.raises(PayloadError, match="expected bytes, got str"):
        decode_graph("text")  # type: ignore[arg-type]


def test_header_is_stable():
    assert msgpack.unpackb(encode_graph(sample()))[:2] == [MAGIC, FORMAT]


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash_the_decoder(data):
    with pytest.raises(PayloadError):
        decode_graph(data)
