"""Worker records: which worker started each node, written by the worker at the start.

A worker that registered the processor writes, when a node launched by dyrygent starts
(``task_prerun``), one record: ``host|pid|flags`` and the time, by the store's clock
(:meth:`~dyrygent.engine.stores.base.Store.begin_record`: one Lua call, the only per-node cost
of :mod:`dyrygent.engine.orphans`). On Redis it is sent before the node runs and its reply
read when the node ends (``task_postrun``), so the node never waits a round trip. A node still
waiting in a queue has no record, so it is never taken for an orphan.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from celery.signals import task_postrun, task_prerun

from dyrygent.engine.registry import processor_of
from dyrygent.engine.wake import WAKE_HEADER

__all__ = [
    "ACKS_LATE",
    "NO_REMOTE_CONTROL",
    "SILENT_WHILE_BUSY",
    "connect_start_records",
    "worker_label",
]

logger = logging.getLogger("dyrygent.processor")

#: Record flags: ``s`` the node runs in the worker's main thread (solo pool: the worker
#: cannot answer remote control until the node ends, so silence proves nothing); ``n`` the
#: worker has remote control disabled (it never answers); ``a`` the task acks late (the
#: broker delivers its message again if the worker dies: a relaunch would be a second run).
SILENT_WHILE_BUSY = "s"
NO_REMOTE_CONTROL = "n"
ACKS_LATE = "a"

_labels: dict[tuple[int, str, bool], str] = {}


def worker_label(task: Any) -> str:
    """``host|pid|flags`` of the worker process running ``task`` now (cached: it is written
    at every node start)."""
    main = threading.current_thread() is threading.main_thread()
    key = (os.getpid(), task.request.hostname or "", main)
    label = _labels.get(key)
    if label is None:
        import billiard.process  # noqa: PLC0415 (Celery's dependency; only in workers)

        flags = ""
        if main and billiard.process.current_process().name == "MainProcess":
            flags += SILENT_WHILE_BUSY
        if not task.app.conf.worker_enable_remote_control:
            flags += NO_REMOTE_CONTROL
        label = _labels[key] = f"{key[1]}|{key[0]}|{flags}"
    return label + ACKS_LATE if task.acks_late else label


def _record_start(sender: Any = None, task_id: str | None = None, task: Any = None, **_: Any):
    """task_prerun: a node launched by dyrygent starts here; record which worker runs it."""
    if task is None or task_id is None:
        return
    try:
        wake = task.request.get(WAKE_HEADER)
    except Exception:  # no request context (eager calls)
        return
    if not (isinstance(wake, list) and wake and isinstance(wake[0], str)):
        return
    processor = processor_of(task.app)
    if processor is None or processor.orphans.grace is None:
        return
    if not processor.store.records_starts:
        return
    try:
        _pending.confirms[task_id] = processor.store.begin_record(
            wake[0], task_id, worker_label(task)
        )
    except Exception as exc:  # the node must run anyway; only its relaunch is at stake
        logger.warning(
            "dyrygent: workflow %s: could not record the start of node %s (%r); it will not "
            "be relaunched if this worker dies",
            wake[0],
            task_id,
            exc,
        )


class _Pending(threading.local):
    """The records sent and not yet confirmed, by task id (per thread: a thread runs one
    node at a time, so this holds at most one entry in the common case)."""

    def __init__(self) -> None:
        self.confirms: dict[str, Callable[[], None]] = {}


_pending = _Pending()


def _confirm_record(sender: Any = None, task_id: str | None = None, **_: Any) -> None:
    """task_postrun: read the reply to the node's start record (sent at its start)."""
    confirm = _pending.confirms.pop(task_id, None) if task_id else None
    if confirm is None:
        return
    try:
        confirm()
    except Exception as exc:  # the node ended anyway: its record is no longer needed
        logger.warning("dyrygent: the start record of node %s failed (%r)", task_id, exc)


def connect_start_records() -> None:
    """Connect the task_prerun handler that records node starts (once per process;
    register_workflow_processor calls it)."""
    task_prerun.connect(_record_start, weak=False, dispatch_uid="dyrygent-record-start")
    task_postrun.connect(_confirm_record, weak=False, dispatch_uid="dyrygent-confirm-record")
