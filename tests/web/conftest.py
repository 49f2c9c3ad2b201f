"""Fixtures: the integration suite's redis-server and worker, the dashboard on the test
app (in process through Starlette's TestClient, or served by uvicorn for the browser)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the web extra is not installed: pip install -e '.[web]'")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))

from starlette.testclient import TestClient  # noqa: E402

from tests.harness import free_port, wait_for  # noqa: E402
from tests.integration.conftest import (  # noqa: E402,F401
    app,
    db_app,
    dt,
    env,
    ledger,
    postgres,
    redis_server,
    t,
    worker,
)
from tests.web.definitions import Definitions  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def web(app, worker):  # noqa: F811 (the fixtures imported above)
    """The dashboard app (no authentication) with the test definitions."""
    from dyrygent.web import create_app

    return create_app(app, Definitions(), refresh=0.3)


@pytest.fixture
def client(web):
    with TestClient(web) as c:
        yield c


class Server:
    """The dashboard served by uvicorn in a thread on a free port."""

    def __init__(self, web) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(web, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started, 10, "uvicorn to start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="session")
def server(web):
    s = Server(web)
    yield s
    s.stop()
