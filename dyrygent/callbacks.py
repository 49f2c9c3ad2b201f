"""celery-dyrygent's workflow hooks, ``Workflow.connect("on_finish")``, done without a
mutable dict shared by every workflow: handlers connect on a Workflow *subclass* (each keeps
its own, inherited by its subclasses) or on one *instance*, and travel to the processor, in
another process, as importable dotted paths stored in the workflow's header.

Handlers are called ``handler(workflow, payload)`` in the process that committed the change,
``workflow`` being a :class:`~dyrygent.WorkflowResult` of the workflow (read-only: the
original Workflow object is not in that process) and ``payload`` a dict: ``on_finish``
``{"state", "result" or "error"}``, ``on_state_change`` ``{"old", "new"}``,
``after_active_tick`` ``{"launched"}``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from dyrygent.errors import BuildError

__all__ = ["HOOK_NAMES", "Connect", "class_hooks", "dotted_path"]

HOOK_NAMES = ("on_finish", "on_state_change", "after_active_tick")
_ATTR = "_dyrygent_hooks"


def dotted_path(fn: Callable[..., Any]) -> str:
    """``module.name`` of a module-level function the workers can import; raises BuildError
    for a lambda, a nested function or one defined in ``__main__``."""
    module = getattr(fn, "__module__", None)
    name = getattr(fn, "__qualname__", "")
    if not module or module == "__main__" or "<" in name or "." in name:
        raise BuildError(
            f"hook {fn!r}: a workflow hook runs in the workers, so it must be a module-level "
            f"function they can import by name (not a lambda, a nested function, a method or "
            f"one defined in __main__): move it to a module both import"
        )
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise BuildError(f"hook {module}.{name} cannot be imported by name ({exc})") from exc
    if found is not fn:
        raise BuildError(f"hook {module}.{name}: that name holds another object")
    return f"{module}.{name}"


def _check_name(name: str) -> None:
    if name not in HOOK_NAMES:
        raise BuildError(f"unknown workflow hook {name!r}: use one of {list(HOOK_NAMES)}")


def class_hooks(cls: type) -> dict[str, list[str]]:
    """The hooks connected on ``cls`` and its bases, base classes first."""
    out: dict[str, list[str]] = {}
    for klass in reversed(cls.__mro__):
        for name, paths in klass.__dict__.get(_ATTR, {}).items():
            have = out.setdefault(name, [])
            for path in paths:
                if path not in have:
                    have.append(path)
    return out


class Connect:
    """``Workflow.connect(name)``: a decorator connecting a hook on the subclass it is read
    from, or on the instance. Raises BuildError on the base class itself (that would be the
    shared dict celery-dyrygent had), for an unknown name or a handler not importable."""

    def __init__(self, base: str) -> None:
        self.base = base

    def __get__(self, obj: Any, owner: type) -> Callable[[str], Callable[..., Any]]:
        def connect(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
            _check_name(name)

            def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
                path = dotted_path(fn)
                if obj is not None:
                    hooks = obj.__dict__.setdefault(_ATTR, {})
                elif owner.__name__ == self.base and owner.__module__ == "dyrygent.workflow":
                    raise BuildError(
                        f"Workflow.connect({name!r}) on the Workflow class itself would apply "
                        f"to every workflow of every user: subclass Workflow and connect on "
                        f"the subclass, or connect on one workflow (wf.connect(...))"
                    )
                else:
                    if _ATTR not in owner.__dict__:
                        setattr(owner, _ATTR, {})
                    hooks = owner.__dict__[_ATTR]
                hooks.setdefault(name, []).append(path)
                return fn

            return decorator

        return connect
