"""Periodic runs: director's ``periodic`` specs as Celery beat schedules, and beat entries.

``interval: SECONDS``, ``crontab: "m h dom mon dow"`` (five fields, single spaces), or
director's legacy ``schedule:`` (seconds, or a cron string in director's field order
``m h dow dom mon``: ``"0 12 1 * *"`` is Mondays at 12:00). Optional ``payload`` (validated
against the definition's schema at load) and ``overlap: allow | skip``. Celery's own
``schedule`` and ``crontab`` classes check the fields (a well-kept parser we need not copy).
"""

from __future__ import annotations

from typing import Any

from dyrygent.definitions.model import Periodic
from dyrygent.definitions.steps import closest
from dyrygent.errors import DefinitionError

__all__ = ["RUN_TASK", "beat_entries", "parse_periodic"]

#: The registered task beat sends for every periodic definition (see tasks.py).
RUN_TASK = "dyrygent.definitions.run"
KEYS = ("interval", "crontab", "schedule", "payload", "overlap")
STANDARD = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
LEGACY = ("minute", "hour", "day_of_week", "day_of_month", "month_of_year")


def _interval(value: Any, path: str) -> tuple[Any, str]:
    from celery.schedules import schedule

    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise DefinitionError(f"must be a number of seconds > 0, not {value!r:.40}", path)
    return schedule(run_every=float(value)), f"every {value:g}s"


def _crontab(value: Any, path: str, order: tuple[str, ...]) -> tuple[Any, str]:
    from celery.schedules import crontab

    fields = value.split(" ") if isinstance(value, str) else []
    if len(fields) != 5 or not all(fields):
        names = " ".join(
            {
                "minute": "m",
                "hour": "h",
                "day_of_month": "dom",
                "month_of_year": "mon",
                "day_of_week": "dow",
            }[f]
            for f in order
        )
        raise DefinitionError(
            f"must be five cron fields separated by single spaces ({names}), not {value!r:.60}",
            path,
        )
    spec = dict(zip(order, fields))
    try:
        cron = crontab(**spec)
    except (ValueError, TypeError) as exc:
        raise DefinitionError(f"invalid cron expression {value!r}: {exc}", path) from None
    text = " ".join(spec[f] for f in STANDARD)
    return cron, f"cron {text}"


def parse_periodic(value: Any, path: str) -> Periodic:
    """The Periodic of a ``periodic`` mapping; raises DefinitionError naming the YAML path."""
    if not isinstance(value, dict):
        raise DefinitionError("must be a mapping with one of interval, crontab or schedule", path)
    for k in value:
        if k not in KEYS:
            raise DefinitionError(
                f"unknown key {k!r}{closest(k, KEYS)}: the keys are {', '.join(KEYS)}",
                f"{path}.{k}",
            )
    given = [k for k in ("interval", "crontab", "schedule") if k in value]
    if len(given) != 1:
        raise DefinitionError(
            f"give exactly one of interval, crontab or schedule (found "
            f"{', '.join(given) or 'none'})",
            path,
        )
    (kind,) = given
    spec = value[kind]
    where = f"{path}.{kind}"
    if kind == "interval":
        sched, text = _interval(spec, where)
    elif kind == "crontab":
        sched, text = _crontab(spec, where, STANDARD)
    elif isinstance(spec, str):
        sched, text = _crontab(spec, where, LEGACY)
    else:
        sched, text = _interval(spec, where)
    payload = value.get("payload")
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise DefinitionError("payload must be a mapping", f"{path}.payload")
    overlap = value.get("overlap", "allow")
    if overlap not in ("allow", "skip"):
        raise DefinitionError(
            f"overlap must be allow or skip, not {overlap!r:.40}", f"{path}.overlap"
        )
    return Periodic(sched, text, dict(payload), overlap)


def beat_entries(definitions: Any) -> dict[str, dict[str, Any]]:
    """One Celery beat entry per periodic definition of ``definitions``: the registered
    task ``dyrygent.definitions.run`` with the definition's name, on its default queue."""
    entries: dict[str, dict[str, Any]] = {}
    for name in definitions.names():
        d = definitions.get(name)
        if d.periodic is None:
            continue
        options = {"queue": d.queues.default} if d.queues.default else {}
        entries[f"dyrygent:{name}"] = {
            "task": RUN_TASK,
            "schedule": d.periodic.schedule,
            "args": (name,),
            "options": options,
        }
    return entries
