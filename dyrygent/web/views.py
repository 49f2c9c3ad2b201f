"""JSON shapes of the API: celery-director's field names where it has them (``status`` in
its words, ``tasks`` with ``key`` and ``previous``), plus dyrygent's own (``state``,
``progress``, ``counts``, node times and attempts).

Nothing here unpickles or evaluates: results are shown as JSON where they are JSON-able,
else as a truncated ``repr``.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from dyrygent.web.model import NodeView, WorkflowView

__all__ = [
    "DIRECTOR_NODE",
    "DIRECTOR_RUN",
    "columns_json",
    "detail_json",
    "error_json",
    "iso",
    "node_json",
    "safe",
    "workflow_json",
]

#: A run's state in celery-director's words.
DIRECTOR_RUN = {
    "PENDING": "pending",
    "RUNNING": "progress",
    "SUCCESS": "success",
    "FAILURE": "error",
    "ERROR": "error",
    "CANCELLED": "canceled",
}
#: A node's state in celery-director's words.
DIRECTOR_NODE = {
    "WAITING": "pending",
    "READY": "pending",
    "LAUNCHED": "pending",
    "RUNNING": "progress",
    "SUCCEEDED": "success",
    "FAILED": "error",
    "UPSTREAM_FAILED": "error",
    "SKIPPED": "canceled",
    "CANCELLED": "canceled",
}
#: The longest text a result, argument summary or traceback is cut to.
MAX_TEXT = 4000


def iso(at: float | None) -> str | None:
    """Seconds since the epoch as ISO 8601 UTC (None stays None)."""
    if at is None:
        return None
    return datetime.datetime.fromtimestamp(at, datetime.timezone.utc).isoformat()


def safe(value: Any, limit: int = MAX_TEXT) -> Any:
    """``value`` if it is JSON of at most ``limit`` characters, else a truncated text."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = None
    if text is not None and len(text) <= limit:
        return value
    text = text if text is not None else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def workflow_json(view: WorkflowView) -> dict[str, Any]:
    """A run, as listed (director's fields first)."""
    name = view.name
    project = name.split(".", 1)[0] if name and "." in name else None
    ended = view.ended
    return {
        "id": view.id,
        "name": name,
        "fullname": name,
        "project": project,
        "status": DIRECTOR_RUN.get(view.state, "pending"),
        "state": view.state,
        "created": iso(view.created),
        "updated": iso(view.updated),
        "ended": iso(ended),
        "created_at": view.created,
        "updated_at": view.updated,
        "ended_at": ended,
        "duration": None if view.created is None or ended is None else ended - view.created,
        "progress": {"done": view.done, "total": view.total},
        "counts": view.counts,
        "periodic": False,
        "payload": view.custom_payload.get("payload"),
        "comment": None,
    }


def node_json(node: NodeView, ids: list[str]) -> dict[str, Any]:
    """One node of a run's ``tasks`` (``ids``: every node's id, by index)."""
    return {
        "id": node.id,
        "index": node.index,
        "key": node.task,
        "label": node.label,
        "status": DIRECTOR_NODE[node.state],
        "state": node.state,
        "created": iso(node.started_at),
        "updated": iso(node.ended_at or node.started_at),
        "started_at": node.started_at,
        "ended_at": node.ended_at,
        "attempts": node.attempts,
        "previous": [ids[p] for p in node.parents],
        "parents": list(node.parents),
        "result": None,
        "is_hook": False,
    }


def detail_json(view: WorkflowView) -> dict[str, Any]:
    """A run with its ``tasks`` (results come per node, from the node endpoint)."""
    ids = [n.id for n in view.nodes]
    out = workflow_json(view)
    out["tasks"] = [node_json(n, ids) for n in view.nodes]
    return out


def columns_json(view: WorkflowView) -> dict[str, Any]:
    """A run with its nodes as columns (``?view=columns``): the page's compact form, a
    third of the size of ``tasks`` for big graphs and quicker to build and parse."""
    nodes = view.nodes
    out = workflow_json(view)
    out["cursor"] = view.cursor
    out["columns"] = {
        "id": [n.id for n in nodes],
        "label": [n.label for n in nodes],
        "task": [n.task for n in nodes],
        "state": [n.state for n in nodes],
        "parents": [n.parents for n in nodes],
        "started_at": [n.started_at for n in nodes],
        "ended_at": [n.ended_at for n in nodes],
        "attempts": [n.attempts for n in nodes],
    }
    return out


def error_json(meta: dict[str, Any]) -> dict[str, Any] | None:
    """``{"type", "message", "traceback"}`` of a failed node's meta, else None."""
    if meta.get("status") not in ("FAILURE", "REVOKED"):
        return None
    result = meta.get("result")
    if isinstance(result, BaseException):
        kind, message = type(result).__name__, str(result)
    elif isinstance(result, dict) and "exc_type" in result:
        kind, message = str(result["exc_type"]), str(result.get("exc_message", ""))
    else:
        kind, message = meta["status"], safe(result, 400)
    return {
        "type": kind,
        "message": str(safe(message, MAX_TEXT)),
        "traceback": safe(meta.get("traceback") or "", 4 * MAX_TEXT),
    }
