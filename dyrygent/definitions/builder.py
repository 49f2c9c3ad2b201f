"""Building a run of a definition as a dyrygent Workflow, node by node.

Each task is one node (``add_signature``), receiving what director gives it: ``payload`` and
``workflow_id`` keyword arguments; positionally ``None`` for a first task, the previous
step's result, or the list of a group's results in YAML order. ``depends_on: [label, ...]``
replaces "the previous step" with the named earlier steps (one: its result; several: the
list). A group's result splices in member groups, as Celery does; a member chain that ends
in a group gets one ``celery.accumulate`` node so its list stays one item.

Hooks and the run's outcome. dyrygent's outcome rule: a run fails when a *leaf* failed or
was upstream-failed. The nodes added after the steps keep that rule true with hooks:

* ``result`` (last node, so its value is the run's result): ``all_success`` on every step
  leaf; it returns the value of the ``tasks`` list (``celery.accumulate``, or
  ``dyrygent.definitions.result`` when other leaves must also be waited for);
* the success hook: ``all_success`` on ``result``, so it receives the run's result;
* ``failure-info`` (``dyrygent.definitions.failure_info``): ``one_failed`` on every step, so
  it runs exactly once, after the first failure, and returns the failed node's label, id,
  task and error; the failure hook runs after it and receives that mapping.

A failed step leaves ``result`` (a leaf) upstream-failed, so the run fails with the step's
own error although the failure hook succeeded; without a failure the info node and the
failure hook are SKIPPED, which is a success.
"""

from __future__ import annotations

from typing import Any

from celery.canvas import Signature, chain, group

from dyrygent.definitions.model import Chain, Definition, Expand, Group, Step, TaskStep
from dyrygent.dynamic import expand
from dyrygent.errors import DefinitionError

__all__ = ["FAILURE_INFO_TASK", "RESULT_TASK", "build_workflow", "check_references"]

FAILURE_INFO_TASK = "dyrygent.definitions.failure_info"
RESULT_TASK = "dyrygent.definitions.result"


def _label(step: Step) -> str | None:
    return step.label


def check_references(tasks: Chain) -> None:
    """Refuse ``depends_on`` labels that are unknown, ambiguous or not yet complete
    (a definition lists steps in an order where every reference comes first)."""
    done: dict[str, list[str]] = {}
    defined: dict[str, str] = {}

    def collect(step: Step) -> None:
        label = _label(step)
        if label is not None:
            defined.setdefault(label, step.path)
        if isinstance(step, (Chain, Group)):  # (an expand's steps are per item)
            for s in step.steps if isinstance(step, Chain) else step.members:
                collect(s)

    collect(tasks)

    def walk(step: Step) -> None:
        for ref in step.depends_on or ():
            paths = done.get(ref)
            if paths is None:
                where = defined.get(ref)
                hint = (
                    f"it is at {where}, which is not complete before this step: move this "
                    f"step after it"
                    if where
                    else "give the step you mean label: " + repr(ref)
                )
                raise DefinitionError(
                    f"depends_on names {ref!r}, which is not an earlier step: {hint}",
                    f"{step.path}.depends_on",
                )
            if len(paths) > 1:
                raise DefinitionError(
                    f"depends_on names {ref!r}, which labels {len(paths)} steps "
                    f"({', '.join(paths)}): give the one you mean its own label:",
                    f"{step.path}.depends_on",
                )
        if isinstance(step, (Chain, Group)):
            for s in step.steps if isinstance(step, Chain) else step.members:
                walk(s)
        label = _label(step)
        if label is not None:
            done.setdefault(label, []).append(step.path)

    walk(tasks)


class _Builder:
    def __init__(self, d: Definition, wf: Any, app: Any, payload: dict[str, Any]) -> None:
        self.d, self.wf, self.app, self.payload = d, wf, app, payload
        self.by_label: dict[str, tuple[str, ...]] = {}
        self.steps: list[Any] = []  # WorkflowNode of every step node, in order
        self.consumed: set[str] = set()

    def sig(self, task: TaskStep, root: bool) -> Signature:
        options = dict(task.options)
        queue = options.pop("queue", None) or self.d.queues.for_task(task.task)
        if queue:
            options["queue"] = queue
        kwargs = {**task.kwargs, "payload": self.payload, "workflow_id": self.wf.id}
        return Signature(task.task, (None,) if root else (), kwargs, options, app=self.app)

    def add(
        self,
        sig: Signature,
        deps: tuple[str, ...],
        label: str,
        rule: str | None,
        timeout: float | None = None,
    ) -> Any:
        extra = {"timeout": timeout} if timeout is not None else {}
        node = self.wf.add_signature(
            sig, dependencies=list(deps) or None, label=label, trigger_rule=rule, **extra
        )
        self.consumed.update(deps)
        return node

    def step(self, step: Step, deps: tuple[str, ...], rule: str | None) -> tuple[str, ...]:
        if step.depends_on is not None:
            deps = tuple(i for ref in step.depends_on for i in self.by_label[ref])
        rule = step.trigger_rule or rule
        if isinstance(step, TaskStep):
            node = self.add(self.sig(step, not deps), deps, step.label, rule, step.timeout)
            self.steps.append(node)
            ends: tuple[str, ...] = (node.id,)
        elif isinstance(step, Chain):
            ends = deps
            for k, s in enumerate(step.steps):
                ends = self.step(s, ends, rule if k == 0 else None)
        elif isinstance(step, Expand):
            fan_out = expand(self.canvas(Chain(step.path, None, step.steps)))
            node = self.add(fan_out, deps, step.label or step.path, rule)
            self.steps.append(node)
            ends = (node.id,)
        else:
            ends = self.group(step, deps, rule)
        if step.label is not None:
            self.by_label.setdefault(step.label, ends)
        return ends

    def canvas(self, step: Step) -> Any:
        """``step`` as a Celery canvas, to run once per item of an expansion (each task gets
        the item, or the previous step's result, as its first argument)."""
        if isinstance(step, TaskStep):
            return self.sig(step, False)
        if isinstance(step, Chain):
            return chain(*[self.canvas(s) for s in step.steps])
        if isinstance(step, Expand):
            return expand(self.canvas(Chain(step.path, None, step.steps)))
        return group(*[self.canvas(s) for s in step.members])

    def group(self, step: Group, deps: tuple[str, ...], rule: str | None) -> tuple[str, ...]:
        ends: list[str] = []
        for member in step.members:
            value = self.step(member, deps, rule)
            if len(value) > 1 and not isinstance(member, Group):
                # a chain ending in a group: its list is one item of this group's result
                collect = Signature(
                    "celery.accumulate", (), {"index": 0}, self._queue(), app=self.app
                )
                node = self.add(collect, value, f"{member.path}/result", None)
                self.steps.append(node)
                value = (node.id,)
            ends.extend(value)
        return tuple(ends)

    def _queue(self) -> dict[str, Any]:
        return {"queue": self.d.queues.default} if self.d.queues.default else {}

    def finish(self, ends: tuple[str, ...]) -> None:
        hooks = self.d.hooks
        last = self.steps[-1].id if self.steps else None
        if not (hooks.success or hooks.failure) and len(ends) == 1 and ends[0] == last:
            return  # the last node's value is the run's result already
        leaves = [n.id for n in self.steps if n.id not in self.consumed]
        others = [i for i in leaves if i not in ends]
        # with a hook, the result waits for every leaf: the success hook runs after all succeeded,
        # and a leaf the failure hook now depends on still decides the outcome
        waits = (*ends, *others) if (hooks.success or hooks.failure) else ends
        if len(waits) > len(ends):
            result = Signature(RESULT_TASK, (), {"ends": len(ends)}, self._queue(), app=self.app)
        else:
            result = Signature("celery.accumulate", (), {"index": 0}, self._queue(), app=self.app)
        result.freeze()
        if hooks.success:
            self.add(self.sig(hooks.success, False), (result.id,), "hooks.success", None)
        if hooks.failure:
            steps = [[n.id, n.label, n.task] for n in self.steps]
            info = Signature(
                FAILURE_INFO_TASK,
                (),
                {"steps": steps, "workflow_id": self.wf.id},
                self._queue(),
                immutable=True,
                app=self.app,
            )
            node = self.add(info, tuple(s[0] for s in steps), "hooks.failure/info", "one_failed")
            self.add(self.sig(hooks.failure, False), (node.id,), "hooks.failure", None)
        self.add(result, waits, "result", None)


def build_workflow(d: Definition, payload: dict[str, Any], app: Any, **options: Any) -> Any:
    """A Workflow running ``d`` with ``payload`` (validated by the caller) on ``app``;
    ``options`` go to ``Workflow(...)`` (the processor's own messages go to the definition's
    default queue unless ``options=`` says otherwise)."""
    from dyrygent.workflow import Workflow

    if d.queues.default and "options" not in options:
        # director sends its bookkeeping tasks to the definition's queue: so does the processor
        options["options"] = {"queue": d.queues.default}
    wf = Workflow(app=app, **options)
    b = _Builder(d, wf, app, payload)
    ends = b.step(d.tasks, (), None)
    b.finish(ends)
    return wf
