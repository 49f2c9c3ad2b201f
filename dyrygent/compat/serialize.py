"""``to_dict()`` / ``from_dict()`` of :class:`dyrygent.workflows.Workflow`: a built, not yet
started workflow as JSON-safe data (``json.dumps`` takes it as is), and back.

The dict keeps celery-dyrygent's shape where it has one (``id``, ``nodes`` as node id ->
``{"id", "signature", "dependencies", "custom_payload"}``, ``finished``, ``retry_policy``,
``custom_payload``, ``workflow_options``) and adds what dyrygent needs to rebuild the same
graph: each node's ``call`` (its args, kwargs and options, as stored), ``input`` (what it
receives from its parents), ``label`` and ``rule``, and the workflow's ``output``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from dyrygent.core.graph import Expr, NodeKind
from dyrygent.core.rules import TriggerRule
from dyrygent.errors import BuildError

if TYPE_CHECKING:
    from dyrygent.workflows import Workflow

__all__ = ["FORMAT", "from_dict", "to_dict"]

FORMAT = "dyrygent.workflows/1"


def _ids(expr: Expr, ids: list[str]) -> Any:
    if isinstance(expr, list):
        return [_ids(e, ids) for e in expr]
    return None if expr is None else ids[expr]  # type: ignore[index]


def to_dict(wf: Workflow) -> dict[str, Any]:
    """``wf`` as JSON-safe data. Raises BuildError once it was started, or for a graph
    that does not validate (see ``Workflow.freeze``)."""
    if wf._started:
        raise BuildError(f"to_dict(): workflow {wf.id} was already started")
    graph = wf.freeze_with_inputs()
    ids = [n.id for n in graph.nodes]
    compat = wf.nodes
    nodes: dict[str, Any] = {}
    for node in graph.nodes:
        call = json.loads(node.spec)  # kombu's JSON: its type markers stay plain dicts
        nodes[node.id] = {
            "id": node.id,
            "signature": compat[node.id].signature_dict(call),
            "dependencies": {ids[p]: None for p in node.parents},
            "custom_payload": compat[node.id].custom_payload,
            "task": node.task,
            "call": call,
            "input": _ids(node.input, ids),
            "label": node.label,
            "rule": node.rule.value,
            "kind": int(node.kind),
        }
    return {
        "format": FORMAT,
        "version": 1,
        "id": wf.id,
        "nodes": nodes,
        "output": _ids(graph.output, ids),
        "finished": dict(wf.finished),
        "custom_payload": wf.custom_payload,
        "retry_policy": wf.retry_policy,
        "workflow_options": wf.options,
        "max_processing_time": wf.max_age,
        "max_nodes": wf.max_nodes,
        "max_bytes": wf.max_bytes,
        "fail_fast": wf.fail_fast,
        "pass_results": wf.pass_results,
    }


def from_dict(cls: type[Workflow], data: dict[str, Any], app: Any = None) -> Workflow:
    """A workflow equal to the one ``data`` was made from (same id, node ids, calls and
    dependencies). Raises BuildError for data ``to_dict`` did not write."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BuildError(
            f"from_dict(): not a dict written by dyrygent.workflows.Workflow.to_dict() "
            f"(format {FORMAT!r}); celery-dyrygent's own messages are adopted by the "
            f"processor instead (register_workflow_processor(app, adopt_celery_dyrygent=True))"
        )
    wf = cls(
        data.get("workflow_options"),
        app=app,
        max_nodes=data["max_nodes"],
        max_bytes=data["max_bytes"],
        max_age=data["max_processing_time"],
        fail_fast=data["fail_fast"],
        pass_results=data["pass_results"],
        custom_payload=data.get("custom_payload"),
    )
    wf.id = data["id"]
    if data.get("retry_policy"):
        wf.set_retry_policy(*data["retry_policy"])
    builder = wf._builder
    for node_id, node in data["nodes"].items():
        builder.add(
            node_id,
            node["task"],
            json.dumps(node["call"]).encode(),
            parents=list(node["dependencies"]),
            input=node["input"],
            label=node["label"],
            rule=TriggerRule(node["rule"]),
            kind=NodeKind(node["kind"]),
        )
    wf._output = data["output"]
    wf._nodes.extend(wf._builder_nodes(0))
    for node_id, node in data["nodes"].items():
        wf.nodes[node_id].custom_payload = dict(node.get("custom_payload") or {})
    wf.finished.update(data.get("finished") or {})
    return wf
