"""Micro-benchmarks of dyrygent's pure core, and of building a workflow through the public API.

    .venv/bin/python -m benchmarks.micro            # 1k, 10k, 100k nodes
    .venv/bin/python -m benchmarks.micro --quick    # 1k, 10k

No broker, no worker. The graph is the layered shape of the workflow benchmarks (a chain of
chords: layers of 99 header nodes + a body, each header taking the previous body's result and
each body the list of its headers'), with Celery-like 36-character ids and the spec
``encode_spec`` makes for a noop call. For each size it times (best of several runs):

* building it with GraphBuilder (``add`` per node) and ``freeze`` (validation, cycle check);
* ``encode_graph`` / ``decode_graph`` (what the client stores and a processor loads once per
  process and workflow), and the encoded size;
* ``graph.children`` (built lazily, once per process and workflow);
* ``plan_tick`` with 100 changed nodes, in two states: *layered* (mid-run, one layer of 99
  LAUNCHED headers seen SUCCEEDED, so 100 changes) and *wide* (every node LAUNCHED, 100 seen
  SUCCEEDED, the rest still RUNNING: what a tick of a 10k flat group sees);
* the per-node state: its size (one byte per node) and the cost of the scans a tick makes
  (``find_all`` LAUNCHED) and of the commit's runs of changed bytes;
* ``read_metas`` + ``outcome_of`` for as many LAUNCHED nodes, half of them finished, on
  values already fetched (decoding each meta: the CPU a tick spends per node still running).

Then it builds a 10,000-node workflow through the public API: ``Workflow.add_celery_canvas``,
``Workflow.freeze`` and ``encode_graph``, timed and traced (tracemalloc), canvas apart.
Writes benchmarks/out/micro.md.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from dyrygent.core.builder import GraphBuilder
from dyrygent.core.codec import decode_graph, encode_graph
from dyrygent.core.graph import Graph, NodeState
from dyrygent.core.tick import Outcome, find_all, plan_tick

OUT = Path(__file__).resolve().parent / "out"
WIDTH = 100  # nodes per layer: 99 headers + 1 body
CHANGED = 100
SPEC = b"[[], {}, {}]"  # encode_spec("", "bench.noop", [], {}, {})


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """(best wall time of ``repeat`` runs, the last value), collecting garbage before each."""
    times = []
    value = None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return min(times), value


def layered_ids(n: int) -> list[tuple[str, list[str], Any]]:
    """(id, parents, input) per node, layer by layer, for ``n`` nodes."""
    ids = [str(uuid.uuid4()) for _ in range(n)]
    out: list[tuple[str, list[str], Any]] = []
    prev_body: str | None = None
    for start in range(0, n, WIDTH):
        layer = ids[start : start + WIDTH]
        headers, body = layer[:-1], layer[-1]
        for h in headers:
            out.append((h, [prev_body] if prev_body else [], prev_body))
        out.append((body, headers, list(headers)))
        prev_body = body
    return out


def build(rows: list[tuple[str, list[str], Any]]) -> Graph:
    b = GraphBuilder()
    for node_id, parents, inp in rows:
        b.add(node_id, "bench.noop", SPEC, parents=parents, input=inp)
    return b.freeze(rows[-1][0])


def add_only(rows: list[tuple[str, list[str], Any]]) -> GraphBuilder:
    b = GraphBuilder()
    for node_id, parents, inp in rows:
        b.add(node_id, "bench.noop", SPEC, parents=parents, input=inp)
    return b


def states_layered(n: int) -> tuple[bytes, dict[int, Outcome]]:
    """Half the layers SUCCEEDED; the next layer's headers LAUNCHED and now seen SUCCEEDED."""
    layers = n // WIDTH
    cur = layers // 2
    st = bytearray(n)
    st[: cur * WIDTH] = bytes([NodeState.SUCCEEDED]) * (cur * WIDTH)
    first = cur * WIDTH
    obs = {}
    for i in range(first, first + WIDTH - 1):
        st[i] = NodeState.LAUNCHED
        obs[i] = Outcome.SUCCEEDED
    return bytes(st), obs


def states_wide(n: int) -> tuple[bytes, dict[int, Outcome]]:
    """Every node LAUNCHED; ``CHANGED`` spread-out nodes seen SUCCEEDED, the rest RUNNING
    (as the processor passes them: one observation per LAUNCHED node)."""
    st = bytes([NodeState.LAUNCHED]) * n
    step = max(1, n // CHANGED)
    done = set(range(0, n, step)[:CHANGED])
    return st, {i: (Outcome.SUCCEEDED if i in done else Outcome.RUNNING) for i in range(n)}


def wide_graph(n: int) -> Graph:
    b = GraphBuilder()
    for _ in range(n):
        b.add(str(uuid.uuid4()), "bench.noop", SPEC)
    return b.freeze()


def meta_decode_cost(n_launched: int) -> tuple[float, float]:
    """Seconds to decode and classify ``n_launched`` stored metas (half SUCCESS, half absent),
    the CPU part of a tick's ``read_metas`` (the MGET itself is one round trip):
    (read_metas on pre-fetched values, outcome_of over them)."""
    from celery import Celery

    from dyrygent.engine.results import outcome_of, read_metas

    app = Celery("micro-metas", broker="memory://", backend="cache+memory://")
    backend = app.backend
    payload = backend.encode(backend._get_result_meta(None, "SUCCESS", None, None))
    values = [payload if i % 2 == 0 else None for i in range(n_launched)]

    class Prefetched(type(backend)):  # type: ignore[misc]
        def mget(self, keys: Any) -> list:
            return values

    backend.__class__ = Prefetched
    ids = [str(uuid.uuid4()) for _ in range(n_launched)]
    t_read, metas = best(lambda: read_metas(backend, ids), 3)
    t_outcome, _ = best(lambda: [outcome_of(m) for m in metas], 3)
    return t_read, t_outcome


def core_row(n: int) -> dict[str, Any]:
    from dyrygent.engine.stores.base import change_runs  # the commit's (offset, bytes) runs

    rep = 5 if n <= 10_000 else 2
    ids = layered_ids(n)
    t_add, builder = best(lambda: add_only(ids), rep)
    t_freeze, graph = best(lambda: builder.freeze(ids[-1][0]), rep)
    t_enc, data = best(lambda: encode_graph(graph), rep)
    t_dec, _ = best(lambda: decode_graph(data), rep)

    def children() -> Any:
        graph._children = None
        return graph.children

    t_children, _ = best(children, rep)
    st, obs = states_layered(n)
    t_plan, plan = best(lambda: plan_tick(graph, st, obs), 20)
    assert len(plan.changes) == CHANGED, len(plan.changes)
    t_find, _ = best(lambda: find_all(st, NodeState.LAUNCHED), 20)
    t_runs, runs = best(lambda: change_runs(plan.changes), 20)
    wg = wide_graph(n)
    _ = wg.children
    wst, wobs = states_wide(n)
    t_plan_wide, wplan = best(lambda: plan_tick(wg, wst, wobs), 5)
    assert sum(1 for s in wplan.changes.values() if s == NodeState.SUCCEEDED) == CHANGED
    t_metas, t_outcome = meta_decode_cost(n)
    print(
        f"core {n:>7,}: build {t_add + t_freeze:.3f} s, encode {t_enc:.3f} s, "
        f"decode {t_dec:.3f} s, {len(data):,} B, plan_tick {t_plan * 1e3:.3f} ms "
        f"(wide {t_plan_wide * 1e3:.2f} ms), read_metas {t_metas * 1e3:.1f} ms",
        flush=True,
    )
    return {
        "n": n,
        "add": t_add,
        "freeze": t_freeze,
        "encode": t_enc,
        "decode": t_dec,
        "bytes": len(data),
        "children": t_children,
        "plan": t_plan,
        "plan_wide": t_plan_wide,
        "find": t_find,
        "state_bytes": len(st),
        "runs": t_runs,
        "commit_bytes": sum(len(b) + len(str(o)) for o, b in runs),
        "metas": t_metas,
        "outcome": t_outcome,
    }


def workflow_row(n: int = 10_000) -> dict[str, Any]:
    """A ``n``-node layered workflow through the public API, no broker."""
    from celery import Celery, chain, chord

    from dyrygent import Workflow, register_workflow_processor

    app = Celery("micro", broker="memory://", backend="cache+memory://")
    register_workflow_processor(app)

    def noop_fn(*a: Any, **k: Any) -> None:
        return None

    noop = app.task(name="bench.noop")(noop_fn)
    layers = n // WIDTH

    def canvas() -> Any:
        return chain(
            *[chord([noop.s() for _ in range(WIDTH - 1)], noop.s()) for _ in range(layers)]
        )

    def stages(c: Any) -> dict[str, float]:
        t0 = time.perf_counter()
        wf = Workflow(app=app)
        wf.add_celery_canvas(c)
        t1 = time.perf_counter()
        g = wf.freeze()
        t2 = time.perf_counter()
        data = encode_graph(g)
        t3 = time.perf_counter()
        return {"convert": t1 - t0, "freeze": t2 - t1, "encode": t3 - t2, "bytes": len(data)}

    stages(canvas())  # warm up
    runs = []
    for _ in range(5):
        c = canvas()
        gc.collect()
        t0 = time.perf_counter()
        canvas()
        t_canvas = time.perf_counter() - t0
        r = stages(c)
        r["canvas"] = t_canvas
        runs.append(r)
    best_run = min(runs, key=lambda r: r["convert"] + r["freeze"] + r["encode"])
    from benchmarks.instrument import traced_memory

    canvas_mb, peak_mb = traced_memory(canvas, stages)
    total = best_run["convert"] + best_run["freeze"] + best_run["encode"]
    print(
        f"workflow {n:,}: canvas {best_run['canvas']:.3f} s, add_celery_canvas "
        f"{best_run['convert']:.3f} s, freeze {best_run['freeze']:.3f} s, encode "
        f"{best_run['encode']:.3f} s (total {total:.3f} s, median of totals "
        f"{statistics.median(r['convert'] + r['freeze'] + r['encode'] for r in runs):.3f} s), "
        f"peak {peak_mb:.1f} MB above the canvas ({canvas_mb:.1f} MB)",
        flush=True,
    )
    return {"n": n, **best_run, "total": total, "peak_mb": peak_mb, "canvas_mb": canvas_mb}


def report(rows: list[dict[str, Any]], wf: dict[str, Any]) -> str:
    ms = 1e3
    lines = [
        "# dyrygent micro-benchmarks (pure core, no broker)",
        "",
        f"Layered graph: layers of {WIDTH - 1} headers + 1 body; best of several runs. "
        f"plan_tick: {CHANGED} changed nodes. Command: `.venv/bin/python -m benchmarks.micro`.",
        "",
        "| nodes | GraphBuilder.add ms | freeze ms | encode ms | decode ms | encoded bytes "
        "| bytes/node | children ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['add'] * ms:.1f} | {r['freeze'] * ms:.1f} | "
            f"{r['encode'] * ms:.1f} | {r['decode'] * ms:.1f} | {r['bytes']:,} | "
            f"{r['bytes'] / r['n']:.0f} | {r['children'] * ms:.1f} |"
        )
    lines += [
        "",
        "Per tick, with 100 changed nodes:",
        "",
        "| nodes | plan_tick layered ms | plan_tick wide (all LAUNCHED) ms | state bytes "
        "| find_all LAUNCHED ms | commit runs ms | commit payload bytes "
        "| read_metas decode (all nodes LAUNCHED, half done) ms | outcome_of ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['plan'] * ms:.3f} | {r['plan_wide'] * ms:.2f} | "
            f"{r['state_bytes']:,} | {r['find'] * ms:.3f} | {r['runs'] * ms:.3f} | "
            f"{r['commit_bytes']:,} | {r['metas'] * ms:.1f} | {r['outcome'] * ms:.1f} |"
        )
    lines += [
        "",
        f"Building a {wf['n']:,}-node workflow through the public API "
        "(`Workflow.add_celery_canvas`, `freeze`, `encode_graph`; Celery app on `memory://`):",
        "",
        "| canvas s | add_celery_canvas s | freeze s | encode_graph s | total (canvas excluded) s "
        "| tracemalloc peak MB (above canvas) | canvas MB | encoded bytes |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {wf['canvas']:.3f} | {wf['convert']:.3f} | {wf['freeze']:.3f} | {wf['encode']:.3f} "
        f"| {wf['total']:.3f} | {wf['peak_mb']:.1f} | {wf['canvas_mb']:.1f} | {wf['bytes']:,} |",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1k and 10k nodes only")
    p.add_argument("--out", type=Path, default=OUT)
    a = p.parse_args(argv)
    sizes = [1_000, 10_000] if a.quick else [1_000, 10_000, 100_000]
    rows = [core_row(n) for n in sizes]
    wf = workflow_row(10_000)
    text = report(rows, wf)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "micro.md").write_text(text)
    print()
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
