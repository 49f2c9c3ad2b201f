"""A canvas as a template: plain data to store and rebuild later (an expansion's canvas)."""

from __future__ import annotations

from typing import Any, Callable

from celery.canvas import Signature
from celery.utils import uuid
from kombu.utils.json import dumps, loads

from dyrygent.core.builder import GraphBuilder
from dyrygent.core.graph import Expr, NodeKind
from dyrygent.dynamic import EXPAND_TASK

__all__ = ["expand_node", "json_safe", "without_ids"]


def json_safe(sig: Signature) -> dict[str, Any]:
    """A canvas as plain data (nested signatures as dicts), as Celery serializes it."""
    data: dict[str, Any] = loads(dumps(sig))
    return data


def without_ids(data: Any) -> Any:
    """``data`` (a canvas as plain data) with every task id dropped: each expansion gives its
    nodes ids of their own."""
    if isinstance(data, list):
        return [without_ids(d) for d in data]
    if isinstance(data, dict):
        out = {k: without_ids(v) for k, v in data.items()}
        if isinstance(out.get("options"), dict):
            out["options"] = {k: v for k, v in out["options"].items() if k != "task_id"}
        return out
    return data


def expand_node(
    builder: GraphBuilder,
    encode: Callable[..., bytes],
    sig: Signature,
    canvas: Signature,
    incoming: Expr,
    deps: tuple[str, ...],
    pre_args: tuple[Any, ...],
) -> str:
    """Add the EXPAND node ``sig`` stands for; returns its id. No task runs for it: its
    ``canvas``, as data, is expanded at run time over its input, or over the first partial
    arg when it has one (an expand nested in another gets its item so)."""
    node_id: str = sig.options.get("task_id") or uuid()
    extras: dict[str, Any] = {"template": without_ids(json_safe(canvas))}
    if pre_args:
        extras["items"], incoming = pre_args[0], None
    spec = encode(node_id, EXPAND_TASK, [], {}, {}, extras)
    builder.add(node_id, EXPAND_TASK, spec, deps, incoming, kind=NodeKind.EXPAND)
    return node_id
