"""Random nested canvases: the flattened graph, run tick by tick, gives what an independent
interpreter of Celery's canvas rules gives, and runs every leaf exactly once."""

from __future__ import annotations

from celery import chain, chord, group
from celery.canvas import _chain, _chord
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.canvas.helpers import echo, run

NOTHING = object()


def is_empty_chain(sig):
    """Celery skips a chain with no task (or only empty chains) everywhere (celery 9772)."""
    return isinstance(sig, _chain) and all(is_empty_chain(s) for s in sig.tasks)


def chain_steps(sig):
    """A chain's steps as Celery runs them: empty chains dropped, empty groups dropped unless
    nothing else is left, a one-member group unrolled."""
    steps = [s for s in sig.tasks if not is_empty_chain(s)]
    steps = [s for s in steps if not (isinstance(s, group) and not list(s.tasks))] or steps
    return [list(s.tasks)[0] if isinstance(s, group) and len(s.tasks) == 1 else s for s in steps]


def group_valued(sig):
    """Whether a canvas's native result is a GroupResult."""
    if isinstance(sig, _chain):
        steps = chain_steps(sig)
        return bool(steps) and group_valued(steps[-1])
    if isinstance(sig, _chord):
        return group_valued(sig.body)
    return isinstance(sig, group)


def reference(sig, incoming=NOTHING):
    """Evaluate a canvas directly, by the rules of README, Semantics, with echo leaves."""
    if isinstance(sig, _chain):
        steps = chain_steps(sig)
        if not steps:  # an empty chain: native chain().apply_async() returns None
            return None if incoming is NOTHING else incoming
        value = incoming
        for s in steps:
            value = reference(s, value)
        return value
    if isinstance(sig, _chord):
        return reference(sig.body, members(sig.tasks, incoming))
    if isinstance(sig, group):
        live = [m for m in sig.tasks if not is_empty_chain(m)]
        if len(live) == 1 and isinstance(live[0], _chain) and group_valued(live[0]):
            return reference(live[0], incoming)  # group.apply_async: its lone GroupResult
        return members(live, incoming)
    args = list(sig.args)
    if not sig.immutable and incoming is not NOTHING:
        args.insert(0, incoming)
    return [args, {}]


def members(tasks, incoming):
    out = []
    for m in tasks:
        if is_empty_chain(m):
            continue
        value = reference(m, incoming)
        if isinstance(m, group):
            out.extend(value)
        else:
            out.append(value)
    return out


def leaves(sig):
    if isinstance(sig, _chain):
        return sum((leaves(s) for s in sig.tasks), [])
    if isinstance(sig, _chord):
        return sum((leaves(s) for s in sig.tasks), []) + leaves(sig.body)
    if isinstance(sig, group):
        return sum((leaves(s) for s in sig.tasks), [])
    return [sig]


leaf = st.builds(
    lambda tag, imm: echo.si(tag) if imm else echo.s(tag), st.integers(0, 99), st.booleans()
)


def composite(children):
    return st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda xs: chain(*xs)),
        st.lists(children, min_size=1, max_size=3).map(lambda xs: _chain(*xs)),
        st.lists(children, max_size=3).map(lambda xs: group(xs)),
        st.tuples(st.lists(children, max_size=3), children).map(lambda hb: chord(hb[0], hb[1])),
    )


canvases = st.recursive(leaf, composite, max_leaves=14)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(canvases)
def test_random_canvas_matches_reference(canvas):
    # Given a random canvas and its value by the reference interpreter
    expected = reference(canvas)
    n_leaves = len(leaves(canvas))
    event(f"leaves: {min(n_leaves, 10) // 5 * 5}+")
    # When flattened and run tick by tick
    result, calls = run(canvas)
    # Then the result is the reference's and every leaf ran exactly once
    assert result == expected
    assert len(calls) == n_leaves
