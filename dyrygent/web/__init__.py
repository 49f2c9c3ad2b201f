"""The optional web dashboard and HTTP API (``pip install "dyrygent[web]"``).

Modules: :mod:`.source` (the ONE adapter to the engine), :mod:`.steering` (cancel and retry
on today's engine), :mod:`.views` (JSON shapes), :mod:`.api` (routes), :mod:`.pages` (the page
and its assets in ``static/``), :mod:`.security` (credentials, CSRF, bind rule), :mod:`.app`
(``create_app``), :mod:`.cli` (the ``web`` command). Nothing here is imported by the core
package; importing this one needs Starlette.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dyrygent.web.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from dyrygent.web.app import create_app

        return create_app
    raise AttributeError(f"module 'dyrygent.web' has no attribute {name!r}")
