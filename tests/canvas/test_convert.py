"""Flattening real canvas objects (no broker): every rule of the README's Semantics section
that shapes the graph."""

from __future__ import annotations

import pytest
from celery import chain, chord, group
from celery.canvas import Signature, _chain, _chord

from dyrygent import Workflow
from dyrygent.engine.spec import decode_spec, spec_extras
from dyrygent.errors import (
    CycleError,
    DuplicateNodeError,
    InvalidNodeError,
    LimitExceededError,
    UnknownDependencyError,
    UnsupportedCanvasError,
)

#: Celery 5.7's chain() keeps an empty group between two tasks (a no-op step); older chain()
#: (5.3, 5.5) builds ``a | chord([], b)`` itself, whose body natively gets ``[]``. Either way
#: dyrygent converts the canvas object Celery built.
EMPTY_GROUP_KEPT = not isinstance(
    chain(Signature("a"), group([]), Signature("b")).tasks[-1], _chord
)

CASES = {
    # name: (canvas builder, native result) -- numbers are items of README, Semantics
    "2 chain passes result first": (
        lambda c: chain(c.echo.s(1), c.echo.s(2)),
        [[[[1], {}], 2], {}],
    ),
    "2 chain add": (lambda c: chain(c.add.s(1, 2), c.add.s(3)), 6),
    "3 immutable gets nothing": (lambda c: chain(c.add.s(1, 1), c.add.si(5, 5), c.add.s(1)), 11),
    "6 group": (lambda c: group(c.add.s(i, i) for i in range(3)), [0, 2, 4]),
    "7 nested groups flatten": (
        lambda c: group(group(c.add.si(1, 1), c.add.si(2, 2)), c.add.si(3, 3)),
        [2, 4, 6],
    ),
    "8 chain in group": (
        lambda c: group(chain(c.add.si(1, 1), c.add.s(10)), c.add.si(5, 5)),
        [12, 10],
    ),
    "9 chain ending in group in group": (
        lambda c: group(
            c.identity.si(1), chain(c.identity.si(5), group(c.identity.si(3), c.identity.si(4)))
        ),
        [1, [3, 4]],
    ),
    "10 broadcast to group": (
        lambda c: c.add.s(5, 6) | group(c.add.s(1) | c.add.s(2), c.add.s(3)),
        [14, 14],
    ),
    "12 chord": (lambda c: chord([c.add.s(i, i) for i in range(3)], c.tsum.s()), 6),
    "12 group | task": (lambda c: group(c.add.s(i, i) for i in range(3)) | c.tsum.s(), 6),
    "14 immutable body": (lambda c: chord([c.add.s(1, 1)], c.identity.si(7)), 7),
    "15 group in header unrolled": (
        lambda c: chord([group(c.add.si(1, 1), c.add.si(2, 2)), c.add.si(3, 3)], c.identity.s()),
        [2, 4, 6],
    ),
    "16 chord in header": (
        lambda c: chord(
            [chord([c.add.si(1, 1), c.add.si(2, 2)], c.tsum.s()), c.add.si(3, 3)], c.identity.s()
        ),
        [6, 6],
    ),
    "17 chain ending in group in header": (
        lambda c: chord(
            group(chain(c.identity.s(42), group(c.identity.s(), c.identity.s()))), c.identity.s()
        ),
        [[42, 42]],
    ),
    "18 group body": (
        lambda c: chord([c.add.si(1, 1), c.add.si(2, 2)], group(c.tsum.s(), c.identity.s())),
        [6, [2, 4]],
    ),
    "19 group | group": (
        lambda c: group(c.add.si(1, 1), c.add.si(2, 2)) | group(c.tsum.s(), c.identity.s()),
        [6, [2, 4]],
    ),
    "20 single group in chain unrolled": (
        lambda c: chain(c.add.s(2, 2), group(c.add.s(1)), c.add.s(1)),
        6,
    ),
    "20 single header not unrolled": (lambda c: chord([c.add.s(2, 5)], c.identity.s()), [7]),
    "21 empty group": (lambda c: group([]), []),
    "21 empty header": (lambda c: chord([], c.identity.s()), []),
    "21 empty group in chain": (
        lambda c: chain(c.add.si(1, 1), group([]), c.add.s(1)),
        3 if EMPTY_GROUP_KEPT else TypeError,  # add([], 1)
    ),
    "22 one-task chain": (lambda c: chain(c.identity.si(1)), 1),
    "24 map": (lambda c: c.tsum.map([[1, 2], [3, 4]]), [3, 7]),
    "24 starmap": (lambda c: c.add.starmap([(1, 1), (2, 2)]), [2, 4]),
    "24 chunks": (lambda c: c.add.chunks(zip(range(4), range(4)), 2), [[0, 2], [4, 6]]),
    "chain of chords": (
        lambda c: chain(
            c.add.si(1, 1),
            chord([c.add.s(1), c.add.s(2)], c.tsum.s()),
            chord([c.add.s(1), c.add.s(2)], c.tsum.s()),
        ),
        17,
    ),
    # Celery's own canvas suite (issue 16)
    "celery 9772 empty chains in a group are skipped": (
        lambda c: group(chain(), c.add.si(1, 2), chain(), c.add.si(3, 4)),
        [3, 7],
    ),
    "celery 9772 an empty chain in a header is skipped": (
        lambda c: chord([chain()], c.tsum.s()),
        0,
    ),
    "a group of one chain ending in a group is that group": (
        lambda c: group(c.add.s(1, 2) | group(c.add.s(1), c.add.s(2))),
        [4, 5],
    ),
    "the same signature object repeated runs each time": (
        lambda c: group((c.identity.si(42),) * 3),
        [42, 42, 42],
    ),
    "the same chain object repeated runs each time": (
        lambda c: (lambda ab: group([ab, ab]))(c.add.si(1, 1) | c.add.s(2)),
        [4, 4],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_native_results(c, name):
    build, expected = CASES[name]
    if isinstance(expected, type) and issubclass(expected, Exception):
        with pytest.raises(expected):  # as native raises on this Celery
            c.run(build(c))
        return
    result, _ = c.run(build(c))
    assert result == expected


def test_4_partial_args_of_a_whole_chain_go_to_its_first_task(c):
    # Given chain(add.s(1), add.s(2)).apply_async(args=(10,)) -> 13 natively
    wf = Workflow(app=c.app)
    wf.add_celery_canvas(chain(c.add.s(1), c.add.s(2)), args=(10,))
    assert c.run_graph(wf.freeze())[0] == 13


def test_partial_args_of_a_group_go_to_every_member(c):
    wf = Workflow(app=c.app)
    wf.add_celery_canvas(group(c.add.s(1), c.add.s(2), c.add.si(5, 5)), args=(10,))
    assert c.run_graph(wf.freeze())[0] == [11, 12, 10]


def test_1_partial_args_are_kept_before_parent_result(c):
    # Given a chain whose second step has partial args
    result, calls = c.run(chain(c.echo.si(9), c.echo.s(2, k=1)))
    # Then the parent result comes first, then the partial args; kwargs pass through
    assert result == [[[[9], {}], 2], {"k": 1}]


def test_13_body_gets_results_in_header_order(c):
    canvas = chord([c.identity.si(i) for i in range(5)], c.identity.s())
    assert c.run(canvas)[0] == [0, 1, 2, 3, 4]


def test_order_chain_steps_run_in_successive_waves(c):
    # Given a chain of three steps
    wf = Workflow(app=c.app)
    wf.add_celery_canvas(chain(c.add.s(1, 1), c.add.s(10), c.add.s(100)))
    # When run tick by tick
    _, calls = c.run_graph(wf.freeze())
    # Then step k runs in wave k, with the result of step k - 1
    assert [calls[n.id][3] for n in wf.nodes] == [1, 2, 3]
    assert [calls[n.id][1] for n in wf.nodes] == [[1, 1], [2, 10], [12, 100]]


def test_group_members_run_in_one_wave_and_the_body_after(c):
    # Given a chord of four header members
    wf = Workflow(app=c.app)
    wf.add_celery_canvas(chord([c.add.si(i, i) for i in range(4)], c.tsum.s()))
    # When run tick by tick
    _, calls = c.run_graph(wf.freeze())
    # Then every header member runs in the first wave, and the body alone in the second
    assert [(calls[n.id][0], calls[n.id][3]) for n in wf.nodes] == [("c.add", 1)] * 4 + [
        ("c.tsum", 2)
    ]


def test_frozen_ids_are_kept_and_unfrozen_ones_are_frozen(c):
    # Given one signature frozen by the caller and one not
    a = c.add.s(1, 1)
    a.freeze()
    b = c.add.s(1)
    wf = Workflow(app=c.app)
    ends = wf.add_celery_canvas(chain(a, b))
    # Then the caller's id is the node id and the other got an id frozen into it
    ids = [n.id for n in wf.nodes]
    assert ids[0] == a.id
    assert b.options.get("task_id") == ids[1]
    assert [e.id for e in ends] == [ids[1]]


def test_chain_and_a_b_are_both_chains(c):
    assert isinstance(c.add.s(1, 1) | c.add.s(1), _chain)
    assert isinstance(chain(c.add.s(1, 1)), _chain)
    assert c.run(chain(c.add.s(1, 1)))[0] == 2


def test_dict_signatures_are_accepted(c):
    canvas = dict(chain(c.add.s(1, 2), c.add.s(3)))
    assert c.run(Signature.from_dict(canvas, app=c.app))[0] == 6


def test_link_and_link_error_stay_on_their_nodes(c):
    # Given per-signature callbacks and a chain-level errback
    a = c.add.s(1, 1)
    a.link(c.identity.s())
    canvas = chain(a, c.add.s(2))
    canvas.link_error(c.echo.si("err"))
    wf = Workflow(app=c.app)
    wf.add_celery_canvas(canvas)
    graph = wf.freeze()
    from dyrygent.engine.spec import decode_spec

    opts = [decode_spec(n.spec)[2] for n in graph.nodes]
    # Then the link is on the first node only, the chain's errback on every node
    assert len(opts) == 2
    assert [[cb["task"] for cb in o.get("link", [])] for o in opts] == [["c.identity"], []]
    assert [[eb["task"] for eb in o.get("link_error", [])] for o in opts] == [["c.echo"]] * 2


def test_per_signature_options_are_kept(c):
    wf = Workflow(app=c.app)
    wf.add_celery_canvas(
        group(c.add.si(1, 1).set(queue="q1", priority=3), c.add.si(2, 2)).set(soft_time_limit=5)
    )
    from dyrygent.engine.spec import decode_spec

    opts = [decode_spec(n.spec)[2] for n in wf.freeze().nodes]
    assert opts[0] == {"queue": "q1", "priority": 3, "soft_time_limit": 5}
    assert opts[1] == {"soft_time_limit": 5}


def test_add_signature_with_several_dependencies_gets_the_list_in_order(c):
    wf = Workflow(app=c.app)
    a = wf.add_signature(c.identity.si("a"))
    b = wf.add_signature(c.identity.si("b"))
    wf.add_signature(c.identity.s(), dependencies=[b, a])
    assert c.run_graph(wf.freeze())[0] == ["b", "a"]


def test_add_signature_with_one_dependency_gets_its_result(c):
    wf = Workflow(app=c.app)
    ends = wf.add_celery_canvas(chain(c.add.si(1, 1), c.add.s(1)))
    wf.add_signature(c.add.s(10), dependencies=ends)
    assert c.run_graph(wf.freeze())[0] == 13


def test_immutable_node_with_dependencies_gets_nothing(c):
    wf = Workflow(app=c.app)
    ends = wf.add_celery_canvas(group(c.add.si(1, 1), c.add.si(2, 2)))
    wf.add_signature(c.identity.si("done"), dependencies=ends)
    assert c.run_graph(wf.freeze())[0] == "done"


def test_arbitrary_dag_not_series_parallel(c):
    # a -> c, b -> c, b -> d : not expressible as a canvas
    wf = Workflow(app=c.app)
    a = wf.add_signature(c.identity.si(1))
    b = wf.add_signature(c.identity.si(2))
    wf.add_signature(c.tsum.s(), dependencies=[a, b])
    wf.add_signature(c.add.s(5), dependencies=[b])
    result, calls = c.run_graph(wf.freeze())
    assert result == 7
    assert sorted(v[0] for v in calls.values()) == ["c.add", "c.identity", "c.identity", "c.tsum"]


# -- errors, raised before anything is published --------------------------------------------


def test_unknown_canvas_type_names_it(c):
    with pytest.raises(UnsupportedCanvasError, match=r"cannot convert int 42.*signature"):
        Workflow(app=c.app).add_celery_canvas(42)


def test_ignore_result_node_is_refused(c):
    with pytest.raises(InvalidNodeError, match=r"c.add\) ignores its result.*drop ignore_result"):
        Workflow(app=c.app).add_celery_canvas(c.add.si(1, 1).set(ignore_result=True))


def test_task_with_ignore_result_is_refused(c):
    with pytest.raises(InvalidNodeError, match=r"c.quiet\) ignores its result"):
        Workflow(app=c.app).add_celery_canvas(c.quiet.si())


def test_dependency_on_unknown_node(c):
    wf = Workflow(app=c.app)
    wf.add_signature(c.identity.si(1), dependencies=["nope"])
    with pytest.raises(UnknownDependencyError, match=r"depends on 'nope'"):
        wf.freeze()


def test_duplicate_node_ids(c):
    # Given a workflow holding a frozen signature
    wf = Workflow(app=c.app)
    sig = c.add.si(1, 1)
    sig.freeze()
    wf.add_signature(sig)
    # When the same signature (the same task id) is added again
    # Then it is refused, naming the node, its task and the fix
    with pytest.raises(
        DuplicateNodeError, match=rf"node '{sig.id}' \(c.add\) was added twice.*sig.clone\(\)"
    ) as info:
        wf.add_signature(sig)
    assert info.value.node == sig.id


def test_cycle_through_add_signature(c):
    wf = Workflow(app=c.app)
    x = c.identity.si(1)
    x.freeze()
    y = c.identity.si(2)
    y.freeze()
    wf.add_signature(x, dependencies=[y.id])
    wf.add_signature(y, dependencies=[x.id])
    with pytest.raises(CycleError, match="cycle"):
        wf.freeze()


def test_size_limit_names_the_limit(c):
    wf = Workflow(app=c.app, max_nodes=3)
    with pytest.raises(LimitExceededError, match=r"4 nodes, over max_nodes=3") as info:
        wf.add_celery_canvas(group(c.add.si(i, i) for i in range(4)))
    assert info.value.limit == "max_nodes"


def test_unregistered_processor_is_a_clear_error():
    from celery import Celery

    from dyrygent.errors import ConfigurationError

    bare = Celery("bare", broker="memory://", backend="cache+memory://", set_as_current=False)
    sig = bare.signature("x.y", args=(1,))
    wf = Workflow(app=bare)
    wf.add_celery_canvas(sig)
    with pytest.raises(ConfigurationError, match="register_workflow_processor"):
        wf.apply_async()


def test_partial_args_go_past_a_leading_empty_chain(c):
    # Given a chain led by an empty chain, with partial args (celery 9772)
    wf = Workflow(app=c.app)
    wf.add_celery_canvas(_chain(chain(), c.add.s(10)), args=(5,))
    # Then its first task gets them
    assert c.run_graph(wf.freeze())[0] == 15


def test_a_repeated_signature_keeps_its_id_once_and_clones_get_new_ones(c):
    # Given one frozen signature object three times in a group
    sig = c.identity.si(42)
    frozen = sig.freeze().id
    wf = Workflow(app=c.app)
    wf.add_celery_canvas(group([sig] * 3))
    ids = [n.id for n in wf.nodes]
    # Then the first node keeps the frozen id and the other two have ids of their own
    assert ids[0] == frozen and len(set(ids)) == 3


def test_a_groups_own_link_error_goes_to_each_of_its_tasks(c):
    # Given a group with a link_error of its own, holding a chain
    canvas = group(c.add.si(1, 1), chain(c.add.si(2, 2), c.add.s(1)))
    canvas.set(link_error=c.echo.si("err"))
    wf = Workflow(app=c.app)
    wf.add_celery_canvas(canvas)
    opts = [decode_spec(n.spec)[2] for n in wf.freeze().nodes]
    # Then every task has it (Celery's group applies its tasks with its options)
    assert [[e["task"] for e in o["link_error"]] for o in opts] == [["c.echo"]] * 3


def test_a_group_body_s_errbacks_are_recorded_on_the_header_nodes(c):
    # Given a chord whose group body's tasks have errbacks, and a chord-level link_error
    body = group(c.echo.s().on_error(c.echo.si("eb1")), c.echo.s())
    canvas = chord([c.add.si(1, 1), c.add.si(2, 2)], body)
    canvas.link_error(c.echo.si("chord-eb"))
    wf = Workflow(app=c.app)
    wf.add_celery_canvas(canvas)
    graph = wf.freeze()
    # Then each header node records, per body task, the errbacks Celery would call
    records = spec_extras(graph.nodes[0].spec)["chord_errbacks"]
    members = records[0]["members"]
    assert [[e["args"] for e in m["link_error"]] for m in members] == [
        [["eb1"], ["chord-eb"]],
        [["chord-eb"]],
    ]
    assert [m["id"] for m in members] == [n.id for n in graph.nodes[2:]]
