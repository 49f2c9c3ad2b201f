"""The processor ``dyrygent.tasks.register_workflow_processor`` registers: dyrygent's, plus
the per-workflow backup tick bounds of celery-dyrygent's ``set_retry_policy``."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from dyrygent.compat.extras import Extras, backup_bounds, decode_extras
from dyrygent.engine.loading import Loader
from dyrygent.engine.processor import Processor
from dyrygent.engine.stores import Store
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

    @property
    def loader(self) -> Loader:
        """dyrygent's loader, reading through :class:`_Tap`: the workflow's extras are kept
        from the read that loads it, so they cost no read of their own."""
        if self._loader is None:
            self._loader = Loader(
                self.app,
                _Tap(self.store, self._loaded),  # type: ignore[arg-type]  # (store.load only)
                self._known_tasks,
                self._allow_pickle,
                self._cache_size,
            )
        return self._loader

    def _loaded(self, wf: str, data: bytes | None, sealed: bytes | None) -> None:
        if data is not None and sealed is not None:
            try:
                self.remember_extras(wf, decode_extras(unseal(self.app, wf, data, sealed)))
            except Exception:  # the loader reports a bad header itself
                pass

    def remember_extras(self, wf: str, extras: Extras) -> None:
        with self._extras_lock:
            self._extras[wf] = extras
            self._extras.move_to_end(wf)
            if len(self._extras) > _CACHE:
                self._extras.popitem(last=False)

    def extras(self, wf: str) -> Extras:
        """The extras stored with ``wf`` ({} if none), kept from the load of ``wf`` (its
        ticks load it first). Raises PayloadError as the loader does, for a workflow that is
        missing, altered or invalid."""
        with self._extras_lock:
            cached = self._extras.get(wf)
        if cached is not None:
            return cached
        self.loader.load(wf)  # (after a tick's load, cached: no read)
        with self._extras_lock:
            found = self._extras.get(wf)
        if found is not None:
            return found
        data, sealed = self.store.load(wf)  # the loader had kept it longer than we did
        self._loaded(wf, None if data is None else bytes(data), sealed and bytes(sealed))
        with self._extras_lock:
            return self._extras.get(wf) or {}

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


class _Tap:
    """A store whose ``load`` also hands what it read to ``seen(wf, graph, header)``."""

    def __init__(self, store: Store, seen: Any) -> None:
        self._store = store
        self._seen = seen

    def load(self, wf: str) -> tuple[bytes | None, bytes | None]:
        data, sealed = self._store.load(wf)
        self._seen(
            wf, None if data is None else bytes(data), None if sealed is None else bytes(sealed)
        )
        return data, sealed
