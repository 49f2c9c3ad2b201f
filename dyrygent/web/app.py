"""The dashboard's ASGI application: :func:`create_app` wires the source, the API, the
pages and the security rules into one Starlette app.

Starlette (+ uvicorn to serve it) because it is small, typed, well kept, has no
dependencies of its own beyond anyio, and serves JSON, static files and plain HTML with
nothing else: what a library's optional extra should pull in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dyrygent.web.api import api_routes
from dyrygent.web.pages import page_routes
from dyrygent.web.security import Auth, CsrfTokens
from dyrygent.web.source import Source

__all__ = ["CSRF_COOKIE", "CSRF_HEADER", "WebState", "create_app", "definitions_of"]

CSRF_COOKIE = "dyrygent_csrf"
CSRF_HEADER = "x-csrf-token"
#: The largest request body accepted (a Run payload), in bytes.
MAX_BODY = 64 * 1024


@dataclass
class WebState:
    """What every request needs: the source, the credentials, the CSRF tokens, options."""

    source: Source
    auth: Auth
    csrf: CsrfTokens
    flower: str | None = None
    max_body: int = MAX_BODY
    refresh: float = 1.0

    def deny(self, request: Request, write: bool) -> Response | None:
        """The answer refusing ``request`` (401 without valid credentials when they are
        configured; 403 for a browser write without the page's CSRF token), or None."""
        header = request.headers.get("authorization")
        user = self.auth.check(header) if self.auth.enabled else None
        if self.auth.enabled and user is None:
            challenge = {"WWW-Authenticate": 'Basic realm="dyrygent"'} if self.auth.users else {}
            return JSONResponse(
                {"error": "authentication required: HTTP Basic credentials or a bearer token"},
                status_code=401,
                headers=challenge,
            )
        if write and user != "token" and self._from_browser(request):
            origin = request.headers.get("origin")
            if origin and origin.split("://", 1)[-1] != request.headers.get("host"):
                return JSONResponse(
                    {"error": f"cross-site request from {origin} refused"}, status_code=403
                )
            token = request.headers.get(CSRF_HEADER)
            if not self.csrf.valid(token, request.cookies.get(CSRF_COOKIE)):
                return JSONResponse(
                    {"error": "missing or invalid CSRF token: reload the page and try again"},
                    status_code=403,
                )
        return None

    @staticmethod
    def _from_browser(request: Request) -> bool:
        """Browsers send Origin with every POST (and cookies); a service calling the API
        sends neither, and a page of another site cannot forge Origin."""
        return "origin" in request.headers or "cookie" in request.headers


def definitions_of(app: Any) -> Any:
    """The definitions of ``app.conf.dyrygent_definitions`` through issue 12's
    ``dyrygent.load_definitions``, or None when either is missing."""
    path = app.conf.get("dyrygent_definitions")
    if not path:
        return None
    import dyrygent

    load = getattr(dyrygent, "load_definitions", None)  # REPLACE-WHEN-MERGED: issue 12
    return load(path) if load is not None else None


def create_app(
    celery_app: Any,
    definitions: Any = None,
    *,
    auth: Auth | None = None,
    flower_url: str | None = None,
    max_body: int = MAX_BODY,
    refresh: float = 1.0,
) -> Starlette:
    """The dashboard for ``celery_app`` (its module must register the processor).

    ``definitions``: issue 12's Definitions (default: those of
    ``app.conf.dyrygent_definitions``, or none); ``auth``: credentials (default: from the
    app's config and the environment, see :class:`~dyrygent.web.security.Auth`);
    ``flower_url`` links each node to Flower; ``refresh``: seconds between the page's polls.
    """
    conf = celery_app.conf
    if definitions is None:
        definitions = definitions_of(celery_app)
    state = WebState(
        source=Source(celery_app, definitions),
        auth=auth if auth is not None else Auth.from_config(conf, os.environ),
        csrf=CsrfTokens(),
        flower=flower_url or conf.get("dyrygent_web_flower") or None,
        max_body=max_body,
        refresh=refresh,
    )
    web = Starlette(routes=api_routes() + page_routes())
    web.state.web = state
    return web
