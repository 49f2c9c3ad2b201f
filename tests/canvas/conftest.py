"""The ``c`` fixture: the canvas tests' app, tasks and graph runner (see helpers.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.canvas.helpers import add, app, echo, identity, quiet, run, run_graph, tsum


@pytest.fixture
def c():
    return SimpleNamespace(
        app=app,
        add=add,
        tsum=tsum,
        identity=identity,
        echo=echo,
        quiet=quiet,
        run=run,
        run_graph=run_graph,
    )
