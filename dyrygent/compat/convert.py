"""A celery-dyrygent 0.8.0 processor message (``workflow_dict``) as a dyrygent workflow.

The contract is celery-dyrygent 0.8.0's ``Workflow.to_dict()``: ``nodes`` (node id ->
``{"id", "signature", "dependencies", "custom_payload"}``, a signature as Celery's dict),
``running`` (node id -> a check counter), ``finished`` (node id -> succeeded), ``version``
(1), ``retry_policy`` (``["random", low, high]``), ``processing_limit_ts`` (the epoch second
it must end by), ``state``, ``tasks_options``, ``workflow_options``, ``custom_payload`` and
``stats``. Everything is checked: anything else raises PayloadError naming what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from celery.canvas import Signature

from dyrygent.compat.extras import Extras
from dyrygent.core.builder import GraphBuilder
from dyrygent.core.graph import Graph
from dyrygent.core.states import NodeState
from dyrygent.engine.canvas import CanvasConverter
from dyrygent.engine.spec import Header, encode_spec
from dyrygent.errors import BuildError, PayloadError

__all__ = ["Adopted", "convert_workflow_dict"]

#: The workflow_dict versions this release adopts (celery-dyrygent 0.8.0 writes 1).
VERSIONS = (1,)
MAX_NODES = 100_000
DEFAULT_MAX_AGE = 7 * 24 * 3600


@dataclass(frozen=True)
class Adopted:
    """A converted workflow: its graph (node ids kept, no result passed between nodes), its
    header and extras, the states its nodes start in (by index), and its remaining age."""

    graph: Graph
    header: Header
    extras: Extras
    given: dict[int, NodeState]
    max_age: int


def _fail(wf: str, what: str) -> PayloadError:
    return PayloadError(f"celery-dyrygent workflow {wf}: {what}")


def _dict(wf: str, value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise _fail(wf, f"{what} is not a dict with string keys")
    return value


def _signature(wf: str, node_id: str, raw: Any, app: Any) -> Signature:
    if not (
        isinstance(raw, dict)
        and isinstance(raw.get("task"), str)
        and isinstance(raw.get("args", []), (list, tuple))
        and isinstance(raw.get("kwargs", {}), dict)
        and isinstance(raw.get("options", {}), dict)
    ):
        raise _fail(wf, f"node {node_id}: its signature is not a task signature dict")
    if raw.get("subtask_type"):
        raise _fail(wf, f"node {node_id}: a {raw['subtask_type']} as one node is not supported")
    sig = Signature(
        raw["task"],
        list(raw.get("args") or ()),
        dict(raw.get("kwargs") or {}),
        dict(raw.get("options") or {}),
        immutable=bool(raw.get("immutable")),
        app=app,
    )
    if sig.options.get("task_id", node_id) != node_id:
        raise _fail(wf, f"node {node_id}: its signature has task id {sig.options['task_id']!r}")
    sig.options["task_id"] = node_id
    return sig


def _retry_bounds(wf: str, policy: Any) -> list[float] | None:
    if policy is None:
        return None
    if not (
        isinstance(policy, list)
        and len(policy) == 3
        and policy[0] == "random"
        and all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in policy[1:])
        and 0 < policy[1] <= policy[2]
    ):
        raise _fail(wf, f"retry_policy {policy!r:.80} is not ['random', low, high]")
    return [policy[1], policy[2]]


def convert_workflow_dict(wf: str, data: Any, app: Any, now: float) -> Adopted:
    """Convert celery-dyrygent's ``workflow_dict`` for workflow ``wf`` (its processor's task
    id); ``now`` is this host's epoch time (celery-dyrygent's limit is the client's clock).

    Raises PayloadError for anything that is not a valid version-1 workflow_dict.
    """
    if not isinstance(data, dict):
        raise _fail(wf, "workflow_dict is not a dict")
    if data.get("version") not in VERSIONS:
        raise _fail(wf, f"unknown workflow_dict version {data.get('version')!r:.20}")
    nodes = _dict(wf, data.get("nodes"), "nodes")
    if len(nodes) > MAX_NODES:
        raise _fail(wf, f"{len(nodes)} nodes, over {MAX_NODES}")
    running = _dict(wf, data.get("running"), "running")
    finished = _dict(wf, data.get("finished"), "finished")
    for name, table in (("running", running), ("finished", finished)):
        unknown = sorted(set(table) - set(nodes))
        if unknown:
            raise _fail(wf, f"{name} names {unknown[0]!r}, which is not one of its nodes")
    if not all(isinstance(v, bool) for v in finished.values()):
        raise _fail(wf, "finished holds a value that is not a bool")
    builder = GraphBuilder()
    converter = CanvasConverter(builder, encode_spec, app=app)
    payloads: dict[str, Any] = {}
    for node_id, node in nodes.items():
        if not isinstance(node, dict) or node.get("id", node_id) != node_id:
            raise _fail(wf, f"node {node_id!r:.80} is not a node dict of that id")
        deps = _dict(wf, node.get("dependencies"), f"node {node_id}: dependencies")
        payload = _dict(wf, node.get("custom_payload"), f"node {node_id}: custom_payload")
        if payload:
            payloads[node_id] = payload
        sig = _signature(wf, node_id, node.get("signature"), app)
        try:
            converter.convert(sig, None, tuple(deps))
        except BuildError as exc:
            raise _fail(wf, str(exc)) from exc
    try:
        graph = builder.freeze(None)  # celery-dyrygent's workflow result is None
    except BuildError as exc:
        raise _fail(wf, str(exc)) from exc
    given: dict[int, NodeState] = {}
    for node_id in running:
        given[graph.index[node_id]] = NodeState.LAUNCHED  # observed, never launched again
    for node_id, ok in finished.items():
        given[graph.index[node_id]] = NodeState.SUCCEEDED if ok else NodeState.FAILED
    header = Header(
        _dict(wf, data.get("tasks_options"), "tasks_options"),
        _dict(wf, data.get("workflow_options"), "workflow_options"),
    )
    extras: Extras = {
        "custom_payload": _dict(wf, data.get("custom_payload"), "custom_payload"),
        "node_payloads": payloads,
        "backup_interval": _retry_bounds(wf, data.get("retry_policy")),
    }
    limit = data.get("processing_limit_ts")
    if limit is not None and (not isinstance(limit, (int, float)) or isinstance(limit, bool)):
        raise _fail(wf, "processing_limit_ts is not a number")
    max_age = DEFAULT_MAX_AGE if limit is None else max(1, int(limit - now))
    return Adopted(graph, header, extras, given, max_age)
