"""Signals dyrygent sends (Celery's dispatch machinery: receivers' errors are logged, never
fatal).

``tick_claimed``: a processor has claimed a workflow and is about to tick. Keyword arguments:
``workflow_id``, ``gen``, ``attempts`` (2 or more: a re-tick after a crash) and ``driver``
(False for a wake-up tick or the client's first tick).
"""

from __future__ import annotations

from celery.utils.dispatch import Signal

__all__ = ["tick_claimed"]

tick_claimed = Signal(
    name="dyrygent_tick_claimed", providing_args={"workflow_id", "gen", "attempts", "driver"}
)
