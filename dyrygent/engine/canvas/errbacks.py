"""The errbacks Celery calls when a chord's header fails, recorded at build time.

Natively a failing header member makes the backend call ``chord_error_from_stack(body, exc)``:
a task body calls its own ``link_error``; a group body calls, for each of its tasks, that
task's errbacks and the group's own (celery 8786, ``_handle_group_chord_error``), so a chord's
``link_error``, which Celery links to each task of a group body, runs once per body task.
dyrygent never runs the body, so each header node carries a record of what that call needs,
and the processor rebuilds the body from it (:func:`chord_body_for_errors`).
"""

from __future__ import annotations

from typing import Any

from celery.canvas import Signature, _chain, _chord, chunks, group, maybe_signature

__all__ = ["chord_body_for_errors", "error_record", "links"]


def links(sig: Signature) -> tuple[list[Any], list[Any]]:
    """The ``link`` and ``link_error`` options of ``sig``, as lists."""
    opts = sig.options
    return _as_list(opts.get("link")), _as_list(opts.get("link_error"))


def _as_list(value: Any) -> list[Any]:
    """An option holding one signature (a dict) or several, as a list (kombu's maybe_list)."""
    if not value:
        return []
    return [value] if isinstance(value, dict) else list(value)


def _result_errbacks(sig: Any, app: Any) -> tuple[str | None, list[Any]]:
    """The id of ``sig``'s result and the errbacks linked to it, as Celery collects them
    (``celery.backends.base._result_errbacks``): a chord's are its body's and its own, a
    group's its own and its tasks', a chain's only its own (its id is its last task's)."""
    sig = maybe_signature(sig, app=app)
    errbacks: list[Any] = []
    while isinstance(sig, _chord) and sig.body is not None:
        errbacks += links(sig)[1]
        sig = maybe_signature(sig.body, app=app)
    errbacks += links(sig)[1]
    if isinstance(sig, group) and not isinstance(sig, chunks):
        for task in sig.tasks:
            errbacks += _result_errbacks(task, app)[1]
        return None, errbacks
    if isinstance(sig, _chain):
        last = [maybe_signature(t, app=app) for t in sig.tasks][-1:]
        return (_result_errbacks(last[0], app)[0] if last else None), errbacks
    return sig.options.get("task_id"), errbacks


def _unique(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def error_record(body: Signature, app: Any, inherited: list[Any]) -> dict[str, Any] | None:
    """What failing the chord whose body is ``body`` (frozen) needs, or None when no errback
    would be called. ``inherited``: errbacks given to the chord or an enclosing group, which
    Celery links to each task of the body."""
    if isinstance(body, group) and not isinstance(body, chunks):
        members = []
        for task in body.tasks:
            task_id, errbacks = _result_errbacks(task, app)
            name = getattr(maybe_signature(task, app=app), "task", "celery.group")
            members.append({"task": name, "id": task_id, "link_error": errbacks + inherited})
        own = links(body)[1]
        if not own and not any(m["link_error"] for m in members):
            return None
        return {"task": body.task, "id": None, "link_error": own, "members": members}
    errbacks = _unique(links(body)[1] + inherited)
    if not errbacks:
        return None
    return {"task": body.task, "id": body.options.get("task_id"), "link_error": errbacks}


def chord_body_for_errors(record: dict[str, Any], app: Any) -> Signature:
    """The chord body an :func:`error_record` describes, to pass to the backend's
    ``chord_error_from_stack`` as Celery's own chord error handling does."""
    if "members" in record:
        tasks = [
            Signature(m["task"], options={"task_id": m["id"], "link_error": m["link_error"]})
            for m in record["members"]
        ]
        return group(tasks, app=app, link_error=record["link_error"])
    options = {"task_id": record["id"], "link_error": record["link_error"]}
    return Signature(record["task"], options=options, app=app)
