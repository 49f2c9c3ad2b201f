"""The core imports no Celery or kombu; the public surface is what __all__ says."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import dyrygent

CORE = Path(dyrygent.__file__).parent / "core"
ALLOWED_THIRD_PARTY = {"msgpack"}
ALLOWED_OWN = {"dyrygent.core", "dyrygent.errors"}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_core_imports_only_stdlib_msgpack_and_itself():
    files = sorted(CORE.glob("*.py"))
    assert len(files) >= 4
    for f in files:
        for mod in imported_modules(f):
            top = mod.split(".")[0]
            ok = (
                top in sys.stdlib_module_names
                or top in ALLOWED_THIRD_PARTY
                or any(mod == o or mod.startswith(o + ".") for o in ALLOWED_OWN)
            )
            assert ok, f"{f.name} imports {mod}: the core must not depend on it"


def test_errors_module_is_pure_too():
    assert {m.split(".")[0] for m in imported_modules(CORE.parent / "errors.py")} <= set(
        sys.stdlib_module_names
    )


def test_importing_the_core_loads_no_celery_or_kombu():
    # Given a fresh interpreter; when it imports the core and runs a plan
    code = (
        "import sys, dyrygent.core.tick, dyrygent.core.codec, dyrygent.core.outcome\n"
        "import dyrygent\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('celery', 'kombu'))\n"
        "print(','.join(loaded))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    # Then no module of Celery or kombu was loaded
    assert out.stdout.strip() == ""


def test_the_public_names_load_on_first_use():
    code = "import sys, dyrygent\ndyrygent.Workflow\nprint('celery' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "True"


def test_public_surface():
    assert dyrygent.__all__ == sorted(dyrygent.__all__)
    assert set(dyrygent.__all__) == {
        "BranchError",
        "BrokerUnavailableError",
        "BuildError",
        "ConfigurationError",
        "CycleError",
        "DefinitionError",
        "DuplicateNodeError",
        "DyrygentError",
        "EagerWorkflowResult",
        "ExpandError",
        "HistoryEvent",
        "InvalidNodeError",
        "LimitExceededError",
        "NodeInfo",
        "NodeLostError",
        "NodeTimeoutError",
        "PayloadError",
        "PayloadInvalidError",
        "Progress",
        "RenderError",
        "SteeringError",
        "StoreUnavailableError",
        "TransientError",
        "TriggerRule",
        "UnknownDependencyError",
        "UnsupportedCanvasError",
        "Workflow",
        "WorkflowError",
        "WorkflowGroupResult",
        "WorkflowInfo",
        "WorkflowNode",
        "WorkflowResult",
        "__version__",
        "beat_schedule",
        "branch",
        "expand",
        "list_workflows",
        "load_definitions",
        "register_workflow_processor",
    }
    for name in dyrygent.__all__:
        assert hasattr(dyrygent, name)
