"""Adopting celery-dyrygent workflows in flight: a task under celery-dyrygent's processor
name takes its message, converts the workflow (:mod:`dyrygent.compat.convert`) and starts it
as a dyrygent workflow under the same id, from where it stands: finished nodes stay
finished, running nodes are observed (never launched again), the rest run when their
dependencies succeed. Its next processor messages are dyrygent's.

A second delivery of the same message finds the workflow adopted and does nothing. A
malformed or unknown message is rejected with one log line and launches nothing.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.exceptions import Ignore
from celery.signals import worker_init

from dyrygent.compat.convert import convert_workflow_dict
from dyrygent.compat.starting import start_with
from dyrygent.engine.processor import Processor
from dyrygent.errors import BuildError, ConfigurationError, PayloadError
from dyrygent.workflow import DEFAULT_MAX_BYTES

__all__ = ["CELERY_DYRYGENT_PROCESSOR", "adopt", "check_adopter", "register_adopter"]

logger = logging.getLogger("dyrygent.compat")

#: The name celery-dyrygent 0.8.0 registers its processor task under.
CELERY_DYRYGENT_PROCESSOR = "workflow-processor"
#: Options of the adopting task: its message is acknowledged after the adoption, and no
#: state of its own is stored (it would land under the workflow's id, where the workflow's
#: result goes; celery-dyrygent's messages ask for results, so the task also raises Ignore).
ADOPTER_OPTIONS = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "ignore_result": True,
    "track_started": False,
    "max_retries": None,
}


def _half_started(processor: Processor, wf: str, gen: int) -> bool:
    """Whether ``wf`` was stored by an adoption that died before its first commit (then
    nothing of it ever ran under dyrygent, and adopting again is safe)."""
    return gen == 0 and not processor.store.history(wf)


def adopt(processor: Processor, wf: str, workflow_dict: Any) -> str:
    """Adopt celery-dyrygent workflow ``wf``; returns what happened: ``adopted``,
    ``duplicate`` (already adopted) or ``rejected`` (logged). Store and broker errors
    propagate (the caller retries)."""
    try:
        adopted = convert_workflow_dict(wf, workflow_dict, processor.app, time.time())
    except PayloadError as exc:
        logger.error("dyrygent: rejected a celery-dyrygent processor message: %s", exc)
        return "rejected"
    info = processor.store.status(wf)
    if info.status is not None and not _half_started(processor, wf, info.gen):
        logger.info("dyrygent: celery-dyrygent workflow %s was adopted already", wf)
        return "duplicate"
    try:
        start_with(
            processor,
            wf,
            adopted.graph,
            adopted.header,
            adopted.extras,
            adopted.max_age,
            DEFAULT_MAX_BYTES,
            adopted.given,
        )
    except (PayloadError, BuildError) as exc:
        logger.error("dyrygent: rejected celery-dyrygent workflow %s: %s", wf, exc)
        return "rejected"
    logger.info(
        "dyrygent: adopted celery-dyrygent workflow %s (%d nodes, %d finished or running)",
        wf,
        len(adopted.graph),
        len(adopted.given),
    )
    return "adopted"


def register_adopter(app: Any, processor: Processor) -> Any:
    """Register the task named ``workflow-processor`` on ``app`` and return it."""

    def adopt_celery_dyrygent(self: Any, *args: Any, **kwargs: Any) -> None:
        raise Ignore(handle(self, args, kwargs))  # (see ADOPTER_OPTIONS)

    def handle(self: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        workflow_dict = kwargs.pop("workflow_dict", None)
        wf = self.request.id
        if args or kwargs or not isinstance(workflow_dict, dict) or not isinstance(wf, str):
            logger.error(
                "dyrygent: rejected a celery-dyrygent processor message %.80r with invalid "
                "arguments (args=%.80r, extra keys=%.80r, workflow_dict a %s); nothing was "
                "launched",
                wf,
                args,
                sorted(kwargs),
                type(workflow_dict).__name__,
            )
            return "rejected"
        try:
            return adopt(processor, wf, workflow_dict)
        except Exception as exc:  # a store or broker outage: try again, as a tick would
            logger.warning("dyrygent: adopting workflow %s failed (%r); retrying", wf, exc)
            raise processor.again(self, processor.timing.backoff(self.request.retries), exc)

    task = app.task(name=CELERY_DYRYGENT_PROCESSOR, bind=True, shared=False, **ADOPTER_OPTIONS)(
        adopt_celery_dyrygent
    )

    def check_at_worker_start(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is not app:
            return
        try:
            check_adopter(app, adopt_celery_dyrygent)
        except ConfigurationError as exc:
            # Celery logs and drops a receiver's exception: SystemExit stops the worker
            raise SystemExit(f"dyrygent: {exc}") from exc

    worker_init.connect(check_at_worker_start, weak=False)
    return task


def check_adopter(app: Any, adopter: Any) -> None:
    """Raise ConfigurationError unless the function ``adopter`` holds celery-dyrygent's
    processor name on ``app`` (celery-dyrygent registers its own as a shared task, so it
    reaches every app, and Celery keeps the first task registered under a name)."""
    held = app.tasks.get(CELERY_DYRYGENT_PROCESSOR)
    run = getattr(held, "run", None)
    if held is not None and getattr(run, "__func__", run) is not adopter:
        raise ConfigurationError(
            f"the task {CELERY_DYRYGENT_PROCESSOR!r} on app {app.main!r} is celery-dyrygent's "
            f"own processor ({getattr(held, '__module__', '?')}), so its messages would not be "
            f"adopted: drop celery_dyrygent.tasks.register_workflow_processor(app) from the "
            f"modules your workers import"
        )
