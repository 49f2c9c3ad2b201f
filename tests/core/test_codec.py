"""The versioned graph codec: round trips, and refusal of anything off (pure core)."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dyrygent.core.builder import GraphBuilder
from dyrygent.core.codec import FORMAT, MAGIC, decode_graph, encode_graph
from dyrygent.core.graph import NodeKind
from dyrygent.core.rules import RULES, TriggerRule
from dyrygent.errors import PayloadError
from tests.legacy.format1 import encode_graph_v1


def sample():
    b = GraphBuilder()
    b.add("a", "tasks.add", b"[[1,2],{},{}]")
    b.add("b", "tasks.add", b"[[3],{},{}]", parents=["a"], input="a", label="second")
    b.add(
        "c",
        "tasks.sum",
        b"[[],{},{}]",
        parents=["a", "b"],
        input=[["a"], "b"],
        rule=TriggerRule.ALL_DONE,
    )
    return b.freeze(output=["c", "a"])


def fields(graph):
    return [
        (n.id, n.task, n.spec, n.parents, n.input, n.label, n.rule, n.kind) for n in graph.nodes
    ], graph.output


def test_format_1_from_the_previous_release_still_decodes_with_default_attributes():
    # Given a graph as dyrygent 0.1 encoded it (no attributes)
    g = sample()
    decoded = decode_graph(encode_graph_v1(g))
    # Then every node and the output come back, with the default label, rule and kind
    assert [(n.id, n.task, n.spec, n.parents, n.input) for n in decoded.nodes] == [
        (n.id, n.task, n.spec, n.parents, n.input) for n in g.nodes
    ]
    assert decoded.output == g.output
    assert {(n.label, n.rule, n.kind) for n in decoded.nodes} == {
        (None, TriggerRule.ALL_SUCCESS, NodeKind.TASK)
    }


def test_attributes_are_sparse():
    # Given a graph where only b has a label and only c a rule
    attrs = msgpack.unpackb(encode_graph(sample()))[9]
    assert attrs == {"label": [[1, "second"]], "rule": [[2, RULES.index(TriggerRule.ALL_DONE)]]}


def test_round_trip():
    g = sample()
    assert fields(decode_graph(encode_graph(g))) == fields(g)


def tamper(**changes):
    payload = msgpack.unpackb(encode_graph(sample()))
    keys = [
        "magic",
        "format",
        "ids",
        "names",
        "task_of",
        "specs",
        "parents",
        "inputs",
        "output",
        "attrs",
    ]
    for k, v in changes.items():
        payload[keys.index(k)] = v
    return msgpack.packb(payload, use_bin_type=True)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\xc1garbage", "not msgpack"),
        (msgpack.packb({"a": 1}), "not a dyrygent graph"),
        (tamper(magic="other"), "not a dyrygent graph"),
        (tamper(format=FORMAT + 1), "unknown format version 3 .*same dyrygent version"),
        (tamper(format="2"), "unknown format version '2'"),
        (tamper(format=1), "format 1 has 9 fields, got 10"),
        (tamper(attrs=[]), "attributes are not a map"),
        (tamper(attrs={"colour": []}), "unknown node attribute 'colour'"),
        (tamper(attrs={"label": [[1, ""]]}), "node 1: the label is not a short string"),
        (tamper(attrs={"label": [[1, "x" * 201]]}), "node 1: the label is not a short string"),
        (tamper(attrs={"label": [[7, "x"]]}), "label attribute has a bad or repeated node"),
        (tamper(attrs={"label": [[1, "x"], [1, "y"]]}), "bad or repeated node index"),
        (tamper(attrs={"label": [1]}), "not an \\[index, value\\] pair"),
        (tamper(attrs={"rule": [[0, 99]]}), "node 0: unknown start rule 99"),
        (tamper(attrs={"kind": [[0, 42]]}), "node 0: unknown node kind 42"),
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


@st.composite
def labelled_dags(draw):
    n = draw(st.integers(0, 25))
    b = GraphBuilder()
    for i in range(n):
        parents = draw(st.lists(st.integers(0, i - 1), max_size=3, unique=True)) if i else []
        ids = [f"n{p}" for p in parents]
        label = draw(st.one_of(st.none(), st.text(min_size=1, max_size=20)))
        rule = draw(st.sampled_from(list(TriggerRule)))
        inp = draw(st.one_of(st.none(), st.just(ids[0] if ids else None), st.just(ids)))
        b.add(f"n{i}", f"t{i % 3}", f"[[{i}],{{}},{{}}]".encode(), ids, inp, label=label, rule=rule)
    output = [f"n{i}" for i in range(n)][-2:] if n else None
    return b.freeze(output=output)


@settings(max_examples=100, deadline=None)
@given(labelled_dags())
def test_random_graphs_round_trip(g):
    assert fields(decode_graph(encode_graph(g))) == fields(g)
