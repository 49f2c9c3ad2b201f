"""What dyrygent adds to canvases: a canvas as a template (plain data to store and rebuild
later: an expansion's canvas), and the dyrygent options a signature may carry
(``trigger_rule``, ``dyrygent_branch``), consumed here and never sent to Celery."""

from __future__ import annotations

from typing import Any, Callable

from celery.canvas import Signature
from celery.utils import uuid
from kombu.utils.json import dumps, loads

from dyrygent.core.builder import GraphBuilder
from dyrygent.core.graph import Expr, NodeKind
from dyrygent.core.rules import TriggerRule
from dyrygent.dynamic import EXPAND_TASK
from dyrygent.errors import InvalidNodeError

__all__ = ["BRANCH_OPTION", "expand_node", "json_safe", "start_options", "without_ids"]

#: The signature option :func:`dyrygent.branch` sets.
BRANCH_OPTION = "dyrygent_branch"


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


def start_options(node_id: str, task: str, options: dict[str, Any]) -> tuple[TriggerRule, NodeKind]:
    """Take dyrygent's own options out of a node's ``options``: its start rule
    (``sig.set(trigger_rule=...)``) and whether it is a branch (:func:`dyrygent.branch`).
    Raises InvalidNodeError naming the node and the valid rules for an unknown rule."""
    raw = options.pop("trigger_rule", None)
    kind = NodeKind.BRANCH if options.pop(BRANCH_OPTION, False) else NodeKind.TASK
    if raw is None:
        return TriggerRule.ALL_SUCCESS, kind
    try:
        return TriggerRule.parse(raw), kind
    except ValueError as exc:
        raise InvalidNodeError(f"node {node_id!r} ({task}): {exc}", node=node_id) from None
