"""The page in real headless Chromium (Debian's chromium + chromium-driver, via Selenium),
served by uvicorn, against a real redis-server and real workers."""

from __future__ import annotations

import shutil
import tempfile

import pytest
from celery import group

from dyrygent import Workflow

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import (  # noqa: E402
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    pytest.skip(
        "no headless Chromium here: apt-get install chromium chromium-driver (.ci/run does)",
        allow_module_level=True,
    )

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)


def chromium(profile: str):
    """A headless Chromium driven by chromedriver, with a fresh profile."""
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(DRIVER), options=options)


@pytest.fixture(scope="module")
def browser():
    profile = tempfile.mkdtemp(prefix="dyrygent-chromium-")
    driver = chromium(profile)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(driver, condition, timeout: float = 30, what: str = "the page"):
    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, timeout, 0.1, ignored_exceptions=ignored).until(
        lambda d: condition(d), f"timed out waiting for {what}"
    )


def state_of(driver) -> str:
    return driver.find_element(By.ID, "wf-state").text


def run(t, canvas):
    wf = Workflow(app=t.app)
    wf.add_celery_canvas(canvas)
    return wf.apply_async()


def test_list_shows_a_running_workflow(browser, server, t):
    # Given a workflow that runs for a few seconds
    res = run(t, t.sleep_then.s(1, seconds=4))
    # When the list is opened; Then its row appears as running, linking to its page
    browser.get(server.url + "/")
    row = f'tr[data-id="{res.id}"]'
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, row), what="the row")
    assert browser.find_element(By.CSS_SELECTOR, row).get_attribute("data-state") in (
        "PENDING",
        "RUNNING",
    )
    browser.find_element(By.CSS_SELECTOR, f"{row} a").click()
    wait(browser, lambda d: d.current_url.endswith(f"/workflows/{res.id}"), what="navigation")
    wait(browser, lambda d: d.find_elements(By.ID, "wf-state"), what="the detail view")


def test_detail_updates_live_until_success(browser, server, t):
    # Given a chain of three sleeping nodes
    res = run(t, t.sleep_then.s(1, seconds=0.8) | t.sleep_then.s(0.8) | t.add.s(1))
    # When its page is opened and marked (a reload would lose the mark)
    browser.get(f"{server.url}/workflows/{res.id}")
    wait(browser, lambda d: state_of(d) in ("PENDING", "RUNNING"), what="a running state")
    browser.execute_script("window.__mark = 42")
    # Then the progress and state follow the run, without reloading, until SUCCESS
    wait(browser, lambda d: state_of(d) == "SUCCESS", what="SUCCESS")
    assert browser.execute_script("return window.__mark") == 42
    done = "3 of 3 nodes done"
    wait(browser, lambda d: d.find_element(By.ID, "progress-text").text == done, what=done)
    states = "return [...document.querySelectorAll('#graph [data-node]')].map(e => e.dataset.state)"
    assert browser.execute_script(states) == ["SUCCEEDED"] * 3


def test_cancel_from_the_page(browser, server, t):
    # Given a long-running workflow on its page
    res = run(t, t.sleep_then.s(1, seconds=5) | t.add.s(1))
    browser.get(f"{server.url}/workflows/{res.id}")
    wait(browser, lambda d: state_of(d) == "RUNNING", what="RUNNING")
    # When Cancel is clicked; Then it shows CANCELLED
    browser.find_element(By.ID, "cancel").click()
    wait(browser, lambda d: state_of(d) == "CANCELLED", what="CANCELLED")
    assert not browser.find_element(By.ID, "cancel").is_displayed()


def test_retry_from_the_page(browser, server, t, ledger):
    # Given a workflow whose node fails on its first run only
    ledger.client.delete("web-browser-retry")
    res = run(t, t.add.s(1, 1) | t.fail_once.s("web-browser-retry"))
    browser.get(f"{server.url}/workflows/{res.id}")
    wait(browser, lambda d: state_of(d) == "FAILURE", what="FAILURE")
    # When "Retry failed" is clicked; Then it runs again and ends SUCCESS
    browser.find_element(By.ID, "retry").click()
    wait(browser, lambda d: state_of(d) == "SUCCESS", what="SUCCESS after retry")


def test_a_failed_node_shows_its_traceback(browser, server, t):
    # Given a failed workflow on its page
    res = run(t, t.fail.s())
    browser.get(f"{server.url}/workflows/{res.id}")
    wait(browser, lambda d: state_of(d) == "FAILURE", what="FAILURE")
    # When its failed node is clicked; Then the panel shows the error and its traceback
    browser.find_element(By.CSS_SELECTOR, '#graph [data-state="FAILED"]').click()
    tb = wait(browser, lambda d: d.find_elements(By.ID, "traceback"), what="the traceback")[0]
    assert "Traceback" in tb.text and "ExpectedError" in tb.text
    assert "expected failure" in browser.find_element(By.ID, "node-error").text


def test_run_dialog_shows_payload_errors_inline_then_runs(browser, server):
    # Given the Run dialog
    browser.get(server.url + "/")
    browser.find_element(By.ID, "run-open").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#run-name option"), what="names")
    browser.execute_script("document.getElementById('run-name').value = 'demo.sum'")
    payload = browser.find_element(By.ID, "run-payload")
    # When an invalid payload is sent; Then every error shows inline
    payload.clear()
    payload.send_keys('{"numbers": "x"}')
    browser.find_element(By.ID, "run-submit").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#run-errors li"), what="errors")
    assert "numbers: a list of integers" in browser.find_element(By.ID, "run-errors").text
    # When a valid one is sent; Then the new run's page opens and it succeeds
    payload.clear()
    payload.send_keys('{"numbers": [1, 2, 3]}')
    browser.find_element(By.ID, "run-submit").click()
    wait(browser, lambda d: "/workflows/" in d.current_url, what="the new run's page")
    wait(browser, lambda d: state_of(d) == "SUCCESS", what="SUCCESS")


def test_a_big_fan_out_is_one_box_until_clicked(browser, server, t):
    # Given a fan-out of 1,500 nodes
    res = run(t, group(t.add.s(i, 0) for i in range(1500)) | t.tsum.s())
    browser.get(f"{server.url}/workflows/{res.id}")
    wait(browser, lambda d: state_of(d) == "SUCCESS", timeout=90, what="SUCCESS")
    # Then the fan-out is one box with its count, and a click opens its first members
    box = browser.find_element(By.CSS_SELECTOR, "#graph [data-group]")
    assert "×1500" in box.text
    box.click()
    members = browser.find_elements(By.CSS_SELECTOR, "#graph [data-node]")
    assert 200 <= len(members) <= 202


SHAPES = {
    # 10,000 siblings of one task between a source and a sum
    "fan-out": """const t = [{label: 'src', parents: []}];
        for (let i = 0; i < 10000; i++) t.push({label: 'work', parents: [0]});
        t.push({label: 'sum', parents: t.map((_, i) => i).slice(1)}); return t;""",
    # a chain of 10,000 nodes alternating two tasks
    "chain": """const t = [];
        for (let i = 0; i < 10000; i++) t.push({label: i % 2 ? 'mul' : 'add',
          parents: i ? [i - 1] : []}); return t;""",
    # 100 parallel chains of 100 steps
    "chains": """const t = [{label: 'src', parents: []}];
        for (let c = 0; c < 100; c++) { let prev = 0;
          for (let s = 0; s < 100; s++) { t.push({label: 'step' + s, parents: [prev]});
            prev = t.length - 1; } } return t;""",
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_graphs_of_10000_nodes_stay_small_on_screen(browser, server, shape):
    # Given the page, and a 10,000-node graph of this shape (built in the page, not run)
    browser.get(server.url + "/")
    wait(browser, lambda d: d.execute_script("return !!window.DyGraph"), what="graph.js")
    # When it is grouped and drawn
    drawn = browser.execute_script(
        "const tasks = (() => {" + SHAPES[shape] + "})();"
        """
        tasks.forEach((t, i) => { t.id = 'n' + i; t.state = 'SUCCEEDED'; });
        const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
        document.body.append(svg);
        const t0 = performance.now();
        const model = DyGraph.build(tasks);
        DyGraph.render(svg, model, () => {}, null);
        const ms = performance.now() - t0;
        const out = [svg.querySelectorAll('.item').length, ms, tasks.length];
        svg.remove(); return out;
        """
    )
    items, ms, nodes = drawn
    # Then it takes a few hundred boxes at most, drawn in well under a second
    assert nodes >= 10000
    assert items <= 500, items
    assert ms < 1000, ms


def test_list_filters_and_search_by_id(browser, server, t):
    from selenium.webdriver.support.ui import Select

    # Given a failed and a succeeded workflow
    failed = run(t, t.fail.s())
    ok = run(t, t.add.s(1, 1))
    ok.get(timeout=30)
    browser.get_log("browser")  # (drops what earlier tests logged)
    browser.get(server.url + "/")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'tr[data-id="{failed.id}"]'))
    # When filtered by FAILURE; Then the failed one is listed and the succeeded one is not
    Select(browser.find_element(By.ID, "filter-state")).select_by_value("FAILURE")
    wait(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, f'tr[data-id="{ok.id}"]'))
    assert browser.find_elements(By.CSS_SELECTOR, f'tr[data-id="{failed.id}"]')
    assert browser.current_url.endswith("/?state=FAILURE")
    # When an id is searched; Then its page opens
    box = browser.find_element(By.ID, "search-id")
    box.send_keys(ok.id + "\n")
    wait(browser, lambda d: d.current_url.endswith(f"/workflows/{ok.id}"), what="its page")
    wait(browser, lambda d: state_of(d) == "SUCCESS", what="SUCCESS")
    # And the page loaded nothing from another origin (it works offline)
    foreign = browser.execute_script(
        "return performance.getEntriesByType('resource')"
        ".map(e => e.name).filter(n => !n.startsWith(location.origin))"
    )
    assert foreign == []
    # And the console shows no error
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_cancel_from_the_page_with_basic_auth(app, worker, t):
    from dyrygent.web import create_app
    from dyrygent.web.security import Auth, hash_password
    from tests.web.conftest import Server

    # Given a dashboard with a Basic user, opened with its credentials
    auth = Auth({"alice": hash_password("s3cret")})
    secured = Server(create_app(app, auth=auth, refresh=0.3))
    profile = tempfile.mkdtemp(prefix="dyrygent-chromium-auth-")
    driver = chromium(profile)
    try:
        res = run(t, t.sleep_then.s(1, seconds=5) | t.add.s(1))
        driver.get(f"http://alice:s3cret@127.0.0.1:{secured.port}/workflows/{res.id}")
        wait(driver, lambda d: state_of(d) == "RUNNING", what="RUNNING")
        # When Cancel is clicked (a write: credentials and the CSRF token both needed)
        driver.find_element(By.ID, "cancel").click()
        # Then it is cancelled
        wait(driver, lambda d: state_of(d) == "CANCELLED", what="CANCELLED")
    finally:
        driver.quit()
        secured.stop()
        shutil.rmtree(profile, ignore_errors=True)


def test_an_open_node_panel_follows_its_node(browser, server, t):
    # Given a running node, opened in the panel while it runs
    res = run(t, t.sleep_then.s(7, seconds=2))
    browser.get(f"{server.url}/workflows/{res.id}")
    wait(browser, lambda d: state_of(d) == "RUNNING", what="RUNNING")
    browser.find_element(By.CSS_SELECTOR, "#graph [data-node]").click()
    wait(browser, lambda d: "state" in d.find_element(By.ID, "panel").text, what="the panel")
    # Then, once it ends, the panel shows its result without another click
    result = wait(browser, lambda d: d.find_elements(By.ID, "result"), what="the result")[0]
    assert result.text == "7"
    assert "SUCCEEDED" in browser.find_element(By.ID, "panel").text
