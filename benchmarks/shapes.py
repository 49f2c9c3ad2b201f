"""The workflow shapes: canvases of noop tasks, built fresh for every run.

Each shape builds one canvas, or a list of canvases submitted together (``many``), from a
factory ``s()`` that returns a new ``bench.noop`` signature. ``tasks`` is the number of task
calls (the harness checks it against the tasks that succeeded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from celery import chain, chord, group

Sig = Callable[[], Any]


@dataclass(frozen=True)
class Shape:
    key: str
    label: str
    tasks: int
    build: Callable[[Sig], Any]  # a canvas, or a list of canvases
    many: bool = False  # several workflows submitted together
    independent: bool = False  # the floor: plain tasks, one publish each, no canvas


def chain_of(n: int) -> Shape:
    return Shape(f"chain{n}", f"chain of {n:,}", n, lambda s: chain(*[s() for _ in range(n)]))


def group_of(n: int) -> Shape:
    return Shape(f"group{n}", f"group of {n:,}", n, lambda s: group(*[s() for _ in range(n)]))


def chord_of(n: int) -> Shape:
    return Shape(
        f"chord{n}", f"chord of {n:,} + body", n + 1, lambda s: chord([s() for _ in range(n)], s())
    )


def chain_chords_between(k: int, width: int) -> Shape:
    """chain(task, k x chord(width, body), task)."""
    n = 2 + k * (width + 1)
    return Shape(
        f"chain_t_{k}chords{width}_t",
        f"chain(task, {k} x chord({width}, body), task), {n} tasks",
        n,
        lambda s: chain(s(), *[chord([s() for _ in range(width)], s()) for _ in range(k)], s()),
    )


def _nested23(s: Sig) -> Any:
    return chain(
        s(),
        group(
            chain(s(), s(), s()), chain(s(), group(s(), s(), s()), s()), group(s(), chain(s(), s()))
        ),
        s(),
        group(chain(s(), group(s(), s()), s()), s(), s()),
        chain(s(), s()),
        group(s(), s()),
    )


NESTED23 = Shape("nested23", "23-task nested group/chain graph", 23, _nested23)


def chain_of_chords(k: int, width: int) -> Shape:
    """A chain of ``k`` chords of ``width`` header tasks + body: ``k`` layers of ``width + 1``."""
    n = k * (width + 1)
    return Shape(
        f"chain{k}chords{width}",
        f"chain of {k} chords of {width}",
        n,
        lambda s: chain(*[chord([s() for _ in range(width)], s()) for _ in range(k)]),
    )


def nested_groups(depth: int) -> Shape:
    """chain(group(2), chain(group(2), ...)), ``depth`` groups."""

    def build(s: Sig, d: int = depth) -> Any:
        if d == 1:
            return group(s(), s())
        return chain(group(s(), s()), build(s, d - 1))

    return Shape(
        f"nested_depth{depth}",
        f"nested chain(group(2), chain(group(2), ...)) depth {depth}",
        2 * depth,
        build,
    )


#: Layered sizes: (layers, width incl. body). Wall time against size uses this family.
LAYERS = {10: (2, 5), 100: (10, 10), 1000: (25, 40), 10000: (100, 100)}


def layered(n: int) -> Shape:
    """A chain of chords with about sqrt(n) layers, each ``width - 1`` header tasks + body."""
    layers, width = LAYERS.get(n) or (
        max(1, round(math.sqrt(n))),
        max(2, round(n / max(1, round(math.sqrt(n))))),
    )
    sh = chain_of_chords(layers, width - 1)
    return Shape(
        f"layered{sh.tasks}",
        f"layered: chain of {layers} chords of ({width - 1} + body), {sh.tasks:,} tasks",
        sh.tasks,
        sh.build,
    )


def many_layered(count: int, n: int) -> Shape:
    one = layered(n)
    return Shape(
        f"many{count}x{n}",
        f"{count} workflows of {n} tasks (each "
        f"{one.label.split(': ')[1].rsplit(',', 1)[0]}) submitted together",
        count * one.tasks,
        lambda s: [one.build(s) for _ in range(count)],
        many=True,
    )


def floor(n: int) -> Shape:
    return Shape(
        f"floor{n}",
        f"floor: {n:,} independent noop tasks, one publish each",
        n,
        lambda s: [s() for _ in range(n)],
        independent=True,
    )


def floor_group(n: int) -> Shape:
    return Shape(
        f"floorgroup{n}",
        f"floor: {n:,} independent noop tasks as one group",
        n,
        lambda s: group(*[s() for _ in range(n)]),
    )


def fan_out(n: int) -> Shape:
    """One task returning ``n`` items, then dyrygent.expand(noop) over them: ``n`` nodes made
    at run time (dyrygent only; compared with the floor of ``n`` tasks)."""

    def build(s: Sig) -> Any:
        from celery import signature

        from dyrygent import expand

        items = signature("t.identity", args=(list(range(n)),), immutable=True)
        return chain(items, expand(s()))

    return Shape(f"fanout{n}", f"fan-out over a result: 1 task, then {n:,} expanded", n + 1, build)


_KINDS: dict[str, Callable[..., Shape]] = {
    "fanout": fan_out,
    "chain": chain_of,
    "group": group_of,
    "chord": chord_of,
    "chainchords_between": chain_chords_between,
    "nested23": lambda: NESTED23,
    "chainofchords": chain_of_chords,
    "nested": nested_groups,
    "layered": layered,
    "many": many_layered,
    "floor": floor,
    "floorgroup": floor_group,
}


def parse(spec: str) -> Shape:
    """A shape from its spec, ``kind[:int[:int]]``: ``layered:10000``, ``many:100:100``."""
    kind, *nums = spec.split(":")
    try:
        return _KINDS[kind](*(int(x) for x in nums))
    except (KeyError, TypeError, ValueError):
        raise SystemExit(f"unknown shape {spec!r}: one of {', '.join(_KINDS)} with its sizes")
