"""Regenerate the dashboard screenshots README.rst shows (dyrygent/web/screenshots/):

    .venv/bin/python -m tests.web.screenshots

Starts a private redis-server and a worker (tests/harness), runs a few workflows (one
succeeds, one fails on a validation branch while its other branches go on, one is
cancelled, one is still running), serves the dashboard and takes the list and the failed
workflow's page, its failed node open, in headless Chromium.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

from tests.harness import ROOT, WORKER_APP_DIR, RedisServer, Worker, wait_for

OUT = ROOT / "dyrygent" / "web" / "screenshots"


def etl(t) -> str:
    """A small ETL whose validation branch fails while its other branches go on."""
    from celery import group

    from dyrygent import Workflow

    wf = Workflow(app=t.app)
    extract = wf.add_signature(t.add.s(2, 2), label="extract")
    parts = wf.add_celery_canvas(
        group(t.sleep_then.s(seconds=0.05 * (k % 7)) for k in range(24)), extract, label="transform"
    )
    check = wf.add_signature(t.fail.s(), extract, label="validate")
    total = wf.add_signature(t.tsum.s(), parts, label="load")
    wf.add_signature(t.noop.s(), [total, check], label="report")
    return wf.apply_async().id


def start(t, canvas) -> str:
    from dyrygent import Workflow

    wf = Workflow(app=t.app)
    wf.add_celery_canvas(canvas)
    return wf.apply_async().id


def main() -> int:
    sys.path.insert(0, str(WORKER_APP_DIR))
    redis_server = RedisServer()
    env = {
        "DYRYGENT_TEST_BROKER": redis_server.url(0),
        "DYRYGENT_TEST_BACKEND": redis_server.url(1),
        "DYRYGENT_TEST_LEDGER": redis_server.url(2),
    }
    os.environ.update(env)
    import workerapp

    from dyrygent.web import create_app
    from tests.web.conftest import Server
    from tests.web.definitions import Definitions
    from tests.web.test_browser import chromium

    app = workerapp.make_app(env["DYRYGENT_TEST_BROKER"], env["DYRYGENT_TEST_BACKEND"])
    t = workerapp.Tasks(app)
    worker = Worker(env)
    profile = tempfile.mkdtemp(prefix="dyrygent-shots-")
    server = driver = None
    try:
        worker.wait_ready(app)
        from celery import group

        web = create_app(app, Definitions(), refresh=0.5)
        server = Server(web)
        source = web.state.web.source
        source.run("demo.sum", {"numbers": list(range(12))})
        failed = etl(t)
        start(t, t.add.s(1, 1) | t.mul.s(10) | group(t.add.s(k) for k in range(5)))
        cancelled = start(t, t.sleep_then.s(1, seconds=30) | t.add.s(1))
        wait_for(lambda: source.detail(cancelled).state == "RUNNING", 30, "a running run")
        source.cancel(cancelled)
        wait_for(lambda: source.detail(failed).state == "FAILURE", 60, "the failed run")
        long = start(t, group(t.sleep_then.s(k, seconds=0.3) for k in range(200)) | t.tsum.s())
        driver = chromium(profile)
        driver.set_window_size(1400, 1000)
        driver.get(server.url + "/")
        wait_for(lambda: driver.find_elements("css selector", f'tr[data-id="{long}"]'), 30, "rows")
        time.sleep(0.5)
        OUT.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(OUT / "list.png"))
        driver.get(f"{server.url}/workflows/{failed}")
        wait_for(
            lambda: driver.find_elements("css selector", '#graph [data-state="FAILED"]'),
            30,
            "graph",
        )
        driver.find_element("css selector", '#graph [data-state="FAILED"]').click()
        wait_for(lambda: driver.find_elements("id", "traceback"), 30, "the traceback")
        time.sleep(0.5)
        driver.save_screenshot(str(OUT / "detail.png"))
        print(f"wrote {OUT / 'list.png'} and {OUT / 'detail.png'}")
    finally:
        if driver is not None:
            driver.quit()
        if server is not None:
            server.stop()
        worker.stop()
        redis_server.stop()
        shutil.rmtree(profile, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
