"""The JSON API against a real redis-server and real `celery worker` subprocesses."""

from __future__ import annotations

import base64

import pytest
from celery import group
from starlette.testclient import TestClient

from dyrygent import Workflow
from dyrygent.errors import ConfigurationError
from dyrygent.web import create_app
from dyrygent.web.security import Auth, check_bind, hash_password
from tests.harness import wait_for


def ended(client, wf_id: str, timeout: float = 30) -> dict:
    """The workflow's detail once it has ended."""

    def done():
        body = client.get(f"/api/workflows/{wf_id}").json()
        return body if body["state"] not in ("PENDING", "RUNNING") else None

    return wait_for(done, timeout, f"workflow {wf_id} to end", interval=0.1)


def start(t, *sigs):
    wf = Workflow(app=t.app)
    wf.add_celery_canvas(sigs[0] if len(sigs) == 1 else group(*sigs))
    return wf.apply_async()


def test_ping(client):
    # When the ping endpoint is asked; Then it answers as director's does
    assert client.get("/api/ping").json() == {"message": "pong"}


def test_list_shows_a_running_workflow_then_its_success(client, t):
    # Given a workflow whose node sleeps
    res = start(t, t.sleep_then.s(7, seconds=1.5))
    # When the list is read while it runs; Then it is listed RUNNING (or PENDING), newest first
    runs = client.get("/api/workflows").json()
    assert runs[0]["id"] == res.id
    assert runs[0]["state"] in ("PENDING", "RUNNING")
    assert runs[0]["status"] in ("pending", "progress")
    assert runs[0]["name"] == "t.sleep_then"
    running = client.get("/api/workflows?state=active").json()
    assert res.id in [r["id"] for r in running]
    # Then it ends SUCCESS with its duration and progress
    body = ended(client, res.id)
    assert body["state"] == "SUCCESS" and body["status"] == "success"
    assert body["progress"] == {"done": 1, "total": 1} and body["duration"] > 1
    listed = client.get("/api/workflows?state=SUCCESS&name=sleep").json()
    assert res.id in [r["id"] for r in listed]
    assert res.id not in [r["id"] for r in client.get("/api/workflows?state=FAILURE").json()]


def test_runs_recorded_by_the_definitions_are_named_after_them(client, t, app):
    # Given a run, and a run record in the format of dyrygent's definitions (issue 12)
    res = start(t, t.add.s(1, 2))
    record = {"definition": "billing.invoice", "payload": {}, "periodic": False}
    app.backend.store_result("dyrygent-def-run-" + res.id, record, "DYRYGENT_RECORD")
    # Then the list names it after its definition
    listed = {w["id"]: w for w in client.get("/api/workflows").json()}
    assert listed[res.id]["name"] == "billing.invoice"
    assert listed[res.id]["project"] == "billing"


def test_list_pages_with_before(client, t):
    # Given three workflows
    ids = [start(t, t.add.s(i, i)).id for i in range(3)]
    # When read one by one, each page before the last created; Then newest first, no repeats
    first = client.get("/api/workflows?limit=1").json()[0]
    second = client.get(f"/api/workflows?limit=1&before={first['created_at']}").json()[0]
    assert [first["id"], second["id"]] == [ids[2], ids[1]]
    assert client.get("/api/workflows?limit=x").status_code == 400
    r = client.get("/api/workflows?state=bogus")
    assert r.status_code == 400 and "state must be one of ACTIVE, CANCELLED" in r.json()["error"]


def test_detail_nodes_history_and_node_results(client, t):
    # Given add(1, 1) | add(10) finished
    res = start(t, t.add.s(1, 1) | t.add.s(10))
    body = ended(client, res.id)
    # Then the detail lists both nodes with director's fields, times and attempts
    first, second = body["tasks"]
    assert (first["key"], first["status"], first["state"]) == ("t.add", "success", "SUCCEEDED")
    assert second["previous"] == [first["id"]] and second["parents"] == [0]
    assert first["attempts"] == 1 and first["started_at"] <= first["ended_at"]
    # And the history has each node's changes in order
    events = client.get(f"/api/workflows/{res.id}/history").json()["events"]
    assert [e["new"] for e in events if e["node"] == first["id"]][-1] == "SUCCEEDED"
    # And a node's panel shows its args and its result
    node = client.get(f"/api/workflows/{res.id}/nodes/{second['id']}").json()
    assert node["result"] == 12 and node["args"] == [10] and node["error"] is None


def test_failed_node_shows_its_traceback(client, t):
    # Given a workflow whose node raises
    res = start(t, t.fail.s())
    body = ended(client, res.id)
    assert body["state"] == "FAILURE" and body["status"] == "error"
    # When its node is read; Then the error's type, message and traceback are there
    node = client.get(f"/api/workflows/{res.id}/nodes/{body['tasks'][0]['id']}").json()
    assert node["error"]["type"] == "ExpectedError"
    assert node["error"]["message"] == "expected failure"
    assert "Traceback" in node["error"]["traceback"]


def test_nodes_link_to_flower_when_configured(app, worker, t):
    # Given the dashboard told where Flower is
    res = start(t, t.add.s(1, 1))
    with TestClient(create_app(app, flower_url="http://flower.local:5555/")) as c:
        node_id = ended(c, res.id)["tasks"][0]["id"]
        # Then each node links to its Flower task page
        node = c.get(f"/api/workflows/{res.id}/nodes/{node_id}").json()
    assert node["flower"] == f"http://flower.local:5555/task/{node_id}"


def test_a_backend_outage_is_a_503_with_json(app):
    import workerapp

    from tests.harness import free_port

    # Given a dashboard whose result backend does not answer
    down = workerapp.make_app(
        app.conf.broker_url, f"redis://127.0.0.1:{free_port()}/1", name="down"
    )
    down.conf.redis_retry_on_timeout = False
    with TestClient(create_app(down)) as c:
        # When runs are listed; Then 503 saying so, not a 500
        r = c.get("/api/workflows")
    assert r.status_code == 503
    assert "did not answer" in r.json()["error"]


def test_changes_since_a_cursor(client, t):
    # Given a finished workflow of one node
    res = start(t, t.add.s(2, 2))
    ended(client, res.id)
    # When the changes are read from 0, then from the cursor returned
    full = client.get(f"/api/workflows/{res.id}/changes").json()
    again = client.get(f"/api/workflows/{res.id}/changes?since={full['next']}").json()
    # Then the first has the node's way to SUCCEEDED, the second nothing new
    assert [e[1] for e in full["events"]][-1] == "SUCCEEDED"
    assert again["events"] == [] and again["next"] == full["next"]


def test_changes_from_the_details_cursor_are_exactly_the_later_events(client, t):
    # Given a running chain, read once (its detail gives the cursor)
    res = start(t, t.sleep_then.s(1, seconds=0.5) | t.sleep_then.s(0.5) | t.add.s(1))
    first = client.get(f"/api/workflows/{res.id}?view=columns").json()
    poll = client.get(f"/api/workflows/{res.id}/changes?since=0").json()
    ended(client, res.id)
    # When the changes since that cursor are read after it ended
    later = client.get(f"/api/workflows/{res.id}/changes?since={first['cursor']}").json()
    # Then they are the end of the history, as are those after the first poll's cursor, and
    # the first poll plus its sequel are the whole history, none lost or repeated
    history = client.get(f"/api/workflows/{res.id}/history").json()["events"]
    every = [[e["index"], e["new"], e["at"]] for e in history]
    sequel = client.get(f"/api/workflows/{res.id}/changes?since={poll['next']}").json()
    assert later["events"] and every[-len(later["events"]) :] == later["events"]
    assert poll["events"] + sequel["events"] == every
    assert later["state"] == "SUCCESS"


@pytest.mark.parametrize(
    "path",
    [
        "/api/workflows/no-such-workflow",
        "/api/workflows/no-such-workflow/history",
        "/api/workflows/no-such-workflow/changes",
        "/api/workflows/%3Cscript%3E",
        "/api/workflows/" + "x" * 300,
        "/api/workflows/a%20b/nodes/c",
        "/api/nothing-here",
    ],
)
def test_bad_or_unknown_ids_give_404_with_json(client, path):
    # When an unknown or malformed id is asked for; Then 404 with a JSON error, never a 500
    r = client.get(path)
    assert r.status_code == 404 and "error" in r.json()


def test_unknown_node_and_writes_on_unknown_workflows_give_404(client, t):
    res = start(t, t.add.s(1, 2))
    ended(client, res.id)
    assert client.get(f"/api/workflows/{res.id}/nodes/nope").status_code == 404
    for action in ("cancel", "retry", "relaunch"):
        r = client.post(f"/api/workflows/unknown-wf/{action}", json={})
        assert r.status_code == 404, action


def test_run_a_definition(client):
    # When demo.sum runs with a valid payload; Then 201 with the new run, which succeeds
    r = client.post("/api/workflows", json={"name": "demo.sum", "payload": {"numbers": [1, 2]}})
    assert r.status_code == 201
    body = ended(client, r.json()["id"])
    assert body["state"] == "SUCCESS" and body["progress"]["total"] == 3
    # And it is named after its definition, in the detail and in the list
    assert body["name"] == "demo.sum" and r.json()["name"] == "demo.sum"
    listed = client.get("/api/workflows?name=demo.sum").json()
    assert body["id"] in [w["id"] for w in listed]
    # And director's {project, name} form works too
    r = client.post(
        "/api/workflows", json={"project": "demo", "name": "sum", "payload": {"numbers": []}}
    )
    assert r.status_code == 201


def test_run_reports_every_payload_error(client):
    # When the payload breaks two rules; Then 400 with both, in director's shape
    r = client.post(
        "/api/workflows", json={"name": "demo.sum", "payload": {"numbers": "x", "y": 1}}
    )
    assert r.status_code == 400
    assert r.json() == {
        "error": "Payload is not valid",
        "errors": ["numbers: a list of integers is required", "unexpected keys: ['y']"],
    }


@pytest.mark.parametrize(
    "body, status, match",
    [
        ({"name": "demo.nope", "payload": {}}, 404, "no definition named 'demo.nope'"),
        ({"payload": {}}, 400, "Payload is not valid"),
        ({"name": "demo.sum", "payload": [1]}, 400, "Payload is not valid"),
    ],
)
def test_run_refuses_unknown_names_and_bad_bodies(client, body, status, match):
    r = client.post("/api/workflows", json=body)
    assert r.status_code == status and match in r.json()["error"]


def test_bodies_must_be_small_json_objects(client):
    # When the body is not JSON, not an object, or over 64 KiB; Then 400, 400, 413
    headers = {"Content-Type": "application/json"}
    assert client.post("/api/workflows", content=b"{nope", headers=headers).status_code == 400
    assert client.post("/api/workflows", content=b"[1]", headers=headers).status_code == 400
    big = b'{"name": "demo.sum", "payload": {"numbers": "' + b"1" * 70_000 + b'"}}'
    assert client.post("/api/workflows", content=big, headers=headers).status_code == 413


def test_definitions_are_listed(client):
    # Then each definition, sorted, with director's name fields and its own
    definitions = client.get("/api/definitions").json()
    assert [d["fullname"] for d in definitions] == ["demo.fail", "demo.sum"]
    assert definitions[1] == {
        "fullname": "demo.sum",
        "project": "demo",
        "name": "sum",
        "tasks": ["t.add", "t.tsum"],
    }


def test_no_definitions_configured(app, worker):
    # Given the dashboard without definitions
    with TestClient(create_app(app)) as c:
        # Then /api/definitions is empty and says so, and Run says how to configure them
        r = c.get("/api/definitions")
        assert r.json() == [] and r.headers["x-dyrygent-definitions"] == "none"
        r = c.post("/api/workflows", json={"name": "demo.sum", "payload": {}})
        assert r.status_code == 409 and "dyrygent_definitions" in r.json()["error"]


def test_cancel_a_running_workflow(client, t):
    # Given a workflow whose first node sleeps and a second waits for it
    res = start(t, t.sleep_then.s(1, seconds=3) | t.add.s(1))
    wait_for(lambda: client.get(f"/api/workflows/{res.id}").json()["state"] == "RUNNING", 10, "run")
    # When it is cancelled; Then 201 and CANCELLED, with the waiting node CANCELLED
    r = client.post(f"/api/workflows/{res.id}/cancel", json={})
    assert r.status_code == 201 and r.json()["state"] == "CANCELLED"
    states = [n["state"] for n in client.get(f"/api/workflows/{res.id}").json()["tasks"]]
    assert states == ["CANCELLED", "CANCELLED"]
    # And cancelling it again leaves it as it is
    assert client.post(f"/api/workflows/{res.id}/cancel", json={}).json()["state"] == "CANCELLED"


def test_a_workflow_failing_its_signature_check_is_a_422(app, worker, t):
    import workerapp

    # Given a workflow stored unsigned, and a dashboard whose app has a signing key
    res = start(t, t.add.s(1, 1))
    signed = workerapp.make_app(app.conf.broker_url, app.conf.result_backend, name="signed")
    signed.conf.dyrygent_signing_key = "another key"
    with TestClient(create_app(signed)) as c:
        # When its detail is asked for; Then 422 saying why, not a 500
        r = c.get(f"/api/workflows/{res.id}")
    assert r.status_code == 422
    assert "is not signed, but this worker has a dyrygent_signing_key" in r.json()["error"]


def test_retry_runs_again_only_what_failed(client, t, ledger):
    # Given a group where one member failed (fail_once fails on its first run only)
    key = "web-retry-once"
    ledger.client.delete(key)
    res = start(t, t.add.s(1, 1), t.fail_once.s(5, key))
    body = ended(client, res.id)
    assert body["state"] == "FAILURE"
    # When retried; Then only the failed member runs again, and the run succeeds
    r = client.post(f"/api/workflows/{res.id}/retry", json={})
    assert r.status_code == 201
    assert ended(client, res.id)["state"] == "SUCCESS"
    assert res.get(timeout=10) == [2, 5]
    add_id, once_id = (n["id"] for n in client.get(f"/api/workflows/{res.id}").json()["tasks"])
    assert ledger.runs()[add_id] == 1 and ledger.runs()[once_id] == 2
    # And retrying a run with nothing to retry is refused
    assert client.post(f"/api/workflows/{res.id}/retry", json={}).status_code == 409


def test_relaunch_a_run_of_a_definition(client):
    # Given a run of demo.sum that ended
    first = client.post("/api/workflows", json={"name": "demo.sum", "payload": {"numbers": [3]}})
    ended(client, first.json()["id"])
    # When relaunched; Then a new run of the same definition and payload
    r = client.post(f"/api/workflows/{first.json()['id']}/relaunch", json={})
    assert r.status_code == 201 and r.json()["id"] != first.json()["id"]
    assert ended(client, r.json()["id"])["progress"]["total"] == 2


def test_relaunch_of_a_run_without_definition_is_refused(client, t):
    res = start(t, t.add.s(1, 1))
    r = client.post(f"/api/workflows/{res.id}/relaunch", json={})
    assert r.status_code == 409 and "not started from a definition" in r.json()["error"]


def test_big_workflow_detail(client, t):
    # Given a fan-out of 2,000 nodes into a sum
    wf = Workflow(app=t.app)
    wf.add_celery_canvas(group(t.add.s(i, 0) for i in range(2000)) | t.tsum.s())
    res = wf.apply_async()
    # Then its detail lists every node, and it ends SUCCESS
    body = ended(client, res.id, timeout=90)
    assert len(body["tasks"]) == 2001 and body["state"] == "SUCCESS"
    assert body["counts"] == {"SUCCEEDED": 2001}


# -- security ------------------------------------------------------------------------------


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture(scope="module")
def secured(app, worker):
    from tests.web.definitions import Definitions

    auth = Auth({"alice": hash_password("s3cret")}, token="tok-123")
    with TestClient(create_app(app, Definitions(), auth=auth)) as c:
        yield c


def test_auth_on_every_endpoint_but_ping(secured):
    # Given authentication configured; Then ping is open, everything else needs credentials
    assert secured.get("/api/ping").status_code == 200
    r = secured.get("/api/workflows")
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Basic realm="dyrygent"'
    assert "authentication required" in r.json()["error"]
    assert secured.get("/").status_code == 401
    assert secured.get("/api/workflows", headers=basic("alice", "wrong")).status_code == 401
    assert secured.get("/api/workflows", headers=basic("bob", "s3cret")).status_code == 401
    assert secured.get("/api/workflows", headers=basic("alice", "s3cret")).status_code == 200
    ok = {"Authorization": "Bearer tok-123"}
    assert secured.get("/api/workflows", headers=ok).status_code == 200
    bad = {"Authorization": "Bearer nope"}
    assert secured.get("/api/workflows", headers=bad).status_code == 401


def test_writes_need_auth_and_browsers_need_the_csrf_token(secured):
    body = {"name": "demo.sum", "payload": {"numbers": [1]}}
    # Without credentials: 401; with the token: 201
    assert secured.post("/api/workflows", json=body).status_code == 401
    ok = secured.post("/api/workflows", json=body, headers={"Authorization": "Bearer tok-123"})
    assert ok.status_code == 201
    # A browser (Origin sent) with Basic credentials but no CSRF token: 403
    browser = {**basic("alice", "s3cret"), "Origin": "http://testserver"}
    r = secured.post("/api/workflows", json=body, headers=browser)
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    # Another site's page: 403
    evil = {**basic("alice", "s3cret"), "Origin": "http://evil.example"}
    assert "cross-site" in secured.post("/api/workflows", json=body, headers=evil).json()["error"]
    # With the page's token (cookie + header): 201
    page = secured.get("/", headers=basic("alice", "s3cret"))
    token = page.cookies["dyrygent_csrf"]
    r = secured.post("/api/workflows", json=body, headers={**browser, "X-CSRF-Token": token})
    assert r.status_code == 201


def test_binding_beyond_localhost_needs_auth():
    # When the bind address is public and no credentials are configured; Then refused
    with pytest.raises(ConfigurationError, match="refusing to serve the dashboard on 0.0.0.0"):
        check_bind("0.0.0.0", Auth())
    check_bind("0.0.0.0", Auth(token="x"))
    check_bind("127.0.0.1", Auth())


def test_the_page_carries_its_protections(client):
    # When the page is served; Then it cannot be framed, runs only its own scripts, and
    # sets the CSRF cookie it also embeds
    page = client.get("/workflows/any-id")
    assert page.headers["x-frame-options"] == "DENY"
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'self'
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    token = page.cookies["dyrygent_csrf"]
    assert token.split(".")[0] in page.text


def test_no_endpoint_imports_pickle_paths():
    # The web package never deserialises with pickle or evaluates input
    from pathlib import Path

    import dyrygent.web

    for path in Path(dyrygent.web.__file__).parent.glob("*.py"):
        text = path.read_text()
        for banned in ("import pickle", "pickle.load", "eval(", "exec(", "yaml.load("):
            assert banned not in text, (path, banned)


@pytest.mark.slow
def test_10000_nodes_answer_in_under_a_second(client, t):
    import time

    # Given an ended fan-out of 10,000 nodes, and 1,000 runs in the store
    wf = Workflow(app=t.app)
    wf.add_celery_canvas(group(t.add.s(i, 0) for i in range(10_000)) | t.tsum.s())
    res = wf.apply_async()
    ended(client, res.id, timeout=600)

    def timed(path: str) -> float:
        client.get(path)  # the first read also loads the graph
        t0 = time.perf_counter()
        assert client.get(path).status_code == 200
        return time.perf_counter() - t0

    # Then its detail (both shapes), a poll, and a list of 1,000 each take under a second
    assert timed(f"/api/workflows/{res.id}") < 1
    assert timed(f"/api/workflows/{res.id}?view=columns") < 1
    assert timed(f"/api/workflows/{res.id}/changes?since=0") < 1
    assert timed("/api/workflows?limit=1000") < 1


def test_relaunch_through_the_definitions_own_relaunch(app, worker, t):
    from dyrygent.errors import BuildError
    from tests.web.definitions import Definitions

    class Relaunching(Definitions):
        """Definitions with issue 12's relaunch(workflow_id, app=)."""

        def relaunch(self, workflow_id: str, app=None):
            if workflow_id != known:
                raise BuildError(f"workflow {workflow_id} is not a run of a definition")
            return self.run("demo.sum", {"numbers": [4]}, app)

    known = start(t, t.add.s(1, 1)).id
    other = start(t, t.add.s(2, 2)).id
    with TestClient(create_app(app, Relaunching())) as c:
        # When a run the definitions know is relaunched; Then 201 with the new run
        r = c.post(f"/api/workflows/{known}/relaunch", json={})
        assert r.status_code == 201 and r.json()["id"] not in (known, other)
        # When one they refuse is; Then 409 with their reason
        r = c.post(f"/api/workflows/{other}/relaunch", json={})
        assert r.status_code == 409 and "is not a run of a definition" in r.json()["error"]
