"""The processor's polling window (no broker needed)."""

from __future__ import annotations


def test_the_polling_window_covers_every_in_flight_node_without_a_generation_change():
    from celery import Celery

    from dyrygent.engine.processor import Processor

    # Given more nodes in flight than one window reads, and ticks that keep one generation
    p = Processor(Celery("w", set_as_current=False), poll_window=8)
    flying = list(range(30))
    seen: set[int] = set()
    for _ in range(10):
        window = p._window(flying)
        assert len(window) <= 8 and window[:4] == [0, 1, 2, 3]  # the oldest, always
        seen |= set(window)
    # Then successive ticks read all of them
    assert seen == set(flying)
