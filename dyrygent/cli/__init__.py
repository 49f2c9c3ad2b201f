"""The command line: see and steer workflows from a shell.

``celery -A proj dyrygent COMMAND`` (a Celery sub-command, through the ``celery.commands``
entry point: it uses Celery's ``-A`` app) or ``python -m dyrygent COMMAND -A proj``.
Commands: ``ls``, ``show``, ``history``, ``graph``, ``cancel``, ``retry``
(:mod:`dyrygent.cli.commands`), and ``defs``, ``run``, ``relaunch`` for workflow definitions
(:mod:`dyrygent.definitions.cli`), and ``web`` (the dashboard, :mod:`dyrygent.web`).
Exit codes: 0 done (or still running, for ``show`` without ``--watch``), 1 the workflow
ended without success (FAILURE, ERROR or CANCELLED), 2 bad usage or an unknown workflow id,
3 the result backend or broker did not answer.
"""

from __future__ import annotations

from dyrygent.cli.commands import dyrygent
from dyrygent.definitions.cli import add_definition_commands
from dyrygent.web.cli import web

add_definition_commands(dyrygent)
dyrygent.add_command(web)  # (Starlette and uvicorn load only when it runs: dyrygent[web])

__all__ = ["dyrygent"]
