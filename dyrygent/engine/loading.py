"""Loading a stored workflow: unseal, decode, check, cache.

Stored data crosses the trust boundary (README, "Reliability", item 9): everything a tick uses
is checked here once, and anything off raises :class:`~dyrygent.errors.PayloadError`, which
ends the workflow in ERROR with one clear message (it is never retried). The same checks run
on the client before anything is stored or published (:meth:`Loader.check`), so a workflow
the workers would refuse is refused at ``apply_async``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dyrygent.core.codec import decode_graph
from dyrygent.core.graph import Graph, NodeKind
from dyrygent.core.segments import decode_segment, extend_graph
from dyrygent.core.states import NodeState
from dyrygent.engine.spec import Header, check_spec, decode_header, decode_spec
from dyrygent.engine.trust import UNSAFE_SERIALIZERS, unseal, unseal_segment
from dyrygent.errors import PayloadError

if TYPE_CHECKING:
    from celery import Celery

    from dyrygent.engine.stores import Store

__all__ = ["ALL_TASKS", "Loaded", "Loader", "check_states", "grow", "read_graph", "read_stored"]

#: ``known_tasks`` value accepting every task name.
ALL_TASKS = "*"
_VALID_STATES = bytes(sorted(int(s) for s in NodeState))


@dataclass(frozen=True)
class Loaded:
    """A workflow's graph and header, checked."""

    graph: Graph
    header: Header


def check_states(wf: str, graph: Graph, states: bytes) -> None:
    """Raise PayloadError unless ``states`` holds one valid NodeState byte per node."""
    if len(states) != len(graph):
        raise PayloadError(
            f"workflow {wf}: its stored state has {len(states)} entries for a graph of "
            f"{len(graph)} nodes",
            states,
        )
    if bytes(states).translate(None, _VALID_STATES):
        raise PayloadError(f"workflow {wf}: its stored state holds an unknown node state", states)


def grow(app: Celery, store: Store, wf: str, graph: Graph) -> Graph:
    """``graph`` with the segments its expansions appended (each checked, seal included)."""
    if NodeKind.EXPAND not in graph.kinds:
        return graph
    for stored in store.segments(wf):
        segment = decode_segment(unseal_segment(app, wf, stored), len(graph))
        graph = extend_graph(graph, [segment])
    return graph


def read_graph(app: Celery, store: Store, wf: str) -> Graph | None:
    """``wf``'s graph as it is now (expansions included) for a read-only view, or None if
    the workflow is unknown; decoded and validated, seals checked, task names not (a
    viewer need not import the tasks). Raises PayloadError for data that fails a check."""
    data, sealed = store.load(wf)
    if data is None or sealed is None:
        return None
    unseal(app, wf, bytes(data), bytes(sealed))
    return grow(app, store, wf, decode_graph(bytes(data)))


def read_stored(app: Celery, store: Store, wf: str) -> Loaded | None:
    """``wf``'s graph (expansions included) and header, unsealed and decoded but not checked
    against this process's tasks (a read-only view for people and tools); None if it is not
    stored.
    Raises PayloadError if it was altered."""
    data, sealed = store.load(wf)
    if data is None or sealed is None:
        return None
    raw = unseal(app, wf, bytes(data), bytes(sealed))
    return Loaded(grow(app, store, wf, decode_graph(bytes(data))), decode_header(raw))


class Loader:
    """Loads and checks workflows for one processor, keeping the last ``cache_size``."""

    def __init__(
        self,
        app: Celery,
        store: Store,
        known_tasks: Collection[str] | str = (),
        allow_pickle: bool = False,
        cache_size: int = 1024,
    ) -> None:
        self.app = app
        self.store = store
        self.known_tasks = known_tasks
        self.allow_pickle = allow_pickle
        self._cache: OrderedDict[str, Loaded] = OrderedDict()
        self._cache_size = cache_size

    def load(self, wf: str) -> Loaded:
        """The workflow ``wf``; raises PayloadError if it is missing, altered or invalid."""
        cached = self._cache.get(wf)
        if cached is not None:
            self._cache.move_to_end(wf)
            return cached
        data, sealed = self.store.load(wf)
        if data is None or sealed is None:
            raise PayloadError(
                f"workflow {wf}: its graph is missing from the result backend (expired or deleted)"
            )
        raw = unseal(self.app, wf, bytes(data), bytes(sealed))
        loaded = Loaded(
            grow(self.app, self.store, wf, decode_graph(bytes(data))), decode_header(raw)
        )
        self.check(wf, loaded)
        self.remember(wf, loaded)
        return loaded

    def forget(self, wf: str) -> None:
        """Drop ``wf`` from the cache (its graph grew elsewhere)."""
        self._cache.pop(wf, None)

    def remember(self, wf: str, loaded: Loaded) -> None:
        self._cache[wf] = loaded
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def knows(self, task: str) -> bool:
        if self.known_tasks == ALL_TASKS:
            return True
        return task in self.app.tasks or task in self.known_tasks

    def check(self, wf: str, loaded: Loaded) -> None:
        """Every node names a known task and has a well-formed call; no node asks for an
        unsafe serializer unless pickle is allowed. Raises PayloadError naming the node."""
        graph = loaded.graph
        unknown = sorted(
            {
                n.task
                for n in graph.nodes
                if n.kind is not NodeKind.EXPAND and not self.knows(n.task)
            }
        )
        if unknown:
            node = next(n for n in graph.nodes if n.task == unknown[0])
            raise PayloadError(
                f"workflow {wf}: node {node.id} names task {unknown[0]!r}, which this worker "
                f"does not know ({len(unknown)} unknown in all): register it here, or list "
                f"it in register_workflow_processor(app, known_tasks=[...])"
            )
        defaults = loaded.header.node_options
        for node in graph.nodes:
            check_spec(node.id, node.spec)
            if self.allow_pickle:
                continue
            options: dict[str, Any] = {**defaults, **decode_spec(node.spec)[2]}
            if str(options.get("serializer", "")).lower() in UNSAFE_SERIALIZERS:
                raise PayloadError(
                    f"workflow {wf}: node {node.id} asks for serializer "
                    f"{options['serializer']!r}; the processor sends no pickle or yaml unless "
                    f"register_workflow_processor(app, allow_pickle=True)"
                )
