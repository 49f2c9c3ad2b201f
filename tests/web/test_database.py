"""The API on Celery's database result backend (PostgreSQL), where the dashboard reads
through the store interface alone: list, detail, changes, a node's traceback, cancel; retry
says it needs Redis in this release."""

from __future__ import annotations

from starlette.testclient import TestClient

from dyrygent import Workflow
from dyrygent.web import create_app
from tests.harness import wait_for


def test_the_api_on_the_database_backend(db_app, dt):
    with TestClient(create_app(db_app)) as client:
        # Given a failed and a running workflow
        failed = Workflow(app=db_app)
        failed.add_signature(dt.fail.s(), label="boom")
        failed = failed.apply_async()
        slow = Workflow(app=db_app)
        slow.add_celery_canvas(dt.sleep_then.s(1, seconds=5) | dt.add.s(1))
        slow = slow.apply_async()

        def state(wf_id: str) -> str:
            return client.get(f"/api/workflows/{wf_id}/changes").json()["state"]

        wait_for(lambda: state(failed.id) == "FAILURE", 30, "the failure")
        # Then both are listed with their names
        listed = {w["id"]: w for w in client.get("/api/workflows").json()}
        assert listed[failed.id]["name"] == "boom"
        assert listed[slow.id]["state"] in ("PENDING", "RUNNING")
        # And the failed node's traceback is readable
        detail = client.get(f"/api/workflows/{failed.id}").json()
        node = detail["tasks"][0]
        shown = client.get(f"/api/workflows/{failed.id}/nodes/{node['id']}").json()
        assert "expected failure" in shown["error"]["message"]
        assert "Traceback" in shown["error"]["traceback"]
        # And changes come from a cursor
        first = client.get(f"/api/workflows/{failed.id}/changes").json()
        again = client.get(f"/api/workflows/{failed.id}/changes?since={first['next']}").json()
        assert first["events"] and again["events"] == []
        # When the running one is cancelled; Then it is CANCELLED
        wait_for(lambda: state(slow.id) == "RUNNING", 30, "running")
        r = client.post(f"/api/workflows/{slow.id}/cancel", json={})
        assert r.status_code == 201 and r.json()["state"] == "CANCELLED"
        # And the failed one is retried (the engine's retry, on the database backend too)
        r = client.post(f"/api/workflows/{failed.id}/retry", json={})
        assert r.status_code == 201 and r.json()["state"] in ("PENDING", "RUNNING", "FAILURE")
