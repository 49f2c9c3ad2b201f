"""Figures taken inside every process that publishes: message sizes and processor runs.

Broker messages are published by the client *and* inside the worker (native chains publish the
next step; both processors publish nodes and their own next tick), so :func:`install` runs in
every such process (the client, and each prefork child through ``worker_process_init``):

* it wraps ``kombu.Producer._publish``, which receives the body already serialized, and
  records the body size of every task message (no second serialization);
* it times every *processor run*: process CPU time, wall time, and the messages published
  during it. celery-dyrygent's processor is a task (``workflow-processor``), timed by
  ``task_prerun`` / ``task_postrun``. dyrygent ticks in processor messages
  (``Processor.run``) but also inside other tasks' ``task_postrun`` and in the client
  (``Processor.tick_here``), so those methods are wrapped instead; a run may hold several
  ticks (``Processor._tick`` calls, counted when that method exists);
* a daemon thread flushes the figures to Redis every 0.1 s under the current *epoch*, the
  value of ``bench:epoch`` that the harness bumps before each measured run.

Per process and epoch a hash ``bench:<epoch>:pub:<pid>`` holds cumulative message counts,
bytes and maxima; ``bench:<epoch>:ticks`` is a list of one JSON record per processor run.
:func:`collect` sums them. :class:`TreeMemorySampler` samples the RSS of a process tree.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
import tracemalloc
from typing import Any, Callable

PROCESSOR_TASKS = frozenset({"dyrygent.processor", "workflow-processor"})
#: Not the workflow's tasks either: Celery's chord polling on backends without a native join
#: (the database backend). It stores no result, so counting it would look like a duplicate.
NOT_COUNTED = PROCESSOR_TASKS | {"celery.chord_unlock"}
EPOCH_KEY = "bench:epoch"
FLUSH_INTERVAL = 0.1


class _Run:
    """One processor run being measured."""

    __slots__ = (
        "task",
        "kind",
        "cpu0",
        "wall0",
        "ts",
        "msgs",
        "bytes",
        "self_bytes",
        "max",
        "ticks",
    )

    def __init__(self, task: str, kind: str) -> None:
        self.task = task
        self.kind = kind
        self.cpu0 = time.process_time()
        self.wall0 = time.perf_counter()
        self.ts = time.time()
        self.msgs = self.bytes = self.self_bytes = self.max = self.ticks = 0


class _Recorder:
    def __init__(self, url: str) -> None:
        self.url = url
        self.role = "worker"
        self.profile_dir: str | None = None
        self.trace_tasks = False
        self.signal_timed: set[str] = {"workflow-processor"}
        self._fork_reset()

    def _fork_reset(self) -> None:
        import redis

        self.client = redis.Redis.from_url(self.url)  # no connection shared across fork
        self.lock = threading.Lock()
        self.epoch: str | None = None
        self.run: _Run | None = None
        self.thread: threading.Thread | None = None
        self.profiler: Any = None
        self.profiled = 0
        self._reset()

    def _reset(self) -> None:
        # n/bytes/max: every task message; p*: messages of processor tasks
        self.stats: dict[str, Any] = {
            "n": 0,
            "bytes": 0,
            "max": 0,
            "max_task": "",
            "pn": 0,
            "pbytes": 0,
            "pmax": 0,
            "ran": 0,
        }
        self.records: list[str] = []
        self.done_ts: list[str] = []
        self.dirty = False

    # -- hooks -------------------------------------------------------------------------------

    def on_publish(self, headers: Any, body: Any) -> None:
        task = headers.get("task") if isinstance(headers, dict) else None
        if not task:
            return  # not a task message (remote control, events)
        size = len(body) if body is not None else 0
        is_proc = task in PROCESSOR_TASKS
        with self.lock:
            s = self.stats
            s["n"] += 1
            s["bytes"] += size
            if size > s["max"]:
                s["max"] = size
                s["max_task"] = task
            if is_proc:
                s["pn"] += 1
                s["pbytes"] += size
                s["pmax"] = max(s["pmax"], size)
            key = f"n:{task}"
            s[key] = s.get(key, 0) + 1
            self.dirty = True
        r = self.run
        if r is not None:
            r.msgs += 1
            r.bytes += size
            if is_proc:
                r.self_bytes += size
            r.max = max(r.max, size)

    def begin(self, task: str, kind: str) -> bool:
        """Start measuring a processor run; False if one is already being measured."""
        if self.run is not None:
            return False
        self.run = _Run(task, kind)
        if self.profile_dir:
            if self.profiler is None:
                import cProfile

                self.profiler = cProfile.Profile()
            self.profiler.enable()
        return True

    def end(self, status: str) -> None:
        r = self.run
        if r is None:
            return
        self.run = None
        cpu = time.process_time() - r.cpu0
        wall = time.perf_counter() - r.wall0
        if self.profiler is not None:
            self.profiler.disable()
            self.profiled += 1
            if self.profiled % 20 == 0:
                self.dump_profile()
        record = {
            "task": r.task,
            "kind": r.kind,
            "status": status,
            "cpu": cpu,
            "wall": wall,
            "msgs": r.msgs,
            "bytes": r.bytes,
            "self_bytes": r.self_bytes,
            "max": r.max,
            "ticks": r.ticks,
            "ts": r.ts,
            "pid": os.getpid(),
        }
        with self.lock:
            self.records.append(json.dumps(record))
            self.dirty = True

    def task_done(self) -> None:
        with self.lock:
            self.stats["ran"] += 1  # successful runs of non-processor tasks (duplicates too)
            if self.trace_tasks:
                self.done_ts.append(repr(time.time()))
            self.dirty = True

    def dump_profile(self) -> None:
        if self.profiler is not None and self.profile_dir:
            self.profiler.dump_stats(
                os.path.join(self.profile_dir, f"processor-{os.getpid()}.prof")
            )

    # -- flushing ----------------------------------------------------------------------------

    def flush(self) -> None:
        try:
            raw = self.client.get(EPOCH_KEY)
        except Exception:
            return
        epoch = raw.decode() if isinstance(raw, bytes) else str(raw or "0")
        with self.lock:
            if self.epoch is None:
                self.epoch = epoch
            if self.dirty:
                pipe = self.client.pipeline(transaction=False)
                pipe.hset(f"bench:{self.epoch}:pub:{os.getpid()}", mapping=dict(self.stats))  # type: ignore[arg-type]
                if self.records:
                    pipe.rpush(f"bench:{self.epoch}:ticks", *self.records)
                if self.done_ts:
                    pipe.rpush(f"bench:{self.epoch}:done", *self.done_ts)
                try:
                    pipe.execute()
                except Exception:
                    return
                self.records = []
                self.done_ts = []
                self.dirty = False
            if epoch != self.epoch:
                self.epoch = epoch
                self._reset()

    def start(self) -> None:
        if self.thread is not None and self.thread.is_alive():
            return

        def loop() -> None:
            while True:
                time.sleep(FLUSH_INTERVAL)
                self.flush()

        self.flush()
        self.thread = threading.Thread(target=loop, name="bench-flush", daemon=True)
        self.thread.start()


_recorder: _Recorder | None = None


def _hook_dyrygent(rec: _Recorder) -> bool:
    """Time dyrygent's processor runs through its processors' hooks (before_run/after_run,
    before_tick); False when no dyrygent processor is registered in this process."""
    try:
        from dyrygent.engine.registry import all_processors
    except ImportError:
        return False
    processors = all_processors()
    outer: list[bool] = []

    def before_run(kind: str, wf: str) -> None:
        if kind == "here":
            name = "client" if rec.role == "client" else "in node"
        else:
            name = f"{kind} msg"
        outer.append(rec.begin("dyrygent.processor", name))

    def after_run(kind: str, wf: str, outcome: str) -> None:
        if outer and outer.pop():
            rec.end(str(outcome))

    def before_tick(*_: Any) -> None:
        if rec.run is not None:
            rec.run.ticks += 1

    for processor in processors:
        processor.hooks.connect("before_run", before_run)
        processor.hooks.connect("after_run", after_run)
        processor.hooks.connect("before_tick", before_tick)
    return bool(processors)


def install(
    url: str,
    start: bool = True,
    profile_dir: str | None = None,
    trace_tasks: bool = False,
    role: str = "worker",
) -> None:
    """Record in this process, flushing to the Redis at ``url``. Idempotent.

    ``start=False`` defers the flusher thread (a prefork parent: threads do not survive fork;
    the children start theirs in ``worker_process_init``). ``profile_dir``: also run every
    processor run under cProfile, dumping ``processor-<pid>.prof`` there (a diagnostic; it
    slows the ticks down). ``trace_tasks``: also record when every other task succeeds
    (``bench:<epoch>:done``), for timelines. ``role``: ``client`` or ``worker``.
    """
    global _recorder
    from celery import signals
    from kombu import messaging

    if _recorder is None:
        _recorder = rec = _Recorder(url)
        rec.profile_dir = profile_dir
        rec.trace_tasks = trace_tasks
        rec.role = role
        original = messaging.Producer._publish

        def _publish(
            self: Any,
            body: Any,
            priority: Any,
            content_type: Any,
            content_encoding: Any,
            headers: Any,
            *args: Any,
            **kwargs: Any,
        ) -> Any:
            try:
                rec.on_publish(headers, body)
            except Exception:  # measuring must never break a publish
                pass
            return original(
                self, body, priority, content_type, content_encoding, headers, *args, **kwargs
            )

        messaging.Producer._publish = _publish  # type: ignore[method-assign]
        if not _hook_dyrygent(rec):
            rec.signal_timed.add("dyrygent.processor")

        def prerun(sender: Any = None, task: Any = None, args: Any = None, **_: Any) -> None:
            name = getattr(task or sender, "name", None)
            if name in rec.signal_timed:
                rec.begin(name, "task")

        def postrun(sender: Any = None, task: Any = None, state: Any = None, **_: Any) -> None:
            if getattr(task or sender, "name", None) in rec.signal_timed:
                rec.end(str(state))

        def success(sender: Any = None, **_: Any) -> None:
            if getattr(sender, "name", None) not in NOT_COUNTED:
                rec.task_done()

        def child_init(**_: Any) -> None:
            rec._fork_reset()
            rec.start()

        def child_shutdown(**_: Any) -> None:
            rec.dump_profile()

        signals.task_prerun.connect(prerun, weak=False)
        signals.task_postrun.connect(postrun, weak=False)
        signals.task_success.connect(success, weak=False)
        signals.worker_process_init.connect(child_init, weak=False)
        signals.worker_process_shutdown.connect(child_shutdown, weak=False)
    if start:
        _recorder.start()


def flush() -> None:
    """Flush now (the client calls this before it exits)."""
    if _recorder is not None:
        _recorder.flush()


def collect(client: Any, epoch: str) -> dict[str, Any]:
    """Sum the figures every process flushed under ``epoch``."""
    out: dict[str, Any] = {
        "n": 0,
        "bytes": 0,
        "max": 0,
        "max_task": "",
        "pn": 0,
        "pbytes": 0,
        "pmax": 0,
        "ran": 0,
    }
    for key in client.scan_iter(match=f"bench:{epoch}:pub:*", count=1000):
        h = {k.decode(): v.decode() for k, v in client.hgetall(key).items()}
        for f in ("n", "bytes", "pn", "pbytes", "ran"):
            out[f] += int(h.get(f, 0))
        for f, v in h.items():
            if f.startswith("n:"):
                out.setdefault("by_task", {})
                out["by_task"][f[2:]] = out["by_task"].get(f[2:], 0) + int(v)
        if int(h.get("max", 0)) > out["max"]:
            out["max"] = int(h["max"])
            out["max_task"] = h.get("max_task", "")
        out["pmax"] = max(out["pmax"], int(h.get("pmax", 0)))
    out["ticks"] = [json.loads(x) for x in client.lrange(f"bench:{epoch}:ticks", 0, -1)]
    done = client.lrange(f"bench:{epoch}:done", 0, -1)
    if done:
        out["done_ts"] = sorted(float(x) for x in done)
    return out


class TreeMemorySampler:
    """Samples the summed RSS of a process and its descendants every ``interval`` seconds
    in a thread, keeping the peak (a prefork worker: the main process and its pool)."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        import psutil

        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_sum = 0
        self.peak_one = 0
        self.start_sum = self._sample()[0]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-mem", daemon=True)
        self._thread.start()

    def _sample(self) -> tuple[int, int]:
        import psutil

        total = one = 0
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return 0, 0
        for p in procs:
            try:
                rss = p.memory_info().rss
            except psutil.Error:
                continue
            total += rss
            one = max(one, rss)
        return total, one

    def _loop(self) -> None:
        while not self._stop.is_set():
            total, one = self._sample()
            self.peak_sum = max(self.peak_sum, total)
            self.peak_one = max(self.peak_one, one)
            self._stop.wait(self.interval)

    def stop(self) -> tuple[int, int]:
        """Stop sampling; returns (peak summed RSS, peak RSS of one process), in bytes."""
        self._stop.set()
        self._thread.join(5)
        return self.peak_sum, self.peak_one


class OtherLoad:
    """CPU used during a run by processes that are not part of the benchmark, in cores.

    The machine's busy time (psutil.cpu_times) over the run, minus the CPU time of our own
    process trees (``pids``: the worker, redis-server, the harness) and of the client (which
    reports its own). Anything left is someone else's load: the run's figures are suspect.
    Hypervisor steal time is reported apart.
    """

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.t0 = time.monotonic()
        self.busy0, self.steal0 = self._machine()
        self.ours0 = self._ours()

    @staticmethod
    def _machine() -> tuple[float, float]:
        import psutil

        ct = psutil.cpu_times()
        return ct.user + ct.nice + ct.system, getattr(ct, "steal", 0.0)

    def _ours(self) -> float:
        import psutil

        total = 0.0
        seen: set[int] = set()
        for pid in self.pids:
            try:
                root = psutil.Process(pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            for p in procs:
                if p.pid in seen:
                    continue
                seen.add(p.pid)
                try:
                    c = p.cpu_times()
                except psutil.Error:
                    continue
                total += c.user + c.system
        return total

    def stop(self, client_cpu: float = 0.0) -> tuple[float, float]:
        """(other processes' load, steal), in cores, averaged over the run."""
        wall = max(1e-6, time.monotonic() - self.t0)
        busy, steal = self._machine()
        other = (busy - self.busy0) - (self._ours() - self.ours0) - client_cpu
        return max(0.0, other) / wall, (steal - self.steal0) / wall


def traced_memory(make: Callable[[], Any], work: Callable[[Any], Any]) -> tuple[float, float]:
    """(MiB held by what ``make()`` builds, peak MiB above that while ``work`` runs on it),
    measured with tracemalloc."""
    gc.collect()
    tracemalloc.start()
    try:
        built = make()
        held = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        work(built)
        peak = tracemalloc.get_traced_memory()[1] - held
    finally:
        tracemalloc.stop()
    return held / 2**20, peak / 2**20
