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
from dyrygent.core.graph import Graph
from dyrygent.core.states import NodeState
from dyrygent.engine.spec import Header, check_spec, decode_header, decode_spec
from dyrygent.engine.trust import UNSAFE_SERIALIZERS, unseal
from dyrygent.errors import PayloadError

if TYPE_CHECKING:
    from celery import Celery

    from dyrygent.engine.stores import Store

__all__ = ["ALL_TASKS", "Loaded", "Loader", "check_states", "read_stored"]

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


def read_stored(app: Celery, store: Store, wf: str) -> Loaded | None:
    """``wf``'s graph and header, unsealed and decoded but not checked against this
    process's tasks (a read-only view for people and tools); None if it is not stored.
    Raises PayloadError if it was altered."""
    data, sealed = store.load(wf)
    if data is None or sealed is None:
        return None
    raw = unseal(app, wf, bytes(data), bytes(sealed))
    return Loaded(decode_graph(bytes(data)), decode_header(raw))


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
        loaded = Loaded(decode_graph(bytes(data)), decode_header(raw))
        self.check(wf, loaded)
        self.remember(wf, loaded)
        return loaded

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
        unknown = sorted({n.task for n in graph.nodes if not self.knows(n.task)})
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
