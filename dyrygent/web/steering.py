"""Cancel and retry built on what the engine offers today, for the dashboard's buttons.

REPLACE-WHEN-MERGED: issue 10 (branch ``steer``) adds ``WorkflowResult.cancel()`` and
``.retry()`` to the engine itself; :mod:`dyrygent.web.source` should then call those, and
this module goes. Until then: cancel claims the workflow through the store's fence like a
wake-up, marks every unsettled node CANCELLED (revoking those in flight) and commits the
workflow CANCELLED; retry (Redis only) reopens a finished workflow, forgets the results of
the nodes it reopens and publishes a new driver. The web app's runs of a definition are
remembered under ``dyrygent-web-run-<id>`` (REPLACE-WHEN-MERGED: issue 12's custom payload).
"""

from __future__ import annotations

import json
import time
from typing import Any

from celery.utils import uuid

from dyrygent.core.states import NodeState, WorkflowStatus
from dyrygent.core.tick import plan_cancel, plan_retry
from dyrygent.engine.loading import Loaded
from dyrygent.engine.registry import processor_of
from dyrygent.engine.stores import ClaimStatus, store_for
from dyrygent.engine.wake import PROCESSOR_NAME

__all__ = ["RUN_KEY", "cancel", "remember_run", "retry", "run_of"]

_HELD = (ClaimStatus.OK, ClaimStatus.EXPIRED)
RUN_KEY = "dyrygent-web-run-"


def _hold(store: Any, wf: str, token: str, timeout: float = 10.0) -> Any:
    """Claim ``wf`` as a wake-up, waiting while a tick holds it; the claim (DONE or GONE
    when there is nothing to hold)."""
    deadline = time.monotonic() + timeout
    while True:
        claim = store.claim(wf, None, token, wake=True)
        if claim.status is not ClaimStatus.BUSY or time.monotonic() > deadline:
            return claim
        time.sleep(0.02)


def cancel(app: Any, wf: str, loaded: Loaded, terminate: bool = False) -> bool:
    """Cancel ``wf``: true if it was running and is now CANCELLED, false if it had ended.

    Raises TimeoutError if a tick kept holding it for 10 seconds.
    """
    store = store_for(app)
    for _ in range(5):
        token = f"web-{uuid()}"
        claim = _hold(store, wf, token)
        if claim.status is ClaimStatus.BUSY:
            raise TimeoutError(f"workflow {wf}: a tick kept holding it for 10s; try again")
        if claim.status not in _HELD:
            return False
        changes = plan_cancel(claim.states)
        graph = loaded.graph
        flying = [
            graph.nodes[i].id
            for i in changes
            if claim.states[i] in (NodeState.LAUNCHED, NodeState.RUNNING)
        ]
        if flying:
            app.control.revoke(flying, terminate=terminate)
        if store.commit(wf, token, changes, claim.gen, WorkflowStatus.CANCELLED) is not None:
            app.backend.mark_as_revoked(wf, reason="cancelled from the dashboard")
            return True
    raise TimeoutError(f"workflow {wf}: its hold was taken over 5 times; try again")


def retry(app: Any, wf: str, loaded: Loaded) -> int:
    """Reopen finished ``wf``: its failed, upstream-failed, skipped and cancelled nodes run
    again; returns how many nodes were reopened.

    Raises ValueError if it is still running or has nothing to retry, NotImplementedError
    on a store other than Redis (until issue 10's retry).
    """
    from dyrygent.engine.stores.redis import RedisStore

    store = store_for(app)
    if not isinstance(store, RedisStore):
        raise NotImplementedError(
            "retry from the dashboard needs a Redis result backend in this release"
        )
    info = store.status(wf)
    if info.status is WorkflowStatus.RUNNING:
        raise ValueError(f"workflow {wf} is still running: wait for it to end, or cancel it")
    changes = plan_retry(loaded.graph, info.states)
    if not changes:
        raise ValueError(
            f"workflow {wf} has nothing to retry: no node failed, was skipped or cancelled"
        )
    backend = app.backend
    keys = [backend.get_key_for_task(loaded.graph.nodes[i].id) for i in changes]
    backend.client.delete(*keys, backend.get_key_for_task(wf))
    store.client.hset(f"{store.prefix}{wf}:m", mapping={"status": "running", "ended": ""})
    token = f"web-{uuid()}"
    claim = _hold(store, wf, token)
    if claim.status not in _HELD:
        raise ValueError(f"workflow {wf} could not be reopened ({claim.status})")
    store.commit(wf, token, changes, claim.gen, WorkflowStatus.RUNNING)
    processor = processor_of(app)
    name = processor.name if processor is not None else PROCESSOR_NAME
    app.send_task(name, (wf, claim.gen), **loaded.header.processor_options)
    return len(changes)


def remember_run(app: Any, wf: str, name: str, payload: dict) -> None:
    """Record which definition and payload started ``wf`` (for Relaunch)."""
    backend = app.backend
    if hasattr(backend, "set"):
        backend.set(RUN_KEY + wf, json.dumps({"name": name, "payload": payload}))


def run_of(app: Any, wf: str) -> tuple[str, dict] | None:
    """(definition name, payload) that started ``wf`` from the dashboard, or None."""
    backend = app.backend
    raw = backend.get(RUN_KEY + wf) if hasattr(backend, "get") else None
    if not raw:
        return None
    data = json.loads(raw)
    return str(data["name"]), dict(data["payload"])
