"""Workflow definitions for the web tests, with issue 12's interface (``names()``,
``get(name)``, ``run(name, payload=, app=)`` raising an error with ``.errors``).

REPLACE-WHEN-MERGED: issue 12's ``dyrygent.load_definitions`` on a workflows.yml.
"""

from __future__ import annotations

from typing import Any

from celery import group

from dyrygent import Workflow


class PayloadInvalid(ValueError):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class Definitions:
    """``demo.sum``: add(n, n) for each of ``numbers``, then their sum; ``demo.fail``:
    one failing task after a sleep of ``seconds``."""

    def names(self) -> list[str]:
        return ["demo.fail", "demo.sum"]

    def get(self, name: str) -> dict:
        return {"tasks": ["t.add", "t.tsum"] if name == "demo.sum" else ["t.fail"]}

    def run(self, name: str, payload: dict, app: Any) -> Any:
        errors = []
        if name == "demo.sum":
            numbers = payload.get("numbers")
            if not isinstance(numbers, list):
                errors.append("numbers: a list of integers is required")
            elif not all(isinstance(n, int) for n in numbers):
                errors.append("numbers: every item must be an integer")
            if set(payload) - {"numbers"}:
                errors.append(f"unexpected keys: {sorted(set(payload) - {'numbers'})}")
        if errors:
            raise PayloadInvalid(errors)
        wf = Workflow(app=app)
        if name == "demo.sum":
            add, tsum = app.tasks["t.add"], app.tasks["t.tsum"]
            wf.add_celery_canvas(group(add.s(n, n) for n in payload["numbers"]) | tsum.s())
        else:
            wf.add_signature(app.tasks["t.fail"].s())
        return wf.apply_async()
