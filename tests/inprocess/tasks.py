"""The tasks of the in-process tests, registered on an app by ``register_tasks``."""

from __future__ import annotations

from celery import Celery


class NodeFailed(Exception):
    """What ``t.fail`` raises; the workflow's ``get()`` must raise it unchanged."""


def register_tasks(app: Celery) -> None:
    """Register ``t.add``, ``t.tsum`` and ``t.fail`` on ``app`` (not shared with other apps)."""

    @app.task(name="t.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="t.tsum", shared=False)
    def tsum(xs: list[int]) -> int:
        return sum(xs)

    @app.task(name="t.fail", shared=False)
    def fail(*args: object) -> None:
        raise NodeFailed(f"node failed on purpose with {list(args)}")
