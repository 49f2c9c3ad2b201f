"""Real canvas objects on an app with no broker, and an in-memory runner for graphs.

Shared by the canvas tests (directly, or through the ``c`` fixture of conftest.py).
"""

from __future__ import annotations

from celery import Celery

from dyrygent import Workflow, register_workflow_processor
from dyrygent.core.graph import NodeState, evaluate
from dyrygent.core.tick import Outcome, apply_changes, find_all, plan_tick
from dyrygent.engine.spec import decode_spec

app = Celery("canvas-tests", broker="memory://", backend="cache+memory://", set_as_current=False)
register_workflow_processor(app)


@app.task(name="c.add")
def add(x, y):
    return x + y


@app.task(name="c.tsum")
def tsum(xs):
    return sum(xs)


@app.task(name="c.identity")
def identity(x):
    return x


@app.task(name="c.echo")
def echo(*a, **k):
    return [list(a), k]


@app.task(name="c.quiet", ignore_result=True)
def quiet():
    return None


FUNCS = {
    "c.add": add.run,
    "c.tsum": tsum.run,
    "c.identity": identity.run,
    "c.echo": echo.run,
    "celery.starmap": lambda task, it: [FUNCS[task["task"]](*args) for args in it],
    "celery.map": lambda task, it: [FUNCS[task["task"]](arg) for arg in it],
}


def run_graph(graph):
    """Execute a frozen graph in process, tick by tick as the processor would.

    Returns (result, calls) where calls maps node id -> (task, args, kwargs, wave).
    """
    states = bytearray(len(graph))
    results: dict[int, object] = {}
    calls = {}
    wave = 0
    while True:
        running = find_all(states, NodeState.LAUNCHED)
        plan = plan_tick(graph, bytes(states), {i: Outcome.SUCCEEDED for i in running})
        apply_changes(states, plan.changes)
        if plan.done:
            return evaluate(graph.output, results), calls
        assert plan.ready, "stuck: nothing running and nothing ready"
        wave += 1
        for i in plan.ready:
            node = graph.nodes[i]
            args, kwargs, _ = decode_spec(node.spec)
            if node.input is not None:
                args.insert(0, evaluate(node.input, results))
            results[i] = FUNCS[node.task](*args, **kwargs)
            calls[node.id] = (node.task, args, kwargs, wave)
            states[i] = NodeState.LAUNCHED


def run(canvas):
    wf = Workflow(app=app)
    wf.add_celery_canvas(canvas)
    return run_graph(wf.freeze())
