"""The processor: one registered Celery task that drives every workflow, a tick per run.

A tick: claim the workflow (the generation fence in :mod:`dyrygent.engine.store`), read the
outcome of every LAUNCHED node in one batched read, plan (:func:`dyrygent.core.tick.plan_tick`),
publish the ready nodes with their parents' results injected, publish the next tick with a
countdown, then commit the changed node states. The same task, sent with ``gen=None`` by the
worker that ran a node (a ``task_postrun`` handler, asked for by a message header on nodes
launched in small batches), wakes the processor as soon as the node ends, so chain steps do
not wait for a countdown.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

from celery import states as celery_states
from celery.canvas import Signature
from celery.exceptions import ChordError
from celery.signals import task_postrun, worker_init

from dyrygent.core.codec import decode_graph
from dyrygent.core.graph import Graph, NodeState, evaluate, expr_refs
from dyrygent.core.tick import Outcome, in_flight, plan_tick
from dyrygent.engine.results import exception_of, outcome_of, read_metas
from dyrygent.engine.spec import decode_header, decode_spec, spec_extras
from dyrygent.engine.store import Store, store_for
from dyrygent.engine.trust import UNSAFE_SERIALIZERS, unseal
from dyrygent.errors import ConfigurationError, PayloadError, WorkflowError

__all__ = ["PROCESSOR_NAME", "Processor", "register_workflow_processor"]

logger = logging.getLogger("dyrygent.processor")

PROCESSOR_NAME = "dyrygent.processor"

#: A message header asking the worker that runs a node to wake the processor when the node
#: ends: [workflow id, processor publish options].
WAKE_HEADER = "dyrygent_wake"

#: Options every processor task gets unless the caller overrides them: the message is
#: acknowledged after the tick, and re-queued if the worker dies (RELIABILITY.md item 2).
DEFAULT_TASK_OPTIONS = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "ignore_result": True,
    "serializer": "json",
}


class _Everything(frozenset):
    """The set of every task name (known_tasks="*")."""

    def __rsub__(self, other: Any) -> frozenset:
        return frozenset()


class _Gone(Exception):
    """A result needed to build a node's arguments is no longer in the backend."""


class Processor:
    """The tick logic, bound to one Celery app; the registered task calls :meth:`run`."""

    def __init__(self, app: Any, name: str = PROCESSOR_NAME, *, min_interval: float = 0.02,
                 max_interval: float = 1.0, max_attempts: int = 5, max_errors: int = 100,
                 wake_limit: int = 32, cache_size: int = 64, known_tasks: Any = (),
                 allow_pickle: bool = False) -> None:
        self.app = app
        self.name = name
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.max_attempts = max_attempts
        self.max_errors = max_errors
        self.known_tasks = known_tasks
        self.allow_pickle = allow_pickle
        self.wake_limit = wake_limit
        self._cache: OrderedDict[str, tuple[Graph, dict]] = OrderedDict()
        self._cache_size = cache_size
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = store_for(self.app)
        return self._store

    # -- loading ---------------------------------------------------------------------------

    def _load(self, wf: str) -> tuple[Graph, dict]:
        cached = self._cache.get(wf)
        if cached is not None:
            self._cache.move_to_end(wf)
            return cached
        data, header = self.store.load(wf)
        if data is None or header is None:
            raise PayloadError(f"workflow {wf}: its graph is missing from the result backend "
                               f"(expired or deleted)")
        raw = unseal(self.app, wf, bytes(data), bytes(header))
        graph = decode_graph(bytes(data))
        unknown = sorted({n.task for n in graph.nodes} - self._known_tasks())
        if unknown:
            node = next(n for n in graph.nodes if n.task == unknown[0])
            raise PayloadError(
                f"workflow {wf}: node {node.id} names task {unknown[0]!r}, which this worker "
                f"does not know ({len(unknown)} unknown in all): register it here, or list "
                f"it in register_workflow_processor(app, known_tasks=[...])")
        loaded = (graph, decode_header(raw))
        self._cache[wf] = loaded
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return loaded

    def _known_tasks(self) -> frozenset[str] | _Everything:
        if self.known_tasks == "*":
            return _Everything()
        return frozenset(self.app.tasks) | frozenset(self.known_tasks or ())

    # -- the tick --------------------------------------------------------------------------

    def run(self, task: Any, wf: str, gen: int | None, idle: int = 0) -> str:
        """One tick for workflow ``wf``; returns what happened (for logs and tests).

        Errors are never final on their own: before the claim they are retried (a driver
        message) or dropped (a wake-up: the driver will come); during a tick they are retried
        under the same message id, which the fence lets back in, up to ``max_attempts``.
        """
        wake = gen is None
        token = task.request.id
        try:
            claim = self.store.claim(wf, gen, token, wake)
        except Exception as exc:
            if wake:
                logger.warning("dyrygent: workflow %s: wake-up dropped (%r)", wf, exc)
                return "dropped"
            logger.warning("dyrygent: workflow %s: claim failed (%r); retrying", wf, exc, exc_info=True)
            raise task.retry(exc=exc, countdown=self._backoff(task), max_retries=10_000)
        if claim.status == "early":
            raise task.retry(countdown=self.min_interval, max_retries=10_000)
        if claim.status == "expired":
            self._end_error(wf, token, claim.gen, WorkflowError(
                f"workflow {wf} passed its maximum age before finishing; raise "
                f"Workflow(max_age=...) for workflows that run longer"))
            return "error"
        if claim.status != "ok":
            return claim.status
        if claim.attempts > self.max_attempts:
            self._end_error(wf, token, claim.gen, WorkflowError(
                f"workflow {wf}: the processor's tick at generation {claim.gen} was interrupted "
                f"{claim.attempts - 1} times (worker killed, or an error each time: see the "
                f"worker log); giving up after max_attempts={self.max_attempts}"))
            return "error"
        try:
            graph, header = self._load(wf)
        except PayloadError as exc:
            self._end_error(wf, token, claim.gen, WorkflowError(str(exc)))
            return "error"
        try:
            return self._tick(task, wf, claim.gen, token, bytes(claim.states), graph, header,
                              idle, retick=claim.attempts > 1)
        except PayloadError as exc:  # untrusted content found mid-tick: final, not transient
            self._end_error(wf, token, claim.gen, WorkflowError(str(exc)))
            return "error"
        except Exception as exc:
            return self._tick_failed(task, wf, token, claim.gen, exc)

    def _tick_failed(self, task: Any, wf: str, token: str, gen: int, exc: Exception) -> str:
        """An error inside a tick (a backend or broker outage, most often) is retried under
        the same message id; it does not count as a crash. After ``max_errors`` retries the
        workflow ends in ERROR with the last error."""
        errors = task.request.retries + 1
        if errors > self.max_errors:
            self._end_error(wf, token, gen, WorkflowError(
                f"workflow {wf}: the processor's tick failed {errors} times in a row; last "
                f"error: {exc!r}"))
            return "error"
        logger.warning("dyrygent: workflow %s: tick %d failed (%r); retry %d of %d", wf, gen,
                       exc, errors, self.max_errors, exc_info=True)
        try:
            self.store.forgive(wf, token)
        except Exception:  # the store is what is down: the claim will count this one
            pass
        raise task.retry(exc=exc, countdown=self._backoff(task), max_retries=None)

    def _backoff(self, task: Any) -> float:
        """Exponential from min_interval, capped at 10 s: outages last seconds to minutes."""
        return min(10.0, self.min_interval * 2 ** min(task.request.retries, 16))

    def _tick(self, task: Any, wf: str, gen: int, token: str, states: bytes, graph: Graph,
              header: dict, idle: int, retick: bool = False) -> str:
        started = time.perf_counter()
        backend = self.app.backend
        nodes = graph.nodes
        running = in_flight(states)
        metas = dict(zip(running, read_metas(backend, [nodes[i].id for i in running])))
        observations = {i: outcome_of(m) for i, m in metas.items()}
        vanished = [i for i, m in metas.items() if states[i] == NodeState.RUNNING
                    and m.get("status") == celery_states.PENDING]
        if vanished:  # seen started, now unknown: its result expired or was evicted
            node = nodes[vanished[0]]
            self._end_error(wf, token, gen, WorkflowError(
                f"node {node.id} ({node.task}) was seen running, but its result has vanished "
                f"from the result backend (expired or evicted) before the processor saw it "
                f"finish: raise result_expires, and give Redis enough maxmemory"))
            return "error"
        plan = plan_tick(graph, states, observations)
        changes: dict[int, int] = dict(plan.changes)
        results = {i: m.get("result") for i, m in metas.items()
                   if observations[i] is Outcome.SUCCEEDED}

        if plan.failed is not None:
            i = plan.failed
            meta = metas.get(i) or read_metas(backend, [nodes[i].id])[0]
            exc = exception_of(meta, nodes[i].id)
            self._fail_enclosing_chords(graph.nodes[i], exc)
            backend.mark_as_failure(wf, exc, traceback=meta.get("traceback"))
            self.store.commit(wf, token, changes, gen + 1, "failed")
            logger.info("dyrygent: workflow %s failed at node %s (%s)", wf, nodes[i].id,
                        nodes[i].task)
            return "failed"

        try:
            if plan.done:
                self._fetch(backend, graph, set(expr_refs(graph.output)), results)
                backend.store_result(wf, evaluate(graph.output, results), celery_states.SUCCESS)
                self.store.commit(wf, token, changes, gen + 1, "succeeded")
                return "succeeded"
            needed = {r for i in plan.ready for r in expr_refs(nodes[i].input)}
            self._fetch(backend, graph, needed, results)
        except _Gone as exc:
            self._end_error(wf, token, gen, WorkflowError(str(exc)), changes)
            return "error"

        ready = self._not_yet_published(backend, graph, states, plan.ready, changes, retick)
        launched = self._launch(wf, token, graph, header, ready, results, changes)
        progressed = bool(plan.changes) or launched > 0
        idle = 0 if progressed else idle + 1
        elapsed = time.perf_counter() - started
        countdown = min(self.max_interval, max(self.min_interval * (2 ** idle), 4 * elapsed))
        if launched < len(ready):  # a publish failed: retry soon
            countdown = self.min_interval
        self._publish_tick(wf, header, gen + 1, idle, countdown)
        dirty = self.store.commit(wf, token, changes, gen + 1, "running")
        if dirty:
            self._publish_tick(wf, header, None, 0, None)
        return "running"

    def _not_yet_published(self, backend: Any, graph: Graph, states: bytes, ready: list[int],
                           changes: dict[int, int], retick: bool) -> list[int]:
        """Drop from ``ready`` the nodes an earlier, interrupted attempt already published.

        On a re-tick (this message's earlier attempt died before committing) every ready node
        may have been sent already; otherwise only the nodes READY at the start of the tick
        (a publish failed) may. If the backend shows such a node got anywhere (STARTED with
        task_track_started, RETRY, SUCCESS, ...) it is recorded as LAUNCHED instead of sent
        again: dyrygent never launches a node twice by itself.
        """
        carried = ready if retick else [i for i in ready if states[i] == NodeState.READY]
        if not carried:
            return ready
        metas = read_metas(backend, [graph.nodes[i].id for i in carried])
        seen = {i for i, m in zip(carried, metas) if m.get("status") != celery_states.PENDING}
        for i in seen:
            changes[i] = NodeState.LAUNCHED
        return [i for i in ready if i not in seen]

    def _fail_enclosing_chords(self, node: Any, exc: BaseException) -> None:
        """Fail the chords whose header holds ``node`` as Celery does: their bodies' errbacks
        are called (either style) and the bodies marked FAILURE with a ChordError."""
        for chord in spec_extras(node.spec).get("chord_errbacks") or ():
            body = Signature(chord["task"], options={"task_id": chord["id"],
                                                     "link_error": chord["link_error"]},
                             app=self.app)
            try:
                self.app.backend.chord_error_from_stack(
                    body, ChordError(f"Dependency {node.id} raised {exc!r}"))
            except Exception:  # an errback's failure must not stop the workflow's end
                logger.exception("dyrygent: calling the errbacks of chord body %s failed",
                                 chord["id"])

    def _fetch(self, backend: Any, graph: Graph, refs: set, results: dict) -> None:
        missing = sorted(r for r in refs if r not in results)
        if not missing:
            return
        for i, meta in zip(missing, read_metas(backend, [graph.nodes[i].id for i in missing])):
            if meta.get("status") != celery_states.SUCCESS:
                node = graph.nodes[i]
                raise _Gone(
                    f"the result of node {node.id} ({node.task}) succeeded but is no longer in "
                    f"the result backend (expired or evicted: raise result_expires above the "
                    f"workflow's duration)")
            results[i] = meta.get("result")

    def _launch(self, wf: str, token: str, graph: Graph, header: dict, ready: list[int],
                results: dict, changes: dict[int, int]) -> int:
        app = self.app
        defaults = header.get("node_options") or {}
        wake = None
        if len(ready) <= self.wake_limit:
            wake = [wf, header.get("processor_options") or {}]
        launched = 0
        with app.producer_or_acquire() as producer:
            for i in ready:
                node = graph.nodes[i]
                args, kwargs, options = decode_spec(node.spec)
                if node.input is not None:
                    args.insert(0, evaluate(node.input, results))
                options = {**defaults, **options}
                if (not self.allow_pickle
                        and str(options.get("serializer", "")).lower() in UNSAFE_SERIALIZERS):
                    raise PayloadError(
                        f"workflow {wf}: node {node.id} asks for serializer "
                        f"{options['serializer']!r}; the processor sends no pickle or yaml "
                        f"unless register_workflow_processor(app, allow_pickle=True)")
                if wake is not None:
                    options["headers"] = {**(options.get("headers") or {}), WAKE_HEADER: wake}
                try:
                    app.send_task(node.task, args, kwargs, task_id=node.id, root_id=wf,
                                  parent_id=token, producer=producer, **options)
                except Exception:  # broker errors are many types; the rest stay READY
                    logger.exception("dyrygent: workflow %s: publishing node %s failed; "
                                     "it stays READY for the next tick", wf, node.id)
                    break
                changes[i] = NodeState.LAUNCHED
                launched += 1
        return launched

    def _publish_tick(self, wf: str, header: dict, gen: int | None, idle: int,
                      countdown: float | None) -> None:
        options = dict(header.get("processor_options") or {})
        if countdown:
            options["countdown"] = countdown
        self.app.send_task(self.name, (wf, gen), {"idle": idle} if idle else {}, **options)

    def _end_error(self, wf: str, token: str, gen: int, exc: WorkflowError,
                   changes: dict[int, int] | None = None) -> None:
        logger.error("dyrygent: %s", exc)
        self.app.backend.mark_as_failure(wf, exc)
        self.store.commit(wf, token, changes or {}, gen + 1, "error")


def _wake_after_node(sender: Any = None, task: Any = None, state: str | None = None,
                     **_: Any) -> None:
    """task_postrun: a node launched with WAKE_HEADER ended; send its processor a wake-up.

    Runs after the node's result is stored, in every worker that registered the processor.
    A failed publish is logged and dropped: the processor's own next tick comes anyway, and
    the node's outcome must never depend on it (unlike a ``link`` callback, whose failed
    publish fails the task).
    """
    if task is None or state not in (celery_states.SUCCESS, celery_states.FAILURE):
        return
    try:
        wake = task.request.get(WAKE_HEADER)
    except Exception:  # no request context (eager calls)
        return
    if not (isinstance(wake, list) and len(wake) == 2 and isinstance(wake[0], str)
            and isinstance(wake[1], dict)):
        return
    try:
        task.app.send_task(PROCESSOR_NAME, (wake[0], None), **wake[1])
    except Exception as exc:
        logger.warning("dyrygent: could not wake the processor of workflow %s (%r); its next "
                       "tick will see the node", wake[0], exc)


task_postrun.connect(_wake_after_node, weak=False, dispatch_uid="dyrygent-wake-after-node")


def _check_serializers(app: Any, task_options: dict, allow_pickle: bool) -> None:
    """Refuse to run a processor that would accept pickle (RELIABILITY.md item 9)."""
    if allow_pickle:
        return
    accepted = {str(c).lower() for c in (app.conf.accept_content or ())}
    serializer = str(task_options.get("serializer", "json")).lower()
    if serializer == "pickle" or accepted & {"pickle", "application/x-python-serialize"}:
        raise ConfigurationError(
            "the dyrygent processor refuses to run while the app accepts pickle "
            f"(accept_content={sorted(accepted)}, serializer={serializer!r}): a message from "
            "the broker could run arbitrary code. Accept json or msgpack only, or pass "
            "register_workflow_processor(app, allow_pickle=True) if you trust the broker")


def _valid_message(workflow_id: Any, gen: Any, idle: Any, extra: dict) -> bool:
    return (isinstance(workflow_id, str) and 0 < len(workflow_id) <= 64
            and (gen is None or (type(gen) is int and gen >= 0))
            and type(idle) is int and 0 <= idle <= 64 and not extra)


def register_workflow_processor(app: Any, **task_options: Any) -> Any:
    """Register the processor task on ``app`` and return it. Call once, in a module the
    workers import.

    ``task_options`` are Celery task options (queue, priority, ...) and the tick settings
    ``min_interval``, ``max_interval`` (seconds between ticks), ``max_attempts`` (ticks
    interrupted by a crash before the workflow ends in ERROR), ``max_errors`` (ticks in a row
    that failed with an exception, e.g. during an outage) and ``wake_limit`` (launches of one
    tick that get a completion wake-up). Raises ConfigurationError if the app accepts pickle, unless
    ``allow_pickle=True``; a worker started with such a configuration refuses to start.
    """
    settings = {k: task_options.pop(k) for k in
                ("min_interval", "max_interval", "max_attempts", "max_errors", "wake_limit",
                 "known_tasks")
                if k in task_options}
    allow_pickle = bool(task_options.pop("allow_pickle", False))
    settings["allow_pickle"] = allow_pickle
    existing = getattr(app, "_dyrygent_processor", None)
    if existing is not None:
        return existing
    _check_serializers(app, task_options, allow_pickle)
    processor = Processor(app, PROCESSOR_NAME, **settings)
    options = {**DEFAULT_TASK_OPTIONS, **task_options}

    @app.task(name=PROCESSOR_NAME, bind=True, shared=False, **options)
    def dyrygent_processor(self: Any, workflow_id: str, gen: int | None = None,
                           idle: int = 0, **extra: Any) -> None:
        if not _valid_message(workflow_id, gen, idle, extra):
            logger.error("dyrygent: rejected a processor message with invalid arguments "
                         "(workflow_id=%.80r, gen=%.20r, idle=%.20r, extra keys=%.80r); "
                         "nothing was launched", workflow_id, gen, idle, sorted(extra))
            return
        processor.run(self, workflow_id, gen, idle)

    def check_at_worker_start(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is app:
            _check_serializers(app, task_options, allow_pickle)

    worker_init.connect(check_at_worker_start, weak=False)
    dyrygent_processor._dyrygent = processor
    app._dyrygent_processor = dyrygent_processor
    return dyrygent_processor
