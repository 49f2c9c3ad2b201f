"""The JSON API (README, "Web dashboard"): every route is a plain function of the request,
run in a thread (the store's clients block), behind :func:`guarded` for authentication,
CSRF, body size and the mapping of errors to JSON answers (never a 500 for a bad id).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dyrygent.engine.failures import broker_calls, store_calls
from dyrygent.errors import BuildError, DyrygentError, PayloadError, TransientError
from dyrygent.web.model import STATE_NAMES
from dyrygent.web.source import NotFound, Source, Unsupported
from dyrygent.web.views import (
    columns_json,
    detail_json,
    error_json,
    iso,
    node_json,
    safe,
    workflow_json,
)

__all__ = ["api_routes", "guarded"]

logger = logging.getLogger("dyrygent.web")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}$")
Handler = Callable[[Request, Any], Any]
#: The ``state`` filters of the list (ACTIVE: PENDING and RUNNING).
STATES = frozenset({"ACTIVE", "PENDING", "RUNNING", "SUCCESS", "FAILURE", "ERROR", "CANCELLED"})


class HTTPError(Exception):
    """An answer other than 200: ``status`` and the JSON body."""

    def __init__(self, status: int, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.status = status
        self.body = {"error": error, **extra}


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def guarded(handler: Handler, write: bool = False, public: bool = False) -> Callable[..., Any]:
    """The Starlette endpoint for ``handler(request, state)``: checks credentials (unless
    ``public``), the CSRF token of browser writes, and maps errors to JSON answers."""

    async def endpoint(request: Request) -> Response:
        state = request.app.state.web
        if not public:
            denied: Response | None = await run_in_threadpool(state.deny, request, write)
            if denied is not None:  # (scrypt runs off the loop)
                return denied
        for key in ("wf", "node"):
            value = request.path_params.get(key)
            if value is not None and not _ID.match(value):
                return error(404, f"no workflow or node has the id {value[:80]!r}")
        body = None
        if write:
            raw = await request.body()
            if len(raw) > state.max_body:
                return error(413, f"the request body is over {state.max_body} bytes")
            try:
                body = json.loads(raw) if raw.strip() else {}
            except ValueError as exc:
                return error(400, f"the request body is not JSON ({exc})")
            if not isinstance(body, dict):
                return error(400, "the request body must be a JSON object")
        call = f"{request.method} {request.url.path}"
        try:
            with store_calls(call), broker_calls(call):
                result = await run_in_threadpool(handler, request, body)
        except HTTPError as exc:
            return JSONResponse(exc.body, status_code=exc.status)
        except NotFound as exc:
            return error(404, str(exc))
        except Unsupported as exc:
            return error(409, str(exc))
        except PayloadError as exc:
            return error(422, f"the stored workflow cannot be read: {exc}")
        except TransientError as exc:
            return error(503, f"the result backend or the broker did not answer: {exc}")
        except DyrygentError as exc:  # e.g. a result backend dyrygent cannot use
            return error(500, str(exc))
        except Exception:
            logger.exception("dyrygent.web: %s failed", call)
            return error(500, f"{call} failed: see the dashboard's log")
        if isinstance(result, Response):
            return result
        return JSONResponse(result)

    return endpoint


def _source(request: Request) -> Source:
    source: Source = request.app.state.web.source
    return source


def ping(request: Request, _: Any) -> dict[str, Any]:
    return {"message": "pong"}


def list_workflows(request: Request, _: Any) -> list[Any]:
    q = request.query_params
    try:
        limit = min(max(int(q.get("limit") or q.get("per_page") or 50), 1), 1000)
        before = float(q["before"]) if q.get("before") else None
    except ValueError:
        raise HTTPError(400, "limit must be an integer and before a number (seconds)")
    state = (q.get("state") or "").upper() or None
    if state is not None and state not in STATES:
        raise HTTPError(400, f"state must be one of {', '.join(sorted(STATES))} (or none)")
    views = _source(request).runs(state, q.get("name") or None, limit, before)
    return [workflow_json(v) for v in views]


def get_workflow(request: Request, _: Any) -> dict[str, Any]:
    view = _source(request).detail(request.path_params["wf"])
    if request.query_params.get("view") == "columns":
        return columns_json(view)
    return detail_json(view)


def changes(request: Request, _: Any) -> dict[str, Any]:
    """What changed since the client's cursor: the cheap endpoint the page polls."""
    try:
        since = max(int(request.query_params.get("since") or 0), 0)
    except ValueError:
        raise HTTPError(400, "since must be an integer")
    view, events, cursor = _source(request).changes(request.path_params["wf"], since)
    return {
        **workflow_json(view),
        "events": [[node, STATE_NAMES[new], at] for node, _old, new, at in events],
        "next": cursor,
    }


def history(request: Request, _: Any) -> dict[str, Any]:
    graph, events = _source(request).history(request.path_params["wf"])
    nodes = graph.nodes
    return {
        "events": [
            {
                "node": nodes[e.node].id if e.node < len(nodes) else None,
                "index": e.node,
                "label": nodes[e.node].name if e.node < len(nodes) else None,
                "old": e.old.name,
                "new": e.new.name,
                "at": e.at,
                "time": iso(e.at),
            }
            for e in events
        ]
    }


def get_node(request: Request, _: Any) -> dict[str, Any]:
    from dyrygent.engine.spec import decode_spec

    source = _source(request)
    wf, node_id = request.path_params["wf"], request.path_params["node"]
    view, node, spec, meta = source.node(wf, node_id)
    args, kwargs, _options = decode_spec(spec)
    out = node_json(node, [n.id for n in view.nodes])
    out["args"] = safe(args, 1000)
    out["kwargs"] = safe(kwargs, 1000)
    out["celery_state"] = meta.get("status")
    out["result"] = safe(meta.get("result")) if meta.get("status") == "SUCCESS" else None
    out["error"] = error_json(meta)
    flower = request.app.state.web.flower
    out["flower"] = f"{flower.rstrip('/')}/task/{node_id}" if flower else None
    return out


def _steer(action: Callable[[], Any]) -> Response:
    """201 with the run ``action`` returns; 409 when it cannot be done as asked (a
    SteeringError, or nothing to retry), with the reason."""
    try:
        view = action()
    except (ValueError, NotImplementedError) as exc:
        raise HTTPError(409, str(exc))
    except DyrygentError as exc:
        if isinstance(exc, (TransientError, PayloadError)):
            raise
        raise HTTPError(409, str(exc))
    return JSONResponse(workflow_json(view), status_code=201)


def cancel(request: Request, body: dict[str, Any]) -> Response:
    terminate = body.get("terminate", False)
    if not isinstance(terminate, bool):
        raise HTTPError(400, "terminate must be true or false")
    wf = request.path_params["wf"]
    return _steer(lambda: _source(request).cancel(wf, terminate=terminate))


def retry(request: Request, _: Any) -> Response:
    return _steer(lambda: _source(request).retry(request.path_params["wf"]))


def _started(source: Source, wf: str) -> Response:
    return JSONResponse(workflow_json(source.summary(wf)), status_code=201)


def relaunch(request: Request, _: Any) -> Response:
    source = _source(request)
    return _started(source, _run(lambda: source.relaunch(request.path_params["wf"])))


def _run(start: Callable[[], str]) -> str:
    """Call ``start``, mapping a payload validation error (anything with ``.errors``)
    to director's 400, and any other build error (a definition that cannot run, a run that
    was not of a definition) to 409."""
    try:
        return start()
    except (NotFound, Unsupported):
        raise
    except Exception as exc:
        errors = getattr(exc, "errors", None)
        if errors is None and isinstance(exc, BuildError):
            raise HTTPError(409, str(exc))
        if errors is None:
            raise
        if callable(errors):  # jsonschema-style ValidationError.errors()
            errors = errors()
        raise HTTPError(400, "Payload is not valid", errors=[str(e) for e in errors])


def create(request: Request, body: dict[str, Any]) -> Response:
    source = _source(request)
    name = body.get("name")
    if body.get("project") and name:
        name = f"{body['project']}.{name}"
    if not isinstance(name, str) or not name:
        raise HTTPError(400, "Payload is not valid", errors=["name: a definition name is required"])
    payload = body.get("payload", {})
    if not isinstance(payload, dict):
        raise HTTPError(400, "Payload is not valid", errors=["payload: must be a JSON object"])
    return _started(source, _run(lambda: source.run(name, payload)))


def definitions(request: Request, _: Any) -> Response:
    source = _source(request)
    if source.definitions is None:
        return JSONResponse([], headers={"X-Dyrygent-Definitions": "none"})
    out = []
    for name in source.definition_names():
        project, _, short = name.partition(".")
        item: dict[str, Any] = {"fullname": name, "project": project, "name": short or name}
        # REPLACE-WHEN-MERGED: how issue 12's Definition describes itself (tasks, schema...)
        definition = source.definition(name)
        described = getattr(definition, "describe", None)
        fields = described() if callable(described) else definition
        if isinstance(fields, Mapping):
            item.update({k: safe(v, 100_000) for k, v in fields.items() if k not in item})
        out.append(item)
    return JSONResponse(out)


def not_found(request: Request, _: Any) -> Response:
    return error(404, f"no API route {request.url.path}")


def api_routes() -> list[Route]:
    """The API's routes, every one guarded."""
    wf = "/api/workflows/{wf}"
    return [
        Route("/api/ping", guarded(ping, public=True)),
        Route("/api/workflows", guarded(list_workflows)),
        Route("/api/workflows", guarded(create, write=True), methods=["POST"]),
        Route("/api/definitions", guarded(definitions)),
        Route(wf, guarded(get_workflow)),
        Route(wf + "/changes", guarded(changes)),
        Route(wf + "/history", guarded(history)),
        Route(wf + "/nodes/{node}", guarded(get_node)),
        Route(wf + "/cancel", guarded(cancel, write=True), methods=["POST"]),
        Route(wf + "/retry", guarded(retry, write=True), methods=["POST"]),
        Route(wf + "/relaunch", guarded(relaunch, write=True), methods=["POST"]),
        Route("/api/{rest:path}", guarded(not_found), methods=["GET", "POST"]),
    ]
