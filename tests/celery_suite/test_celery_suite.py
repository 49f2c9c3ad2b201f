"""Celery's own canvas test suite, run through dyrygent (behind ``-m celery_suite``).

Takes ``t/integration/`` from the sdist of the installed Celery version (downloaded once with
pip into ``~/.cache/dyrygent``, extracted into a temp dir: Celery's files are never in this
repository), starts a private redis-server for its broker and backend, and runs
``t/integration/test_canvas.py`` in a pytest subprocess with :mod:`tests.celery_suite.plugin`,
which routes every canvas the test bodies submit through dyrygent. Prints one line per test
(passed, failed, excluded with the reason, or "no canvas" for tests that submit none) and a
summary, writes them to ``celery-suite-report.txt`` in the pytest temp dir, and fails if any
test that routed a canvas failed. About 15 minutes when everything passes::

    python -m pytest -m celery_suite -s tests/celery_suite
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import celery
import pytest

from tests.harness import RedisServer

pytestmark = [pytest.mark.celery_suite, pytest.mark.timeout(45 * 60)]

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dyrygent"
SUITE = "t/integration/test_canvas.py"


def celery_sdist() -> Path:
    """The sdist of the installed Celery, from the cache or downloaded with pip."""
    name = f"celery-{celery.__version__}.tar.gz"
    path = CACHE / name
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
            + [f"celery=={celery.__version__}", "-d", str(CACHE)],
            check=True,
            timeout=300,
        )
    return path


def extract_tests(sdist: Path, into: Path) -> Path:
    """Extract the sdist's ``t/`` (without unit and smoke tests) and its ``pyproject.toml``
    (Celery's pytest settings: ``python_classes = test_*``, strict xfail) into ``into``.
    Not its ``celery/``: the installed Celery is the one under test."""
    with tarfile.open(sdist) as tar:
        members = []
        for m in tar.getmembers():
            parts = Path(m.name).parts[1:]
            wanted = parts == ("pyproject.toml",) or (
                len(parts) > 1 and parts[0] == "t" and parts[1] not in ("unit", "smoke")
            )
            if wanted:
                m.name = str(Path(*parts))
                members.append(m)
        tar.extractall(into, members=members)  # our own cached sdist
    return into


def verdicts(lines: list[dict]) -> dict[str, str]:
    """One verdict per test id from the plugin's report lines (a test with subtests has
    one line per subtest, and fails if any of them failed)."""
    by_id: dict[str, list[dict]] = {}
    for line in lines:
        by_id.setdefault(line["id"], []).append(line)
    out = {}
    for test_id, group in by_id.items():
        outcomes = [x["outcome"] for x in group]
        outcome = next((o for o in ("error", "failed") if o in outcomes), outcomes[-1])
        if group[0]["excluded"]:
            out[test_id] = f"excluded ({group[0]['excluded']})"
        elif group[0].get("differs") and outcome in ("failed", "error"):
            out[test_id] = f"differs ({group[0]['differs']})"
        elif outcome in ("passed", "xfailed", "xpassed") and not max(x["routed"] for x in group):
            out[test_id] = f"no canvas ({outcome})"
        else:
            out[test_id] = outcome
    return out


def test_celery_canvas_suite(tmp_path: Path) -> None:
    # Given Celery's integration tests from its sdist, and a private Redis
    root = extract_tests(celery_sdist(), tmp_path / "celery")
    report = tmp_path / "report.jsonl"
    redis = RedisServer()
    try:
        env = {
            **os.environ,
            "TEST_BROKER": redis.url(0),
            "TEST_BACKEND": redis.url(1),
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(redis.port),
            "PYTHONPATH": os.pathsep.join([str(root), str(REPO)]),
            "DYRYGENT_SUITE_REPORT": str(report),
        }
        # When its canvas tests run with every submitted canvas routed through dyrygent
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", SUITE, "-c", str(root / "pyproject.toml")]
            + ["--rootdir", str(root), "-p", "celery.contrib.pytest"]
            + ["-p", "tests.celery_suite.plugin"]
            + ["-p", "no:cacheprovider", "-q", "-rfE", "--timeout", "180"],
            cwd=root,
            env=env,
            timeout=40 * 60,
            capture_output=True,
            text=True,
        )
    finally:
        redis.stop()
    (tmp_path / "pytest-output.txt").write_text(proc.stdout + proc.stderr)

    # Then each test is reported, and every test that routed a canvas passed
    lines = [json.loads(x) for x in report.read_text().splitlines()]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    verdict = verdicts(lines)
    table = [f"{test_id.split('::', 1)[-1]}: {v}" for test_id, v in verdict.items()]
    counts = Counter(v.split(" (")[0] for v in verdict.values())
    summary = f"{len(verdict)} tests: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    (tmp_path / "celery-suite-report.txt").write_text("\n".join(table + [summary]) + "\n")
    print("", *table, summary, sep="\n")
    failed = {i: v for i, v in verdict.items() if v in ("failed", "error")}
    assert not failed, "\n".join(f"{i}: {v}" for i, v in failed.items())
