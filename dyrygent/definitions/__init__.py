"""Workflows as definitions: celery-director's ``workflows.yml``, run on dyrygent.

Modules: :mod:`.loader` (files, keys, YAML paths), :mod:`.steps` (the ``tasks`` tree),
:mod:`.periodic` (schedules, beat entries), :mod:`.schema` (JSON Schema payloads),
:mod:`.model` (the loaded values), :mod:`.builder` (a run as a Workflow, hooks and the
outcome), :mod:`.catalog` (Definitions: run, relaunch), :mod:`.records` (run records,
retention, overlap), :mod:`.tasks` (tasks workers need, beat), :mod:`.cli` (commands).
PyYAML and jsonschema are optional: ``pip install 'dyrygent[definitions]'``.
"""

from __future__ import annotations

from dyrygent.definitions.catalog import Definitions
from dyrygent.definitions.loader import load_definitions
from dyrygent.definitions.model import Chain, Definition, Group, Periodic, Queues, TaskStep
from dyrygent.definitions.tasks import beat_schedule, register_definition_tasks

__all__ = [
    "Chain",
    "Definition",
    "Definitions",
    "Group",
    "Periodic",
    "Queues",
    "TaskStep",
    "beat_schedule",
    "load_definitions",
    "register_definition_tasks",
]
