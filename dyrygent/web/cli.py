"""The ``web`` command: ``celery -A proj dyrygent web`` (added to the ``dyrygent`` group of
:mod:`dyrygent.cli` with one line), ``python -m dyrygent.web -A proj``, and
``hash-password`` to make an entry of ``dyrygent_web_users``.
"""

from __future__ import annotations

import getpass
import sys
from typing import Any

import click

from dyrygent.errors import ConfigurationError

__all__ = ["hash_password_command", "main", "serve", "web"]


def serve(
    celery_app: Any,
    host: str = "127.0.0.1",
    port: int = 8765,
    definitions: Any = None,
    flower_url: str | None = None,
    refresh: float = 1.0,
) -> None:
    """Serve the dashboard of ``celery_app`` until interrupted.

    Raises ConfigurationError before listening on an address beyond this host without
    authentication configured.
    """
    import uvicorn

    from dyrygent.web.app import create_app
    from dyrygent.web.security import check_bind

    web = create_app(celery_app, definitions, flower_url=flower_url, refresh=refresh)
    check_bind(host, web.state.web.auth)
    uvicorn.run(web, host=host, port=port, log_level="warning")


def _load_definitions(path: str | None) -> Any:
    if not path:
        return None
    import dyrygent

    load = getattr(dyrygent, "load_definitions", None)  # REPLACE-WHEN-MERGED: issue 12
    if load is None:
        raise click.UsageError("--definitions needs dyrygent's workflow definitions (issue 12)")
    return load(path)


@click.command("web")
@click.option("-A", "--app", "app_name", default=None, help="The Celery app (module[:attr]).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=int, help="Port to listen on.")
@click.option("--definitions", default=None, help="A workflows.yml (default: the app's).")
@click.option("--flower", "flower_url", default=None, help="Flower's URL, to link each node.")
@click.option("--refresh", default=1.0, show_default=True, type=float, help="Poll seconds.")
@click.pass_context
def web(
    ctx: click.Context,
    app_name: str | None,
    host: str,
    port: int,
    definitions: str | None,
    flower_url: str | None,
    refresh: float,
) -> None:
    """Serve the web dashboard and HTTP API for the app's workflows."""
    # this command's -A, the dyrygent group's -A, else Celery's own (`celery -A proj ...`)
    app_name = app_name or ctx.meta.get("dyrygent.app")
    celery_app = getattr(ctx.find_root().obj, "app", None)
    if app_name:
        from celery.app.utils import find_app

        celery_app = find_app(app_name)
    if celery_app is None:
        raise click.UsageError("name the Celery app: -A proj (the module that registers it)")
    celery_app.loader.import_default_modules()
    try:
        serve(celery_app, host, port, _load_definitions(definitions), flower_url, refresh)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc))


@click.command("hash-password")
def hash_password_command() -> None:
    """Print the hash of a password (asked twice) for dyrygent_web_users."""
    from dyrygent.web.security import hash_password

    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise click.ClickException("the passwords differ")
    click.echo(hash_password(first))


def main(argv: list[str]) -> int:
    """``python -m dyrygent.web [hash-password | -A proj ...]``; returns the exit code."""
    sys.path.insert(0, ".")  # as `celery -A proj` finds proj in the working directory
    command = hash_password_command if argv[:1] == ["hash-password"] else web
    args = argv[1:] if command is hash_password_command else argv
    try:
        command.main(args=args, prog_name="python -m dyrygent.web", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    return 0
