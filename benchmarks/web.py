"""The dashboard under load: is the list of 1,000 workflows and the detail of a 10,000-node
workflow fast, in few backend round trips, and does the page stay responsive while a
10,000-node workflow runs?

    .venv/bin/python -m benchmarks.web            # about a minute
    .venv/bin/python -m benchmarks.web --quick    # 100 workflows, 1,000 nodes (CI)
    .venv/bin/python -m benchmarks.web --no-browser

Starts a private redis-server and ``celery worker -P prefork -c 2`` (tests/harness), creates
the workflows with the test app, and asks the API in process (Starlette's TestClient) while
counting Redis round trips (every packed command a connection sends: a pipeline is one;
"cold" also opens the connection and loads the store's Lua script).
Then serves the dashboard with uvicorn and opens the running workflow's page in headless
Chromium: time to the first drawing, each redraw's time, and the longest main-thread stall
seen by a 50 ms timer while the workflow runs (a responsive page stays well under 100 ms).
Writes benchmarks/out/web.json and prints a table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from typing import Any

from tests.harness import ROOT, WORKER_APP_DIR, RedisServer, Worker, wait_for

OUT = ROOT / "benchmarks" / "out"


@contextlib.contextmanager
def round_trips() -> Iterator[list[int]]:
    """Count the Redis round trips made inside the block (``counter[0]``)."""
    from redis.connection import AbstractConnection

    counter = [0]
    original = AbstractConnection.send_packed_command

    def counted(self: Any, command: Any, check_health: bool = True) -> None:
        counter[0] += 1
        return original(self, command, check_health)

    AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]
    try:
        yield counter
    finally:
        AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


def timed(client: Any, path: str, repeat: int = 3) -> dict[str, Any]:
    """Cold (first) and warm (median of ``repeat``) answer times of GET ``path``, its round
    trips and size."""
    out: dict[str, Any] = {"path": path}
    for phase in ("cold", "warm"):
        times, trips = [], []
        for _ in range(1 if phase == "cold" else repeat):
            with round_trips() as n:
                t0 = time.perf_counter()
                r = client.get(path)
                times.append(time.perf_counter() - t0)
            trips.append(n[0])
            assert r.status_code == 200, r.text
        out[phase] = {"seconds": statistics.median(times), "round_trips": max(trips)}
    out["bytes"] = len(r.content)
    return out


def many(t: Any, count: int) -> list[str]:
    from dyrygent import Workflow

    ids = []
    for i in range(count):
        wf = Workflow(app=t.app)
        wf.add_signature(t.add.s(i, i))
        ids.append(wf.apply_async().id)
    return ids


def big(t: Any, size: int, seconds: float) -> str:
    from celery import group

    from dyrygent import Workflow

    wf = Workflow(app=t.app)
    wf.add_celery_canvas(group(t.sleep_then.s(i, seconds) for i in range(size)) | t.tsum.s())
    return wf.apply_async().id


def page(url: str, wf_id: str, client: Any, timeout: float) -> dict[str, Any]:
    """Open the running workflow's page in headless Chromium and watch it until it ends."""
    import shutil
    import tempfile

    from tests.web.test_browser import chromium

    profile = tempfile.mkdtemp(prefix="dyrygent-bench-chromium-")
    driver = chromium(profile)
    try:
        t0 = time.perf_counter()
        driver.get(f"{url}/workflows/{wf_id}")
        wait_for(lambda: driver.find_elements("css selector", "#graph g"), 60, "the graph")
        first = time.perf_counter() - t0
        driver.execute_script(
            """
            window.__lag = []; window.__draws = [];
            let last = performance.now();
            setInterval(() => {
              const n = performance.now(); __lag.push(n - last - 50); last = n; }, 50);
            const render = window.DyGraph.render;
            window.DyGraph.render = function () {
              const s = performance.now(); const r = render.apply(this, arguments);
              __draws.push(performance.now() - s); return r; };
            """
        )

        def ended() -> bool:
            state = client.get(f"/api/workflows/{wf_id}/changes?since=999999999").json()["state"]
            return state not in ("PENDING", "RUNNING")

        wait_for(ended, timeout, "the big workflow to end", interval=1)
        time.sleep(2)  # the page's last polls
        lag = driver.execute_script("return window.__lag")
        draws = driver.execute_script("return window.__draws")
        state = driver.find_element("id", "wf-state").text
        t1 = time.perf_counter()
        driver.find_element("css selector", "#graph [data-group]").click()
        expand = time.perf_counter() - t1
        return {
            "first_drawing_s": first,
            "final_state_shown": state,
            "redraws": len(draws),
            "redraw_ms_median": statistics.median(draws) if draws else None,
            "redraw_ms_max": max(draws) if draws else None,
            "main_thread_stall_ms_max": max(lag) if lag else None,
            "main_thread_stall_ms_p95": sorted(lag)[int(len(lag) * 0.95)] if lag else None,
            "expand_group_click_s": expand,
        }
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="100 workflows, 1,000 nodes")
    p.add_argument("--no-browser", action="store_true", help="skip the Chromium part")
    args = p.parse_args(argv)
    listed, size = (100, 1000) if args.quick else (1000, 10_000)

    sys.path.insert(0, str(WORKER_APP_DIR))
    redis_server = RedisServer()
    env = {
        "DYRYGENT_TEST_BROKER": redis_server.url(0),
        "DYRYGENT_TEST_BACKEND": redis_server.url(1),
        "DYRYGENT_TEST_LEDGER": redis_server.url(2),
    }
    os.environ.update(env)
    import workerapp
    from starlette.testclient import TestClient

    from dyrygent.web import create_app
    from tests.web.conftest import Server

    app = workerapp.make_app(env["DYRYGENT_TEST_BROKER"], env["DYRYGENT_TEST_BACKEND"])
    t = workerapp.Tasks(app)
    worker = Worker(env)
    results: dict[str, Any] = {"workflows": listed, "nodes": size}
    try:
        worker.wait_ready(app)
        t0 = time.perf_counter()
        many(t, listed)
        results["create_s"] = time.perf_counter() - t0
        web = create_app(app, refresh=1.0)
        with TestClient(web) as client:
            results["list"] = timed(client, f"/api/workflows?limit={listed}")
            wf_id = big(t, size, 0.001)
            results["detail_running"] = timed(client, f"/api/workflows/{wf_id}?view=columns")

            def ended() -> bool:
                state = client.get(f"/api/workflows/{wf_id}/changes?since=999999999").json()
                return state["state"] not in ("PENDING", "RUNNING")

            wait_for(ended, 600, "the 10,000-node workflow to end", interval=1)
            results["detail"] = timed(client, f"/api/workflows/{wf_id}")
            results["detail_columns"] = timed(client, f"/api/workflows/{wf_id}?view=columns")
            results["changes_from_start"] = timed(client, f"/api/workflows/{wf_id}/changes?since=0")
            cursor = client.get(f"/api/workflows/{wf_id}?view=columns").json()["cursor"]
            results["changes"] = timed(client, f"/api/workflows/{wf_id}/changes?since={cursor}")
            results["history_events"] = len(
                client.get(f"/api/workflows/{wf_id}/history").json()["events"]
            )
            if not args.no_browser:
                server = Server(web)
                try:
                    running = big(t, size, 0.001)
                    results["page"] = page(server.url, running, client, timeout=600)
                finally:
                    server.stop()
    finally:
        worker.stop()
        redis_server.stop()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "web.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
