"""Loading director's ``workflows.yml`` (or JSON, or a dict) into Definitions.

Everything is checked here, before anything is published: the name (``project.name``), every
key (director ignores unknown ones; we refuse them), each step's ``type``, task names the app
does not know, ``depends_on`` references, queues, hooks, periodic specs (and their payloads
against the schema), schema files and retention. Every error is a DefinitionError whose
``path`` is the YAML path at fault (``billing.INVOICE.tasks[1].RENDER.type``). YAML is read
with PyYAML's ``safe_load`` only (no Python objects from the file).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dyrygent.definitions.model import Definition, Hooks, Queues, TaskStep
from dyrygent.definitions.periodic import parse_periodic
from dyrygent.definitions.schema import load_schema, payload_errors
from dyrygent.definitions.steps import StepParser, closest
from dyrygent.errors import DefinitionError

__all__ = ["KEYS", "load_definitions", "parse_definitions"]

KEYS = ("tasks", "queue", "hooks", "periodic", "schema", "retention")


def _read(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise DefinitionError(f"cannot read the definitions file {path}: {exc}") from None
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise DefinitionError(f"{path} is not valid JSON: {exc}") from None
    try:
        import yaml
    except ImportError:
        raise DefinitionError(
            "YAML definitions need PyYAML: pip install 'dyrygent[definitions]'"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DefinitionError(f"{path} is not valid YAML: {exc}") from None


def _known_tasks(app: Any) -> Any:
    try:
        app.loader.import_default_modules()  # the app's imports/include, as a worker does
    except Exception:  # a module that fails to import shows up as an unknown task below
        pass
    tasks = app.tasks
    return lambda name: name in tasks


def _timeout_supported() -> bool:
    from dyrygent.workflow import Workflow

    return "timeout" in inspect.signature(Workflow.add_signature).parameters


def load_definitions(
    source: str | Path | Mapping[str, Any] | None = None,
    schemas: str | Path | None = None,
    *,
    app: Any = None,
    check_tasks: bool = True,
) -> Any:
    """Load definitions from a ``workflows.yml``, a ``.json`` file or a mapping.

    ``source`` None reads ``app.conf.dyrygent_definitions``. ``schemas`` is the folder of
    JSON Schema files (default: ``app.conf.dyrygent_schemas``, else ``schemas/`` next to
    the file). ``check_tasks=False`` skips the check that the app knows every task.
    Returns :class:`~dyrygent.definitions.catalog.Definitions`; raises DefinitionError
    naming the YAML path and the fix.
    """
    from celery import current_app

    from dyrygent.definitions.catalog import Definitions

    app = app or current_app
    if source is None:
        source = app.conf.get("dyrygent_definitions")
        if source is None:
            raise DefinitionError(
                "no definitions given: pass load_definitions('workflows.yml') or set "
                "app.conf.dyrygent_definitions = 'path/to/workflows.yml'"
            )
    if schemas is None:
        schemas = app.conf.get("dyrygent_schemas")
    if isinstance(source, Mapping):
        data: Any = dict(source)
        origin = "<mapping>"
    else:
        file = Path(source)
        data = _read(file)
        origin = str(file)
        if schemas is None:
            schemas = file.parent / "schemas"
    known = _known_tasks(app) if check_tasks else (lambda name: True)
    folder = Path(schemas) if schemas is not None else None
    parsed = parse_definitions(data, folder, known, app.main or "default")
    return Definitions(parsed, app=app, source=origin)


def parse_definitions(
    data: Any, schemas: Path | None, known: Any, app_name: str = "default"
) -> dict[str, Definition]:
    """The definitions in ``data`` (the file's top-level mapping), by full name."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DefinitionError(
            f"the top level must map 'project.name' to a definition, not {type(data).__name__}"
        )
    timeout_ok = _timeout_supported()
    out: dict[str, Definition] = {}
    for fullname, body in data.items():
        fullname = str(fullname)
        if "." not in fullname or fullname.startswith(".") or fullname.endswith("."):
            raise DefinitionError(
                f"a definition's name must be 'project.name' (e.g. 'billing.{fullname}')",
                fullname,
            )
        out[fullname] = _definition(fullname, body, schemas, known, app_name, timeout_ok)
    return out


def _definition(
    fullname: str, body: Any, schemas: Path | None, known: Any, app_name: str, timeout_ok: bool
) -> Definition:
    from dyrygent.definitions.builder import check_references

    if not isinstance(body, dict):
        raise DefinitionError("a definition must be a mapping with tasks: [...]", fullname)
    for k in body:
        if k not in KEYS:
            raise DefinitionError(
                f"unknown key {k!r}{closest(str(k), KEYS)}: the keys are {', '.join(KEYS)}",
                f"{fullname}.{k}",
            )
    if "tasks" not in body:
        raise DefinitionError("a definition needs tasks: [...]", fullname)
    parser = StepParser(known, timeout_ok, app_name)
    tasks = parser.tasks(body["tasks"], f"{fullname}.tasks")
    check_references(tasks)
    queues = _queues(body.get("queue"), f"{fullname}.queue")
    hooks = _hooks(body.get("hooks"), f"{fullname}.hooks", parser)
    schema_name = body.get("schema")
    schema = None
    if schema_name is not None:
        schema = load_schema(schemas, schema_name, f"{fullname}.schema")
    periodic = None
    if body.get("periodic") is not None:
        periodic = parse_periodic(body["periodic"], f"{fullname}.periodic")
        if schema is not None:
            errors = payload_errors(schema, periodic.payload)
            if errors:
                raise DefinitionError(
                    f"the periodic payload fails schema {schema_name!r}: " + "; ".join(errors),
                    f"{fullname}.periodic.payload",
                )
    retention = _retention(body.get("retention"), f"{fullname}.retention")
    return Definition(
        fullname, tasks, queues, hooks, periodic, schema_name, schema, retention, dict(body)
    )


def _queues(value: Any, path: str) -> Queues:
    if value is None:
        return Queues()
    if isinstance(value, str) and value:
        return Queues(value)
    if isinstance(value, dict):
        for k in value:
            if k not in ("default", "customs"):
                raise DefinitionError(
                    f"unknown key {k!r}{closest(str(k), ('default', 'customs'))}: the keys "
                    f"are default, customs",
                    f"{path}.{k}",
                )
        default = value.get("default")
        customs = value.get("customs") or {}
        if default is not None and not (isinstance(default, str) and default):
            raise DefinitionError("default must be a queue name", f"{path}.default")
        if not isinstance(customs, dict) or not all(
            isinstance(q, str) and q for q in customs.values()
        ):
            raise DefinitionError("customs must map task names to queue names", f"{path}.customs")
        return Queues(default, {str(k): v for k, v in customs.items()})
    raise DefinitionError(
        f"queue must be a queue name or {{default: Q, customs: {{TASK: Q2}}}}, not {value!r:.60}",
        path,
    )


def _hooks(value: Any, path: str, parser: StepParser) -> Hooks:
    if value is None:
        return Hooks()
    if not isinstance(value, dict):
        raise DefinitionError("hooks must be a mapping {success: TASK, failure: TASK}", path)
    found: dict[str, TaskStep] = {}
    for k, v in value.items():
        if k not in ("success", "failure"):
            raise DefinitionError(
                f"unknown hook {k!r}{closest(str(k), ('success', 'failure'))}: the hooks are "
                f"success, failure",
                f"{path}.{k}",
            )
        step = parser.step(v, f"{path}.{k}", hook=True)
        assert isinstance(step, TaskStep)  # hook=True refuses anything else
        found[k] = step
    return Hooks(found.get("success"), found.get("failure"))


def _retention(value: Any, path: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, dict) and set(value) == {"offset"}:
        n = value["offset"]
        if type(n) is int and n >= 1:
            return n
    raise DefinitionError(
        f"retention must be {{offset: N}} with N >= 1 runs to keep, not {value!r:.60}", path
    )
