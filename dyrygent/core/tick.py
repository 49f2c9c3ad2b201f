"""Planning one processor tick: a pure function of the graph, the states and what was seen.

The processor reads the states, observes the outcome of every in-flight node, and asks
:func:`plan_tick` what to do. The plan records outcomes, settles every node whose start rule
is now decided (READY, or SKIPPED / UPSTREAM_FAILED, and their descendants in turn), lists every
READY node to launch, and gives the workflow's :class:`~dyrygent.core.outcome.Verdict`. The
processor marks a node LAUNCHED only after its publish succeeded, so a broker error mid-tick
leaves the rest READY, to be launched next tick.

:func:`plan_retry` and :func:`plan_cancel` plan the two ways a person steers a workflow.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from dyrygent.core.graph import Graph, Node
from dyrygent.core.outcome import UNFINISHED, Verdict, verdict
from dyrygent.core.rules import TriggerRule, count_parents, decide
from dyrygent.core.states import IN_FLIGHT_STATES, RETRYABLE_STATES, TRANSITIONS, NodeState

__all__ = [
    "Outcome",
    "TickPlan",
    "apply_changes",
    "find_all",
    "in_flight",
    "plan_cancel",
    "plan_retry",
    "plan_tick",
]


class Outcome(enum.IntEnum):
    """What the processor saw of an in-flight node this tick."""

    RUNNING = 0  # nothing new: keep waiting
    SUCCEEDED = 1
    FAILED = 2
    STARTED = 3  # started or retrying: record it, so a result that vanishes is noticed


@dataclass
class TickPlan:
    """What one tick should do.

    ``changes`` maps node index -> new state; ``ready`` lists every READY node to launch, in
    index order; ``failed`` the nodes seen failing this tick; ``verdict`` the workflow's
    outcome after the changes, and ``decided`` whether this tick decided it (the workflow's
    result must be stored now).
    """

    changes: dict[int, NodeState] = field(default_factory=dict)
    ready: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    verdict: Verdict = field(default_factory=lambda: Verdict(None, False))
    decided: bool = False

    @property
    def done(self) -> bool:
        """The workflow ends with this tick."""
        return self.verdict.ended


def find_all(states: bytes | bytearray, state: NodeState) -> list[int]:
    """Indices of the nodes in ``state``, ascending (bytes.find: fast on large graphs)."""
    out = []
    needle = bytes([state])
    find = states.find
    i = find(needle)
    while i != -1:
        out.append(i)
        i = find(needle, i + 1)
    return out


def in_flight(states: bytes | bytearray) -> list[int]:
    """Indices of the nodes whose outcome must be observed (LAUNCHED or RUNNING)."""
    return sorted(find_all(states, NodeState.LAUNCHED) + find_all(states, NodeState.RUNNING))


class _Changes:
    """The tick's changes, written through to a working copy of the states."""

    def __init__(self, states: bytes | bytearray, changes: dict[int, NodeState]) -> None:
        self.cur = bytearray(states)
        self.changes = changes

    def set(self, i: int, new: NodeState) -> None:
        old = NodeState(self.cur[i])
        if new not in TRANSITIONS[old]:
            raise ValueError(f"node {i}: illegal transition {old.name} -> {new.name}")
        self.changes[i] = new
        self.cur[i] = new


_SUCCEEDED = NodeState.SUCCEEDED
_BLOCKING = frozenset(
    {NodeState.FAILED, NodeState.UPSTREAM_FAILED, NodeState.CANCELLED, NodeState.SKIPPED}
)


def _fate(node: Node, cur: bytearray) -> NodeState:
    """What a WAITING node becomes now (WAITING: nothing yet)."""
    if node.rule is TriggerRule.ALL_SUCCESS:  # the common case, without counting
        ok = True
        for p in node.parents:
            s = cur[p]
            if s != _SUCCEEDED:
                if s in _BLOCKING:
                    return decide(node.rule, count_parents([cur[q] for q in node.parents]))
                ok = False
        return NodeState.READY if ok else NodeState.WAITING
    return decide(node.rule, count_parents([cur[p] for p in node.parents]))


def _settle(graph: Graph, work: _Changes, candidates: Iterable[int]) -> None:
    """Decide each WAITING candidate; a node settled without running decides its children."""
    nodes = graph.nodes
    children = graph.children
    queue = deque(candidates)
    cur = work.cur
    while queue:
        i = queue.popleft()
        if cur[i] != NodeState.WAITING:
            continue
        fate = _fate(nodes[i], cur)
        if fate is NodeState.WAITING:
            continue
        work.set(i, fate)
        if fate is not NodeState.READY:
            queue.extend(children[i])


def _skip_unchosen(
    graph: Graph, work: _Changes, settled: list[int], choices: Mapping[int, Collection[str]]
) -> list[int]:
    """Skip the children a succeeded branch did not choose; returns them."""
    skipped: list[int] = []
    nodes = graph.nodes
    for i in settled:
        chosen = choices.get(i)
        if chosen is None or work.cur[i] != NodeState.SUCCEEDED:
            continue
        for c in graph.children[i]:
            if nodes[c].name not in chosen and work.cur[c] == NodeState.WAITING:
                work.set(c, NodeState.SKIPPED)
                skipped.append(c)
    return skipped


def plan_tick(
    graph: Graph,
    states: bytes | bytearray,
    observations: Mapping[int, Outcome],
    *,
    fail_fast: bool = False,
    choices: Mapping[int, Collection[str]] | None = None,
) -> TickPlan:
    """Plan a tick.

    ``states`` has one byte (a NodeState) per node. ``observations`` maps in-flight node
    indices to what was seen; a node missing from it is unchanged. Nodes whose parents
    changed are decided by their start rule; when nothing is in flight or ready (the first
    tick, or after a retry) every WAITING node is. With ``fail_fast`` the first failure
    cancels every node that has not started. ``choices`` gives, for a BRANCH node seen
    succeeding, the names (label or task) of the direct children to follow: the others are
    SKIPPED, and their descendants decided by their own rules. Raises ValueError on an
    observation that is not a legal transition, or states of the wrong length.
    """
    if len(states) != len(graph):
        raise ValueError(f"state has {len(states)} entries for a graph of {len(graph)} nodes")
    plan = TickPlan()
    work = _Changes(states, plan.changes)
    settled: list[int] = []
    for i, outcome in observations.items():
        if outcome is Outcome.SUCCEEDED:
            work.set(i, NodeState.SUCCEEDED)
            settled.append(i)
        elif outcome is Outcome.FAILED:
            work.set(i, NodeState.FAILED)
            settled.append(i)
            plan.failed.append(i)
        elif outcome is Outcome.STARTED and states[i] == NodeState.LAUNCHED:
            work.set(i, NodeState.RUNNING)
    plan.failed.sort()
    cur = work.cur
    if choices:
        settled += _skip_unchosen(graph, work, settled, choices)
    if fail_fast and NodeState.FAILED in cur:
        for i in find_all(cur, NodeState.WAITING) + find_all(cur, NodeState.READY):
            work.set(i, NodeState.CANCELLED)
    else:
        children = graph.children
        _settle(graph, work, sorted({c for i in settled for c in children[i]}))
        if NodeState.WAITING in cur and not any(b in cur for b in UNFINISHED[1:]):
            # nothing ready or in flight would ever wake the waiting nodes (the first tick,
            # after a retry): decide them all
            _settle(graph, work, find_all(cur, NodeState.WAITING))
    plan.ready = find_all(cur, NodeState.READY)
    plan.verdict = verdict(graph, cur, fail_fast=fail_fast)
    if plan.verdict.status is not None:  # (a graph without nodes is decided at its first tick)
        before = verdict(graph, states, fail_fast=fail_fast).status
        plan.decided = before is None or not len(graph)
    return plan


def plan_retry(
    graph: Graph, states: bytes | bytearray, nodes: Iterable[int] | None = None
) -> dict[int, NodeState]:
    """The changes that reopen a finished workflow: every FAILED, UPSTREAM_FAILED, SKIPPED and
    CANCELLED node back to WAITING; or, given ``nodes``, those nodes and all their
    descendants, succeeded ones included. Succeeded nodes outside that set keep their results.
    Raises ValueError if a node to reopen is still ready or in flight."""
    if nodes is None:
        targets = {i for i, s in enumerate(states) if s in RETRYABLE_STATES}
    else:
        targets = set()
        queue = deque(nodes)
        children = graph.children
        while queue:
            i = queue.popleft()
            if i not in targets:
                targets.add(i)
                queue.extend(children[i])
                owner = graph.expansion_of(i)  # its EXPAND node's value changes too
                if owner is not None:
                    queue.append(owner)
    changes: dict[int, NodeState] = {}
    for i in sorted(targets):
        old = NodeState(states[i])
        if old is NodeState.WAITING:
            continue
        if NodeState.WAITING not in TRANSITIONS[old]:
            raise ValueError(
                f"node {graph.nodes[i].id} is {old.name}: wait for the workflow to end before "
                f"retrying it"
            )
        changes[i] = NodeState.WAITING
    return changes


def plan_cancel(states: bytes | bytearray) -> dict[int, NodeState]:
    """The changes that cancel a workflow: every node not settled becomes CANCELLED (the
    processor revokes those in flight)."""
    return {
        i: NodeState.CANCELLED
        for i, s in enumerate(states)
        if s in IN_FLIGHT_STATES or s in (NodeState.WAITING, NodeState.READY)
    }


def apply_changes(states: bytearray, changes: Mapping[int, NodeState]) -> None:
    """Write ``changes`` into ``states`` in place."""
    for i, s in changes.items():
        states[i] = s
