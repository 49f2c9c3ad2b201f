"""Where a workflow lives between ticks: the interface every store implements, and the
claim rule that fences it.

Per workflow, these records, all expiring ``max_age + keep`` after creation (``keep``: the
app's ``result_expires``, so records live as long as the node results they describe; a
retry gives them that long again):

* ``graph``: the encoded graph, written once by the client;
* ``state``: one byte per node (a NodeState); a tick rewrites only the bytes that changed;
* ``meta``: ``gen`` (the generation fence), ``holder`` (the processor message now ticking),
  ``held`` (when the hold was last renewed, by the store's clock), ``attempts`` (claims by
  that holder), ``dirty`` (a node finished while it ticked), ``status`` (a WorkflowStatus,
  stored as its text), ``header`` (workflow-level options), ``created`` and ``ended``;
* ``events``: every node state change, in commit order (:mod:`~dyrygent.engine.stores.events`);
* join counters (:meth:`Store.count_down`), and an entry in the index of workflows;
* on stores that keep them (``records_starts``), which worker started each node and how
  often a node was relaunched (:mod:`dyrygent.engine.orphans`).

Every time is the store server's clock (Redis ``TIME``, the database's own), never a
client's: one clock, so no two hosts' clocks are ever compared (README, Reliability, item 8).

:meth:`Store.claim` and :meth:`Store.commit` implement the fence: a processor message for
generation ``g`` may tick only while the stored generation is ``g`` and nobody holds it;
a hold not renewed for the lease is taken over by the next claim, as a re-tick (``attempts``
counts those); before that, the holder is alive and any newcomer, even a second delivery of
the holder's own message, is a duplicate. :func:`claim_rule` states the rule once.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dyrygent.core.states import WorkflowStatus
from dyrygent.engine.stores.events import NodeEvent

__all__ = [
    "DEFAULT_LEASE",
    "KEEP_AFTER",
    "PREFIX",
    "Claim",
    "ClaimStatus",
    "Store",
    "WorkflowRecord",
    "change_runs",
    "claim_rule",
]

PREFIX = "dyrygent-wf-"
#: How long a workflow's records outlive its maximum age by default (the processor passes
#: the app's ``result_expires``).
KEEP_AFTER = 24 * 3600
#: Seconds after which a hold whose holder stopped renewing it is taken over by the next
#: claim (a holder ticking longer renews it every fifth of this).
DEFAULT_LEASE = 10


class ClaimStatus(str, enum.Enum):
    """The answer to a claim (see :class:`Claim`); the text is what the Redis script says."""

    OK = "ok"
    EXPIRED = "expired"
    STALE = "stale"
    BUSY = "busy"
    EARLY = "early"
    DONE = "done"
    GONE = "gone"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Claim:
    """The answer to a claim.

    ``status``: ``OK`` (tick now), ``EXPIRED`` (held like ``OK``, but past its maximum age:
    end it), ``STALE`` (a driver of an older generation: exit), ``BUSY`` (another processor
    is ticking: a wake-up exits, as that tick sees its node; a driver comes back shortly;
    ``age`` says how long ago the hold was last renewed), ``EARLY`` (the driver's
    predecessor has not committed yet: come back shortly), ``DONE`` (the workflow is over),
    ``GONE`` (no such workflow). ``attempts`` and ``states`` are set when held.

    There are two kinds of ticks: the *driver*'s (``gen`` given), exactly one valid driver
    message per workflow, which re-enqueues itself and advances the generation; and
    *wake-ups* (``gen`` None), run when a node ends, which tick without changing it.
    """

    status: ClaimStatus
    gen: int = 0
    attempts: int = 0
    states: bytes = b""
    age: float = 0.0

    @classmethod
    def from_rule(
        cls,
        status: ClaimStatus,
        meta: Mapping[str, Any],
        writes: Mapping[str, Any],
        now: float,
        states: bytes,
    ) -> Claim:
        """The claim for :func:`claim_rule`'s answer ``(status, writes)`` on ``meta`` (as
        read before the writes), at ``now`` by the store's clock."""
        gen = int(meta["gen"])
        if status is ClaimStatus.BUSY:
            return cls(status, gen, age=now - float(meta.get("held") or now))
        if status not in (ClaimStatus.OK, ClaimStatus.EXPIRED):
            return cls(status, gen)
        return cls(status, gen, int(writes.get("attempts", meta["attempts"])), bytes(states))


@dataclass(frozen=True)
class WorkflowRecord:
    """One workflow as stored, the same fields and types on every store.

    ``status`` is None when the workflow is unknown (never created, forgotten or expired);
    ``created`` and ``ended`` are seconds since the epoch by the store's clock (None when
    not ended yet, or for a workflow stored by a release that did not record them).
    """

    id: str
    status: WorkflowStatus | None = None
    gen: int = 0
    holder: str = ""
    attempts: int = 0
    created: float | None = None
    ended: float | None = None
    states: bytes = b""

    @classmethod
    def from_stored(cls, wf: str, meta: Mapping[str, Any], states: bytes | None) -> WorkflowRecord:
        """The info of ``wf`` from its stored meta fields as any store returns them (text
        or bytes, numbers or their text); an empty ``meta`` is an unknown workflow."""
        if not meta or meta.get("status") is None:
            return cls(wf)

        def text(v: Any) -> str:
            return v.decode() if isinstance(v, bytes) else str(v or "")

        def seconds(v: Any) -> float | None:
            return None if v in (None, b"", "") else float(v)

        return cls(
            id=wf,
            status=WorkflowStatus(text(meta["status"])),
            gen=int(meta.get("gen") or 0),
            holder=text(meta.get("holder")),
            attempts=int(meta.get("attempts") or 0),
            created=seconds(meta.get("created")),
            ended=seconds(meta.get("ended")),
            states=bytes(states or b""),
        )


def _nothing() -> None:
    pass


def change_runs(changes: Mapping[int, int]) -> list[tuple[int, bytes]]:
    """Group changed bytes into (offset, bytes) runs of consecutive node indices."""
    runs: list[tuple[int, bytes]] = []
    start = prev = -2
    buf = bytearray()
    for i in sorted(changes):
        if i != prev + 1:
            if buf:
                runs.append((start, bytes(buf)))
            start, buf = i, bytearray()
        buf.append(int(changes[i]))
        prev = i
    if buf:
        runs.append((start, bytes(buf)))
    return runs


def _dirty(meta: Mapping[str, Any]) -> dict[str, Any]:
    """Mark the workflow dirty (a node ended while someone held it), writing only if needed."""
    return {} if meta.get("dirty") in (True, 1, "1", b"1") else {"dirty": True}


def claim_rule(
    meta: Mapping[str, Any], gen: int | None, token: str, wake: bool, lease: float, now: float
) -> tuple[ClaimStatus, dict[str, Any]]:
    """The fence's claim rule: (status, meta fields to write) for a claim of ``meta``.

    ``now`` is the store's own clock, the one ``held`` and ``deadline`` were written with.
    The Lua script of :mod:`dyrygent.engine.stores.redis` is this rule, on the server.
    """
    if meta["status"] != WorkflowStatus.RUNNING:
        return ClaimStatus.DONE, {}
    holder = meta["holder"]
    live = bool(holder) and now - float(meta.get("held") or 0) <= lease
    ok = ClaimStatus.EXPIRED if now > float(meta["deadline"]) else ClaimStatus.OK
    if holder and holder == token:
        if live:  # another delivery of this same message is ticking: not a crash, wait
            return ClaimStatus.BUSY, _dirty(meta)
        return ok, {"attempts": int(meta["attempts"]) + 1, "held": now}
    if not wake and gen is not None:
        # early: wait for the predecessor's commit, unless it died holding the workflow
        if gen > int(meta["gen"]) and not (holder and not live):
            return ClaimStatus.EARLY, {}
        if gen < int(meta["gen"]):
            return ClaimStatus.STALE, {}
    if holder and not live:  # held past the lease: the holder died
        return ok, {"holder": token, "attempts": max(int(meta["attempts"]) + 1, 2), "held": now}
    if holder:
        return ClaimStatus.BUSY, _dirty(meta)
    return ok, {"holder": token, "attempts": 1, "dirty": False, "held": now}


class Store(abc.ABC):
    """The interface; see the module docstring for the protocol."""

    #: Whether this store keeps worker records (:meth:`record_start`): without them, nodes
    #: orphaned by a dead worker are not relaunched (:mod:`dyrygent.engine.orphans`).
    records_starts: bool = False

    def record_start(self, wf: str, node: str, worker: str) -> None:  # noqa: B027 (optional)
        """Record that ``worker`` (``host|pid|flags``) started ``node`` of ``wf`` now, by the
        store's clock: one write, from the worker, at each node start."""

    def begin_record(self, wf: str, node: str, worker: str) -> Callable[[], None]:
        """:meth:`record_start`, possibly sent now and confirmed later: returns the function
        to call when the node ends (the default writes now and returns a no-op)."""
        self.record_start(wf, node, worker)
        return _nothing

    def starts(self, wf: str, older_than: float) -> tuple[float, dict[str, tuple[float, str]]]:
        """The store's time now, and node id -> (started, worker) of the nodes of ``wf``
        recorded as started at least ``older_than`` seconds ago (store clock)."""
        return 0.0, {}

    def drop_starts(self, wf: str, nodes: list[str]) -> None:  # noqa: B027 (optional)
        """Forget the start records of ``nodes`` (settled: nobody needs them any more)."""

    def relaunched(self, wf: str, node: str) -> int:
        """Forget ``node``'s start record and count one relaunch of it; return the count."""
        raise NotImplementedError(f"{type(self).__name__} keeps no worker records")

    @abc.abstractmethod
    def create(
        self,
        wf: str,
        graph: bytes,
        header: bytes,
        size: int,
        max_age: int,
        joins: Mapping[int, int] | None = None,
        states: bytes | None = None,
        keep: float = KEEP_AFTER,
    ) -> None:
        """Store a new workflow of ``size`` nodes (all WAITING, or ``states``: one NodeState
        byte per node, e.g. nodes skipped as SUCCEEDED), RUNNING, and add it to the
        index. It ends in ERROR ``max_age`` seconds later, and its records expire
        ``keep`` seconds after that, by the store's clock. ``joins`` maps join counters (a node
        index, or -1 for the workflow's end) to the number of completions they wait for (see
        :meth:`count_down`). An existing workflow of the same id is replaced."""

    @abc.abstractmethod
    def count_down(self, wf: str, counters: list[int]) -> bool:
        """A node ended: decrement its join counters; true if one reached zero (a tick may
        find something ready). Only a hint: the driver's backup tick covers any miss."""

    @abc.abstractmethod
    def load(self, wf: str) -> tuple[bytes | None, bytes | None]:
        """(graph, header) as stored, None where missing."""

    @abc.abstractmethod
    def claim(
        self, wf: str, gen: int | None, token: str, wake: bool, lease: float = DEFAULT_LEASE
    ) -> Claim:
        """Claim ``wf`` for the message ``token``. A hold not renewed for ``lease`` seconds
        may be taken over, as a re-tick, by anyone: the holder died, and its message, if
        any, is not back (a Redis broker brings it back only after its visibility timeout).
        Within the lease the holder is alive: anyone else, even a second delivery of the
        holder's own message, is told BUSY."""

    @abc.abstractmethod
    def reopen(
        self,
        wf: str,
        gen: int,
        changes: Mapping[int, int],
        max_age: int,
        keep: float = KEEP_AFTER,
    ) -> bool:
        """Reopen a finished workflow still at generation ``gen``: write ``changes`` (node
        index -> NodeState, logged as events), set it RUNNING at ``gen + 1`` (every older
        driver is stale) with a deadline ``max_age`` from now and no ``ended``, and keep its
        records ``max_age + keep`` from now. Returns false, writing nothing, if it is
        running, unknown, held, or no longer at ``gen`` (someone else reopened it)."""

    @abc.abstractmethod
    def release(self, wf: str, token: str) -> None:
        """Give up ``token``'s hold without committing (its tick failed and will not be
        retried under that id)."""

    @abc.abstractmethod
    def touch(self, wf: str, token: str) -> bool:
        """Renew ``token``'s hold (a long tick says it is alive, so nobody takes over);
        false if ``token`` no longer holds it (it was taken over: stop)."""

    @abc.abstractmethod
    def commit(
        self, wf: str, token: str, changes: Mapping[int, int], gen: int, status: WorkflowStatus
    ) -> bool | None:
        """Write ``changes`` (node index -> NodeState), log one event per node whose state
        changed, set gen and status (and ``ended``, if status leaves RUNNING), and release
        the hold. Returns whether a node finished while we held it (dirty), or None if
        ``token`` no longer holds it (nothing is written then)."""

    @abc.abstractmethod
    def status(self, wf: str) -> WorkflowRecord:
        """The workflow as stored (``status`` None if unknown), in one read."""

    @abc.abstractmethod
    def history(self, wf: str) -> list[NodeEvent]:
        """Every node state change committed, in commit order (empty if unknown)."""

    @abc.abstractmethod
    def snapshot(self, wf: str) -> tuple[WorkflowRecord, list[NodeEvent]]:
        """:meth:`status` and :meth:`history` as of one moment, in one round trip or
        transaction."""

    @abc.abstractmethod
    def list_workflows(
        self, limit: int = 50, status: WorkflowStatus | None = None, before: float | None = None
    ) -> list[WorkflowRecord]:
        """Up to ``limit`` stored workflows, newest first, optionally only those in
        ``status`` and those created before ``before`` (store clock: pass the last
        ``created`` of a page to get the next). Expired and forgotten workflows are not
        listed; nor are those stored by a release without the index."""

    @abc.abstractmethod
    def extend(
        self, wf: str, token: str, node: int, segment: bytes, counter: tuple[int, int]
    ) -> bool | None:
        """Store the graph segment that the expansion of EXPAND node ``node`` appends, and
        start its join ``counter`` (key, count: see :meth:`count_down`), if ``token`` holds
        ``wf``. True when stored; False when ``node`` was expanded before (an interrupted
        tick): the stored one stands; None if ``token`` does not hold it."""

    @abc.abstractmethod
    def segments(self, wf: str) -> list[bytes]:
        """The graph segments of ``wf``, in the order they were stored."""

    @abc.abstractmethod
    def forget(self, wf: str) -> None:
        """Delete every record of ``wf`` (graph, state, meta, counters, events, its index
        entry); a no-op if it is unknown."""
