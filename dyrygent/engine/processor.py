"""The tick: what the processor does for one workflow, wherever it runs.

A tick claims the workflow (the generation fence in :mod:`dyrygent.engine.store`), reads the
outcome of in-flight nodes in one batched read, plans (:func:`dyrygent.core.tick.plan_tick`),
publishes the ready nodes with their parents' results injected, then commits the changed node
states. Ticks run in three places: the processor task (:mod:`dyrygent.engine.registration`)
for the workflow's driver and wake-up messages, the client for the first tick, and the worker
that just ran a node (:mod:`dyrygent.engine.wake`).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

from celery import states as celery_states
from celery.exceptions import Reject

from dyrygent.core.codec import decode_graph
from dyrygent.core.graph import Graph, NodeState, evaluate, expr_refs
from dyrygent.core.states import WorkflowStatus
from dyrygent.core.tick import Outcome, in_flight, plan_tick
from dyrygent.engine.nodes import (
    Gone,
    fail_enclosing_chords,
    fetch_results,
    launch,
    not_yet_published,
)
from dyrygent.engine.results import exception_of, outcome_of, read_metas
from dyrygent.engine.spec import decode_header
from dyrygent.engine.stores import DEFAULT_LEASE, Claim, ClaimStatus, Store, store_for
from dyrygent.engine.trust import unseal
from dyrygent.engine.wake import PROCESSOR_NAME
from dyrygent.errors import PayloadError, WorkflowError
from dyrygent.signals import tick_claimed

__all__ = ["AGAIN_IN_PROCESS", "PROCESSOR_NAME", "Processor"]

logger = logging.getLogger("dyrygent.processor")


#: Ticks a process runs in a row while nodes keep ending during its ticks, before it hands
#: over to a wake-up message.
AGAIN_IN_PROCESS = 8


class _Everything(frozenset):
    """The set of every task name (known_tasks="*")."""

    def __rsub__(self, other: Any) -> frozenset:
        return frozenset()


class Processor:
    """The tick logic, bound to one Celery app; the registered task calls :meth:`run`."""

    def __init__(
        self,
        app: Any,
        name: str = PROCESSOR_NAME,
        *,
        min_interval: float = 0.02,
        max_interval: float = 1.0,
        max_attempts: int = 5,
        max_errors: int = 100,
        poll_window: int = 512,
        cache_size: int = 1024,
        known_tasks: Any = (),
        allow_pickle: bool = False,
        lease: float = DEFAULT_LEASE,
        idle_interval: float = 10.0,
    ) -> None:
        self.app = app
        self.name = name
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.idle_interval = max(idle_interval, max_interval)
        self.max_attempts = max_attempts
        self.max_errors = max_errors
        self.known_tasks = known_tasks
        self.allow_pickle = allow_pickle
        self.poll_window = poll_window
        self._turn = 0  # moves the polling window on at every tick
        self.lease = lease
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
            raise PayloadError(
                f"workflow {wf}: its graph is missing from the result backend (expired or deleted)"
            )
        raw = unseal(self.app, wf, bytes(data), bytes(header))
        graph = decode_graph(bytes(data))
        unknown = sorted({n.task for n in graph.nodes} - self._known_tasks())
        if unknown:
            node = next(n for n in graph.nodes if n.task == unknown[0])
            raise PayloadError(
                f"workflow {wf}: node {node.id} names task {unknown[0]!r}, which this worker "
                f"does not know ({len(unknown)} unknown in all): register it here, or list "
                f"it in register_workflow_processor(app, known_tasks=[...])"
            )
        loaded = (graph, decode_header(raw))
        self._remember(wf, loaded)
        return loaded

    def _remember(self, wf: str, loaded: tuple[Graph, dict]) -> None:
        self._cache[wf] = loaded
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _known_tasks(self) -> frozenset[str] | _Everything:
        if self.known_tasks == "*":
            return _Everything()
        return frozenset(self.app.tasks) | frozenset(self.known_tasks or ())

    # -- the tick --------------------------------------------------------------------------

    def run(self, task: Any, wf: str, gen: int | None, idle: int = 0) -> str:
        """One tick for workflow ``wf`` from a processor message; returns what happened.
        ``idle``: how many driver ticks in a row before this one found nothing to do.

        Errors are never final on their own: before the claim they are retried (a driver
        message) or dropped (a wake-up: the driver will come); during a tick they are retried
        under the same message id, which the fence lets back in, up to ``max_attempts``.
        """
        wake = gen is None
        token = task.request.id
        try:
            claim = self.store.claim(wf, gen, token, wake, self.lease)
        except Exception as exc:
            if wake:
                logger.warning("dyrygent: workflow %s: wake-up dropped (%r)", wf, exc)
                return "dropped"
            logger.warning("dyrygent: workflow %s: claim failed (%r); retrying", wf, exc)
            raise self._again(task, self._backoff(task), exc)
        if claim.status is ClaimStatus.EARLY or (claim.status is ClaimStatus.BUSY and not wake):
            # early: the tick that published this driver has not committed yet; busy: a
            # wake-up tick holds the workflow. Either way this is the workflow's driver: it
            # must not be lost, so it comes back shortly.
            countdown = min(
                self.max_interval, self.min_interval * 2 ** min(task.request.retries, 16)
            )
            raise self._again(task, countdown)
        return self._claimed(task, wf, token, claim, driver=not wake, idle=idle)

    def tick_here(
        self, wf: str, token: str, gen: int | None = None, loaded: tuple[Graph, dict] | None = None
    ) -> str:
        """Tick ``wf`` in this process, outside any processor message: the client's first
        tick (``gen`` 0, ``token`` an id of its own) or a wake-up tick in the worker that
        just ran a node (``token`` the node's id).

        If this process dies mid-tick, the hold lapses after ``lease`` seconds and the next
        claim takes it over as a re-tick: the driver, the node's own message if it comes
        back under acks_late, or another node's wake-up (which re-arms the driver). Errors
        release the hold and are logged, not raised: the driver carries on.
        """
        try:
            claim = self.store.claim(wf, gen, token, gen is None, self.lease)
        except Exception as exc:
            logger.warning("dyrygent: workflow %s: could not claim it here (%r)", wf, exc)
            return "dropped"
        if loaded is not None and wf not in self._cache:
            self._remember(wf, loaded)
        return self._claimed(None, wf, token, claim, driver=False)

    def _claimed(
        self, task: Any | None, wf: str, token: str, claim: Claim, driver: bool, idle: int = 0
    ) -> str:
        # a live holder renews every lease/5: a hold older than lease/4 may be dead
        if claim.status is ClaimStatus.BUSY and not driver and claim.age > self.lease / 4:
            self._watch(wf, claim)
        if claim.status is ClaimStatus.EXPIRED:
            self._end_expired(wf, token, claim.gen)
            return "error"
        if claim.status is not ClaimStatus.OK:
            return claim.status
        if claim.attempts > self.max_attempts:
            self._end_error(
                wf,
                token,
                claim.gen,
                WorkflowError(
                    f"workflow {wf}: the processor's tick at generation {claim.gen} was "
                    f"interrupted {claim.attempts - 1} times (worker killed, or an error each "
                    f"time: see the worker log); giving up after max_attempts={self.max_attempts}"
                ),
            )
            return "error"
        takeover = claim.attempts > 1 and not driver
        claimed_at = time.monotonic()
        try:
            graph, header = self._load(wf)
            if takeover:
                # a wake-up taking a dead hold over: the driver may have died holding it
                # (its message back only after a Redis visibility timeout), so re-arm one
                # for this generation; if the old one is alive too, the later one is stale
                self._publish_tick(wf, header, claim.gen, self.max_interval)
                takeover = False
            tick_claimed.send(
                sender=self, workflow_id=wf, gen=claim.gen, attempts=claim.attempts, driver=driver
            )
            outcome = self._tick(
                task,
                wf,
                claim.gen,
                token,
                bytes(claim.states),
                graph,
                header,
                retick=claim.attempts > 1,
                driver=driver,
                idle=idle,
                claimed_at=claimed_at,
            )
            for _ in range(AGAIN_IN_PROCESS):  # nodes ended while we held it: go on here
                if outcome != "again":
                    break
                claim = self.store.claim(wf, None, token, True, self.lease)
                if claim.status is ClaimStatus.EXPIRED:
                    self._end_expired(wf, token, claim.gen)
                    return "error"
                if claim.status is not ClaimStatus.OK:
                    return claim.status
                outcome = self._tick(
                    task,
                    wf,
                    claim.gen,
                    token,
                    bytes(claim.states),
                    graph,
                    header,
                    driver=False,
                    claimed_at=time.monotonic(),
                )
            if outcome == "again":
                self._publish_tick(wf, header, None, None)
                outcome = "running"
            return outcome
        except PayloadError as exc:  # untrusted content found: final, not transient
            self._end_error(wf, token, claim.gen, WorkflowError(str(exc)))
            return "error"
        except Exception as exc:
            if task is not None:
                return self._tick_failed(task, wf, token, claim.gen, exc, keep=takeover)
            logger.warning(
                "dyrygent: workflow %s: a tick in this process failed (%r); the driver carries on",
                wf,
                exc,
                exc_info=True,
            )
            if not takeover:  # (a takeover that could not re-arm the driver keeps the
                try:  # dead hold, so the next claim after the lease retries it)
                    self.store.release(wf, token)
                except Exception:  # the store is down: the lease frees it
                    pass
            return "deferred"

    def _watch(self, wf: str, claim: Claim) -> None:
        """A wake-up found the workflow held by a tick that has not renewed its hold for a
        while: if that holder is dead and nothing else comes (no node left running, the
        driver's message back only after a visibility timeout), nobody would claim it after
        the lease. So come back then: a wake-up message just past the lease."""
        try:
            _, header = self._load(wf)
            self._publish_tick(wf, header, None, max(self.lease - claim.age, 0) + 0.5)
        except Exception as exc:  # the driver, when it comes, still covers this
            logger.warning(
                "dyrygent: workflow %s: could not schedule a wake-up past a stale hold (%r)",
                wf,
                exc,
            )

    def _tick_failed(
        self, task: Any, wf: str, token: str, gen: int, exc: Exception, keep: bool = False
    ) -> str:
        """An error inside a tick (a backend or broker outage, most often) is retried under
        the same message id; it does not count as a crash. After ``max_errors`` retries the
        workflow ends in ERROR with the last error."""
        errors = task.request.retries + 1
        if errors > self.max_errors and self._holds(wf, gen, token):
            self._end_error(
                wf,
                token,
                gen,
                WorkflowError(
                    f"workflow {wf}: the processor's tick failed {errors} times in a row; last "
                    f"error: {exc!r}"
                ),
            )
            return "error"
        logger.warning(
            "dyrygent: workflow %s: tick %d failed (%r); retry %d of %d",
            wf,
            gen,
            exc,
            errors,
            self.max_errors,
            exc_info=True,
        )
        if not keep:
            try:  # give the hold up: the retry claims afresh, so this is no crash
                self.store.release(wf, token)
            except Exception:  # the store is what is down: the lease frees the hold
                pass
        raise self._again(task, self._backoff(task), exc)

    def _holds(self, wf: str, gen: int, token: str) -> bool:
        """Whether ``token`` holds ``wf`` now, claiming it again if it let it go (a failed
        successor publish commits and releases): only a holder may end a workflow."""
        try:
            if self.store.status(wf).holder == token:
                return True
            return self.store.claim(wf, gen, token, False, self.lease).status in (
                ClaimStatus.OK,
                ClaimStatus.EXPIRED,
            )
        except Exception:
            return False

    def _again(self, task: Any, countdown: float, exc: Exception | None = None) -> Exception:
        """The exception that brings this processor message back after ``countdown``.

        Normally Celery's retry (a new message under the same id). But when that message
        cannot be published (a broker outage, a full Redis), Celery rejects the current one
        *without* requeueing it, which would drop the workflow's driver; requeue it
        instead, after a pause so that a broker refusing every publish is not spun on.
        """
        try:
            return task.retry(exc=exc, countdown=countdown, max_retries=None)
        except Reject as rejected:
            if rejected.requeue:
                raise
            logger.warning(
                "dyrygent: processor message %s: its retry could not be published "
                "(%r); requeueing it",
                task.request.id,
                rejected.reason,
            )
            time.sleep(self.max_interval)
            return Reject(rejected.reason, requeue=True)

    def _backoff(self, task: Any) -> float:
        """Exponential from min_interval, capped at 10 s: outages last seconds to minutes."""
        return min(10.0, self.min_interval * 2 ** min(task.request.retries, 16))

    def _tick(
        self,
        task: Any | None,
        wf: str,
        gen: int,
        token: str,
        states: bytes,
        graph: Graph,
        header: dict,
        retick: bool = False,
        driver: bool = True,
        idle: int = 0,
        claimed_at: float | None = None,
    ) -> str:
        backend = self.app.backend
        nodes = graph.nodes
        flying = in_flight(states)
        running = self._window(flying)
        metas = dict(zip(running, read_metas(backend, [nodes[i].id for i in running])))
        observations = {i: outcome_of(m) for i, m in metas.items()}
        vanished = [
            i
            for i, m in metas.items()
            if states[i] == NodeState.RUNNING and m.get("status") == celery_states.PENDING
        ]
        if vanished:  # seen started, now unknown: its result expired or was evicted
            node = nodes[vanished[0]]
            self._end_error(
                wf,
                token,
                gen,
                WorkflowError(
                    f"node {node.id} ({node.task}) was seen running, but its result has vanished "
                    f"from the result backend (expired or evicted) before the processor saw it "
                    f"finish: raise result_expires, and give Redis enough maxmemory"
                ),
            )
            return "error"
        plan = plan_tick(graph, states, observations)
        changes: dict[int, int] = dict(plan.changes)
        results = {
            i: m.get("result") for i, m in metas.items() if observations[i] is Outcome.SUCCEEDED
        }

        if plan.failed is not None:
            i = plan.failed
            meta = metas.get(i) or read_metas(backend, [nodes[i].id])[0]
            exc = exception_of(meta, nodes[i].id)
            fail_enclosing_chords(self.app, graph.nodes[i], exc)
            backend.mark_as_failure(wf, exc, traceback=meta.get("traceback"))
            self.store.commit(wf, token, changes, gen + 1, WorkflowStatus.FAILED)
            logger.info(
                "dyrygent: workflow %s failed at node %s (%s)", wf, nodes[i].id, nodes[i].task
            )
            return "failed"

        try:
            if plan.done:
                fetch_results(backend, graph, set(expr_refs(graph.output)), results)
                backend.store_result(wf, evaluate(graph.output, results), celery_states.SUCCESS)
                self.store.commit(wf, token, changes, gen + 1, WorkflowStatus.SUCCEEDED)
                return "succeeded"
            needed = {r for i in plan.ready for r in expr_refs(nodes[i].input)}
            fetch_results(backend, graph, needed, results)
        except Gone as exc:
            self._end_error(wf, token, gen, WorkflowError(str(exc)), changes)
            return "error"

        ready = not_yet_published(backend, graph, states, plan.ready, changes, retick)
        launched = launch(
            self.app,
            wf,
            token,
            graph,
            header,
            ready,
            results,
            changes,
            allow_pickle=self.allow_pickle,
            renew=lambda: self.store.touch(wf, token),
            renew_at=(claimed_at or time.monotonic()) + self.lease / 5,
            renew_every=self.lease / 5,
        )
        # Nodes wake the processor when they end (WAKE_HEADER), so the next tick published
        # here is a backup: for wake-ups lost to a broker hiccup, nodes run by workers that
        # do not import dyrygent, or a publish that failed this tick (then: soon).
        # Only the driver (the self-re-enqueued message) advances the generation and
        # publishes its successor; a wake-up tick leaves the outstanding driver valid.
        # A driver that keeps finding nothing to do (the wake-ups do it all) backs off from
        # max_interval to idle_interval; one that finds work comes back at max_interval.
        next_gen = gen
        if driver:
            finished = any(v == NodeState.SUCCEEDED for v in plan.changes.values())
            idle = 0 if finished or ready else idle + 1  # a node seen starting is no work
            countdown = min(self.idle_interval, self.max_interval * 2 ** min(idle, 16))
            if launched < len(ready):
                countdown = self.min_interval  # a publish failed: soon
            try:
                self._publish_tick(wf, header, gen + 1, countdown, idle)
            except Exception:
                # this message stays the driver (it comes back: see _again), so keep what
                # was launched under the current generation, and let the error retry it
                self.store.commit(wf, token, changes, gen, WorkflowStatus.RUNNING)
                raise
            next_gen = gen + 1
        dirty = self.store.commit(wf, token, changes, next_gen, WorkflowStatus.RUNNING)
        if len(running) < len(flying) and plan.changes:
            dirty = True  # more in flight than this tick read, and it saw progress: go on
        return "again" if dirty else "running"

    def _window(self, running: list[int]) -> list[int]:
        """The in-flight nodes to read this tick: all of them up to ``poll_window``; beyond,
        the oldest half-window (they end first: queues are FIFO) and a half-window that
        moves on at every tick of this process over the rest, so every node is read
        eventually. (Not by generation: wake-up ticks leave the generation unchanged.)"""
        w = self.poll_window
        if len(running) <= w:
            return running
        half = w // 2
        rest = running[half:]
        self._turn += 1
        start = (self._turn * (w - half)) % len(rest)
        rotating = (rest + rest)[start : start + w - half]
        return sorted(set(running[:half]) | set(rotating))

    def _publish_tick(
        self, wf: str, header: dict, gen: int | None, countdown: float | None, idle: int = 0
    ) -> None:
        options = dict(header.get("processor_options") or {})
        if countdown:
            options["countdown"] = countdown
        self.app.send_task(self.name, (wf, gen, idle) if idle else (wf, gen), **options)

    def _end_expired(self, wf: str, token: str, gen: int) -> None:
        self._end_error(
            wf,
            token,
            gen,
            WorkflowError(
                f"workflow {wf} passed its maximum age before finishing; raise "
                f"Workflow(max_age=...) for workflows that run longer"
            ),
        )

    def _end_error(
        self,
        wf: str,
        token: str,
        gen: int,
        exc: WorkflowError,
        changes: dict[int, int] | None = None,
    ) -> None:
        logger.error("dyrygent: %s", exc)
        self.app.backend.mark_as_failure(wf, exc)
        self.store.commit(wf, token, changes or {}, gen + 1, WorkflowStatus.ERROR)
