"""Definitions: the loaded definitions of a project, and starting runs of them.

Every way of starting a run (Python, CLI, beat, relaunch) goes through :meth:`Definitions.run`,
so the payload is always validated, and every run is recorded (see ``records``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from dyrygent.definitions.builder import build_workflow
from dyrygent.definitions.model import Definition
from dyrygent.definitions.records import add_run, is_running, load_run, recent_runs, save_run
from dyrygent.definitions.schema import validate_payload
from dyrygent.definitions.steps import closest
from dyrygent.errors import DefinitionError, PayloadInvalidError

__all__ = ["Definitions"]

logger = logging.getLogger("dyrygent.definitions")


class Definitions:
    """The definitions loaded by :func:`~dyrygent.load_definitions`, by ``project.name``."""

    def __init__(self, definitions: dict[str, Definition], app: Any = None, source: str = ""):
        self._defs = dict(definitions)
        self.app = app
        self.source = source

    def __repr__(self) -> str:
        return f"<Definitions {len(self._defs)} from {self.source}>"

    def __contains__(self, name: object) -> bool:
        return name in self._defs

    def names(self) -> list[str]:
        """Every definition's full name, sorted."""
        return sorted(self._defs)

    def get(self, name: str) -> Definition:
        """The definition ``name``; raises DefinitionError listing the names if unknown."""
        try:
            return self._defs[name]
        except KeyError:
            raise DefinitionError(
                f"no definition {name!r}{closest(name, list(self._defs))}: the definitions "
                f"are {', '.join(self.names()) or 'none'}"
            ) from None

    def _app(self, app: Any) -> Any:
        if app is not None:
            return app
        if self.app is not None:
            return self.app
        from celery import current_app

        return current_app

    def check_payload(self, name: str, payload: Any = None) -> dict[str, Any]:
        """The payload (``{}`` for None), checked against ``name``'s schema; raises
        PayloadInvalidError listing every error."""
        d = self.get(name)
        payload = {} if payload is None else payload
        validate_payload(name, d.schema, payload)
        try:
            json.dumps(payload)
        except (TypeError, ValueError) as exc:
            raise PayloadInvalidError(
                f"the payload of {name} must be JSON (it is sent to every task): {exc}",
                [f"$: {exc}"],
            ) from None
        checked: dict[str, Any] = payload
        return checked

    def build(self, name: str, payload: Any = None, app: Any = None, **options: Any) -> Any:
        """A Workflow of ``name`` with ``payload`` (validated), not started; ``options`` go to
        ``Workflow(...)``. Raises DefinitionError or PayloadInvalidError."""
        payload = self.check_payload(name, payload)
        return build_workflow(self.get(name), payload, self._app(app), **options)

    def run(
        self,
        name: str,
        payload: Any = None,
        app: Any = None,
        *,
        periodic: bool = False,
        **options: Any,
    ) -> Any:
        """Validate ``payload``, start a run of ``name`` and return its WorkflowResult.

        The run is recorded (definition, payload) for ``relaunch``, and the definition's
        ``retention`` prunes its older finished runs. Raises DefinitionError or
        PayloadInvalidError before anything is published."""
        app = self._app(app)
        payload = self.check_payload(name, payload)
        wf = build_workflow(self.get(name), payload, app, **options)
        save_run(app, wf.id, name, payload, periodic)
        result = wf.apply_async()
        dropped = add_run(app, name, wf.id, self.get(name).retention)
        if dropped:
            logger.info("dyrygent: %s: retention forgot %d old runs", name, len(dropped))
        return result

    def run_periodic(self, name: str, app: Any = None) -> Any:
        """A scheduled run of ``name`` with its periodic payload; None when ``overlap:
        skip`` and its previous run is still running."""
        d = self.get(name)
        if d.periodic is None:
            raise DefinitionError(f"{name} has no periodic: add periodic: {{interval: 60}}", name)
        app = self._app(app)
        if d.periodic.overlap == "skip":
            runs = recent_runs(app, name)
            if runs and is_running(app, runs[-1]):
                logger.info("dyrygent: %s skipped: run %s is still running", name, runs[-1])
                return None
        return self.run(name, dict(d.periodic.payload), app, periodic=True)

    def relaunch(self, workflow_id: str, app: Any = None) -> Any:
        """A new run of the definition and payload of run ``workflow_id``.

        Raises DefinitionError when that run has no record (not started from a definition,
        forgotten by retention, or expired with ``result_expires``)."""
        app = self._app(app)
        record = load_run(app, str(workflow_id))
        if record is None:
            raise DefinitionError(
                f"run {workflow_id!r} has no definition record: it was not started from a "
                f"definition, or its record expired or was pruned by retention"
            )
        return self.run(str(record["definition"]), record.get("payload"), app)
