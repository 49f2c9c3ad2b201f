"""What a live picture of a workflow needs from the store: its graph and node states."""

from __future__ import annotations

from typing import Any

from dyrygent.core.codec import decode_graph
from dyrygent.core.graph import Graph
from dyrygent.engine.stores import store_for
from dyrygent.errors import PayloadError

__all__ = ["stored_picture"]


def stored_picture(app: Any, wf: str) -> tuple[Graph, bytes]:
    """``wf``'s graph and its node states as stored (two reads; a read-only view, so the
    graph is decoded and validated but its seal is not checked).

    Raises PayloadError when the workflow is unknown, expired or forgotten.
    """
    store = store_for(app)
    data, _ = store.load(wf)
    if data is None:
        raise PayloadError(
            f"workflow {wf}: its graph is not in the result backend (an unknown id, or "
            f"expired or forgotten): check the id and the app's result_backend"
        )
    return decode_graph(bytes(data)), bytes(store.status(wf).states)
