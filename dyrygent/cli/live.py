"""The live view of a running workflow: a progress bar and its nodes' counts per state.

With ``rich`` installed (``pip install dyrygent[cli]``) and a terminal to draw on, one bar
redrawn in place; otherwise (no rich, or output to a pipe or a file) one plain line each time
the counts change, so logs stay readable. Used by ``show --watch``, ``retry --wait`` and the
demo.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO, Any

from dyrygent.cli.source import WorkflowView

__all__ = ["STATE_ORDER", "counts_text", "watch"]

#: The order states are listed in: settled outcomes first, then work in progress.
STATE_ORDER = (
    "SUCCEEDED",
    "FAILED",
    "UPSTREAM_FAILED",
    "SKIPPED",
    "CANCELLED",
    "RUNNING",
    "LAUNCHED",
    "READY",
    "WAITING",
)


def counts_text(counts: dict[str, int]) -> str:
    """``"45 SUCCEEDED, 4 RUNNING, 8 WAITING"``, in :data:`STATE_ORDER`."""
    rank = {s: k for k, s in enumerate(STATE_ORDER)}
    ordered = sorted(counts.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))
    return ", ".join(f"{n} {s}" for s, n in ordered if n)


def _rich_progress(out: IO[str]) -> Any:
    """A rich Progress drawing on ``out``, or None without rich or a terminal."""
    try:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )
    except ImportError:
        return None
    console = Console(file=out)
    if not console.is_terminal:
        return None
    return Progress(
        TextColumn("[bold]{task.fields[state]:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[counts]}"),
        console=console,
    )


def watch(
    fetch: Callable[[], WorkflowView],
    out: IO[str],
    *,
    interval: float = 0.25,
    timeout: float | None = None,
) -> WorkflowView:
    """Show the workflow ``fetch()`` returns until it ends, then return its last view.

    ``interval`` is the refresh period (a display rate: each refresh is one read), stretched
    to twice the last read's duration, so watching a huge workflow never loads the store
    more than half the time. Raises TimeoutError if it has not ended after ``timeout`` s.
    """
    t0 = time.monotonic()
    progress = _rich_progress(out)
    last: tuple[str, dict[str, int]] | None = None
    took = 0.0

    def expired() -> bool:
        return timeout is not None and time.monotonic() - t0 > timeout

    def timed_fetch() -> WorkflowView:
        nonlocal took
        start = time.monotonic()
        v = fetch()
        took = time.monotonic() - start
        return v

    def pause() -> None:
        time.sleep(max(interval, 2 * took))

    if progress is None:
        while True:
            v = timed_fetch()
            if (v.state, v.counts) != last:
                last = (v.state, v.counts)
                print(
                    f"{time.monotonic() - t0:7.2f}s  {v.state:<9} {v.done}/{v.total} done  "
                    f"{counts_text(v.counts)}",
                    file=out,
                    flush=True,
                )
            if v.ended_now:
                return v
            if expired():
                raise TimeoutError(f"workflow {v.id} is still {v.state} after {timeout}s")
            pause()
    with progress:
        v = timed_fetch()
        task = progress.add_task("", total=v.total, state=v.state, counts="")
        while True:
            progress.update(
                task, completed=v.done, total=v.total, state=v.state, counts=counts_text(v.counts)
            )
            if v.ended_now:
                return v
            if expired():
                raise TimeoutError(f"workflow {v.id} is still {v.state} after {timeout}s")
            pause()
            v = timed_fetch()
