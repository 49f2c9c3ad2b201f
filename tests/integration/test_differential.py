"""Differential tests: every canvas runs natively on Celery and through dyrygent, and both runs
must agree (README, Semantics).

For each case (a function building a fresh canvas from a task namespace; freezing mutates
canvases, so each run gets its own), we
  1. run it natively, ``c.apply_async().get()``, and record the ledger;
  2. clear the ledger and run it through ``Workflow().add_celery_canvas(c)``;
  3. compare (a) the result, or the exception type and message; (b) the multiset of
     (task, args, kwargs) the ``t.*`` tasks received; and, for dyrygent, (c) that every node
     started only after the nodes before it in its chains and chords had finished (ledger start
     time against the backend's ``date_done``), that every node ran exactly once (or never, once
     the workflow had failed), that task ids frozen into signatures before the conversion were
     kept, and that nothing marked ``never=1`` (a descendant of a failed node) ran.

Where native Celery is known to hang or be wrong, native is not run; the case carries the
hand-derived correct value and the reason (with the Celery issue number).
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import celery
import pytest
import workerapp
from celery import Celery, chain, chord, group
from celery.canvas import Signature, _chain, _chord, chunks, maybe_signature
from celery.exceptions import SoftTimeLimitExceeded, TaskRevokedError
from celery.result import AsyncResult, GroupResult

from dyrygent import Workflow
from dyrygent.core.graph import NodeState
from dyrygent.core.states import WorkflowStatus
from dyrygent.engine.stores import store_for
from tests.harness import wait_for

#: Bound on every ``.get()``; the whole file runs in well under a minute.
TIMEOUT = 15
#: How long the ledger must stay unchanged before we accept that nothing more will run. Only
#: used where there is no event to wait for: callbacks and errbacks Celery sends after the
#: result is stored, and proving that a native run launched nothing more after a failure.
QUIET = 0.4
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
NATIVE = object()  # "whatever native Celery returns"
FINAL = {WorkflowStatus.SUCCEEDED, WorkflowStatus.FAILED, WorkflowStatus.ERROR}
#: Node states of nodes that were launched (the others never ran).
RAN = {NodeState.LAUNCHED, NodeState.RUNNING, NodeState.SUCCEEDED, NodeState.FAILED}


#: Celery 5.7's chain() keeps an empty group between two tasks; 5.3 and 5.5 make it a chord.
EMPTY_GROUP_KEPT = not isinstance(
    chain(Signature("a"), group([]), Signature("b")).tasks[-1], _chord
)


#: Before Celery 5.7, a task replaced by a group (Task.replace) natively gets the group's
#: results in the order they finished (4 runs in 8 on 5.3); dyrygent keeps group order.
REPLACED_GROUP = "native orders a replacing group's results by finish before Celery 5.7"


def before_celery_57(reason: str, *calls: str) -> dict:
    """Case fields for a canvas native Celery before 5.7 gets wrong: native is not run there;
    the case's value and these ``calls`` rule (5.7 runs native as the reference)."""
    if celery.VERSION >= (5, 7):
        return {}
    return {"skip_native": reason, "calls": calls}


def call(task: str, *args: Any, **kwargs: Any) -> str:
    """One task call as compared between runs: ``call("t.add", 1, 2)``."""
    return json.dumps([task, list(args), kwargs], sort_keys=True)


@dataclass(frozen=True)
class Case:
    """One differential case; ``items`` are item numbers of the README's Semantics section
    (or shapes from its list of deliberate differences)."""

    id: str
    build: Callable[[Any], Any]  # task namespace -> a fresh canvas
    items: tuple = ()
    value: Any = NATIVE  # the value the README's Semantics section gives, asserted for both runs
    raises: type | None = None  # .get() raises this (with native's message)
    args: tuple = ()  # partial args for the whole canvas (apply_async(args=...))
    kwargs: tuple = ()  # partial kwargs for it, as (key, value) pairs
    skip_native: str = ""  # why native is not run; ``value``/``raises`` and ``calls`` rule
    calls: tuple = ()  # the expected calls when native is skipped
    only_native: tuple = ()  # calls native makes that dyrygent must not
    tail: bool = False  # callbacks/errbacks may still run after the result is ready
    replaces: bool = False  # Task.replace: replacement tasks run under new task ids
    check: Callable[[list], None] | None = None  # extra check of each run's ledger
    xfail: str = ""


@dataclass
class Run:
    outcome: tuple  # ("value", v) or ("raised", type, message)
    entries: list  # ledger entries [id, name, args, kwargs, pid, time]

    def calls(self) -> Counter:
        return calls_of(self.entries)


def calls_of(entries: list) -> Counter:
    """The multiset of calls; a task id passed as an argument (errbacks get the failed task's
    id) is replaced by the name of the task that ran under it, since ids differ between runs."""
    names = {e[0]: e[1] for e in entries if e[0]}

    def norm(v: Any) -> Any:
        if isinstance(v, str) and UUID.match(v):
            return f"<id of {names.get(v, 'a task that did not run')}>"
        if isinstance(v, list):
            return [norm(x) for x in v]
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        return v

    return Counter(json.dumps([e[1], norm(e[2]), norm(e[3])], sort_keys=True) for e in entries)


def outcome_of(get: Callable[[], Any]) -> tuple:
    try:
        return ("value", get())
    except Exception as exc:  # compared between the runs below
        return ("raised", type(exc), str(exc))


def wait_settled(ledger: Any, app: Any, quiet: float = QUIET, timeout: float = 10) -> None:
    """Wait until every task that started has finished and nothing new has started for
    ``quiet`` seconds (bounded by ``timeout``). Used where no single event says "nothing more
    will run": callbacks Celery sends after the result is stored, members still running after
    another failed, and (natively) chains that go on after a failure elsewhere."""
    last = [-1, time.monotonic()]

    def settled() -> bool:
        entries = ledger.entries()
        if len(entries) != last[0]:
            last[:] = [len(entries), time.monotonic()]
            return False
        if not all(AsyncResult(e[0], app=app).ready() for e in entries if e[0]):
            last[1] = time.monotonic()  # the quiet period starts once they have finished
            return False
        return time.monotonic() - last[1] >= quiet

    wait_for(settled, timeout, "the tasks to finish and the ledger to stop growing")


# -- walking a canvas as given (independent of dyrygent's conversion) ---------------------------


def _sig(obj: Any) -> Signature:
    return maybe_signature(obj)


def _header(sig: _chord) -> list:
    header = sig.tasks
    if isinstance(header, group):
        return list(header.tasks)
    if isinstance(header, Signature):
        return [header]
    return list(header)


def leaves(canvas: Any) -> list[Signature]:
    """The task signatures of a canvas, in order (``chunks`` is opaque: it makes its own)."""
    sig = _sig(canvas)
    if isinstance(sig, chunks):
        return []
    if isinstance(sig, _chord):
        return [x for m in _header(sig) for x in leaves(m)] + leaves(sig.body)
    if isinstance(sig, (_chain, group)):
        return [x for m in sig.tasks for x in leaves(m)]
    return [sig]


Flow = tuple[list, list, list]  # (first task ids, last task ids, (before, after) pairs)


def _sequence(parts: list[Flow]) -> Flow:
    firsts: list | None = None
    lasts: list = []
    pairs: list = []
    for starts, ends, before in parts:
        pairs += before
        if not starts and not ends:  # an empty group is skipped in a chain
            continue
        pairs += [(a, b) for a in lasts for b in starts]
        if firsts is None:
            firsts = starts
        lasts = ends
    return firsts or [], lasts, pairs


def _parallel(parts: list[Flow]) -> Flow:
    return (
        [x for part in parts for x in part[0]],
        [x for part in parts for x in part[1]],
        [x for part in parts for x in part[2]],
    )


def flow(canvas: Any) -> Flow:
    """What must run before what: each step of a chain (and a chord's body) starts after the
    previous step's last tasks finished. Read from the canvas tree as given."""
    sig = _sig(canvas)
    if isinstance(sig, chunks):
        return [], [], []
    if isinstance(sig, _chord):
        return _sequence([_parallel([flow(m) for m in _header(sig)]), flow(sig.body)])
    if isinstance(sig, _chain):
        return _sequence([flow(m) for m in sig.tasks])
    if isinstance(sig, group):
        return _parallel([flow(m) for m in sig.tasks])
    return [sig.id], [sig.id], []


# -- the runs -----------------------------------------------------------------------------------


def run_native(case: Case, tasks: Any, ledger: Any) -> Run:
    ledger.clear()
    canvas = case.build(tasks)
    outcome = outcome_of(
        lambda: canvas.apply_async(args=case.args, kwargs=dict(case.kwargs)).get(timeout=TIMEOUT)
    )
    if case.tail or outcome[0] == "raised":
        wait_settled(ledger, tasks.app)
    return Run(outcome, ledger.entries())


def run_dyrygent(case: Case, tasks: Any, ledger: Any, expected_calls: Counter) -> Run:
    ledger.clear()
    app = tasks.app
    canvas = case.build(tasks)
    # Every node keeps the task id Celery froze into its signature: freeze every other leaf
    # ourselves (dyrygent freezes the rest) and check those ids below.
    frozen = [leaf.freeze().id for leaf in leaves(canvas)[::2]]
    wf = Workflow()
    wf.add_celery_canvas(canvas, args=case.args, kwargs=dict(case.kwargs))
    assert wf.app == app  # may be the current_app proxy
    result = wf.apply_async()
    outcome = outcome_of(lambda: result.get(timeout=TIMEOUT))

    # The processor commits its final status right after storing the workflow's result; from
    # then on it launches nothing, so the node states below are final.
    store = store_for(app)
    try:
        wait_for(lambda: store.status(wf.id).status in FINAL, 10, "the final status")
    except TimeoutError:
        raise AssertionError(f"workflow {wf.id} outcome {outcome} store {store.status(wf.id)}")
    raw = store.status(wf.id).states
    states = {n.id: NodeState(raw[i]) for i, n in enumerate(wf.nodes)}
    launched = [i for i, s in states.items() if s in RAN]
    # Nodes already running when another one failed still finish (README, Semantics, item 29).
    wait_for(
        lambda: all(AsyncResult(i, app=app).ready() for i in launched),
        10,
        "every launched node to finish",
    )
    if case.tail:  # callbacks: wait for what native ran, then for nothing more to come
        try:
            wait_for(
                lambda: calls_of(ledger.entries()) == expected_calls,
                5,
                "the calls native made, callbacks included",
            )
        except TimeoutError:
            pass  # the comparison below shows the difference
        wait_settled(ledger, app)
    entries = ledger.entries()

    runs = Counter(e[0] for e in entries)
    for node in wf.nodes:
        if not node.task.startswith("t."):
            continue  # celery.map/starmap: their calls are recorded with no task id
        if states[node.id] not in RAN:
            assert runs[node.id] == 0, f"{node} ran though never launched"
        elif case.replaces:
            assert runs[node.id] >= 1, f"{node} never ran"
        else:
            assert runs[node.id] == 1, f"{node} ran {runs[node.id]} times"
    if not (case.replaces or case.tail):  # nothing else ran, but callbacks and replacements
        # (map members run inside their node, with no id)
        assert set(runs) <= {n.id for n in wf.nodes} | {None}

    if outcome[0] == "value":
        assert all(s is NodeState.SUCCEEDED for s in states.values()), states
    task_of = {n.id: n.task for n in wf.nodes}
    for task_id in frozen:
        assert task_id in task_of, f"the frozen id {task_id} was not kept"
        if states[task_id] is NodeState.SUCCEEDED:
            if task_of[task_id].startswith("t."):
                assert runs[task_id] >= 1, f"no task ran under the frozen id {task_id}"
            AsyncResult(task_id, app=app).get(timeout=5)  # the node's own result is there

    # (c) order: each node started after the nodes it comes after had finished.
    started: dict[str, float] = {}
    for e in entries:
        started[e[0]] = min(started.get(e[0], e[5]), e[5])
    for before, after in flow(canvas)[2]:
        if after in started:
            done = AsyncResult(before, app=app).date_done
            assert done is not None, f"{after} ran though {before} did not finish"
            if done.tzinfo is None:  # the database backend stores naive UTC
                done = done.replace(tzinfo=timezone.utc)
            assert datetime.fromtimestamp(started[after], timezone.utc) > done, (
                f"{after} started before {before} finished"
            )
    return Run(outcome, entries)


def assert_never_ran(run: Run) -> None:
    """Nodes built with ``never=1`` are descendants of a failed node: they must not run."""
    assert not [e for e in run.entries if e[3].get("never")]


def differential(case: Case, tasks: Any, ledger: Any) -> None:
    # One app per client in these tests: the canvas's app is the current one (see
    # test_workflow_takes_the_app_of_the_canvas_tasks for a client with several apps).
    tasks.app.set_current()
    if case.skip_native:
        expected = (
            ("value", case.value)
            if case.raises is None
            else ("raised", case.raises, str(case.raises("expected failure")))
        )
        expected_calls = Counter(case.calls)
    else:
        native = run_native(case, tasks, ledger)
        if case.raises is None:
            assert native.outcome[0] == "value", native.outcome
            if case.value is not NATIVE:
                assert native.outcome[1] == case.value  # the README's Semantics section states it
        else:
            assert native.outcome[:2] == ("raised", case.raises), native.outcome
            assert_never_ran(native)
        if case.check:
            case.check(native.entries)
        expected = native.outcome
        expected_calls = native.calls() - Counter(case.only_native)
        for c in case.only_native:
            assert c in native.calls(), f"native did not run {c}"

    mine = run_dyrygent(case, tasks, ledger, expected_calls)
    # (a) the same result, or the same exception type and message
    assert mine.outcome[: len(expected)] == expected
    if case.value is not NATIVE:
        assert mine.outcome == ("value", case.value)
    # (b) every node received the same arguments
    assert mine.calls() == expected_calls
    if mine.outcome[0] == "raised":
        assert_never_ran(mine)
    if case.check:
        case.check(mine.entries)


# -- the cases ----------------------------------------------------------------------------------


def linked(sig: Any, callback: Any) -> Any:
    sig.link(callback)
    return sig


def linked_error(sig: Any, errback: Any) -> Any:
    sig.link_error(errback)
    return sig


def started_apart(first: str, second: str, at_least: float) -> Callable[[list], None]:
    """A ledger check: the call ``second`` started ``at_least`` seconds after ``first`` (a
    countdown counts from the publish, after ``first`` ended; 5% slack for the ETA timer)."""

    def check(entries: list) -> None:
        when = {call(e[1], *e[2], **e[3]): e[5] for e in entries}
        assert when[second] - when[first] >= at_least, when

    return check


def tagged(**counts: int) -> Callable[[list], None]:
    """A ledger check: the calls made with ``tag=name`` (errbacks) ran ``counts[name]`` times
    each, so that a case where no errback runs at all cannot pass by agreeing on nothing."""

    def check(entries: list) -> None:
        seen = Counter(e[3]["tag"] for e in entries if "tag" in e[3])
        assert seen == Counter(counts), seen

    return check


def deep(t: Any, levels: int) -> Any:
    """chain(group(2), chain(group(2), ... tsum)) (celery 3571: x4 message size per level)."""
    inner = t.tsum.s()
    for _ in range(levels - 1):
        inner = chain(group(t.tsum.s(), t.tsum.s()), inner)
    return chain(group(t.add.si(1, 1), t.add.si(2, 2)), inner)


def chords_in_a_chain(t: Any, n: int) -> Any:
    """chord | chord | ... (celery 5000, 5286: x12 message size per chord up to Celery 5.6)."""
    steps = [chord([t.add.si(1, 1), t.add.si(2, 2)], t.tsum.s())]
    steps += [chord([t.add.s(1), t.add.s(2)], t.tsum.s()) for _ in range(n - 1)]
    return chain(*steps)


def typed(cls: type, canvas: Any) -> Any:
    # README, Semantics, item 22: chain(x) / chain(a, b, **opts) vs a | b
    assert type(canvas) is cls
    return canvas


ERR = workerapp.ExpectedError

CASES = [
    # Arguments
    Case("1-partial-args", lambda t: t.echo.s(2), (1,), [[10, 2], {}], args=(10,)),
    Case(
        "1-partial-kwargs-merge",
        lambda t: t.echo.s(2, a=1, b=2).clone(args=(10,), kwargs={"b": 3}),
        (1,),
        [[10, 2], {"a": 1, "b": 3}],
    ),
    Case("2-chain-echo", lambda t: chain(t.echo.s(1), t.echo.s(2)), (2,), [[[[1], {}], 2], {}]),
    Case("2-chain-add", lambda t: typed(_chain, t.add.s(1, 2) | t.add.s(3)), (2, 22), 6),
    Case("3-immutable", lambda t: chain(t.add.s(1, 1), t.add.si(5, 5), t.add.s(1)), (3,), 11),
    Case("4-chain-partial-args", lambda t: chain(t.add.s(1), t.add.s(2)), (4,), 13, args=(10,)),
    Case(
        "4-group-partial-args",
        lambda t: group(t.add.s(1), t.add.s(2)),
        (4, 10),
        [11, 12],
        args=(10,),
    ),
    Case(
        "5-countdown",
        lambda t: chain(t.add.si(1, 1), t.add.s(1).set(countdown=1)),
        (5,),
        3,
        check=started_apart(call("t.add", 1, 1), call("t.add", 2, 1), 0.95),
    ),
    Case(
        "5-soft-time-limit",
        lambda t: chain(
            t.add.si(1, 1), t.sleep_then.s(seconds=5).set(soft_time_limit=0.5), t.echo.s(never=1)
        ),
        (5, 27),
        raises=SoftTimeLimitExceeded,
    ),
    # Groups
    Case("6-group-generator", lambda t: group(t.add.s(i, i) for i in range(3)), (6,), [0, 2, 4]),
    Case(
        "7-nested-groups",
        lambda t: group(group(t.add.si(1, 1), t.add.si(2, 2)), t.add.si(3, 3)),
        (7,),
        [2, 4, 6],
    ),
    Case(
        "8-chain-in-group",
        lambda t: group(chain(t.add.si(1, 1), t.add.s(10)), t.add.si(5, 5)),
        (8,),
        [12, 10],
    ),
    Case(
        "9-group-holding-chain-ending-in-group",
        lambda t: group(
            t.identity.si(1), chain(t.identity.si(5), group(t.identity.si(3), t.identity.si(4)))
        ),
        (9, "group holding a chain that ends in a group"),
        [1, [3, 4]],
    ),
    Case(
        "9-chain-ending-in-group-gets-parent",
        lambda t: group(
            t.identity.si(1), chain(t.identity.si(5), group(t.identity.s(), t.identity.s()))
        ),
        (9, 10, "group holding a chain that ends in a group"),
        [1, [5, 5]],
    ),
    Case(
        "10-broadcast",
        lambda t: t.add.s(5, 6) | group(t.add.s(1) | t.add.s(2), t.add.s(3)),
        (10,),
        [14, 14],
    ),
    Case(
        "11-group-member-fails",
        lambda t: group(t.add.si(1, 1), t.fail.si(), t.add.si(2, 2)),
        (11, 29),
        raises=ERR,
    ),
    Case(
        "11-group-branch-fails",
        lambda t: group(chain(t.add.si(1, 1), t.fail.s(), t.echo.s(never=1)), t.add.si(2, 2)),
        (11, 27, 29),
        raises=ERR,
    ),
    # Chords
    Case("12-chord", lambda t: chord([t.add.s(i, i) for i in range(3)], t.tsum.s()), (12,), 6),
    Case(
        "12-group-then-task",
        lambda t: group(t.add.s(i, i) for i in range(3)) | t.tsum.s(),
        (12, 23),
        6,
    ),
    Case(
        "13-header-order-not-completion-order",
        lambda t: chord([t.sleep_then.si(1, seconds=0.5), t.identity.si(2)], t.identity.s()),
        (13,),
        [1, 2],
    ),
    Case(
        "14-immutable-body",
        lambda t: chord([t.add.si(1, 1), t.add.si(2, 2)], t.echo.si(tag="body")),
        (14,),
        [[], {"tag": "body"}],
    ),
    # Native Celery returns [4, 2, 6] here (it applies the inner group out of order); README,
    # Semantics, item 15 says header order, so native is not the reference.
    Case(
        "15-group-in-header-unrolled",
        lambda t: chord([group(t.add.si(1, 1), t.add.si(2, 2)), t.add.si(3, 3)], t.identity.s()),
        (15,),
        [2, 4, 6],
        skip_native="native returns [4, 2, 6], a Celery bug (README, Semantics, item 15)",
        calls=(
            call("t.add", 1, 1),
            call("t.add", 2, 2),
            call("t.add", 3, 3),
            call("t.identity", [2, 4, 6]),
        ),
    ),
    Case(
        "16-chord-in-header",
        lambda t: chord(
            [chord([t.add.si(1, 1), t.add.si(2, 2)], t.tsum.s()), t.add.si(3, 3)], t.identity.s()
        ),
        (16,),
        [6, 6],
    ),
    Case(
        "16-chain-in-header",
        lambda t: chord([chain(t.add.si(1, 1), t.add.s(1)), t.add.si(3, 3)], t.identity.s()),
        (16,),
        [3, 6],
    ),
    Case(
        "17-chain-ending-in-group-in-header",
        lambda t: chord(
            group(chain(t.identity.s(42), group(t.identity.s(), t.identity.s()))), t.identity.s()
        ),
        (17,),
        [[42, 42]],
    ),
    Case(
        "18-group-body",
        lambda t: chord([t.add.si(1, 1), t.add.si(2, 2)], group(t.tsum.s(), t.identity.s())),
        (18,),
        [6, [2, 4]],
    ),
    Case(
        "18-body-one-element-chain-in-group",
        lambda t: chord([t.add.si(1, 1), t.add.si(2, 2)], group(chain(t.tsum.s()), t.identity.s())),
        (18, "chord body: one-element chain inside a group"),
        [6, [2, 4]],
    ),
    Case(
        "19-group-then-group",
        lambda t: group(t.add.si(1, 1), t.add.si(2, 2)) | group(t.tsum.s(), t.identity.s()),
        (19,),
        [6, [2, 4]],
    ),
    Case(
        "20-single-group-in-chain-unrolled",
        lambda t: chain(t.add.s(2, 2), group(t.add.s(1)), t.add.s(1)),
        (20,),
        6,
    ),
    Case(
        "20-single-header-not-unrolled",
        lambda t: chord([t.add.s(2, 5)], t.identity.s()),
        (20,),
        [7],
    ),
    Case("21-empty-group", lambda t: group([]), (21,), []),
    Case("21-empty-header", lambda t: chord([], t.identity.s()), (21,), []),
    Case(
        "21-empty-group-in-chain",
        lambda t: chain(t.add.si(1, 1), group([]), t.add.s(1)),
        (21,),
        # before Celery 5.7, chain() itself makes it add(1, 1) | chord([], add.s(1)): add([], 1)
        **({"value": 3} if EMPTY_GROUP_KEPT else {"raises": TypeError}),
    ),
    Case("22-one-task-chain", lambda t: typed(chain, chain(t.identity.si(1))), (22,), 1),
    # t.request_info returns what reached it besides its arguments (queue, priority, headers,
    # ETA, expiry, time limits). Natively a chain's own options go to its first task only
    # (the later steps are sent by the worker from the request's chain, with their own
    # options): the last step gets priority 0. dyrygent gives them to every step.
    Case(
        "22-chain-with-options",
        lambda t: typed(
            chain, chain(t.request_info.si(), t.add.si(1, 1), t.request_info.s(), priority=3)
        ),
        (22, 5),
        xfail="dyrygent applies a chain's own options to every step, native to the first only",
    ),
    Case(
        "23-chain-group-task-becomes-chord",
        lambda t: t.add.si(1, 1) | group(t.add.s(1), t.add.s(2)) | t.tsum.s(),
        (23, 10),
        7,
    ),
    Case(
        "23-task-after-chord-joins-body",
        lambda t: chord([t.add.si(1, 1), t.add.si(2, 2)], t.tsum.s()) | t.add.s(10),
        (23,),
        16,
    ),
    # map, starmap, chunks, replace, callbacks
    Case("24-map", lambda t: t.tsum.map([[1, 2], [3, 4]]), (24,), [3, 7]),
    Case("24-starmap", lambda t: t.add.starmap([(1, 1), (2, 2)]), (24,), [2, 4]),
    Case("24-chunks", lambda t: t.add.chunks(zip(range(4), range(4)), 2), (24,), [[0, 2], [4, 6]]),
    Case(
        "24-map-is-immutable-in-chain",
        lambda t: chain(t.add.si(1, 1), t.identity.map([5, 6]), t.tsum.s()),
        (24, 2),
        11,
    ),
    Case(
        "25-replace-with-chain-mid-chain",
        lambda t: chain(t.add.si(1, 1), t.replace_with.s(kind="chain"), t.add.s(1)),
        (25,),
        31,
        replaces=True,
    ),
    Case(
        "25-replace-with-group-in-group",
        lambda t: group(t.replace_with.si(5, kind="group"), t.identity.si(1)),
        (25,),
        [[6, 7], 1],
        replaces=True,
        **before_celery_57(
            REPLACED_GROUP,
            call("t.replace_with", 5, kind="group"),
            call("t.add", 5, 1),
            call("t.add", 5, 2),
            call("t.identity", 1),
        ),
    ),
    Case(
        "25-replace-in-chord-header",
        lambda t: chord(
            [t.replace_with.si(3), t.replace_with.si(3, kind="group"), t.add.si(1, 1)],
            t.identity.s(),
        ),
        (25,),
        [103, [4, 5], 2],
        replaces=True,
        **before_celery_57(
            REPLACED_GROUP,
            call("t.replace_with", 3),
            call("t.add", 3, 100),
            call("t.replace_with", 3, kind="group"),
            call("t.add", 3, 1),
            call("t.add", 3, 2),
            call("t.add", 1, 1),
            call("t.identity", [103, [4, 5], 2]),
        ),
    ),
    Case("26-link", lambda t: linked(t.add.s(2, 2), t.echo.s(tag="cb")), (26,), 4, tail=True),
    # Celery links a group's callback to its first member only, as an immutable clone
    # (celery.canvas.group.link); dyrygent follows native.
    Case(
        "26-group-link",
        lambda t: linked(group(t.add.si(1, 1), t.add.si(2, 2)), t.echo.s(tag="cb")),
        (26,),
        [2, 4],
        tail=True,
    ),
    Case(
        "26-chain-link",
        lambda t: linked(chain(t.add.si(1, 1), t.add.s(2)), t.echo.s(tag="cb")),
        (26,),
        4,
        tail=True,
    ),
    Case(
        "26-errback",
        lambda t: linked_error(t.fail.si(), t.echo.s(tag="eb")),
        (26,),
        raises=ERR,
        tail=True,
    ),
    Case(
        "26-chain-errback",
        lambda t: linked_error(
            chain(t.add.si(1, 1), t.fail.s(), t.echo.s(never=1)), t.echo.s(tag="eb")
        ),
        (26, 27),
        raises=ERR,
        tail=True,
    ),
    Case(
        "26-chord-errback-fires-once",
        lambda t: linked_error(
            chord([t.add.si(1, 1), t.fail.si()], t.echo.s(never=1)), t.echo.s(tag="eb")
        ),
        (26, 28),
        raises=ERR,
        tail=True,
    ),
    # Failure
    Case(
        "27-fail-mid-chain",
        lambda t: chain(t.add.si(1, 1), t.fail.s(), t.echo.s(never=1)),
        (27, 29),
        raises=ERR,
    ),
    Case(
        "28-chord-header-fails",
        lambda t: chord([t.add.si(1, 1), t.fail.si(), t.add.si(2, 2)], t.echo.s(never=1)),
        (28, 29),
        raises=ERR,
    ),
    # Independent branches go on after a failure, as natively: the chain in the first member
    # runs add(1, 1) after the other member failed.
    Case(
        "29-independent-branches-go-on-after-a-failure",
        lambda t: group(chain(t.sleep_then.si(1, seconds=1.0), t.add.s(1)), t.fail.si()),
        (29,),
        raises=ERR,
    ),
    # A new user's trial: the failing chain stops, the slow independent one still notifies
    Case(
        "29-a-slow-branch-still-notifies-after-another-failed",
        lambda t: group(
            chain(t.fail.si(), t.echo.si("x", never=1)),
            chain(t.sleep_then.si(1, seconds=0.5), t.echo.si("y")),
        ),
        (29,),
        raises=ERR,
    ),
    # Where native Celery fails
    Case("chain-of-chords", lambda t: chords_in_a_chain(t, 4), (12, "chain of chords"), 69),
    Case(
        "nested-chain-group-4-levels",
        lambda t: deep(t, 4),
        (19, "nested chain(group(2), chain(group(2), ...))"),
        48,
    ),
    Case(
        "lone-group-in-chain",
        lambda t: typed(chain, chain(group(t.add.si(1, 1), t.add.si(2, 2)))),
        ("lone group inside a chain",),
        [2, 4],
        **before_celery_57(
            "native .get() never returns before Celery 5.7 (seen on 5.3 and 5.5)",
            call("t.add", 1, 1),
            call("t.add", 2, 2),
        ),
    ),
    Case(
        "chain-ending-in-group",
        lambda t: chain(t.add.si(1, 1), group(t.add.s(1), t.add.s(2))),
        (10, "lone group inside a chain"),
        [3, 4],
    ),
    # celery 6437: an error before a group in a chain makes the native .get() hang, even on
    # 5.7, so native is not run: the correct outcome is the failed node's exception.
    Case(
        "6437-error-before-group-in-chain",
        lambda t: chain(t.add.si(1, 1), t.fail.s(), group(t.echo.s(never=1), t.echo.s(never=1))),
        (27, "error before a group in a chain"),
        raises=ERR,
        skip_native="celery 6437: native .get() never returns",
        calls=(call("t.add", 1, 1), call("t.fail", 2)),
    ),
    # celery 8182: a chained single group inside a group; the body ran too early on 5.5.
    Case(
        "8182-chained-single-group-in-group",
        lambda t: chain(
            group(t.sleep_then.s(1, seconds=0.5), chain(group(t.identity.si(3), t.identity.si(4)))),
            t.identity.s(),
        ),
        (9, 12, "chained single group inside a group"),
        [1, [3, 4]],
        **before_celery_57(
            "native returns [None, [3, 4]] before Celery 5.7 (seen on 5.3 and 5.5)",
            call("t.sleep_then", 1, seconds=0.5),
            call("t.identity", 3),
            call("t.identity", 4),
            call("t.identity", [1, [3, 4]]),
        ),
    ),
]

# Celery's own canvas suite (issue 16): the last semantic differences
CASES += [
    Case(
        "9772-empty-chains-in-group-skipped",
        lambda t: group(chain(), t.add.si(1, 2), chain(), t.add.si(3, 4)),
        ("empty chain",),
        [3, 7],
    ),
    Case(
        "9772-empty-chain-in-header-skipped",
        lambda t: chord([chain()], t.echo.s(tag="body")),
        ("empty chain",),
        [[[]], {"tag": "body"}],
    ),
    Case(
        "9772-args-go-past-a-leading-empty-chain",
        lambda t: typed(_chain, _chain(chain(), t.add.s(10))),
        ("empty chain", 4),
        15,
        args=(5,),
    ),
    Case(
        "1-partial-kwargs-of-a-whole-chain-go-to-its-first-task",
        lambda t: chain(t.echo.s(1, a=1), t.echo.s(2)),
        (1, 4),
        [[[[1], {"a": 2, "b": 3}], 2], {}],
        kwargs=(("a", 2), ("b", 3)),
    ),
    Case(
        "1-partial-kwargs-of-a-group-go-to-its-mutable-members",
        lambda t: group(t.echo.s(1), t.echo.si(2)),
        (1, 14),
        [[[1], {"b": 3}], [[2], {}]],
        kwargs=(("b", 3),),
    ),
    Case(
        "group-of-one-chain-ending-in-group-is-that-group",
        lambda t: group(t.add.s(1, 2) | group(t.add.s(1), t.add.s(2))),
        (9, 10),
        [4, 5],
    ),
    Case(
        "group-of-one-chain-of-an-empty-group",
        lambda t: group([chain(group([]))]),
        (9, 21),
    ),
    Case(
        "same-signature-object-repeated-runs-each",
        lambda t: group((t.identity.si(42),) * 4),
        (6, "same Signature object"),
        [42, 42, 42, 42],
    ),
    Case(
        "same-signatures-repeated-in-a-list",
        lambda t: (lambda a, b: group([a, b] * 3))(t.add.si(1, 1), t.add.si(2, 2)),
        (6, "same Signature object"),
        [2, 4, 2, 4, 2, 4],
    ),
    Case(
        "group-own-link-error-goes-to-its-tasks",
        lambda t: group(t.add.si(1, 1), t.fail.si()).set(link_error=[t.echo.s(tag="eb")]),
        (26,),
        raises=ERR,
        tail=True,
        check=tagged(eb=1),
    ),
    Case(
        "header-failure-calls-errbacks-of-group-body-tasks",
        lambda t: chord(
            [t.add.si(1, 1), t.fail.si()],
            group(
                t.echo.s(never=1).on_error(t.echo.s(tag="eb1")),
                t.echo.s(never=1).on_error(t.echo.s(tag="eb2")),
            ),
        ),
        (26, 28),
        raises=ERR,
        tail=True,
        check=tagged(eb1=1, eb2=1),
    ),
    Case(
        "chord-link-error-once-per-group-body-task",
        lambda t: linked_error(
            chord([t.add.si(1, 1), t.fail.si()], group(t.echo.s(never=1), t.echo.s(never=1))),
            t.echo.s(tag="eb"),
        ),
        (26, 28),
        raises=ERR,
        tail=True,
        check=tagged(eb=2),
    ),
    # Natively the outer chord stays PENDING for ever (its .get() never returns); dyrygent
    # fails it with the header's exception and calls both bodies' errbacks (README).
    Case(
        "nested-chord-header-fails-fails-the-outer-chord",
        lambda t: chord(
            [
                chord([t.fail.si()], t.echo.s(never=1).on_error(t.echo.si(tag="inner"))),
                t.add.si(1, 1),
            ],
            t.echo.s(never=1).on_error(t.echo.si(tag="outer")),
        ),
        (28, "nested chord whose header fails"),
        raises=ERR,
        tail=True,
        skip_native="the outer chord stays pending for ever natively",
        check=tagged(inner=1, outer=1),
        calls=(
            call("t.fail"),
            call("t.add", 1, 1),
            call("t.echo", tag="inner"),
            call("t.echo", tag="outer"),
        ),
    ),
]

RABBIT = {
    "2-chain-add",
    "7-nested-groups",
    "10-broadcast",
    "12-chord",
    "chain-of-chords",
    "27-fail-mid-chain",
    "28-chord-header-fails",
}


def params(cases: list[Case]) -> list:
    return [
        pytest.param(
            c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else []
        )
        for c in cases
    ]


@pytest.mark.parametrize("case", params(CASES))
def test_differential(case: Case, t: Any, ledger: Any) -> None:
    differential(case, t, ledger)


@pytest.mark.rabbitmq
@pytest.mark.parametrize("case", params([c for c in CASES if c.id in RABBIT]))
def test_differential_rabbitmq(case: Case, rt: Any, ledger: Any) -> None:
    differential(case, rt, ledger)


#: On the database result backend (PostgreSQL): the shapes, a failure in each, results
#: that are exceptions, and a partial-args case.
DATABASE = RABBIT | {
    "1-partial-args",
    "11-group-branch-fails",
    "16-chord-in-header",
    "25-replace-with-chain-mid-chain",
    "29-independent-branches-go-on-after-a-failure",
    "nested-chain-group-4-levels",
}


@pytest.mark.parametrize("case", params([c for c in CASES if c.id in DATABASE]))
def test_differential_database(case: Case, dt: Any, ledger: Any) -> None:
    differential(case, dt, ledger)


def test_revoking_one_task_of_a_chain_ends_the_workflow(t: Any, ledger: Any) -> None:
    """Native: the steps after a revoked task stay PENDING forever (the chain's .get() never
    returns). dyrygent: the workflow fails with TaskRevokedError and launches nothing more."""
    t.app.set_current()

    def build() -> tuple[Any, str, str]:
        revoked, last = t.add.s(1), t.echo.s(never=1)
        revoked.freeze()
        last.freeze()
        replies = t.app.control.revoke(revoked.id, reply=True, timeout=5, limit=1)
        assert replies, "the worker did not confirm the revoke"
        return chain(t.add.si(1, 1), revoked, last), revoked.id, last.id

    # Given a chain whose second task was revoked before it was sent
    canvas, revoked, last = build()
    # When it runs natively, Then the revoked task is marked REVOKED and the rest never runs
    canvas.apply_async()
    wait_for(lambda: AsyncResult(revoked, app=t.app).state == "REVOKED", 10, "the revoke")
    wait_settled(ledger, t.app)
    assert calls_of(ledger.entries()) == Counter([call("t.add", 1, 1)])
    assert AsyncResult(last, app=t.app).state == "PENDING"  # what native .get() waits on

    # When it runs through dyrygent, Then .get() raises TaskRevokedError
    ledger.clear()
    canvas, revoked, last = build()
    wf = Workflow()
    wf.add_celery_canvas(canvas)
    result = wf.apply_async()
    with pytest.raises(TaskRevokedError):
        result.get(timeout=TIMEOUT)
    store = store_for(t.app)
    wait_for(lambda: store.status(wf.id).status in FINAL, 10, "the final status")
    raw = store.status(wf.id).states
    states = {n.id: NodeState(raw[i]) for i, n in enumerate(wf.nodes)}
    # And the revoked node kept its id and failed, the step after it was never launched
    assert states[revoked] is NodeState.FAILED
    assert states[last] is NodeState.UPSTREAM_FAILED
    assert AsyncResult(revoked, app=t.app).state == "REVOKED"
    assert calls_of(ledger.entries()) == Counter([call("t.add", 1, 1)])


def test_frozen_leaf_keeps_its_task_id(t: Any, ledger: Any) -> None:
    """A signature frozen by the caller runs under that id; AsyncResult(id) gives its result."""
    t.app.set_current()
    leaf = t.add.s(2)
    frozen = leaf.freeze().id
    wf = Workflow()
    wf.add_celery_canvas(chain(t.add.si(1, 1), leaf, t.add.s(3)))
    assert wf.apply_async().get(timeout=TIMEOUT) == 7
    assert frozen in [n.id for n in wf.nodes]
    assert ledger.args_of()[frozen] == [[2, 2], {}]
    assert AsyncResult(frozen, app=t.app).get(timeout=5) == 4


def test_workflow_takes_the_app_of_the_canvas_tasks(t: Any) -> None:
    """With several apps in a client, native Celery publishes a group on its tasks' app."""
    other = Celery("another-app", broker="memory://", backend="cache+memory://")
    try:
        other.set_current()
        canvas = group(t.add.si(1, 1), t.add.si(2, 2))
        assert canvas.app is t.app  # what native apply_async() uses
        wf = Workflow()
        wf.add_celery_canvas(canvas)
        assert wf.app == t.app
    finally:
        t.app.set_current()


# -- the result handle walks like the native result (issue 16) ----------------------------------


def shape(res: Any) -> Any:
    """A result tree with ids left out: each node's kind, value, members and parent."""
    if res is None:
        return None
    if isinstance(res, GroupResult):
        return ("group", [shape(r) for r in res.results], shape(res.parent))
    return ("task", res.get(timeout=TIMEOUT), shape(res.parent))


def tuple_shape(t: Any) -> Any:
    """``as_tuple()`` with every id replaced by "id"."""
    if t is None:
        return None
    if isinstance(t, str):
        return "id"
    return [tuple_shape(x) for x in t]


TREES = {
    "chain": lambda t: chain(t.add.si(1, 1), t.add.s(2), t.add.s(3)),
    "chord": lambda t: chord([t.add.si(1, 1), t.add.si(2, 2)], t.tsum.s()),
    "chain-ending-in-group": lambda t: chain(t.add.si(1, 1), group(t.add.s(1), t.add.s(2))),
    "group-holding-chain-ending-in-group": lambda t: group(
        t.add.si(1, 1), chain(t.add.si(2, 2), group(t.add.s(1), t.add.s(2)))
    ),
}


@pytest.mark.parametrize("name", sorted(TREES))
def test_result_handle_has_the_native_shape(name: str, t: Any) -> None:
    """parent, results, len() and as_tuple() of the handle match the native result's."""
    t.app.set_current()
    # Given the same canvas run natively and through dyrygent
    native = TREES[name](t).apply_async()
    native_shape = shape(native)
    wf = Workflow()
    wf.add_celery_canvas(TREES[name](t))
    mine = wf.apply_async()
    # When the results are walked, Then they have the same shape and values
    assert mine.get(timeout=TIMEOUT) == native.get(timeout=TIMEOUT)
    assert shape(mine) == native_shape
    assert tuple_shape(mine.as_tuple()) == tuple_shape(native.as_tuple())
    # And the handle keeps the workflow id
    assert mine.id == wf.id


def test_group_result_handle_saves_and_restores(t: Any) -> None:
    """A canvas ending in a group: results[i].state, len(), save() and restore() work."""
    t.app.set_current()
    # Given a workflow ending in a group
    wf = Workflow()
    wf.add_celery_canvas(chain(t.add.si(1, 1), group(t.add.s(1), t.add.s(2))))
    res = wf.apply_async()
    assert res.get(timeout=TIMEOUT) == [3, 4]
    # Then its members are the group's nodes, each SUCCESS, and its parent the chain's step
    assert len(res.results) == len(res) == 2
    assert [r.state for r in res.results] == ["SUCCESS", "SUCCESS"]
    assert res.parent.get(timeout=TIMEOUT) == 2
    # When it is saved and restored, Then the restored GroupResult gives the same values
    res.save()
    restored = GroupResult.restore(res.id, app=t.app)
    assert restored.get(timeout=TIMEOUT) == [3, 4]
