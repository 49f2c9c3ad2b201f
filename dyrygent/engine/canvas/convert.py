"""Flattening Celery canvases into graph nodes.

``convert(canvas, incoming, deps)`` adds the canvas's task calls to a GraphBuilder and returns
``(output, ends)``: the expression of the canvas's result and the node ids after which it is
complete. ``incoming`` is the value a parent passes in (an expression, or None) and ``deps``
the nodes it must wait for. The rules reproduce native Celery (see SEMANTICS.md):

* a chain passes each step's output to the next step;
* a group passes ``incoming`` to every member; its output is the list of member outputs, a
  member that is itself a group being spliced in (flattened); a one-member group in a chain
  is unrolled; an empty group in a chain with other steps is skipped;
* a chord is a group (its header) followed by its body;
* ``chunks`` is the group of ``xstarmap`` it stands for; ``xmap``/``xstarmap`` are tasks;
* an empty chain is skipped wherever it stands (celery 9772), its partial args going on;
* a group whose only member is a chain ending in a group is that chain (group.apply_async);
* the same Signature object met again is cloned under a new id, as Celery clones it;
* a group's or chord's own ``link_error`` goes to each of its tasks, as Celery's does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Callable

from celery.canvas import Signature, _chain, _chord, chunks, group, maybe_signature

from dyrygent.core.builder import GraphBuilder
from dyrygent.core.graph import Expr
from dyrygent.dynamic import EXPAND_TASK
from dyrygent.engine.canvas.errbacks import error_record, links
from dyrygent.engine.canvas.templates import expand_node, start_options
from dyrygent.errors import InvalidNodeError, UnsupportedCanvasError

__all__ = ["CanvasConverter", "STRUCTURAL_OPTIONS"]

#: Options Celery uses to wire its own canvas; dyrygent does that wiring itself.
STRUCTURAL_OPTIONS = frozenset(
    {
        "task_id",
        "group_id",
        "group_index",
        "chord",
        "chain",
        "root_id",
        "parent_id",
        "reply_to",
        "link",
        "link_error",
        "subtask_type",
    }
)

SpecEncoder = Callable[..., bytes]


def _is_group(sig: Any) -> bool:
    return isinstance(sig, group) and not isinstance(sig, chunks)


class CanvasConverter:
    """Adds canvases to ``builder``; ``encode`` turns (id, task, args, kwargs, options) into
    the node's opaque spec; ``app`` resolves dict signatures."""

    def __init__(
        self,
        builder: GraphBuilder,
        encode: SpecEncoder,
        app: Any = None,
        is_ignored: Callable[[str], bool] = lambda name: False,
    ) -> None:
        self.builder = builder
        self.encode = encode
        self.app = app
        self.is_ignored = is_ignored
        # errbacks of the chord bodies whose header is being converted, outermost first
        self._chord_errbacks: list[dict[str, Any]] = []
        # the task signatures converted so far, by id(): one met again is cloned (kept
        # alive here so that their ids are not reused)
        self._seen: dict[int, Signature] = {}

    def _sig(self, obj: Any) -> Signature:
        if isinstance(obj, Signature):
            return obj
        if isinstance(obj, dict):
            sig = maybe_signature(obj, app=self.app)
            if isinstance(sig, Signature):
                return sig
        raise UnsupportedCanvasError(
            f"add_celery_canvas() cannot convert {type(obj).__name__} {obj!r:.80}: pass a "
            f"Celery signature, chain, group, chord or chunks (e.g. add.s(1, 2))"
        )

    def convert(
        self,
        canvas: Any,
        incoming: Expr,
        deps: tuple[str, ...],
        inherited: dict[str, Any] | None = None,
        pre_args: tuple[Any, ...] = (),
        pre_kwargs: dict[str, Any] | None = None,
    ) -> tuple[Expr, tuple[str, ...]]:
        """Add ``canvas``; ``pre_args``/``pre_kwargs`` are partial args and kwargs for it, as
        in ``canvas.apply_async(args, kwargs)``: they go to its first tasks."""
        sig = self._sig(canvas)
        pk = pre_kwargs or {}
        inherited = inherited or {}
        if isinstance(sig, chunks):
            return self.convert(sig.group(), incoming, deps, inherited, pre_args, pk)
        if isinstance(sig, (_chain, group, _chord)):
            own = {k: v for k, v in sig.options.items() if k not in STRUCTURAL_OPTIONS}
            inherited = {**inherited, **own}
            if isinstance(sig, (group, _chord)) and links(sig)[1]:
                # a group passes its link_error to each task it applies; a chord gives its
                # own to its body's tasks (chord._add_body_callbacks)
                inherited["link_error"] = [*inherited.get("link_error", ()), *links(sig)[1]]
            pre_args = tuple(pre_args) + tuple(sig.args or ())
        if isinstance(sig, _chain):
            return self._chain(sig, incoming, deps, inherited, pre_args, pk)
        if isinstance(sig, _chord):
            return self._chord(sig, incoming, deps, inherited, pre_args, pk)
        if isinstance(sig, group):
            return self._group(list(sig.tasks), incoming, deps, inherited, pre_args, pk)
        return self._task(sig, incoming, deps, inherited, pre_args, pk)

    def _chain(
        self,
        sig: _chain,
        incoming: Expr,
        deps: tuple[str, ...],
        inherited: dict[str, Any],
        pre_args: tuple[Any, ...],
        pre_kwargs: dict[str, Any],
    ) -> tuple[Expr, tuple[str, ...]]:
        link, link_error = links(sig)
        if link or link_error:
            # chain.link/link_error live on the chain; Celery pushes them onto its tasks
            # (link on the last, link_error on all) in unchain_tasks(). Freeze the originals
            # first so the clones keep the ids the caller can see.
            self._freeze_leaves(sig)
            steps = [self._sig(t) for t in sig.unchain_tasks()]
        else:
            steps = [self._sig(t) for t in sig.tasks]
        steps = [s for s in steps if not self._is_empty_chain(s)]  # celery 9772
        if not steps:
            return incoming, deps
        non_empty = [s for s in steps if not (_is_group(s) and not list(s.tasks))]
        if non_empty:
            steps = non_empty  # an empty group between other steps is a no-op (celery 5.7)
        out, ends = incoming, deps
        for k, step in enumerate(steps):
            if _is_group(step):
                members = list(step.tasks)
                if len(members) == 1:  # maybe_unroll_group: a lone member stands alone
                    step = self._sig(members[0])
            first = k == 0
            out, ends = self.convert(
                step, out, ends, inherited, pre_args if first else (), pre_kwargs if first else {}
            )
        return out, ends

    def _members(
        self,
        members: Iterable[Any],
        incoming: Expr,
        deps: tuple[str, ...],
        inherited: dict[str, Any],
        pre_args: tuple[Any, ...],
        pre_kwargs: dict[str, Any],
    ) -> tuple[list[Any], tuple[str, ...]]:
        outs: list[Any] = []
        ends: list[str] = []
        any_member = False
        for m in members:
            msig = self._sig(m)
            if self._is_empty_chain(msig):
                continue  # celery 9772: group.apply_async skips empty chains
            any_member = True
            out, e = self.convert(msig, incoming, deps, inherited, pre_args, pre_kwargs)
            if _is_group(msig):
                outs.extend(out)  # type: ignore[arg-type]  # nested groups flatten
            else:
                outs.append(out)
            ends.extend(e)
        if not any_member:
            return [], deps
        return outs, tuple(dict.fromkeys(ends))

    def _group(
        self,
        members: list[Any],
        incoming: Expr,
        deps: tuple[str, ...],
        inherited: dict[str, Any],
        pre_args: tuple[Any, ...],
        pre_kwargs: dict[str, Any],
    ) -> tuple[Expr, tuple[str, ...]]:
        live = [s for s in map(self._sig, members) if not self._is_empty_chain(s)]
        if len(live) == 1 and isinstance(live[0], _chain):
            # group.apply_async: "group(A.s() | group(B.s(), C.s()))": a lone member whose
            # result is a GroupResult is the group's result (not in a chord header)
            out, ends = self.convert(live[0], incoming, deps, inherited, pre_args, pre_kwargs)
            return (out if isinstance(out, list) else [out]), ends
        return self._members(live, incoming, deps, inherited, pre_args, pre_kwargs)

    def _is_empty_chain(self, sig: Any) -> bool:
        """A chain with no task (or only empty chains): Celery skips it (celery 9772)."""
        return isinstance(sig, _chain) and all(
            self._is_empty_chain(self._sig(t)) for t in sig.tasks
        )

    def _chord(
        self,
        sig: _chord,
        incoming: Expr,
        deps: tuple[str, ...],
        inherited: dict[str, Any],
        pre_args: tuple[Any, ...],
        pre_kwargs: dict[str, Any],
    ) -> tuple[Expr, tuple[str, ...]]:
        header = sig.tasks
        if isinstance(header, (group, Signature)) and not isinstance(header, (list, tuple)):
            header = list(header.tasks) if _is_group(header) else [header]
        body = sig.body
        if body is None:
            raise UnsupportedCanvasError(
                f"chord {sig!r:.80} has no body: give one, e.g. chord(header, tsum.s())"
            )
        body = self._sig(body)
        # Natively a failing header member fails the chord, which calls the body's errbacks
        # (chord_error_from_stack) although the body never runs: keep what that call needs
        # on every header node.
        self._freeze_leaves(body)
        record = error_record(body, self.app, list(inherited.get("link_error", ())))
        if record:
            self._chord_errbacks.append(record)
        header_inherited = {k: v for k, v in inherited.items() if k != "link_error"}
        try:
            out, ends = self._members(
                list(header), incoming, deps, header_inherited, pre_args, pre_kwargs
            )
        finally:
            if record:
                self._chord_errbacks.pop()
        return self.convert(body, out, ends, inherited)

    def _expand(
        self, sig: Signature, incoming: Expr, deps: tuple[str, ...], pre_args: tuple[Any, ...]
    ) -> tuple[Expr, tuple[str, ...]]:
        """An EXPAND node (see :func:`dyrygent.engine.canvas.templates.expand_node`)."""
        node_id = expand_node(
            self.builder, self.encode, sig, self._sig(sig.kwargs["canvas"]), incoming, deps,
            pre_args,
        )  # fmt: skip
        return node_id, (node_id,)

    def _task(
        self,
        sig: Signature,
        incoming: Expr,
        deps: tuple[str, ...],
        inherited: dict[str, Any],
        pre_args: tuple[Any, ...],
        pre_kwargs: dict[str, Any],
    ) -> tuple[Expr, tuple[str, ...]]:
        if sig.task == EXPAND_TASK:
            return self._expand(sig, incoming, deps, pre_args)
        if id(sig) in self._seen:  # the same object again: Celery runs a clone of each
            sig = sig.clone()
            sig.options = {k: v for k, v in sig.options.items() if k != "task_id"}
        self._seen[id(sig)] = sig
        if not sig.options.get("task_id"):
            sig.freeze()
        node_id = sig.options["task_id"]
        options = {
            **inherited,
            **{k: v for k, v in sig.options.items() if k not in STRUCTURAL_OPTIONS},
        }
        link, link_error = links(sig)
        link_error = [
            *link_error,
            *(e for e in inherited.get("link_error", ()) if e not in link_error),
        ]
        options.pop("link_error", None)
        if link:
            options["link"] = link
        if link_error:
            options["link_error"] = link_error
        if options.get("ignore_result") or self.is_ignored(sig.task):
            raise InvalidNodeError(
                f"node {node_id!r} ({sig.task}) ignores its result, so dyrygent could never "
                f"see it finish: drop ignore_result=True from that signature or task",
                node=node_id,
            )
        args = list(sig.args or ())
        kwargs = dict(sig.kwargs or {})
        if not sig.immutable:  # Signature._merge: partial args first, partial kwargs win
            args = [*pre_args, *args]
            kwargs.update(pre_kwargs)
        extras = {"chord_errbacks": list(self._chord_errbacks)} if self._chord_errbacks else None
        rule, kind = start_options(node_id, sig.task, options)
        spec = self.encode(node_id, sig.task, args, kwargs, options, extras)
        incoming = None if sig.immutable else incoming
        self.builder.add(node_id, sig.task, spec, deps, incoming, rule=rule, kind=kind)
        return node_id, (node_id,)

    def _freeze_leaves(self, sig: Any) -> None:
        sig = self._sig(sig)
        if isinstance(sig, chunks):
            return
        if isinstance(sig, _chain):
            for t in sig.tasks:
                self._freeze_leaves(t)
        elif isinstance(sig, _chord):
            for t in sig.tasks if isinstance(sig.tasks, (list, tuple)) else [sig.tasks]:
                self._freeze_leaves(t)
            self._freeze_leaves(sig.body)
        elif isinstance(sig, group):
            for t in sig.tasks:
                self._freeze_leaves(t)
        elif not sig.options.get("task_id"):
            sig.freeze()
