"""A workflow's result and its end: what the client's ``get()`` sees, and the final status.

The result is stored under the workflow id when the outcome is *decided* (the canvas's value
on success; the culprit node's own exception on failure); the status is committed when the
workflow *ends* (see :mod:`dyrygent.core.outcome`). An ERROR (bad stored data, a lost
result, ``max_age``, repeated crashes) stores a WorkflowError and ends at once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from celery import states as celery_states

from dyrygent.core.graph import Graph, evaluate, index_refs
from dyrygent.core.outcome import Verdict
from dyrygent.core.states import NodeState, WorkflowStatus
from dyrygent.engine.nodes import fetch_results
from dyrygent.engine.results import exception_of, read_metas
from dyrygent.errors import WorkflowError

if TYPE_CHECKING:
    from celery import Celery

    from dyrygent.engine.stores import Store

__all__ = ["Finisher"]

logger = logging.getLogger("dyrygent.processor")


class Finisher:
    """Stores workflow results and ends workflows, for one processor."""

    def __init__(self, app: Celery, store: Store) -> None:
        self.app = app
        self.store = store

    def decide(
        self,
        wf: str,
        graph: Graph,
        states: bytes | bytearray,
        verdict: Verdict,
        metas: Mapping[int, dict[str, Any]],
        results: dict[int, Any],
    ) -> None:
        """Store the decided result: the output's value, or the culprit's exception.

        Raises nodes.Gone if a result the output needs is no longer in the backend."""
        backend = self.app.backend
        if verdict.status is WorkflowStatus.SUCCEEDED:
            refs = set(index_refs(graph.output))
            succeeded = {r for r in refs if states[r] == NodeState.SUCCEEDED}
            fetch_results(backend, graph, succeeded, results)
            values = {r: results.get(r) for r in refs}  # a skipped node gives None
            backend.store_result(wf, evaluate(graph.output, values), celery_states.SUCCESS)
            return
        i = verdict.culprit
        if i is None:
            exc: BaseException = WorkflowError(
                f"workflow {wf} failed: a leaf was cancelled or upstream-failed without a "
                f"failed node of its own"
            )
            backend.mark_as_failure(wf, exc)
            return
        node = graph.nodes[i]
        meta = metas.get(i) or read_metas(backend, [node.id])[0]
        exc = exception_of(meta, node.id)
        backend.mark_as_failure(wf, exc, traceback=meta.get("traceback"))
        logger.info("dyrygent: workflow %s failed at node %s (%s)", wf, node.id, node.task)

    def error(
        self,
        wf: str,
        token: str,
        gen: int,
        exc: WorkflowError,
        changes: Mapping[int, int] | None = None,
    ) -> None:
        """End ``wf`` in ERROR with ``exc`` as its result."""
        logger.error("dyrygent: %s", exc)
        self.app.backend.mark_as_failure(wf, exc)
        if self.store.commit(wf, token, changes or {}, gen + 1, WorkflowStatus.ERROR) is None:
            return
        from dyrygent.engine.loading import read_stored  # noqa: PLC0415 (import cycle)
        from dyrygent.engine.notify import notify_end  # noqa: PLC0415 (import cycle)

        try:  # the error path: one more read, for the workflow's hooks
            loaded = read_stored(self.app, self.store, wf)
        except Exception:  # its stored data may be what is wrong
            loaded = None
        notify_end(self.app, wf, loaded.header if loaded else None, WorkflowStatus.ERROR)

    def expired(self, wf: str, token: str, gen: int) -> None:
        """End ``wf`` in ERROR: it passed its ``max_age``."""
        self.error(
            wf,
            token,
            gen,
            WorkflowError(
                f"workflow {wf} passed its maximum age before finishing; raise "
                f"Workflow(max_age=...) for workflows that run longer"
            ),
        )

    def vanished(self, wf: str, token: str, gen: int, graph: Graph, i: int) -> None:
        """End ``wf`` in ERROR: node ``i`` was seen running and its result is gone."""
        node = graph.nodes[i]
        self.error(
            wf,
            token,
            gen,
            WorkflowError(
                f"node {node.id} ({node.task}) was seen running, but its result has vanished "
                f"from the result backend (expired or evicted) before the processor saw it "
                f"finish: raise result_expires, and give Redis enough maxmemory"
            ),
        )
