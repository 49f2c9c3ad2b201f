"""What signals and hooks cost a tick (:mod:`dyrygent.engine.notify`).

    .venv/bin/python -m benchmarks.notify_cost

No broker, no worker. Times (best of several runs): the check every tick makes,
``listening(header)``, with no receiver and no hook; and ``notify_tick`` for a tick that
launched 10,000 nodes, with one ``node_started`` receiver (O(changes)) and with none (then
only the per-signal receiver checks run).
"""

from __future__ import annotations

import timeit

from dyrygent import signals
from dyrygent.core.builder import GraphBuilder
from dyrygent.core.states import NodeState
from dyrygent.engine.notify import listening, notify_tick
from dyrygent.engine.spec import Header


def main(n: int = 10_000) -> None:
    header = Header()
    per_call = min(timeit.repeat(lambda: listening(header), number=100_000, repeat=5)) / 1e5
    print(f"listening(header), no receiver, no hook: {per_call * 1e9:.0f} ns per tick")
    builder = GraphBuilder()
    for i in range(n):
        builder.add(f"n{i}", "t", b"", parents=())
    graph = builder.freeze()
    changes = {i: NodeState.LAUNCHED for i in range(n)}

    def tick() -> None:
        notify_tick(object(), "wf", graph, header, changes, {}, n)

    def receiver(sender: object = None, **_: object) -> None:
        pass

    signals.node_started.connect(receiver, weak=False)
    try:
        took = min(timeit.repeat(tick, number=3, repeat=3)) / 3
    finally:
        signals.node_started.disconnect(receiver)
    print(
        f"notify_tick, {n} nodes launched, one node_started receiver: {took * 1e3:.1f} ms "
        f"({took / n * 1e6:.2f} us per change)"
    )
    took = min(timeit.repeat(tick, number=3, repeat=3)) / 3
    print(f"notify_tick, {n} nodes launched, no receiver: {took * 1e6:.1f} us")


if __name__ == "__main__":
    main()
