"""Payload schemas: JSON Schema files under ``schemas/``, checked with ``jsonschema``.

``jsonschema`` is the reference implementation of JSON Schema (Draft 4 to 2020-12, chosen by
the schema's ``$schema``, Draft 7 and later as director users write them), so we do not
write our own validator. It is an optional dependency (``pip install dyrygent[definitions]``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dyrygent.errors import DefinitionError, PayloadInvalidError

__all__ = ["jsonschema_module", "load_schema", "payload_errors", "validate_payload"]


def jsonschema_module() -> Any:
    """The ``jsonschema`` module; raises DefinitionError saying how to install it."""
    try:
        import jsonschema
    except ImportError:
        raise DefinitionError(
            "payload schemas need the jsonschema package: pip install 'dyrygent[definitions]'"
        ) from None
    return jsonschema


def load_schema(folder: Path | None, name: Any, path: str) -> dict[str, Any]:
    """The schema ``<folder>/<name>.json``, checked against its metaschema.

    Raises DefinitionError naming the YAML ``path`` when it is missing or invalid."""
    if not isinstance(name, str) or not name or name.endswith(".json"):
        raise DefinitionError(
            f"schema must be a path under the schemas folder without .json "
            f"(schema: orders/create), not {name!r:.60}",
            path,
        )
    if folder is None:
        raise DefinitionError(
            "no schemas folder: pass load_definitions(..., schemas='path/to/schemas')", path
        )
    file = Path(folder) / f"{name}.json"
    try:
        schema = json.loads(file.read_text())
    except FileNotFoundError:
        raise DefinitionError(f"schema file {file} does not exist: create it", path) from None
    except (OSError, ValueError) as exc:
        raise DefinitionError(f"schema file {file} is not valid JSON: {exc}", path) from None
    jsonschema = jsonschema_module()
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise DefinitionError(
            f"schema file {file} is not a valid JSON Schema: {exc.message}", path
        ) from None
    if not isinstance(schema, dict):
        raise DefinitionError(f"schema file {file} must hold a JSON object", path)
    return schema


def payload_errors(schema: dict[str, Any], payload: Any) -> list[str]:
    """Every violation of ``schema`` by ``payload``, as ``"<where>: <message>"``, in
    document order (``where`` is ``$`` for the payload itself, then ``$.items[0].qty``)."""
    jsonschema = jsonschema_module()
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    errors = sorted(cls(schema).iter_errors(payload), key=lambda e: list(map(str, e.path)))
    out = []
    for e in errors:
        where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.path)
        out.append(f"{where}: {e.message}")
    return out


def validate_payload(fullname: str, schema: dict[str, Any] | None, payload: Any) -> None:
    """Raise PayloadInvalidError listing every error when ``payload`` fails ``schema``."""
    if not isinstance(payload, dict):
        raise PayloadInvalidError(
            f"the payload of {fullname} must be a JSON object, not {type(payload).__name__}",
            [f"$: {payload!r:.60} is not of type 'object'"],
        )
    if schema is None:
        return
    errors = payload_errors(schema, payload)
    if errors:
        raise PayloadInvalidError(
            f"Payload is not valid for {fullname} ({len(errors)} error"
            f"{'s' if len(errors) > 1 else ''}): " + "; ".join(errors),
            errors,
        )
