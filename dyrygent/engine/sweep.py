"""Re-arming the drivers of running workflows when a worker starts.

A workflow's driver waits its countdown as an unacked ETA message inside one worker. If that
worker dies, RabbitMQ delivers the message again at once, but kombu's Redis transport only
after ``visibility_timeout`` (1 h by default). While nodes run, their wake-ups keep the
workflow going; but with Celery's default settings the dead worker's nodes died too, so
nothing would tick it, and its orphans (:mod:`dyrygent.engine.orphans`) would wait the hour.

So a worker that registered the processor, once ready, publishes one driver for the current
generation of every running workflow. A second driver of one generation is harmless: the
fence lets the first in and tells the other it is stale. One message per running workflow
per worker start; none in normal running.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from celery.signals import worker_ready

from dyrygent.core.states import WorkflowStatus
from dyrygent.engine.registry import processor_of

if TYPE_CHECKING:
    from dyrygent.engine.processor import Processor

__all__ = ["MAX_REARMED", "connect_sweep", "rearm_drivers"]

logger = logging.getLogger("dyrygent.processor")

#: The most running workflows one worker start re-arms (newest first).
MAX_REARMED = 10_000
_PAGE = 500


def rearm_drivers(processor: Processor, limit: int = MAX_REARMED) -> int:
    """Publish a driver for the current generation of each running workflow (newest first,
    up to ``limit``); return how many were published. A workflow that cannot be loaded or
    published is logged and skipped."""
    store, published, before = processor.store, 0, None
    while published < limit:
        page = store.list_workflows(_PAGE, WorkflowStatus.RUNNING, before)
        for info in page:
            try:
                header = processor.loader.load(info.id).header
                countdown = processor.timing.max_interval
                processor.publish_tick(info.id, header.processor_options, info.gen, countdown)
                published += 1
            except Exception as exc:
                logger.warning(
                    "dyrygent: workflow %s: could not re-arm its driver (%r)", info.id, exc
                )
        if len(page) < _PAGE or page[-1].created is None:
            break
        before = page[-1].created
    return published


def _at_worker_ready(sender: Any = None, **_: Any) -> None:
    """worker_ready: re-arm the drivers in a background thread (startup is not delayed)."""
    app = getattr(sender, "app", None)
    processor = None if app is None else processor_of(app)
    if processor is None or processor.orphans.grace is None:
        return

    def sweep() -> None:
        try:
            count = rearm_drivers(processor)
            logger.info("dyrygent: re-armed the drivers of %d running workflows", count)
        except Exception as exc:  # the store is down: the drivers come back on their own
            logger.warning("dyrygent: could not re-arm the drivers at start (%r)", exc)

    threading.Thread(target=sweep, name="dyrygent-sweep", daemon=True).start()


def connect_sweep() -> None:
    """Connect the worker_ready handler (once per process; register_workflow_processor
    calls it)."""
    worker_ready.connect(_at_worker_ready, weak=False, dispatch_uid="dyrygent-sweep")
