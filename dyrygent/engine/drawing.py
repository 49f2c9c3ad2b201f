"""What a live picture of a workflow needs from the store: its graph and node states."""

from __future__ import annotations

from typing import Any

from dyrygent.core.graph import Graph
from dyrygent.engine.loading import read_graph
from dyrygent.engine.stores import store_for
from dyrygent.errors import PayloadError

__all__ = ["stored_picture"]


def stored_picture(app: Any, wf: str) -> tuple[Graph, bytes]:
    """``wf``'s graph (expansions included) and its node states as stored (a read-only view:
    see :func:`dyrygent.engine.loading.read_graph`).

    Raises PayloadError when the workflow is unknown, expired or forgotten.
    """
    store = store_for(app)
    graph = read_graph(app, store, wf)
    if graph is None:
        raise PayloadError(
            f"workflow {wf}: its graph is not in the result backend (an unknown id, or "
            f"expired or forgotten): check the id and the app's result_backend"
        )
    return graph, bytes(store.status(wf).states)
