"""The commands of ``celery -A proj dyrygent ...`` / ``python -m dyrygent ... -A proj``.

click is Celery's own command-line library (a dependency already), and Celery's
``celery.commands`` entry point adds :func:`dyrygent` to ``celery`` as a sub-command.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from typing import Any, NoReturn

import click

from dyrygent.cli import source
from dyrygent.cli.live import counts_text, watch
from dyrygent.errors import DyrygentError, TransientError

__all__ = [
    "EXIT_ENDED_BADLY",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "dyrygent",
]

EXIT_OK = 0
#: The workflow ended without success (FAILURE, ERROR or CANCELLED).
EXIT_ENDED_BADLY = 1
#: Bad usage, or an unknown workflow id (click's own usage errors exit 2 too).
EXIT_USAGE = 2
#: The result backend or the broker did not answer.
EXIT_UNAVAILABLE = 3
#: Interrupted (Ctrl-C), as shells report SIGINT.
EXIT_INTERRUPTED = 130

WORKFLOW_STATES = ("PENDING", "RUNNING", "SUCCESS", "FAILURE", "ERROR", "CANCELLED")
#: Nodes ``show`` lists by name (the rest are counted); ``--json`` lists all.
SHOW_NODES = 20


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"dyrygent: {message}", err=True)
    sys.exit(code)


def load_app(name: str) -> Any:
    from celery.app.utils import find_app

    try:
        return find_app(name)
    except (ImportError, AttributeError) as exc:
        _fail(f"cannot load the Celery app {name!r} ({exc}): give -A the module holding it")


def app_of(ctx: click.Context, name: str | None = None) -> Any:
    """The Celery app: this command's -A, the group's -A, else Celery's (``celery -A``)."""
    name = name or ctx.meta.get("dyrygent.app")
    if name:
        return load_app(name)
    celery_app = getattr(ctx.find_root().obj, "app", None)
    if celery_app is None:
        _fail(
            "no Celery app: pass -A proj (the module holding your app, as for celery -A), "
            "or run `celery -A proj dyrygent ...`"
        )
    return celery_app


def _guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn dyrygent's errors into a message on stderr and the documented exit code."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TransientError as exc:
            _fail(str(exc), EXIT_UNAVAILABLE)
        except DyrygentError as exc:
            _fail(str(exc))
        except KeyboardInterrupt:
            _fail("interrupted (the workflow goes on)", EXIT_INTERRUPTED)

    return run


app_option = click.option(
    "-A", "--app", "app_name", metavar="PROJ", help="The Celery app, as for `celery -A`."
)


def _result(ctx: click.Context, app_name: str | None, wf: str) -> Any:
    """The workflow's result object; exits 2 naming the id when the store does not know it."""
    app = app_of(ctx, app_name)
    _known(app, wf)
    return source.result_of(app, wf)


def _known(app: Any, wf: str) -> None:
    if not source.is_known(app, wf):
        _fail(
            f"no workflow {wf} in the result backend {app.conf.result_backend!r} (a wrong id, "
            f"another app, or it expired or was forgotten): `ls` lists the known ones"
        )


def _exit_for(v: source.WorkflowView) -> None:
    if v.state in source.ENDED and v.state != "SUCCESS":
        sys.exit(EXIT_ENDED_BADLY)


@click.group(name="dyrygent")
@click.option(
    "-A", "--app", "app_name", metavar="PROJ", help="The Celery app (or give it to `celery -A`)."
)
@click.pass_context
def dyrygent(ctx: click.Context, app_name: str | None) -> None:
    """See and steer dyrygent workflows.

    Exit codes: 0 done (or still running, for `show` without --watch), 1 the workflow
    ended without success (FAILURE, ERROR or CANCELLED), 2 bad usage or an unknown
    workflow id, 3 the result backend or broker did not answer.
    """
    if app_name:
        ctx.meta["dyrygent.app"] = app_name


@dyrygent.command(name="ls")
@click.option(
    "--state",
    type=click.Choice(WORKFLOW_STATES, case_sensitive=False),
    help="Only workflows in this state.",
)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@app_option
@click.pass_context
@_guarded
def ls(ctx: click.Context, state: str | None, limit: int, app_name: str | None) -> None:
    """List the newest workflows."""
    views = source.listing(app_of(ctx, app_name), state.upper() if state else None, limit)
    click.echo(f"{'ID':<36}  {'STATE':<9}  {'CREATED':<24}  {'PROGRESS':>13}  COUNTS")
    for v in views:
        click.echo(
            f"{v.id:<36}  {v.state:<9}  {_when(v.created):<24}  {f'{v.done}/{v.total}':>13}  "
            f"{counts_text(v.counts)}"
        )


def _show_text(v: source.WorkflowView) -> None:
    percent = f" ({100 * v.done // v.total}%)" if v.total else ""
    took = f" ({v.ended - v.created:.2f}s)" if v.ended and v.created else ""
    click.echo(f"workflow {v.id}: {v.state}")
    click.echo(f"  created   {_when(v.created)}")
    click.echo(f"  ended     {_when(v.ended)}{took}")
    click.echo(f"  progress  {v.done}/{v.total} done{percent}")
    click.echo(f"  counts    {counts_text(v.counts)}")
    others = [n for n in v.nodes if n.state != "SUCCEEDED"]
    if not others:
        return
    click.echo(f"  nodes not succeeded ({len(others)} of {len(v.nodes)}):")
    for n in others[:SHOW_NODES]:
        error = f"  {n.error['type']}: {n.error['message']}" if n.error else ""
        click.echo(f"    {n.state:<15} {n.label}  {n.id}{error}")
    if len(others) > SHOW_NODES:
        click.echo(f"    ... and {len(others) - SHOW_NODES} more (--json lists every node)")


@dyrygent.command()
@click.argument("workflow_id")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--watch", "watching", is_flag=True, help="A live view until the workflow ends.")
@app_option
@click.pass_context
@_guarded
def show(
    ctx: click.Context, workflow_id: str, as_json: bool, watching: bool, app_name: str | None
) -> None:
    """Show a workflow: its state, progress, counts per state and unfinished nodes.

    With --watch, a live view until it ends, then the summary; with --json, one JSON object
    (with --watch: once it ends; the live view goes to stderr).
    """
    result = _result(ctx, app_name, workflow_id)
    if watching:
        watch(lambda: source.view(result), sys.stderr if as_json else sys.stdout)
    v = source.view(result)
    if as_json:
        click.echo(json.dumps(v.as_json()))
    else:
        _show_text(v)
    _exit_for(v)


@dyrygent.command()
@click.argument("workflow_id")
@app_option
@click.pass_context
@_guarded
def history(ctx: click.Context, workflow_id: str, app_name: str | None) -> None:
    """Every node state change, in the order the processor committed them."""
    result = _result(ctx, app_name, workflow_id)
    labels = {n.id: n.label for n in source.view(result).nodes}
    for e in source.events(result):
        click.echo(
            f"{_when(e.at)}  {e.old:>15} -> {e.new:<15}  {labels.get(e.node, '?')}  {e.node}"
        )


@dyrygent.command()
@click.argument("workflow_id")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["dot", "mermaid", "svg", "png"]),
    default="dot",
    show_default=True,
    help="svg and png need Graphviz's `dot`.",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here, not stdout.")
@click.option(
    "--collapse",
    default=50,
    show_default=True,
    type=click.IntRange(min=1),
    help="Draw larger groups of siblings as one box.",
)
@app_option
@click.pass_context
@_guarded
def graph(
    ctx: click.Context,
    workflow_id: str,
    fmt: str,
    output: str | None,
    collapse: int,
    app_name: str | None,
) -> None:
    """Draw the workflow, its nodes coloured by state."""
    from dyrygent import pictures
    from dyrygent.workflow import WorkflowResult

    if fmt == "png" and not output and sys.stdout.isatty():
        _fail("a PNG is not for a terminal: give -o FILE (or redirect stdout)")
    app = app_of(ctx, app_name)
    _known(app, workflow_id)
    live = WorkflowResult(workflow_id, app=app)
    if fmt == "mermaid":
        data = live.to_mermaid(collapse=collapse).encode()
    else:
        data = live.to_dot(collapse=collapse).encode()
        if fmt in ("svg", "png"):
            data = pictures.render(data.decode(), fmt)
    if output:
        with open(output, "wb") as f:
            f.write(data)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


@dyrygent.command()
@click.argument("workflow_id")
@click.option("--terminate", is_flag=True, help="Also terminate the nodes running now.")
@app_option
@click.pass_context
@_guarded
def cancel(ctx: click.Context, workflow_id: str, terminate: bool, app_name: str | None) -> None:
    """Cancel a workflow: nothing more starts; in-flight nodes are revoked."""
    result = _result(ctx, app_name, workflow_id)
    result.cancel(terminate=terminate)
    click.echo(f"workflow {workflow_id}: cancel requested" + (" (terminate)" if terminate else ""))


@dyrygent.command()
@click.argument("workflow_id")
@click.option("--wait", is_flag=True, help="Show it live until it ends; exit 1 unless it succeeds.")
@app_option
@click.pass_context
@_guarded
def retry(ctx: click.Context, workflow_id: str, wait: bool, app_name: str | None) -> None:
    """Run a finished workflow's failed, skipped and cancelled nodes again."""
    result = _result(ctx, app_name, workflow_id)
    result.retry()
    click.echo(f"workflow {workflow_id}: retry requested")
    if wait:
        v = watch(lambda: source.view(result), sys.stdout)
        _exit_for(v)
