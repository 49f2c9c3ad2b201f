"""Where the dashboard reads and steers workflows: the ONE module of the web app that talks
to dyrygent's engine, so the rest of the app never depends on how a run is stored.

Everything comes from the result backend the workflows already use: the store's records
(status, node states, the event log) and, for one node's panel, its Celery result meta.

Reads cost one or two backend round trips: :meth:`Source.detail` is one snapshot (status,
states and the event log in one MULTI/EXEC on Redis) plus, the first time only, the graph
(kept by the processor's loader cache); :meth:`Source.changes` is one snapshot.

Steering goes through the engine's own ``WorkflowResult.cancel()`` / ``.retry()``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

from dyrygent.core.graph import Graph
from dyrygent.core.states import NodeState, WorkflowStatus
from dyrygent.engine.loading import Loaded, read_stored
from dyrygent.engine.stores import NodeEvent, Store, store_for
from dyrygent.web import runs as web_runs
from dyrygent.web.model import (
    Event,
    NodeView,
    NotFound,
    Unsupported,
    WorkflowRecord,
    WorkflowView,
    as_events,
    first_name,
    node_times,
    unsafe_results,
    view_of,
)

__all__ = ["NotFound", "Source", "Unsupported"]

#: Graphs kept in memory (the biggest, of 100,000 nodes, take tens of MB).
GRAPH_CACHE = 64
#: Seconds a list request may spend finding the names of workflows it has not seen yet.
NAME_BUDGET = 0.25


class Source:
    """The dashboard's view of one Celery app's workflows (and, optionally, definitions
    with issue 12's ``names()`` / ``get(name)`` / ``run(name, payload=, app=)``)."""

    def __init__(self, app: Any, definitions: Any = None) -> None:
        self.app = app
        self.definitions = definitions
        self._names: OrderedDict[str, str] = OrderedDict()
        self._graphs: OrderedDict[str, Loaded] = OrderedDict()
        self._store: Store | None = None
        self._lock = threading.Lock()  # the caches are shared by the server's threads

    # -- plumbing (REPLACE-WHEN-MERGED: issue 10's WorkflowResult / list_workflows) -------

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = store_for(self.app)
        return self._store

    @property
    def _on_redis(self) -> bool:
        from dyrygent.engine.stores.redis import RedisStore

        return isinstance(self.store, RedisStore)

    def loaded(self, wf: str, size: int = 0) -> Loaded:
        """The workflow's graph and header, cached; ``size``: the number of node states now
        stored (a cached graph with fewer nodes has grown since and is read again). Unlike a
        worker's loader this does not check task names: the dashboard need not import the
        tasks. Raises NotFound if missing, PayloadError if its signature is wrong
        (``dyrygent_signing_key``); expansions included (``engine.loading.read_stored``)."""
        with self._lock:
            cached = self._graphs.get(wf)
            if cached is not None and len(cached.graph) >= size:
                self._graphs.move_to_end(wf)
                return cached
        loaded = read_stored(self.app, self.store, wf)
        if loaded is None:
            raise NotFound(f"workflow {wf} is unknown (never created, forgotten or expired)")
        with self._lock:
            self._graphs[wf] = loaded
            while len(self._graphs) > GRAPH_CACHE:
                self._graphs.popitem(last=False)
        return loaded

    def graph(self, wf: str, size: int = 0) -> Graph:
        """The workflow's graph (see :meth:`loaded`)."""
        return self.loaded(wf, size).graph

    def _names_of(self, ids: list[str]) -> dict[str, str]:
        """The name of each workflow: the definition it was started from by this dashboard,
        else its first node's label or task. Names are cached for good (a graph never
        changes); on Redis the unknown ones cost one pipelined round trip, elsewhere one
        read each within NAME_BUDGET seconds (the next refresh finds the rest).
        REPLACE-WHEN-MERGED: the definition name from issue 12's custom payload."""
        from dyrygent.web import fastpath
        from dyrygent.web.runs import RUN_KEY

        known = self._names
        with self._lock:
            unknown = [wf for wf in ids if wf not in known]
        store = self.store
        found: dict[str, str] = {}
        if unknown and self._on_redis:
            found = fastpath.names(store, self.app.backend, unknown, RUN_KEY)
        elif unknown:
            deadline = time.monotonic() + NAME_BUDGET
            for wf in unknown:
                if time.monotonic() > deadline:
                    break
                name = first_name(store.load(wf)[0])
                if name is not None:
                    found[wf] = name
        with self._lock:
            known.update(found)
            while len(known) > 100_000:
                known.popitem(last=False)
            return {wf: known[wf] for wf in ids if wf in known}

    # -- reads ------------------------------------------------------------------------------

    def runs(
        self,
        state: str | None = None,
        name: str | None = None,
        limit: int = 50,
        before: float | None = None,
    ) -> list[WorkflowView]:
        """Runs, newest first: those in ``state`` (issue 10's names, or ``active`` for
        PENDING and RUNNING), whose name contains ``name``, created before ``before``."""
        status = {
            "PENDING": WorkflowStatus.RUNNING,
            "RUNNING": WorkflowStatus.RUNNING,
            "ACTIVE": WorkflowStatus.RUNNING,
            "SUCCESS": WorkflowStatus.SUCCEEDED,
            "FAILURE": WorkflowStatus.FAILED,
            "ERROR": WorkflowStatus.ERROR,
            "CANCELLED": WorkflowStatus.CANCELLED,
        }.get((state or "").upper())
        wanted = None if state in (None, "", "active", "ACTIVE") else state.upper()
        fetch = limit if name is None and wanted not in ("PENDING", "RUNNING") else limit * 4
        infos = self.store.list_workflows(limit=fetch, status=status, before=before)
        found = self._names_of([info.id for info in infos])
        out = []
        for info in infos:
            view = view_of(info, found.get(info.id))
            if wanted and view.state != wanted:
                continue
            if name and name.lower() not in (view.name or "").lower():
                continue
            out.append(view)
            if len(out) >= limit:
                break
        return out

    def _read(self, wf: str, since: int) -> tuple[WorkflowRecord, list[Event], int]:
        """The workflow, its events after cursor ``since`` and the next cursor, in one round
        trip (on Redis only the new bytes of the log); NotFound if unknown."""
        if self._on_redis:
            from dyrygent.web import fastpath

            info, events, cursor = fastpath.events_since(self.store, wf, since)
        else:
            info, every = self.store.snapshot(wf)
            events, cursor = as_events(every[since:]), len(every)
        if info.status is None:
            raise NotFound(f"workflow {wf} is unknown (never created, forgotten or expired)")
        return info, events, cursor

    def summary(self, wf: str) -> WorkflowView:
        """The run without its nodes, in one read; NotFound if unknown."""
        info = self.store.status(wf)
        if info.status is None:
            raise NotFound(f"workflow {wf} is unknown (never created, forgotten or expired)")
        return view_of(info, self._names_of([wf]).get(wf))

    def detail(self, wf: str) -> WorkflowView:
        """The run with its nodes, and the cursor for :meth:`changes`; NotFound if unknown."""
        info, events, cursor = self._read(wf, 0)
        graph = self.graph(wf, len(info.states))
        name = self._names.get(wf) or (graph.nodes[0].name if len(graph) else "")
        view = view_of(info, name)
        times = node_times(len(graph), events)
        states = info.states
        names = [s.name for s in NodeState]
        view.nodes = [
            NodeView(i, n.id, n.name, n.task, names[states[i]], n.parents, *times[i])
            for i, n in enumerate(graph.nodes)
        ]
        view.cursor = cursor
        if events:
            view.updated = events[-1][3]
        return view

    def changes(self, wf: str, since: int = 0) -> tuple[WorkflowView, list[Event], int]:
        """The run's status, the events after cursor ``since`` (0: from the start) and the
        cursor to pass next."""
        info, events, cursor = self._read(wf, since)
        view = view_of(info, None)
        if events:
            view.updated = events[-1][3]
        return view, events, cursor

    def history(self, wf: str) -> tuple[Graph, list[NodeEvent]]:
        """The graph and every node state change, in commit order."""
        info, events = self.store.snapshot(wf)
        if info.status is None:
            raise NotFound(f"workflow {wf} is unknown (never created, forgotten or expired)")
        return self.graph(wf, len(info.states)), events

    def node(self, wf: str, node_id: str) -> tuple[WorkflowView, NodeView, bytes, dict[str, Any]]:
        """One node of ``wf``: the run, the node, its call (spec) and its result meta."""
        from dyrygent.engine.results import read_metas

        view = self.detail(wf)
        graph = self.graph(wf)
        i = graph.index.get(node_id)
        if i is None:
            raise NotFound(f"workflow {wf} has no node {node_id}")
        if unsafe_results(self.app.conf):
            meta = {"status": "HIDDEN", "result": "not shown: results may be pickled here"}
        else:
            (meta,) = read_metas(self.app.backend, [node_id])
        return view, view.nodes[i], graph.nodes[i].spec, meta

    # -- steering: the engine's WorkflowResult.cancel / .retry ----------------------------

    def _handle(self, wf: str) -> Any:
        import dyrygent

        return dyrygent.WorkflowResult(wf, app=self.app)

    def cancel(self, wf: str, terminate: bool = False) -> WorkflowView:
        """Cancel a running workflow (a finished one is left as it is)."""
        self.summary(wf)  # NotFound first
        self._handle(wf).cancel(terminate=terminate)
        return self.summary(wf)

    def retry(self, wf: str) -> WorkflowView:
        """Run again what failed, was skipped or cancelled in a finished workflow. Raises
        ValueError when there is nothing to retry."""
        self.summary(wf)
        if not self._handle(wf).retry():
            raise ValueError(f"workflow {wf} has nothing to retry")
        return self.summary(wf)

    # -- definitions (issue 12; optional) ---------------------------------------------------

    def definition_names(self) -> list[str]:
        """The names of the definitions (empty when none are configured)."""
        return sorted(self.definitions.names()) if self.definitions is not None else []

    def definition(self, name: str) -> Any:
        """The definition ``name``; Unsupported without definitions, NotFound if unknown."""
        if self.definitions is None:
            raise Unsupported(
                "no workflow definitions are configured: set app.conf.dyrygent_definitions "
                "(a workflows.yml path) or pass definitions= to create_app"
            )
        if name not in self.definitions.names():
            raise NotFound(f"no definition named {name!r}")
        return self.definitions.get(name)

    def run(self, name: str, payload: dict[str, Any]) -> str:
        """Start definition ``name`` with ``payload``; returns the new workflow's id.
        Invalid payloads raise the definitions' error, whose ``.errors`` lists messages."""
        self.definition(name)
        wf = str(self.definitions.run(name, payload=payload, app=self.app).id)
        with self._lock:
            self._names[wf] = name
        web_runs.remember_run(self.app, wf, name, payload)
        return wf

    def relaunch(self, wf: str) -> str:
        """A new run of the definition and payload ``wf`` was started with."""
        self.summary(wf)
        relaunch = getattr(self.definitions, "relaunch", None)
        if relaunch is not None:  # issue 12's Definitions.relaunch(workflow_id, app=)
            return str(relaunch(wf, app=self.app).id)
        origin = web_runs.run_of(self.app, wf)
        if origin is None:
            raise Unsupported(
                f"workflow {wf} was not started from a definition: only runs of a definition "
                f"(POST /api/workflows) can be relaunched"
            )
        return self.run(origin[0], origin[1])
