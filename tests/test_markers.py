"""The ``integration`` marker selects exactly the tests under tests/integration/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def collected(*args: str) -> list[str]:
    """The test ids ``pytest --collect-only -q`` prints for ``args`` (run from the root)."""
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return [line for line in out.stdout.splitlines() if "::" in line]


def test_not_integration_leaves_out_every_integration_test_and_keeps_the_others():
    # When the tests are collected without the integration ones
    ids = collected("-m", "not integration")
    # Then none is under tests/integration/, and the pure ones are all there
    assert not [i for i in ids if i.startswith("tests/integration/")]
    for folder in ("tests/core/", "tests/canvas/", "tests/inprocess/"):
        assert any(i.startswith(folder) for i in ids), f"nothing collected from {folder}"


def test_integration_selects_only_integration_tests():
    # When only the integration tests are collected
    ids = collected("-m", "integration")
    # Then every one is under tests/integration/, from every module there
    assert ids and all(i.startswith("tests/integration/") for i in ids)
    modules = {i.split("::")[0] for i in ids}
    expected = {
        f"tests/integration/{p.name}" for p in (ROOT / "tests/integration").glob("test_*.py")
    }
    assert modules == expected
