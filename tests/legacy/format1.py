"""The graph encoder of dyrygent 0.1 (format 1), kept verbatim to prove that workflows it
stored still decode and complete (a rolling upgrade)."""

from __future__ import annotations

import msgpack


def encode_graph_v1(graph) -> bytes:
    """The graph as bytes, as dyrygent 0.1 wrote it."""
    names: dict[str, int] = {}
    task_of = [names.setdefault(n.task, len(names)) for n in graph.nodes]
    nodes = graph.nodes
    return msgpack.packb(
        [
            "dyrygent",
            1,
            [n.id for n in nodes],
            list(names),
            task_of,
            [n.spec for n in nodes],
            [list(n.parents) for n in nodes],
            [n.input for n in nodes],
            graph.output,
        ],
        use_bin_type=True,
    )
