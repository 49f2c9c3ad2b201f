"""Command-line commands for definitions: ``defs`` (list), ``defs show NAME``, ``run NAME``,
``relaunch ID``, as click commands for the ``celery -A proj dyrygent`` group.

Add them to the group with ``add_definition_commands(group)``. Each finds the Celery app in
Celery's CLI context (``ctx.obj.app``), else uses the current app. A definition or payload
error prints the YAML path (and every payload error) and exits with code 2, as a usage
error; a run that fails exits with code 1.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import click

from dyrygent.errors import DefinitionError, PayloadInvalidError

__all__ = ["COMMANDS", "add_definition_commands", "defs", "relaunch", "run"]


def _app(ctx: click.Context) -> Any:
    """The group's app: its -A, or Celery's (``celery -A proj dyrygent ...``)."""
    from dyrygent.cli.commands import app_of  # (the command group imports this module)

    return app_of(ctx)


def _definitions(ctx: click.Context) -> Any:
    from dyrygent.definitions.tasks import definitions_of

    try:
        return definitions_of(_app(ctx))
    except DefinitionError as exc:
        _fail(exc)


def _fail(exc: Exception) -> NoReturn:
    click.echo(f"Error: {exc}", err=True)
    if isinstance(exc, PayloadInvalidError):
        for e in exc.errors:
            click.echo(f"  - {e}", err=True)
    sys.exit(2)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def next_run(app: Any, d: Any) -> float | None:
    """When beat next runs ``d`` (seconds since the epoch), estimated from its last
    periodic run (or from now when it has none); None if it is not periodic."""
    from dyrygent.definitions.records import recent_runs
    from dyrygent.engine.stores import store_for

    if d.periodic is None:
        return None
    sched = d.periodic.schedule
    now = time.time()
    last = None
    runs = recent_runs(app, d.fullname)
    if runs:
        last = store_for(app).status(runs[-1]).created
    base = datetime.fromtimestamp(last if last is not None else now, timezone.utc)
    remaining: float = sched.remaining_estimate(base).total_seconds()
    return max(now, base.timestamp() + remaining)


@click.group("defs", invoke_without_command=True)
@click.pass_context
def defs(ctx: click.Context) -> None:
    """List the workflow definitions (with periodic schedule and next run)."""
    if ctx.invoked_subcommand is not None:
        return
    definitions = _definitions(ctx)
    app = _app(ctx)
    rows = [("NAME", "PERIODIC", "NEXT RUN")]
    for name in definitions.names():
        d = definitions.get(name)
        spec = d.periodic.spec if d.periodic else "-"
        rows.append((name, spec, _when(next_run(app, d))))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


@defs.command("show")
@click.argument("name")
@click.pass_context
def show(ctx: click.Context, name: str) -> None:
    """Show one definition as written, with its schema and schedule."""
    definitions = _definitions(ctx)
    try:
        d = definitions.get(name)
    except DefinitionError as exc:
        _fail(exc)
    data: dict[str, Any] = {"fullname": d.fullname, "project": d.project, "name": d.name}
    data.update(d.raw)
    if d.schema is not None:
        data["schema"] = d.schema
    if d.periodic is not None:
        data["next_run"] = _when(next_run(_app(ctx), d))
    click.echo(json.dumps(data, indent=2, default=str))


def _payload(text: str | None) -> Any:
    if text is None:
        return None
    try:
        if text.startswith("@"):
            text = Path(text[1:]).read_text()
        return json.loads(text)
    except (OSError, ValueError) as exc:
        click.echo(f"Error: --payload is not JSON nor @file of JSON: {exc}", err=True)
        sys.exit(2)


def _wait(app: Any, result: Any, interval: float = 0.2) -> None:
    from dyrygent.core.states import WorkflowStatus
    from dyrygent.engine.stores import store_for

    labels = {n.id: n.label for n in result.nodes}
    seen: dict[str, str] = {}
    store = store_for(app)
    while True:
        info = store.status(result.id)
        for node_id, state in result.states().items():
            if seen.get(node_id) != state:
                seen[node_id] = state
                click.echo(f"  {labels.get(node_id, node_id)}: {state}")
        if info.status is not None and info.status is not WorkflowStatus.RUNNING:
            break
        time.sleep(interval)  # polling the store: the CLI has no event stream to wait on
    try:
        value = result.get(timeout=10, propagate=True)
    except Exception as exc:
        click.echo(f"{info.status.value}: {type(exc).__name__}: {exc}")
        sys.exit(1)
    click.echo(f"{info.status.value}: {json.dumps(value, default=repr)}")


@click.command("run")
@click.argument("name")
@click.option("--payload", help="the payload: JSON, or @file holding JSON")
@click.option("--wait", is_flag=True, help="print the progress and the result")
@click.pass_context
def run(ctx: click.Context, name: str, payload: str | None, wait: bool) -> None:
    """Run the definition NAME; prints the run's id."""
    definitions = _definitions(ctx)
    app = _app(ctx)
    try:
        result = definitions.run(name, _payload(payload), app)
    except (DefinitionError, PayloadInvalidError) as exc:
        _fail(exc)
    click.echo(result.id)
    if wait:
        _wait(app, result)


@click.command("relaunch")
@click.argument("workflow_id")
@click.option("--wait", is_flag=True, help="print the progress and the result")
@click.pass_context
def relaunch(ctx: click.Context, workflow_id: str, wait: bool) -> None:
    """Start a new run of the definition and payload of run WORKFLOW_ID; prints its id."""
    definitions = _definitions(ctx)
    app = _app(ctx)
    try:
        result = definitions.relaunch(workflow_id, app)
    except (DefinitionError, PayloadInvalidError) as exc:
        _fail(exc)
    click.echo(result.id)
    if wait:
        _wait(app, result)


COMMANDS = (defs, run, relaunch)


def add_definition_commands(group: click.Group) -> None:
    """Add ``defs``, ``run`` and ``relaunch`` to a click group (the ``dyrygent`` one)."""
    for command in COMMANDS:
        group.add_command(command)
