"""Nodes orphaned by a lost worker: found, and launched again, with Celery's default settings.

With early acknowledgement (Celery's default) a worker acks a node's message when it starts
the node; if the worker then dies, the node dies with it, its result stays PENDING (STARTED
with ``task_track_started``) for ever, and the workflow waits until its ``max_age``. So:

* **Record.** A worker that registered the processor writes, when a node starts, which
  worker started it and when, by the store's clock (:mod:`dyrygent.engine.records`). Nodes
  run by workers that do not import dyrygent have no record and are never relaunched here.
* **Suspect.** A tick reads the records at most every ``grace / 2`` seconds per process: a
  node still in flight whose record is older than ``grace`` (one clock: the store's) is a
  suspect. Records of settled nodes are dropped then, so each is read at most once more.
* **Prove.** Suspects' workers are asked over Celery's remote control: no answer to ``ping``
  means gone; an answer, then ``query_task`` not listing the node, means it was restarted (it
  no longer knows the node). A node whose result appeared meanwhile, or that is retrying
  (RETRY: its next run may be elsewhere), is left alone. A node on a live worker that knows
  it, however long it runs, is never relaunched; nor is a node still waiting in a queue.
* **Relaunch.** A proven orphan's result is forgotten and it goes back to READY (history:
  LAUNCHED/RUNNING -> READY -> LAUNCHED), to be published again; the relaunches are counted
  per node and bounded by ``max_node_relaunches``, after which the node FAILS with a
  :class:`~dyrygent.errors.NodeLostError` naming it and its worker.

* **Deadlines.** A node given ``timeout=S`` (:meth:`dyrygent.Workflow.add_signature`) still
  running S seconds after its recorded start (the store's clock again) is revoked with
  ``terminate=True`` and FAILS with :class:`~dyrygent.errors.NodeTimeoutError`. It is not
  relaunched: Celery's workers remember a revoked task id and would refuse it again.

A pool child killed alone (the OOM killer) is seen by Celery itself, which stores a FAILURE
with ``WorkerLostError`` unless ``task_reject_on_worker_lost`` requeues it: such a failure is
relaunched the same way, without asking anyone.

Nodes run at least once: a worker frozen (SIGSTOP) past the grace period does not answer
``ping`` and its nodes are relaunched; if it resumes, those nodes may run twice, never more
(a relaunch needs a fresh start record older than the grace period).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from celery import states as celery_states

from dyrygent.core.graph import Graph
from dyrygent.core.states import IN_FLIGHT_STATES, NodeState
from dyrygent.core.tick import Outcome
from dyrygent.engine.records import ACKS_LATE, NO_REMOTE_CONTROL, SILENT_WHILE_BUSY
from dyrygent.engine.results import Observation, read_metas
from dyrygent.engine.spec import spec_extras
from dyrygent.errors import NodeLostError, NodeTimeoutError

if TYPE_CHECKING:
    from dyrygent.engine.stores import Store

__all__ = ["Orphans"]

logger = logging.getLogger("dyrygent.processor")

_UNFINISHED = (celery_states.PENDING, celery_states.STARTED, celery_states.RECEIVED)
_TRACKED = 4096  # workflows whose last check time a process remembers


def _worker_lost(meta: dict[str, Any]) -> bool:
    """Whether a FAILURE meta is Celery's WorkerLostError (the pool child died)."""
    return type(meta.get("result")).__name__ == "WorkerLostError"


class Orphans:
    """Finds the nodes of a workflow orphaned by a lost worker and relaunches them.

    ``grace``: seconds a node must have run (by the store's clock) before its worker is
    asked about it (None: no records, no checks, no deadlines); ``max_relaunches``:
    relaunches per node before it fails; ``ping_timeout``: seconds to wait for workers'
    remote-control replies.
    """

    def __init__(
        self, grace: float | None = 10.0, max_relaunches: int = 3, ping_timeout: float = 1.0
    ) -> None:
        self.grace = grace
        self.max_relaunches = max_relaunches
        self.ping_timeout = ping_timeout
        self._checked: OrderedDict[str, float] = OrderedDict()
        self._timeouts: OrderedDict[str, tuple[Graph, dict[int, float]]] = OrderedDict()

    def review(
        self, app: Any, store: Store, wf: str, graph: Graph, states: bytes, seen: Observation
    ) -> tuple[Observation, dict[int, NodeState]]:
        """The tick's observation without the nodes to relaunch, and their changes
        (-> READY). Nodes out of relaunches, and nodes past their deadline (revoked), are
        FAILED in the returned observation, their NodeLostError or NodeTimeoutError stored
        in the backend. Errors of remote control or the store are
        logged and skipped: the next check tries again."""
        grace = self.grace
        if grace is None or not store.records_starts:
            return seen, {}
        outcomes = seen.outcomes
        lost = {
            i: "its pool process died (Celery: WorkerLostError)"
            for i, o in outcomes.items()
            if o is Outcome.FAILED and _worker_lost(seen.metas[i])
        }
        deadlines = self._deadlines(wf, graph)
        horizon = min(grace, *deadlines.values()) if deadlines else grace
        late: dict[int, str] = {}
        if self._due(wf, horizon):
            try:
                found, late = self._orphans(
                    app, store, wf, graph, states, seen, grace, horizon, deadlines
                )
                lost.update(found)
            except Exception as exc:
                logger.warning("dyrygent: workflow %s: orphan check failed (%r)", wf, exc)
        if not lost and not late:
            return seen, {}
        metas, outcomes = dict(seen.metas), dict(outcomes)
        for i, host in sorted(late.items()):
            node = graph.nodes[i]
            timed_out = NodeTimeoutError(
                f"node {node.id} ({node.task}) of workflow {wf} was still running "
                f"{deadlines[i]:g} s after it started on {host}: revoked (its timeout; "
                f"raise it, or make the task faster)",
                node=node.id,
                timeout=deadlines[i],
            )
            app.backend.mark_as_failure(node.id, timed_out)
            app.control.revoke(node.id, terminate=True)
            metas[i] = {"status": celery_states.FAILURE, "result": timed_out}
            outcomes[i] = Outcome.FAILED
            logger.error("dyrygent: %s", timed_out)
        relaunch: dict[int, NodeState] = {}
        workers = self._workers(store, wf) if lost else {}  # (before relaunched() drops them)
        for i, why in sorted(lost.items()):
            node = graph.nodes[i]
            worker = workers.get(node.id)  # (None: not recorded)
            count = store.relaunched(wf, node.id)
            if count > self.max_relaunches:
                err = NodeLostError(
                    f"node {node.id} ({node.task}) of workflow {wf} was lost {count} times, "
                    f"last on worker {worker or '?'} because {why}; giving up after "
                    f"max_node_relaunches={self.max_relaunches} (raise it, or find why its "
                    f"workers die: OOM killer, time limits, deployments)",
                    node=node.id,
                    worker=worker,
                )
                app.backend.mark_as_failure(node.id, err)
                metas[i] = {"status": celery_states.FAILURE, "result": err}
                outcomes[i] = Outcome.FAILED
                logger.error("dyrygent: %s", err)
                continue
            app.backend.forget(node.id)
            outcomes.pop(i, None)
            relaunch[i] = NodeState.READY
            logger.warning(
                "dyrygent: workflow %s: relaunching node %s (%s) of worker %s: %s "
                "(relaunch %d of %d)",
                wf,
                node.id,
                node.task,
                worker or "?",
                why,
                count,
                self.max_relaunches,
            )
        return Observation(metas, outcomes, seen.vanished), relaunch

    def _workers(self, store: Store, wf: str) -> dict[str, str]:
        """Node id -> ``host (pid)`` of the worker that last started it, as recorded (read
        only when relaunching, a rare event)."""
        try:
            records = store.starts(wf, 0.0)[1]
        except Exception:  # only messages are at stake
            return {}
        out = {}
        for node, (_, worker) in records.items():
            host, _, rest = worker.partition("|")
            out[node] = f"{host} (pid {rest.partition('|')[0]})"
        return out

    def _deadlines(self, wf: str, graph: Graph) -> dict[int, float]:
        """Node index -> timeout of ``graph``'s nodes that have one (cached per workflow)."""
        cached = self._timeouts.get(wf)
        if cached is not None and cached[0] is graph:
            return cached[1]
        found = {
            i: float(spec_extras(n.spec)["timeout"])
            for i, n in enumerate(graph.nodes)
            if b'"timeout"' in n.spec and "timeout" in spec_extras(n.spec)
        }
        self._timeouts[wf] = (graph, found)
        while len(self._timeouts) > _TRACKED:
            self._timeouts.popitem(last=False)
        return found

    def _due(self, wf: str, horizon: float) -> bool:
        """Whether this process should check ``wf``'s records now (every horizon / 2)."""
        now = time.monotonic()
        last = self._checked.get(wf)
        if last is not None and now - last < horizon / 2:
            return False
        self._checked[wf] = now
        self._checked.move_to_end(wf)
        while len(self._checked) > _TRACKED:
            self._checked.popitem(last=False)
        return True

    def _orphans(
        self,
        app: Any,
        store: Store,
        wf: str,
        graph: Graph,
        states: bytes,
        seen: Observation,
        grace: float,
        horizon: float,
        deadlines: dict[int, float],
    ) -> tuple[dict[int, str], dict[int, str]]:
        """(node index -> why, for the suspects whose worker is proven gone or ignorant;
        node index -> its worker, for the nodes past their deadline)."""
        now, starts = store.starts(wf, horizon)
        if not starts:
            return {}, {}
        index, settled = graph.index, []
        suspects: dict[int, list[str]] = {}
        late: dict[int, str] = {}
        for node_id, (started, worker) in starts.items():
            i = index.get(node_id)
            if i is None or states[i] not in IN_FLIGHT_STATES:
                settled.append(node_id)
            elif i in seen.metas and seen.metas[i].get("status") in _UNFINISHED:
                if i in deadlines and now - started > deadlines[i]:
                    late[i] = worker.split("|")[0]
                elif now - started >= grace and not worker.endswith(ACKS_LATE):
                    # (acks late: the broker delivers it again; a relaunch would be a 2nd run)
                    suspects[i] = worker.split("|")
        if settled:
            store.drop_starts(wf, settled)
        if not suspects:
            return {}, late
        lost = self._ask(app, {i: (graph.nodes[i].id, *w) for i, w in suspects.items()})
        if not lost:
            return {}, late
        # a result that appeared while we asked: the node ended after all
        order = sorted(lost)
        metas = read_metas(app.backend, [graph.nodes[i].id for i in order])
        found = {i: lost[i] for i, m in zip(order, metas) if m.get("status") in _UNFINISHED}
        return found, late

    def _ask(self, app: Any, suspects: dict[int, tuple[str, ...]]) -> dict[int, str]:
        """Ask the suspects' workers over remote control; node index -> why it is lost."""
        hosts = sorted({s[1] for s in suspects.values()})
        replies = app.control.ping(destination=hosts, timeout=self.ping_timeout) or []
        alive = {h for r in replies for h in r}
        known: set[tuple[str, str]] = set()
        answered: set[str] = set()
        if alive:
            ids = sorted({s[0] for s in suspects.values() if s[1] in alive})
            inspect = app.control.inspect(destination=sorted(alive), timeout=self.ping_timeout)
            answer = inspect.query_task(*ids) or {}
            answered = set(answer)
            known = {(h, t) for h, tasks in answer.items() for t in tasks or ()}
        lost: dict[int, str] = {}
        for i, (node_id, host, pid, *rest) in suspects.items():
            flags = rest[0] if rest else ""
            if host not in alive:
                if SILENT_WHILE_BUSY in flags or NO_REMOTE_CONTROL in flags:
                    continue  # silence proves nothing for these workers
                lost[i] = f"its worker {host} (pid {pid}) did not answer a ping"
            elif host in answered and (host, node_id) not in known:
                lost[i] = f"its worker {host} is up but no longer knows it (pid {pid} restarted)"
        return lost
