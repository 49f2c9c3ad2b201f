"""Per-processor hooks: plain callables registered on one processor, never on a class.

Names follow ``before_*`` / ``after_*``. A hook that raises is logged with its traceback and
never breaks a tick. Hooks run inside ticks: keep them quick.

* ``before_run(kind, workflow_id)``: a processor run starts (``kind``: ``driver``,
  ``wake``, ``here``); ``after_run(kind, workflow_id, outcome)``: it ended;
* ``before_tick(workflow_id, gen, attempts, driver)``: a tick has claimed the workflow;
* ``after_tick(workflow_id, changes, launched)``: a tick committed; ``changes`` maps node
  index to its new NodeState, ``launched`` counts the nodes it published;
* ``after_publish(workflow_id, node_id)``: one node was published.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

__all__ = ["HOOK_NAMES", "Hooks"]

logger = logging.getLogger("dyrygent.processor")

HOOK_NAMES = frozenset({"before_run", "after_run", "before_tick", "after_tick", "after_publish"})


class Hooks:
    """The hooks of one processor."""

    def __init__(self) -> None:
        self._hooks: dict[str, list[Callable[..., Any]]] = {name: [] for name in HOOK_NAMES}

    def connect(self, name: str, hook: Callable[..., Any]) -> Callable[..., Any]:
        """Call ``hook`` at ``name``; returns it (usable as a decorator through partial).
        Raises ValueError for an unknown name."""
        if name not in self._hooks:
            raise ValueError(f"unknown hook {name!r}: use one of {sorted(HOOK_NAMES)}")
        self._hooks[name].append(hook)
        return hook

    def disconnect(self, name: str, hook: Callable[..., Any]) -> None:
        if hook in self._hooks.get(name, ()):
            self._hooks[name].remove(hook)

    def active(self, name: str) -> bool:
        return bool(self._hooks[name])

    def fire(self, name: str, *args: Any) -> None:
        """Call every hook at ``name``; a failing one is logged, never raised."""
        for hook in self._hooks[name]:
            try:
                hook(*args)
            except Exception:
                logger.exception("dyrygent: the %s hook %r failed", name, hook)
