"""When the processor comes back, and which in-flight nodes a tick reads: pure values.

Nothing here touches Celery or a clock; the processor asks and acts. Unit-tested alone.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PollWindow", "Timing"]


@dataclass(frozen=True)
class Timing:
    """The processor's delays, in seconds.

    ``min_interval``: the first retry delay; ``max_interval``: the backup driver's countdown
    (nodes wake the processor when they end); ``idle_interval``: the longest countdown of a
    driver that keeps finding nothing to do; ``lease``: a hold not renewed for this long is
    taken over (its holder died).
    """

    min_interval: float = 0.02
    max_interval: float = 1.0
    idle_interval: float = 10.0
    lease: float = 10.0

    def backoff(self, retries: int) -> float:
        """The delay before retrying a failed tick: exponential from ``min_interval``, capped
        at 10 s (outages last seconds to minutes)."""
        return min(10.0, self.min_interval * 2.0 ** min(retries, 16))

    def wait(self, retries: int) -> float:
        """The delay of a driver that found the workflow busy or its predecessor not yet
        committed: it must come back soon, never later than ``max_interval``."""
        return min(self.max_interval, self.min_interval * 2.0 ** min(retries, 16))

    def next_idle(self, idle: int, found_work: bool) -> int:
        """The idle count the next driver carries: 0 after a tick that found work."""
        return 0 if found_work else idle + 1

    def driver_countdown(self, idle: int, publish_failed: bool) -> float:
        """The next driver's countdown: ``min_interval`` after a failed publish; otherwise
        ``max_interval``, doubling with each idle tick up to ``idle_interval``."""
        if publish_failed:
            return self.min_interval
        longest = max(self.idle_interval, self.max_interval)
        return min(longest, self.max_interval * 2.0 ** min(idle, 16))

    @property
    def renew_every(self) -> float:
        """How often a long tick renews its hold."""
        return self.lease / 5

    def may_be_dead(self, age: float) -> bool:
        """Whether a hold not renewed for ``age`` seconds may belong to a dead holder (a live
        one renews every fifth of the lease)."""
        return age > self.lease / 4


class PollWindow:
    """Which in-flight nodes a tick reads: all of them up to ``size``; beyond, the oldest
    half-window (they end first: queues are FIFO) and a half-window that moves on at every
    tick of this process over the rest, so every node is read eventually."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._turn = 0

    def select(self, running: list[int]) -> list[int]:
        """The nodes to read among ``running`` (ascending), ascending."""
        w = self.size
        if len(running) <= w:
            return running
        half = w // 2
        rest = running[half:]
        self._turn += 1
        start = (self._turn * (w - half)) % len(rest)
        rotating = (rest + rest)[start : start + w - half]
        return sorted(set(running[:half]) | set(rotating))
