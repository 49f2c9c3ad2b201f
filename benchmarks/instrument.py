"""Figures taken inside every process that publishes: message sizes and processor ticks.

Broker messages are published by the client *and* inside the worker (native chains publish the
next step; both processors publish nodes and their own next tick), so :func:`install` runs in
every such process (the client, and each prefork child through ``worker_process_init``):

* it wraps ``kombu.Producer._publish``, which receives the body already serialized, and
  records the body size of every task message (no second serialization);
* ``task_prerun`` / ``task_postrun`` time each run of a processor task (process CPU time and
  wall time) and attribute the messages it published to that tick;
* a daemon thread flushes the figures to Redis every 0.2 s under the current *epoch*, the
  value of ``bench:epoch`` that the harness bumps before each measured run.

Per process and epoch a hash ``bench:<epoch>:pub:<pid>`` holds cumulative message counts,
bytes and maxima; ``bench:<epoch>:ticks`` is a list of one JSON record per processor run.
:func:`collect` sums them. :class:`TreeMemorySampler` samples the RSS of a process tree.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

PROCESSOR_TASKS = frozenset({"dyrygent.processor", "workflow-processor"})
EPOCH_KEY = "bench:epoch"
FLUSH_INTERVAL = 0.2


class _Recorder:
    def __init__(self, url: str) -> None:
        import redis

        self.url = url
        self.client = redis.Redis.from_url(url)
        self.lock = threading.Lock()
        self.epoch: str | None = None
        self.tick: list | None = None
        self.thread: threading.Thread | None = None
        self._reset()

    def _reset(self) -> None:
        # n/bytes/max: every task message; p*: messages of processor tasks (their own ticks)
        self.stats: dict[str, Any] = {"n": 0, "bytes": 0, "max": 0, "max_task": "",
                                      "pn": 0, "pbytes": 0, "pmax": 0}
        self.ticks: list[str] = []
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
            self.dirty = True
        t = self.tick
        if t is not None:
            t[2] += 1
            t[3] += size
            if is_proc:
                t[4] += size
            t[5] = max(t[5], size)

    def on_prerun(self, task: Any, args: Any) -> None:
        if getattr(task, "name", None) in PROCESSOR_TASKS:
            wake = bool(task.name == "dyrygent.processor" and args and len(args) > 1
                        and args[1] is None)
            self.tick = [time.process_time(), time.perf_counter(), 0, 0, 0, 0, wake]

    def on_postrun(self, task: Any) -> None:
        t = self.tick
        if t is None or getattr(task, "name", None) not in PROCESSOR_TASKS:
            return
        self.tick = None
        record = {"task": task.name, "cpu": time.process_time() - t[0],
                  "wall": time.perf_counter() - t[1], "msgs": t[2], "bytes": t[3],
                  "self_bytes": t[4], "max": t[5], "wake": t[6]}
        with self.lock:
            self.ticks.append(json.dumps(record))
            self.dirty = True

    # -- flushing ----------------------------------------------------------------------------

    def flush(self) -> None:
        try:
            raw = self.client.get(EPOCH_KEY)
        except Exception:
            return
        epoch = raw.decode() if raw else "0"
        with self.lock:
            if self.epoch is None:
                self.epoch = epoch
            if self.dirty:
                pipe = self.client.pipeline(transaction=False)
                pipe.hset(f"bench:{self.epoch}:pub:{os.getpid()}", mapping=self.stats)
                if self.ticks:
                    pipe.rpush(f"bench:{self.epoch}:ticks", *self.ticks)
                try:
                    pipe.execute()
                except Exception:
                    return
                self.ticks = []
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


def install(url: str, start: bool = True) -> None:
    """Record in this process, flushing to the Redis at ``url``. Idempotent.

    ``start=False`` defers the flusher thread (a prefork parent: threads do not survive fork;
    the children start theirs in ``worker_process_init``).
    """
    global _recorder
    from celery import signals
    from kombu import messaging

    if _recorder is None:
        _recorder = rec = _Recorder(url)
        original = messaging.Producer._publish

        def _publish(self: Any, body: Any, priority: Any, content_type: Any,
                     content_encoding: Any, headers: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                rec.on_publish(headers, body)
            except Exception:  # measuring must never break a publish
                pass
            return original(self, body, priority, content_type, content_encoding, headers,
                            *args, **kwargs)

        messaging.Producer._publish = _publish  # type: ignore[method-assign]

        def prerun(sender: Any = None, task: Any = None, args: Any = None, **_: Any) -> None:
            rec.on_prerun(task or sender, args)

        def postrun(sender: Any = None, task: Any = None, **_: Any) -> None:
            rec.on_postrun(task or sender)

        def child_init(**_: Any) -> None:
            import redis

            rec.client = redis.Redis.from_url(rec.url)  # no connection shared across fork
            rec.lock = threading.Lock()
            rec.epoch = None
            rec._reset()
            rec.thread = None
            rec.start()

        signals.task_prerun.connect(prerun, weak=False)
        signals.task_postrun.connect(postrun, weak=False)
        signals.worker_process_init.connect(child_init, weak=False)
    if start:
        _recorder.start()


def flush() -> None:
    """Flush now (the client calls this before it exits)."""
    if _recorder is not None:
        _recorder.flush()


def collect(client: Any, epoch: str) -> dict[str, Any]:
    """Sum the figures every process flushed under ``epoch``."""
    out: dict[str, Any] = {"n": 0, "bytes": 0, "max": 0, "max_task": "", "pn": 0,
                           "pbytes": 0, "pmax": 0}
    for key in client.scan_iter(match=f"bench:{epoch}:pub:*", count=1000):
        h = {k.decode(): v.decode() for k, v in client.hgetall(key).items()}
        for f in ("n", "bytes", "pn", "pbytes"):
            out[f] += int(h.get(f, 0))
        if int(h.get("max", 0)) > out["max"]:
            out["max"] = int(h["max"])
            out["max_task"] = h.get("max_task", "")
        out["pmax"] = max(out["pmax"], int(h.get("pmax", 0)))
    out["ticks"] = [json.loads(x) for x in client.lrange(f"bench:{epoch}:ticks", 0, -1)]
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
