"""Reading node outcomes from the result backend: the ONLY module that reads task metas.

One batched read per call (MGET on key-value backends such as Redis, one SELECT ... IN on the
database backend), one meta per node, so a node's state and result always come from the same
read (README, Reliability, item 4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from celery import states as celery_states
from celery.backends.base import BaseKeyValueStoreBackend
from celery.exceptions import TaskRevokedError

from dyrygent.core.graph import Graph
from dyrygent.core.states import NodeState
from dyrygent.core.tick import Outcome
from dyrygent.engine.backends import loaded_class

__all__ = [
    "Observation",
    "error_of",
    "exception_of",
    "forget_results",
    "observe",
    "outcome_of",
    "read_metas",
]

_PENDING = {"status": celery_states.PENDING, "result": None}


def read_metas(backend: Any, task_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The stored meta of each task id, in order ({'status': 'PENDING'} when absent)."""
    if not task_ids:
        return []
    # RedisBackend derives from the Base class, not from KeyValueStoreBackend
    if isinstance(backend, BaseKeyValueStoreBackend):
        keys = [backend.get_key_for_task(t) for t in task_ids]
        values = backend.mget(keys)
        if isinstance(values, dict):  # the cache backend answers {key: value}
            values = [values.get(k) for k in keys]
        decode = backend.decode_result
        return [decode(v) if v is not None else _PENDING for v in values]
    database = loaded_class("celery.backends.database", "DatabaseBackend")
    if database is not None and isinstance(backend, database):
        return _database_metas(backend, task_ids)
    django_db = loaded_class("django_celery_results.backends.database", "DatabaseBackend")
    if django_db is not None and isinstance(backend, django_db):
        return _django_metas(backend, task_ids)
    return [backend.get_task_meta(t) for t in task_ids]


def forget_results(backend: Any, task_ids: Sequence[str]) -> None:
    """Delete the stored metas of ``task_ids``: one DEL per 1,000 on Redis, else Celery's
    ``forget`` per id (a missing one is no error)."""
    from celery.backends.redis import RedisBackend  # noqa: PLC0415 (rarely used)

    if isinstance(backend, RedisBackend):
        client = backend.client
        keys = [backend.get_key_for_task(t) for t in task_ids]
        for start in range(0, len(keys), DB_BATCH):
            client.delete(*keys[start : start + DB_BATCH])
        return
    for t in task_ids:
        backend.forget(t)


#: Task ids per query on the database backend (SQLite allows 32,766 parameters).
DB_BATCH = 1000


def _database_metas(backend: Any, task_ids: Sequence[str]) -> list[dict[str, Any]]:
    """One SELECT ... WHERE task_id IN (...) per DB_BATCH ids, decoded as Celery's
    DatabaseBackend decodes one row (``_get_task_meta_for``)."""

    def decode_result(payload: Any) -> Any:
        # bytes in the result serializer; never the pickle fallback Celery keeps for rows of
        # its old versions (the processor never unpickles). An old Celery's PickleType
        # column hands over the value itself.
        if isinstance(payload, (bytes, bytearray, memoryview)):
            return backend.decode(bytes(payload))
        return payload

    model = backend.task_cls
    found: dict[str, dict[str, Any]] = {}
    session = backend.ResultSession()
    try:
        for start in range(0, len(task_ids), DB_BATCH):
            chunk = list(task_ids[start : start + DB_BATCH])
            for row in session.query(model).filter(model.task_id.in_(chunk)):
                data = row.to_dict()
                data["result"] = decode_result(data["result"])
                found[row.task_id] = backend.meta_from_decoded(data)
    finally:
        session.close()
    return [found.get(t, _PENDING) for t in task_ids]


def _django_metas(backend: Any, task_ids: Sequence[str]) -> list[dict[str, Any]]:
    """One ``task_id__in`` query per DB_BATCH ids on django-celery-results' TaskResult,
    decoded as its DatabaseBackend decodes one row (``_get_task_meta_for``)."""
    manager = backend.TaskModel._default_manager
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(task_ids), DB_BATCH):
        for obj in manager.filter(task_id__in=list(task_ids[start : start + DB_BATCH])):
            row = obj.as_dict()
            meta = backend.decode_content(obj, row.pop("meta", None)) or {}
            row.update(meta, result=backend.decode_content(obj, row.get("result")))
            found[obj.task_id] = backend.meta_from_decoded(row)
    return [found.get(t, _PENDING) for t in task_ids]


def outcome_of(meta: dict[str, Any]) -> Outcome:
    """What a meta says of a launched node: PENDING (or a custom state) is no news, and
    anything else but success and failure (STARTED, RETRY, ...) means it started."""
    status = meta.get("status")
    if status == celery_states.SUCCESS:
        return Outcome.SUCCEEDED
    if status in (celery_states.FAILURE, celery_states.REVOKED):
        return Outcome.FAILED
    if status in (celery_states.STARTED, celery_states.RETRY, celery_states.RECEIVED):
        return Outcome.STARTED
    return Outcome.RUNNING


def exception_of(meta: dict[str, Any], node_id: str) -> BaseException:
    """The exception a failed node's meta holds (TaskRevokedError for a revoked node)."""
    result = meta.get("result")
    if isinstance(result, BaseException):
        return result
    if meta.get("status") == celery_states.REVOKED:
        revoked: BaseException = TaskRevokedError(f"node {node_id} was revoked")
        return revoked
    failed: BaseException = TaskRevokedError(f"node {node_id} failed: {result!r}")
    return failed


def error_of(meta: dict[str, Any], node_id: str) -> dict[str, str]:
    """A failed node's error for people: ``{"type": ..., "message": ...}``."""
    exc = exception_of(meta, node_id)
    return {"type": type(exc).__name__, "message": str(exc)}


@dataclass(frozen=True)
class Observation:
    """What one batched read saw of some in-flight nodes: each node's ``metas`` and
    ``outcomes``, and the nodes seen RUNNING before whose result has ``vanished``."""

    metas: dict[int, dict[str, Any]]
    outcomes: dict[int, Outcome]
    vanished: list[int]


def observe(backend: Any, graph: Graph, states: bytes, indices: Sequence[int]) -> Observation:
    """Read the outcome of the nodes ``indices`` in one batched read."""
    nodes = graph.nodes
    metas = dict(zip(indices, read_metas(backend, [nodes[i].id for i in indices])))
    outcomes = {i: outcome_of(m) for i, m in metas.items()}
    vanished = [
        i
        for i, m in metas.items()
        if states[i] == NodeState.RUNNING and m.get("status") == celery_states.PENDING
    ]
    return Observation(metas, outcomes, vanished)
