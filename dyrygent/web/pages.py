"""The page: one HTML shell at ``/`` and ``/workflows/<id>`` (real, linkable paths) and its
scripts and styles under ``/static/``, all shipped inside the package (no CDN, works
offline). The shell carries the CSRF token the page sends back with every write.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

__all__ = ["page_routes"]

_STATIC = resources.files("dyrygent.web") / "static"
#: The page runs only its own scripts, and no other site may frame it (its buttons act).
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


async def page(request: Request) -> Response:
    """The shell; the scripts read the path and draw the list or one workflow."""
    from dyrygent.web.app import CSRF_COOKIE

    state = request.app.state.web
    denied: Response | None = await run_in_threadpool(state.deny, request, False)
    if denied is not None:  # (scrypt runs off the loop)
        return denied
    token = request.cookies.get(CSRF_COOKIE) or ""
    if not state.csrf.valid(token, token):
        token = state.csrf.new()
    config: dict[str, Any] = {
        "csrf": token,
        "refresh": state.refresh,
        "definitions": state.source.definitions is not None,
        "flower": state.flower,
    }
    shell = (_STATIC / "index.html").read_text(encoding="utf-8")
    body = shell.replace("{{config}}", html.escape(json.dumps(config), quote=True))
    response = HTMLResponse(body, headers=HEADERS)
    response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict")
    return response


def page_routes() -> list[Any]:
    """The page's routes and the static files."""
    return [
        Route("/", page),
        Route("/workflows/{wf}", page),
        Mount("/static", app=StaticFiles(directory=str(_STATIC)), name="static"),
    ]
