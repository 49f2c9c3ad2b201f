"""Parsing a definition's ``tasks`` (and hooks) into steps, each error naming its YAML path.

Director's format: a string is a task name; ``{NAME: {type: group, tasks: [...]}}`` is a
group. dyrygent adds ``type: chain``, nesting to any depth, and task options in the same
one-key form: ``{TASK_NAME: {queue: pdf, countdown: 5, ...}}`` (no ``type``, or
``type: task``; ``task:`` names the task when the key is only a label).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from dyrygent.core.rules import TriggerRule
from dyrygent.definitions.model import Chain, Expand, Group, Step, TaskStep
from dyrygent.errors import DefinitionError

__all__ = ["StepParser", "TASK_KEYS", "closest"]

TASK_KEYS = (
    "type",
    "task",
    "label",
    "queue",
    "countdown",
    "priority",
    "kwargs",
    "retries",
    "trigger_rule",
    "depends_on",
    "timeout",
)
STRUCTURE_KEYS = ("type", "tasks", "label", "trigger_rule", "depends_on")
TYPES = ("task", "chain", "group", "expand")
#: keyword arguments director gives every task; a step's ``kwargs`` may not override them
RESERVED_KWARGS = ("payload", "workflow_id")


def closest(word: str, choices: tuple[str, ...] | list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    match = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class StepParser:
    """Parses the steps of one definition; ``known(task)`` says whether the app has the task;
    ``timeout_ok`` whether Workflow.add_signature accepts ``timeout=``."""

    def __init__(self, known: Callable[[str], bool], timeout_ok: bool, app_name: str) -> None:
        self.known = known
        self.timeout_ok = timeout_ok
        self.app_name = app_name
        self.labels: dict[str, str] = {}  # explicit label -> path

    def tasks(self, value: Any, path: str) -> Chain:
        """The top-level ``tasks`` list as a chain."""
        return Chain(path, None, self._list(value, path))

    def _list(self, value: Any, path: str) -> tuple[Step, ...]:
        if not isinstance(value, list) or not value:
            raise DefinitionError(
                f"must be a non-empty list of task names or one-key mappings, not "
                f"{type(value).__name__} {value!r:.60}: e.g. tasks: [tasks.extract, tasks.load]",
                path,
            )
        return tuple(self.step(item, f"{path}[{i}]") for i, item in enumerate(value))

    def step(self, item: Any, path: str, *, hook: bool = False) -> Step:
        """One item of a ``tasks`` list (or a hook, where only tasks are allowed)."""
        if isinstance(item, str):
            self._check_task(item, path)
            return TaskStep(path, item, item)
        if not isinstance(item, dict) or len(item) != 1:
            raise DefinitionError(
                f"an item must be a task name or a one-key mapping "
                f"{{NAME: {{type: group, tasks: [...]}}}}, not {item!r:.80}",
                path,
            )
        ((key, body),) = item.items()
        key = str(key)
        here = f"{path}.{key}"
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise DefinitionError(
                f"the options of {key!r} must be a mapping (type: group, tasks: [...], or task "
                f"options such as queue: ...), not {body!r:.60}",
                here,
            )
        kind = body.get("type", "task")
        if kind not in TYPES:
            raise DefinitionError(
                f"unknown type {kind!r}{closest(kind, TYPES)}: use one of {', '.join(TYPES)}",
                f"{here}.type",
            )
        if hook and kind != "task":
            raise DefinitionError(f"a hook is one task, not a {kind}", f"{here}.type")
        if kind == "task":
            return self._task(key, body, here, hook)
        return self._structure(kind, key, body, here)

    def _unknown_keys(
        self, body: dict[str, Any], allowed: tuple[str, ...], here: str, what: str
    ) -> None:
        for k in body:
            if k not in allowed:
                raise DefinitionError(
                    f"unknown key {k!r} for a {what}{closest(k, allowed)}: the keys are "
                    f"{', '.join(allowed)}",
                    f"{here}.{k}",
                )

    def _common(self, body: dict[str, Any], here: str) -> tuple[str | None, tuple[str, ...] | None]:
        rule = body.get("trigger_rule")
        if rule is not None:
            try:
                rule = TriggerRule.parse(rule).value
            except ValueError as exc:
                raise DefinitionError(str(exc), f"{here}.trigger_rule") from None
        deps = body.get("depends_on")
        if deps is not None:
            if isinstance(deps, str):
                deps = [deps]
            if not isinstance(deps, list) or not deps or not all(isinstance(d, str) for d in deps):
                raise DefinitionError(
                    "depends_on must be a label or a non-empty list of labels of earlier steps",
                    f"{here}.depends_on",
                )
            deps = tuple(deps)
        label = body.get("label")
        if label is not None:
            if not isinstance(label, str) or not label:
                raise DefinitionError("label must be a non-empty string", f"{here}.label")
            if label in self.labels:
                raise DefinitionError(
                    f"label {label!r} is already used at {self.labels[label]}: labels must be "
                    f"unique within a definition",
                    f"{here}.label",
                )
            self.labels[label] = here
        return rule, deps

    def _structure(self, kind: str, key: str, body: dict[str, Any], here: str) -> Step:
        self._unknown_keys(body, STRUCTURE_KEYS, here, kind)
        if "tasks" not in body:
            raise DefinitionError(f"a {kind} needs tasks: [...]", here)
        rule, deps = self._common(body, here)
        steps = self._list(body["tasks"], f"{here}.tasks")
        label = body.get("label") or key
        if kind == "group":
            return Group(here, label, steps, rule, deps)
        if kind == "expand":
            _no_references(steps)
            return Expand(here, label, steps, rule, deps)
        return Chain(here, label, steps, rule, deps)

    def _task(self, key: str, body: dict[str, Any], here: str, hook: bool) -> TaskStep:
        allowed = TASK_KEYS if not hook else tuple(k for k in TASK_KEYS if k != "depends_on")
        if "tasks" in body:
            raise DefinitionError(
                f"{key!r} has tasks but no type: add type: group or type: chain", f"{here}.tasks"
            )
        self._unknown_keys(body, allowed, here, "task")
        task = body.get("task", key)
        if not isinstance(task, str):
            raise DefinitionError("task must be a task name", f"{here}.task")
        self._check_task(task, f"{here}.task" if "task" in body else here)
        rule, deps = self._common(body, here)
        options: dict[str, Any] = {}
        queue = body.get("queue")
        if queue is not None:
            if not isinstance(queue, str) or not queue:
                raise DefinitionError("queue must be a queue name", f"{here}.queue")
            options["queue"] = queue
        countdown = body.get("countdown")
        if countdown is not None:
            if not _number(countdown) or countdown < 0:
                raise DefinitionError("countdown must be seconds (>= 0)", f"{here}.countdown")
            options["countdown"] = countdown
        priority = body.get("priority")
        if priority is not None:
            if type(priority) is not int or not 0 <= priority <= 255:
                raise DefinitionError("priority must be an integer 0-255", f"{here}.priority")
            options["priority"] = priority
        if "retries" in body:
            options.update(self._retries(body["retries"], f"{here}.retries"))
        kwargs = body.get("kwargs") or {}
        if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            raise DefinitionError("kwargs must be a mapping of names to values", f"{here}.kwargs")
        for reserved in RESERVED_KWARGS:
            if reserved in kwargs:
                raise DefinitionError(
                    f"kwargs may not set {reserved!r}: every task receives it from the run",
                    f"{here}.kwargs.{reserved}",
                )
        timeout = body.get("timeout")
        if timeout is not None:
            if not self.timeout_ok:
                raise DefinitionError(
                    "timeout is not supported yet by this dyrygent (Workflow.add_signature "
                    "has no timeout=): drop it, or use the task's time_limit",
                    f"{here}.timeout",
                )
            if not _number(timeout) or timeout <= 0:
                raise DefinitionError("timeout must be seconds (> 0)", f"{here}.timeout")
        label = body.get("label") or (key if "task" in body else task)
        return TaskStep(
            here,
            task,
            label,
            options,
            dict(kwargs),
            rule,
            deps,
            timeout,
        )

    @staticmethod
    def _retries(value: Any, here: str) -> dict[str, Any]:
        """Celery's publishing retry (``retry``, ``retry_policy``): how often the message is
        re-sent when the broker connection fails."""
        if type(value) is int and value >= 0:
            return {"retry": value > 0, "retry_policy": {"max_retries": value}}
        policy_keys = ("max_retries", "interval_start", "interval_step", "interval_max")
        if isinstance(value, dict) and value and all(k in policy_keys for k in value):
            if all(_number(v) and v >= 0 for v in value.values()):
                return {"retry": True, "retry_policy": dict(value)}
        raise DefinitionError(
            f"retries must be a count (>= 0) or a Celery retry policy with "
            f"{', '.join(policy_keys)}, not {value!r:.60}",
            here,
        )

    def _check_task(self, name: str, path: str) -> None:
        if not self.known(name):
            raise DefinitionError(
                f"task {name!r} is not registered on app {self.app_name!r}: check the exact "
                f"Celery task name, import its module in the app (include=[...]), or, if "
                f"{name!r} is a group or chain, write {{{name}: {{type: group, tasks: [...]}}}}",
                path,
            )


def _no_references(steps: tuple[Step, ...]) -> None:
    """Steps run per item of an expansion cannot depend on other steps by label."""
    for step in steps:
        if step.depends_on is not None:
            raise DefinitionError(
                "a step inside an expand runs once per item: it follows the step before it, "
                "and cannot use depends_on",
                f"{step.path}.depends_on",
            )
        if not isinstance(step, TaskStep):
            _no_references(step.steps if not isinstance(step, Group) else step.members)
