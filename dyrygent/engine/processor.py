"""The processor: claims a workflow for a tick, wherever the tick runs, and starts workflows.

A tick claims the workflow (the generation fence in :mod:`dyrygent.engine.stores`), then runs
:func:`dyrygent.engine.ticking.tick`. Ticks run in three places: the processor task
(:mod:`dyrygent.engine.registration`) for the workflow's driver and wake-up messages, the
client for the first tick (:meth:`Processor.start`), and the worker that just ran a node
(:mod:`dyrygent.engine.wake`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from celery.exceptions import Reject
from celery.utils import uuid

from dyrygent.core.codec import encode_graph
from dyrygent.core.graph import Graph
from dyrygent.core.states import NodeState, WorkflowStatus
from dyrygent.engine.failures import broker_calls
from dyrygent.engine.finishing import Finisher
from dyrygent.engine.hooks import Hooks
from dyrygent.engine.loading import Loaded, Loader
from dyrygent.engine.nodes import HoldLost
from dyrygent.engine.orphans import Orphans
from dyrygent.engine.spec import Header, encode_header
from dyrygent.engine.stores import (
    DEFAULT_LEASE,
    Claim,
    ClaimStatus,
    Store,
    records_keep,
    store_for,
)
from dyrygent.engine.ticking import AGAIN, tick
from dyrygent.engine.timing import PollWindow, Timing
from dyrygent.engine.trust import seal
from dyrygent.engine.wake import END, PROCESSOR_NAME, join_counters
from dyrygent.errors import PayloadError, WorkflowError
from dyrygent.signals import tick_claimed

if TYPE_CHECKING:
    from celery import Celery, Task

__all__ = ["AGAIN_IN_PROCESS", "PROCESSOR_NAME", "Processor"]

logger = logging.getLogger("dyrygent.processor")

#: Ticks a process runs in a row while nodes keep ending during its ticks, before it hands
#: over to a wake-up message.
AGAIN_IN_PROCESS = 8
_RUNNING = WorkflowStatus.RUNNING.value


class Processor:
    """The tick logic, bound to one Celery app; the registered task calls :meth:`run`."""

    def __init__(
        self,
        app: Celery,
        name: str = PROCESSOR_NAME,
        *,
        min_interval: float = 0.02,
        max_interval: float = 1.0,
        max_attempts: int = 5,
        max_errors: int = 100,
        poll_window: int = 512,
        cache_size: int = 1024,
        known_tasks: Collection[str] | str = (),
        allow_pickle: bool = False,
        lease: float = DEFAULT_LEASE,
        idle_interval: float = 10.0,
        orphan_grace: float | None = 10.0,
        max_node_relaunches: int = 3,
    ) -> None:
        self.app = app
        self.name = name
        self.timing = Timing(min_interval, max_interval, idle_interval, lease)
        self.max_attempts = max_attempts
        self.max_errors = max_errors
        self.window = PollWindow(poll_window)
        self.hooks = Hooks()
        self.orphans = Orphans(orphan_grace, max_node_relaunches)
        self.task: Any = None  # the registered Celery task (register_workflow_processor)
        self._known_tasks = known_tasks
        self._allow_pickle = allow_pickle
        self._cache_size = cache_size
        self._store: Store | None = None
        self._loader: Loader | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = store_for(self.app)
        return self._store

    @property
    def loader(self) -> Loader:
        if self._loader is None:
            self._loader = Loader(
                self.app, self.store, self._known_tasks, self._allow_pickle, self._cache_size
            )
        return self._loader

    @property
    def finisher(self) -> Finisher:
        return Finisher(self.app, self.store)

    # -- starting ---------------------------------------------------------------------------

    def start(
        self,
        wf: str,
        graph: Graph,
        header: Header,
        max_age: int,
        max_bytes: int,
        skipped: Collection[int] = (),
    ) -> None:
        """Check, store and start a workflow: the start protocol. ``skipped`` nodes start
        SUCCEEDED (their results already stored under their ids).

        The driver goes first, as the backup; then this client launches the roots itself,
        holding the workflow under an id of its own (if it dies, the driver takes over after
        the lease; under the driver's id, a slow first tick would look like a crash). Raises
        PayloadError (nothing stored or published) for a workflow the workers would refuse,
        LimitExceededError when the graph encodes to more than ``max_bytes``.
        """
        from dyrygent.errors import LimitExceededError  # noqa: PLC0415 (error path only)

        loaded = Loaded(graph, header)
        self.loader.check(wf, loaded)
        data = encode_graph(graph)
        if len(data) > max_bytes:
            raise LimitExceededError(
                f"the workflow's graph encodes to {len(data)} bytes, over max_bytes="
                f"{max_bytes}: pass smaller arguments (e.g. keys instead of data), split the "
                f"workflow, or raise Workflow(max_bytes=...)",
                limit="max_bytes",
            )
        sealed = seal(self.app, data, encode_header(header))
        states = bytearray(len(graph))
        joins = join_counters(graph)
        for i in skipped:  # as if they had ended: their joins are counted down already
            states[i] = NodeState.SUCCEEDED
            for c in graph.children[i] or [END]:
                if c in joins:
                    joins[c] -= 1
        self.store.create(
            wf, data, sealed, len(graph), max_age, joins=joins, states=bytes(states),
            keep=records_keep(self.app),
        )  # fmt: skip
        self.publish_tick(wf, header.processor_options, 0, self.timing.max_interval)
        self.tick_here(wf, f"client-{uuid()}", gen=0, loaded=loaded)

    # -- claiming ---------------------------------------------------------------------------

    def run(self, task: Task, wf: str, gen: int | None, idle: int = 0) -> str:
        """One tick for workflow ``wf`` from a processor message; returns what happened.
        ``idle``: how many driver ticks in a row before this one found nothing to do.

        Errors are never final on their own: before the claim they are retried (a driver
        message) or dropped (a wake-up: the driver will come); during a tick they are retried
        under the same message id, which the fence lets back in, up to ``max_attempts``.
        """
        wake = gen is None
        token = task.request.id
        kind = "wake" if wake else "driver"
        self.hooks.fire("before_run", kind, wf)
        outcome = "raised"
        try:
            try:
                claim = self.store.claim(wf, gen, token, wake, self.timing.lease)
            except Exception as exc:
                if wake:
                    logger.warning("dyrygent: workflow %s: wake-up dropped (%r)", wf, exc)
                    outcome = "dropped"
                    return outcome
                logger.warning("dyrygent: workflow %s: claim failed (%r); retrying", wf, exc)
                raise self.again(task, self.timing.backoff(task.request.retries), exc)
            if claim.status is ClaimStatus.EARLY or (claim.status is ClaimStatus.BUSY and not wake):
                # early: the tick that published this driver has not committed yet; busy: a
                # wake-up tick holds the workflow. Either way this is the workflow's driver:
                # it must not be lost, so it comes back shortly.
                raise self.again(task, self.timing.wait(task.request.retries))
            outcome = self._claimed(task, wf, token, claim, driver=not wake, idle=idle)
            return outcome
        finally:
            self.hooks.fire("after_run", kind, wf, outcome)

    def tick_here(
        self, wf: str, token: str, gen: int | None = None, loaded: Loaded | None = None
    ) -> str:
        """Tick ``wf`` in this process, outside any processor message: the client's first
        tick (``gen`` 0, ``token`` an id of its own) or a wake-up tick in the worker that
        just ran a node (``token`` the node's id).

        If this process dies mid-tick, the hold lapses after the lease and the next claim
        takes it over as a re-tick. Errors release the hold and are logged, not raised: the
        driver carries on.
        """
        self.hooks.fire("before_run", "here", wf)
        outcome = "dropped"
        try:
            try:
                claim = self.store.claim(wf, gen, token, gen is None, self.timing.lease)
            except Exception as exc:
                logger.warning("dyrygent: workflow %s: could not claim it here (%r)", wf, exc)
                return outcome
            if loaded is not None:
                self.loader.remember(wf, loaded)
            outcome = self._claimed(None, wf, token, claim, driver=False)
            return outcome
        finally:
            self.hooks.fire("after_run", "here", wf, outcome)

    def _claimed(
        self, task: Task | None, wf: str, token: str, claim: Claim, driver: bool, idle: int = 0
    ) -> str:
        if claim.status is ClaimStatus.BUSY and not driver and self.timing.may_be_dead(claim.age):
            self._watch(wf, claim)
        if claim.status is ClaimStatus.EXPIRED:
            self.finisher.expired(wf, token, claim.gen)
            return WorkflowStatus.ERROR.value
        if claim.status is not ClaimStatus.OK:
            return str(claim.status.value)
        if claim.attempts > self.max_attempts:
            self.finisher.error(
                wf,
                token,
                claim.gen,
                WorkflowError(
                    f"workflow {wf}: the processor's tick at generation {claim.gen} was "
                    f"interrupted {claim.attempts - 1} times (worker killed, or an error each "
                    f"time: see the worker log); giving up after max_attempts="
                    f"{self.max_attempts}"
                ),
            )
            return WorkflowStatus.ERROR.value
        takeover = claim.attempts > 1 and not driver
        try:
            loaded = self.loader.load(wf)
            if takeover:
                # a wake-up taking a dead hold over: the driver may have died holding it
                # (its message back only after a Redis visibility timeout), so re-arm one
                # for this generation; if the old one is alive too, the later one is stale
                self.publish_tick(
                    wf, loaded.header.processor_options, claim.gen, self.timing.max_interval
                )
                takeover = False
            return self._ticks(task, wf, token, claim, loaded, driver, idle)
        except HoldLost:  # the normal end of a hold that lapsed mid-launch: the taker goes on
            logger.info("dyrygent: workflow %s: this tick's hold was taken over; stopping", wf)
            return "taken over"
        except PayloadError as exc:  # untrusted content found: final, not transient
            self.finisher.error(wf, token, claim.gen, WorkflowError(str(exc)))
            return WorkflowStatus.ERROR.value
        except Exception as exc:
            if task is not None:
                return self._tick_failed(task, wf, token, claim.gen, exc, keep=takeover)
            logger.warning(
                "dyrygent: workflow %s: a tick in this process failed (%r); the driver carries on",
                wf,
                exc,
                exc_info=True,
            )
            if not takeover:  # (a takeover that could not re-arm the driver keeps the dead
                self._release(wf, token)  # hold, so the next claim after the lease retries)
            return "deferred"

    def _ticks(
        self,
        task: Task | None,
        wf: str,
        token: str,
        claim: Claim,
        loaded: Loaded,
        driver: bool,
        idle: int,
    ) -> str:
        """The claimed tick, and more in this process while nodes end during them."""
        self.hooks.fire("before_tick", wf, claim.gen, claim.attempts, driver)
        tick_claimed.send(
            sender=self, workflow_id=wf, gen=claim.gen, attempts=claim.attempts, driver=driver
        )
        outcome = tick(
            self,
            wf,
            claim.gen,
            token,
            bytes(claim.states),
            loaded,
            retick=claim.attempts > 1,
            driver=driver,
            idle=idle,
            claimed_at=time.monotonic(),
        )
        for _ in range(AGAIN_IN_PROCESS):  # nodes ended while we held it: go on here
            if outcome != AGAIN:
                break
            claim = self.store.claim(wf, None, token, True, self.timing.lease)
            if claim.status is ClaimStatus.EXPIRED:
                self.finisher.expired(wf, token, claim.gen)
                return WorkflowStatus.ERROR.value
            if claim.status is not ClaimStatus.OK:
                return str(claim.status.value)
            self.hooks.fire("before_tick", wf, claim.gen, claim.attempts, False)
            outcome = tick(
                self, wf, claim.gen, token, bytes(claim.states), loaded, driver=False,
                claimed_at=time.monotonic(),
            )  # fmt: skip
        if outcome == AGAIN:
            self.publish_tick(wf, loaded.header.processor_options, None, None)
            outcome = _RUNNING
        return outcome

    def _watch(self, wf: str, claim: Claim) -> None:
        """A wake-up found the workflow held by a tick that has not renewed its hold for a
        while: if that holder is dead and nothing else comes (no node left running, the
        driver's message back only after a visibility timeout), nobody would claim it after
        the lease. So come back then: a wake-up message just past the lease."""
        try:
            header = self.loader.load(wf).header
            countdown = max(self.timing.lease - claim.age, 0) + 0.5
            self.publish_tick(wf, header.processor_options, None, countdown)
        except Exception as exc:  # the driver, when it comes, still covers this
            logger.warning(
                "dyrygent: workflow %s: could not schedule a wake-up past a stale hold (%r)",
                wf,
                exc,
            )

    def _tick_failed(
        self, task: Task, wf: str, token: str, gen: int, exc: Exception, keep: bool = False
    ) -> str:
        """An error inside a tick (a backend or broker outage, most often) is retried under
        the same message id; it does not count as a crash. After ``max_errors`` retries the
        workflow ends in ERROR with the last error."""
        errors = task.request.retries + 1
        if errors > self.max_errors and self._holds(wf, gen, token):
            self.finisher.error(
                wf,
                token,
                gen,
                WorkflowError(
                    f"workflow {wf}: the processor's tick failed {errors} times in a row; "
                    f"last error: {exc!r}"
                ),
            )
            return WorkflowStatus.ERROR.value
        logger.warning(
            "dyrygent: workflow %s: tick %d failed (%r); retry %d of %d",
            wf,
            gen,
            exc,
            errors,
            self.max_errors,
            exc_info=True,
        )
        if not keep:  # give the hold up: the retry claims afresh, so this is no crash
            self._release(wf, token)
        raise self.again(task, self.timing.backoff(task.request.retries), exc)

    def _release(self, wf: str, token: str) -> None:
        try:
            self.store.release(wf, token)
        except Exception:  # the store is what is down: the lease frees the hold
            pass

    def _holds(self, wf: str, gen: int, token: str) -> bool:
        """Whether ``token`` holds ``wf`` now, claiming it again if it let it go (a failed
        successor publish commits and releases): only a holder may end a workflow."""
        try:
            if self.store.status(wf).holder == token:
                return True
            status = self.store.claim(wf, gen, token, False, self.timing.lease).status
            return status in (ClaimStatus.OK, ClaimStatus.EXPIRED)
        except Exception:
            return False

    # -- publishing -------------------------------------------------------------------------

    def again(self, task: Task, countdown: float, exc: Exception | None = None) -> Exception:
        """The exception that brings this processor message back after ``countdown``.

        Normally Celery's retry (a new message under the same id). But when that message
        cannot be published (a broker outage, a full Redis), Celery rejects the current one
        *without* requeueing it, which would drop the workflow's driver; requeue it instead,
        after a pause so that a broker refusing every publish is not spun on.
        """
        try:
            retry: Exception = task.retry(exc=exc, countdown=countdown, max_retries=None)
            return retry
        except Reject as rejected:
            if rejected.requeue:
                raise
            logger.warning(
                "dyrygent: processor message %s: its retry could not be published (%r); "
                "requeueing it",
                task.request.id,
                rejected.reason,
            )
            time.sleep(self.timing.max_interval)
            requeue: Exception = Reject(rejected.reason, requeue=True)
            return requeue

    def publish_tick(
        self,
        wf: str,
        processor_options: dict[str, Any],
        gen: int | None,
        countdown: float | None,
        idle: int = 0,
    ) -> None:
        """Publish a driver (``gen`` given) or a wake-up (``gen`` None) message for ``wf``."""
        options = dict(processor_options)
        if countdown:
            options["countdown"] = countdown
        options.setdefault("root_id", wf)  # Flower groups the processor under its workflow
        with broker_calls(f"publishing the processor message of workflow {wf}"):
            self.app.send_task(self.name, (wf, gen, idle) if idle else (wf, gen), **options)

    def published_hook(self, wf: str) -> Callable[[str], None] | None:
        """The per-node publish callback for a tick of ``wf`` (None without hooks)."""
        if not self.hooks.active("after_publish"):
            return None
        return lambda node_id: self.hooks.fire("after_publish", wf, node_id)
