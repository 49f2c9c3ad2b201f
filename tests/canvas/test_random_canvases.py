"""Random nested canvases: the flattened graph, run tick by tick, gives what an independent
interpreter of Celery's canvas rules gives, and runs every leaf exactly once."""

from __future__ import annotations

from celery import chain, chord, group
from celery.canvas import _chain, _chord
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.canvas.helpers import echo, run

NOTHING = object()


def reference(sig, incoming=NOTHING):
    """Evaluate a canvas directly, by the rules of README, Semantics, with echo leaves."""
    if isinstance(sig, _chain):
        steps = list(sig.tasks)
        non_empty = [s for s in steps if not (isinstance(s, group) and not list(s.tasks))]
        steps = non_empty or steps
        if not steps:  # an empty chain: native chain().apply_async() returns None
            return None if incoming is NOTHING else incoming
        value = incoming
        for s in steps:
            if isinstance(s, group) and len(list(s.tasks)) == 1:
                s = list(s.tasks)[0]
            value = reference(s, value)
        return value
    if isinstance(sig, _chord):
        return reference(sig.body, members(sig.tasks, incoming))
    if isinstance(sig, group):
        return members(sig.tasks, incoming)
    args = list(sig.args)
    if not sig.immutable and incoming is not NOTHING:
        args.insert(0, incoming)
    return [args, {}]


def members(tasks, incoming):
    out = []
    for m in tasks:
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
