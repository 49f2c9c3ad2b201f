"""Which definition and payload started a run from the dashboard (for Relaunch and names).

Kept in the result backend under ``dyrygent-web-run-<id>``; runs started elsewhere are
found through the definitions' own run records (:mod:`dyrygent.definitions.records`).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["RUN_KEY", "remember_run", "run_of"]

RUN_KEY = "dyrygent-web-run-"


def remember_run(app: Any, wf: str, name: str, payload: dict[str, Any]) -> None:
    """Record which definition and payload started ``wf`` (for Relaunch)."""
    backend = app.backend
    if hasattr(backend, "set"):
        backend.set(RUN_KEY + wf, json.dumps({"name": name, "payload": payload}))


def run_of(app: Any, wf: str) -> tuple[str, dict[str, Any]] | None:
    """(definition name, payload) that started ``wf`` from the dashboard, or None."""
    backend = app.backend
    raw = backend.get(RUN_KEY + wf) if hasattr(backend, "get") else None
    if not raw:
        return None
    data = json.loads(raw)
    return str(data["name"]), dict(data["payload"])
