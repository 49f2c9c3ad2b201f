"""``register_workflow_processor``: the one Celery task that runs driver and wake-up ticks."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_init

from dyrygent.engine.processor import PROCESSOR_NAME, Processor
from dyrygent.engine.records import connect_start_records
from dyrygent.engine.registry import processor_of, set_processor
from dyrygent.engine.sweep import connect_sweep
from dyrygent.engine.wake import connect_wake_ups
from dyrygent.errors import ConfigurationError

__all__ = ["DEFAULT_TASK_OPTIONS", "register_workflow_processor"]

logger = logging.getLogger("dyrygent.processor")

#: Options every processor task gets unless the caller overrides them: the message is
#: acknowledged after the tick, and re-queued if the worker dies (README, Reliability, item 2).
DEFAULT_TASK_OPTIONS = {
    # retry(max_retries=None) means "the task's max_retries"; None here means unbounded:
    # the processor bounds its retries itself (max_errors), and a driver must never be
    # dropped by Celery's default of 3
    "max_retries": None,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "ignore_result": True,
    "serializer": "json",
}


def _check_serializers(app: Any, task_options: dict[str, Any], allow_pickle: bool) -> None:
    """Refuse to run a processor that would accept pickle (README, Reliability, item 9)."""
    if allow_pickle:
        return
    accepted = {str(c).lower() for c in (app.conf.accept_content or ())}
    serializer = str(task_options.get("serializer", "json")).lower()
    if serializer == "pickle" or accepted & {"pickle", "application/x-python-serialize"}:
        raise ConfigurationError(
            "the dyrygent processor refuses to run while the app accepts pickle "
            f"(accept_content={sorted(accepted)}, serializer={serializer!r}): a message from "
            "the broker could run arbitrary code. Accept json or msgpack only, or pass "
            "register_workflow_processor(app, allow_pickle=True) if you trust the broker"
        )


def _valid_message(workflow_id: Any, gen: Any, idle: Any, extra: dict[str, Any]) -> bool:
    return (
        isinstance(workflow_id, str)
        and 0 < len(workflow_id) <= 64
        and (gen is None or (type(gen) is int and gen >= 0))
        and type(idle) is int
        and 0 <= idle <= 1_000_000
        and not extra
    )


def register_workflow_processor(app: Any, **task_options: Any) -> Any:
    """Register the processor task on ``app`` and return it. Call once, in a module the
    workers import.

    ``task_options`` are Celery task options (queue, priority, ...) and the tick settings
    ``max_interval`` (seconds until the backup tick; nodes wake the processor when they end),
    ``min_interval`` (the first retry delay), ``max_attempts`` (ticks interrupted by a crash
    before the workflow ends in ERROR), ``max_errors`` (ticks in a row that failed with an
    exception, e.g. during an outage), ``poll_window`` (in-flight nodes read per tick),
    ``lease`` (seconds after which a hold no longer renewed is taken over: its holder died)
    and ``idle_interval`` (the longest backup-tick countdown: a driver that keeps finding
    nothing to do, because the wake-ups do it all, backs off from ``max_interval`` to it),
    ``orphan_grace`` (seconds a node runs, by the store's clock, before the processor asks
    whether its worker is still alive and still knows it; None turns the records, the checks
    and node deadlines off; see dyrygent.engine.orphans) and
    ``max_node_relaunches`` (relaunches of a node whose worker was lost, before it fails).
    Raises ConfigurationError if the app accepts pickle, unless
    ``allow_pickle=True``; a worker started with such a configuration refuses to start.
    """
    settings: dict[str, Any] = {
        k: task_options.pop(k)
        for k in (
            "min_interval",
            "max_interval",
            "max_attempts",
            "max_errors",
            "poll_window",
            "known_tasks",
            "lease",
            "idle_interval",
            "orphan_grace",
            "max_node_relaunches",
        )
        if k in task_options
    }
    allow_pickle = bool(task_options.pop("allow_pickle", False))
    settings["allow_pickle"] = allow_pickle
    # (dyrygent.tasks registers its Processor subclass: celery-dyrygent compatibility)
    processor_class: type[Processor] = task_options.pop("processor_class", Processor)
    existing = processor_of(app)
    if existing is not None:
        return existing.task
    _check_serializers(app, task_options, allow_pickle)
    processor = processor_class(app, PROCESSOR_NAME, **settings)
    options = {**DEFAULT_TASK_OPTIONS, **task_options}

    @app.task(name=PROCESSOR_NAME, bind=True, shared=False, **options)
    def dyrygent_processor(
        self: Any, workflow_id: str, gen: int | None = None, idle: int = 0, **extra: Any
    ) -> str:
        if not _valid_message(workflow_id, gen, idle, extra):
            logger.error(
                "dyrygent: rejected a processor message with invalid arguments "
                "(workflow_id=%.80r, gen=%.20r, idle=%.20r, extra keys=%.80r); "
                "nothing was launched",
                workflow_id,
                gen,
                idle,
                sorted(extra),
            )
            return "rejected"
        return processor.run(self, workflow_id, gen, idle)

    def check_at_worker_start(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is app:
            _check_serializers(app, task_options, allow_pickle)

    worker_init.connect(check_at_worker_start, weak=False)
    connect_wake_ups()
    # the tasks workflow definitions need on workers (failure hooks' info, beat's runs)
    from dyrygent.definitions.tasks import register_definition_tasks

    register_definition_tasks(app)
    connect_start_records()
    connect_sweep()
    processor.task = dyrygent_processor
    set_processor(app, processor)
    return dyrygent_processor
