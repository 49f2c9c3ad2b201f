"""The processor ``dyrygent.tasks.register_workflow_processor`` registers: dyrygent's, plus
the per-workflow backup tick bounds of celery-dyrygent's ``set_retry_policy``."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from dyrygent.compat.extras import Extras, backup_bounds, decode_extras
from dyrygent.engine.processor import Processor
from dyrygent.engine.trust import unseal

__all__ = ["CompatProcessor"]

_CACHE = 1024


class CompatProcessor(Processor):
    """A :class:`~dyrygent.engine.processor.Processor` that reads each workflow's extras
    (:mod:`dyrygent.compat.extras`) and keeps its backup driver within the workflow's bounds."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._extras: OrderedDict[str, Extras] = OrderedDict()
        self._extras_lock = threading.Lock()  # (a thread pool ticks in several threads)

    def remember_extras(self, wf: str, extras: Extras) -> None:
        with self._extras_lock:
            self._extras[wf] = extras
            self._extras.move_to_end(wf)
            if len(self._extras) > _CACHE:
                self._extras.popitem(last=False)

    def extras(self, wf: str) -> Extras:
        """The extras stored with ``wf`` ({} if none, or if it is unknown); one store read,
        then cached. Raises PayloadError when the stored header's signature is wrong."""
        with self._extras_lock:
            cached = self._extras.get(wf)
        if cached is not None:
            return cached
        data, sealed = self.store.load(wf)
        if data is None or sealed is None:
            return {}
        extras = decode_extras(unseal(self.app, wf, bytes(data), bytes(sealed)))
        self.remember_extras(wf, extras)
        return extras

    def publish_tick(
        self,
        wf: str,
        processor_options: dict[str, Any],
        gen: int | None,
        countdown: float | None,
        idle: int = 0,
    ) -> None:
        """As dyrygent's, but a driver's countdown (not a retry after a failed publish)
        follows the workflow's bounds when it set some: the shortest after a tick that found
        work, doubling while idle up to the longest."""
        if gen is not None and countdown and countdown > self.timing.min_interval:
            try:
                bounds = backup_bounds(self.extras(wf))
            except Exception:  # the tick that loads it reports a bad header; keep ours
                bounds = None
            if bounds is not None:
                shortest, longest = bounds
                countdown = min(longest, shortest * 2.0 ** min(idle, 16))
        super().publish_tick(wf, processor_options, gen, countdown, idle)
