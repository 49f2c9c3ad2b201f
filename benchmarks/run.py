"""Workflow shapes on real Redis and a real worker: native Celery, celery-dyrygent, dyrygent.

    .venv/bin/python -m benchmarks.run            # full run (about 30 minutes)
    .venv/bin/python -m benchmarks.run --quick    # small sizes, about 45 s (CI)

Starts a private redis-server (tests/harness.RedisServer: broker db 0, result backend db 1,
ledger db 2, figures db 3) and ``celery worker -P prefork -c 2`` running benchmarks/benchapp.py
(tests/harness.Worker). For every shape and runner it runs ``python -m benchmarks.client`` in
its own process, with a timeout, and records:

* wall time from building the canvas to seeing its result (the client's own clock); runs under
  REPEAT_BELOW seconds are repeated (``--repeat``) and the median kept;
* tasks done (SUCCESS metas in the backend), so a run that did not finish says how far it got,
  and task runs counted in the worker, so a task run twice shows;
* every task message published, by the client and inside the worker (benchmarks.instrument):
  count, bytes, the largest body;
* each processor run: process CPU, wall time, messages and bytes it published;
* the worker's peak RSS (main process + pool, sampled every 0.1 s with psutil);
* other processes' CPU load during the run (runs above DISTURBED cores are marked); a full run
  first waits for the machine to be quiet (``--quiet-wait``);
* the client's build+encode cost (time, tracemalloc peak) for the scaling family.

A full run executes from a copy of dyrygent/, tests/ and benchmarks/ taken at start
(``--snapshot``), so edits made meanwhile cannot mix versions. It writes benchmarks/out/
results.json (after every run), results.md and scaling.png (wall time against workflow size for
the layered family: a chain of chords with about sqrt(n) layers, see
:data:`benchmarks.shapes.LAYERS`, plus the floor of as many independent tasks). Ratios are
reported, never asserted; the exit status is 1 only if a run failed with an error (the harness
or a runner broke). ``--report-only`` rebuilds results.md and scaling.png from the JSON.

``--backend postgresql`` keeps the private Redis as the broker but stores results in Celery's
database backend (``db+postgresql+psycopg2://``) on the PostgreSQL server at 127.0.0.1:5432
(user postgres, trust auth), in a fresh database ``dyrygent_bench_<pid>_<ms>`` dropped at the
end (:class:`BenchDatabase`). The server's processes count as the benchmark's own in the
other-load figure (the server is shared: another session's queries on it are not flagged).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import instrument
from benchmarks.shapes import parse
from tests.harness import ROOT, RedisServer, Worker, wait_for

OUT = ROOT / "benchmarks" / "out"
RUNNERS = ("native", "celery-dyrygent", "dyrygent")
CANVAS = RUNNERS
FLOOR = ("native",)
NOT_CD = ("native", "dyrygent")


def _runs(spec: str, runner: str) -> bool:
    """Whether ``runner`` can run the shape ``spec``: the floors are plain tasks (native only);
    a fan-out over a result exists in dyrygent only."""
    if spec.startswith("floor"):
        return runner == "native"
    if spec.startswith("fanout"):
        return runner == "dyrygent"
    return True


#: (shape spec, runners). The floors are plain tasks: native only.
FULL = [
    ("chain:100", CANVAS),
    ("group:1000", CANVAS),
    ("chord:1000", CANVAS),
    ("chainchords_between:5:10", CANVAS),
    ("nested23", CANVAS),
    ("chainofchords:20:10", CANVAS),
    ("nested:8", CANVAS),
    ("layered:10", CANVAS),
    ("layered:100", CANVAS),
    ("layered:1000", CANVAS),
    ("layered:10000", CANVAS),
    ("many:100:100", CANVAS),
    ("group:10000", CANVAS),
    ("floor:10", FLOOR),
    ("floor:100", FLOOR),
    ("floor:1000", FLOOR),
    ("floor:10000", FLOOR),
    ("floorgroup:10000", FLOOR),
]
#: Quick mode (CI): every code path, small sizes. celery-dyrygent needs about 2 s per layer,
#: so it runs only where it finishes quickly, and on chain:10 to exercise the timeout path.
QUICK = [
    ("chain:10", CANVAS),
    ("group:100", CANVAS),
    ("chord:100", CANVAS),
    ("nested23", NOT_CD),
    ("nested:4", NOT_CD),
    ("layered:10", NOT_CD),
    ("layered:100", NOT_CD),
    ("many:10:10", NOT_CD),
    ("floor:10", FLOOR),
    ("floor:100", FLOOR),
    ("floorgroup:100", FLOOR),
]
#: Runs shorter than this are repeated (--repeat) and the median reported: small shapes vary
#: by up to 2x from run to run on a 2-core machine.
REPEAT_BELOW = 10.0
SCALING_FULL = [10, 100, 1000, 10000]
SCALING_QUICK = [10, 100]


class BenchDatabase:
    """A fresh database on the PostgreSQL server at 127.0.0.1:5432 (user postgres, trust auth)
    for Celery's database result backend, and dyrygent's tables next to Celery's."""

    ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
    TABLES = ("celery_taskmeta", "celery_tasksetmeta", "dyrygent_workflow", "dyrygent_join")

    def __init__(self) -> None:
        import psutil
        import sqlalchemy as sa

        self.name = f"dyrygent_bench_{os.getpid()}_{int(time.time() * 1000)}"
        self.admin = sa.create_engine(self.ADMIN, isolation_level="AUTOCOMMIT")
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{self.name}"'))
            self.version = conn.execute(sa.text("SHOW server_version")).scalar_one()
            backend_pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        self.server_pid = psutil.Process(backend_pid).ppid()  # the postmaster (local server)
        self.engine = sa.create_engine(self.url, isolation_level="AUTOCOMMIT")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:5432/{self.name}"

    def _tables(self, conn: Any) -> list[str]:
        import sqlalchemy as sa

        have = set(sa.inspect(conn).get_table_names())  # Celery creates its own on first use
        return [t for t in self.TABLES if t in have]

    def clear(self) -> None:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            tables = self._tables(conn)
            if tables:
                conn.execute(sa.text("SET lock_timeout = '10s'"))
                conn.execute(sa.text(f"TRUNCATE {', '.join(tables)}"))

    def succeeded(self) -> list[str]:
        """Task ids with a SUCCESS meta."""
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            if "celery_taskmeta" not in self._tables(conn):
                return []
            return list(
                conn.execute(
                    sa.text("SELECT task_id FROM celery_taskmeta WHERE status = 'SUCCESS'")
                ).scalars()
            )

    def drop(self) -> None:
        import sqlalchemy as sa

        self.engine.dispose()
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()


class Env:
    """The private Redis and the worker; restarts the worker with empty queues on demand.
    Results go to Redis db 1, or with ``backend="postgresql"`` to a :class:`BenchDatabase`."""

    def __init__(self, backend: str = "redis") -> None:
        self.redis = RedisServer()
        try:
            self.db = BenchDatabase() if backend == "postgresql" else None
        except Exception:
            self.redis.stop()
            raise
        self.backend_url = f"db+{self.db.url}" if self.db else self.redis.url(1)
        self.env = {
            "DYRYGENT_TEST_BROKER": self.redis.url(0),
            "DYRYGENT_TEST_BACKEND": self.backend_url,
            "DYRYGENT_TEST_LEDGER": self.redis.url(2),
            "BENCH_STATS_URL": self.redis.url(3),
        }
        os.environ.update(self.env)
        import redis

        self.broker = redis.Redis.from_url(self.redis.url(0))
        self.backend = redis.Redis.from_url(self.redis.url(1))
        self.stats = redis.Redis.from_url(self.redis.url(3))
        from benchmarks.benchapp import make_bench_app

        self.app = make_bench_app(self.redis.url(0), self.backend_url, name="bench-harness")
        self.worker: Worker | None = None
        self.epoch = 0
        self.worker_starts = 0

    def start_worker(self) -> None:
        self.worker = Worker(
            self.env, concurrency=2, pool="prefork", app="benchmarks.benchapp", name="bench"
        )
        self.worker.wait_ready(self.app)
        self.worker_starts += 1

    def restart_worker(self) -> None:
        """Stop the worker, empty the broker and the backend, start a new one."""
        if self.worker is not None:
            self.worker.stop()
            os.unlink(self.worker.log.name)
        self.broker.flushdb()
        self.clear_backend()
        self.start_worker()

    def clear_backend(self) -> None:
        if self.db is not None:
            self.db.clear()
        else:
            self.backend.flushdb()

    def own_pids(self) -> list[int]:
        """Process trees whose CPU is the benchmark's (for instrument.OtherLoad)."""
        pids = [self.worker.pid, self.redis.proc.pid, os.getpid()]  # type: ignore[union-attr]
        return pids + ([self.db.server_pid] if self.db is not None else [])

    def reset(self) -> str:
        self.clear_backend()
        self.epoch += 1
        self.stats.set(instrument.EPOCH_KEY, str(self.epoch))
        time.sleep(2.5 * instrument.FLUSH_INTERVAL)  # every process sees the new epoch
        return str(self.epoch)

    def queued(self) -> int:
        n = self.broker.hlen("unacked")
        for key in self.broker.scan_iter(match="celery*"):
            if self.broker.type(key) == b"list":
                n += self.broker.llen(key)
        return n

    def wait_idle(self, timeout: float = 5.0) -> bool:
        try:
            wait_for(lambda: self.queued() == 0, timeout, "empty queues", interval=0.05)
            return True
        except TimeoutError:
            return False

    def count_done(self, exclude: list[str]) -> int:
        """SUCCESS metas in the backend, minus the workflows' own (``exclude``)."""
        if self.db is not None:
            return len(set(self.db.succeeded()) - set(exclude))
        done = 0
        ex = {f"celery-task-meta-{i}".encode() for i in exclude}
        keys = [
            k for k in self.backend.scan_iter(match="celery-task-meta-*", count=5000) if k not in ex
        ]
        for start in range(0, len(keys), 5000):
            for v in self.backend.mget(keys[start : start + 5000]):
                if v is not None and json.loads(v).get("status") == "SUCCESS":
                    done += 1
        return done

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            os.unlink(self.worker.log.name)
            self.worker = None
        try:
            self.redis.stop()
        finally:
            if self.db is not None:
                self.db.drop()


def _client(args: list[str], timeout: float) -> tuple[dict[str, Any], str]:
    """Run benchmarks.client in a child process; kill it (by pid) past ``timeout``."""
    err = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.client", *args],
        stdout=subprocess.PIPE,
        stderr=err,
        cwd=str(ROOT),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"status": "killed"}, ""
    err.seek(0)
    tail = err.read().decode(errors="replace")[-1500:]
    lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
    if not lines:
        return {"status": "error", "error": f"client exited with {proc.returncode}"}, tail
    return json.loads(lines[-1]), tail


def wait_quiet(env: Env, limit: float) -> float:
    """Wait up to ``limit`` seconds for other processes to leave the CPU (under DISTURBED
    cores over half a second); returns the last load seen."""
    deadline = time.monotonic() + limit
    while True:
        probe = instrument.OtherLoad(env.own_pids())
        time.sleep(0.5)
        other, _ = probe.stop()
        if other < DISTURBED or time.monotonic() > deadline:
            return other


def measure(
    env: Env, spec: str, runner: str, timeout: float, fresh: bool, quiet: float = 0.0
) -> dict[str, Any]:
    shape = parse(spec)
    if fresh or env.worker is None:
        env.restart_worker()
    if quiet:
        wait_quiet(env, quiet)
    epoch = env.reset()
    sampler = instrument.TreeMemorySampler(env.worker.pid)  # type: ignore[union-attr]
    load = instrument.OtherLoad(env.own_pids())
    grace = 30 + shape.tasks / 100  # a submission may outlast the timeout: let it report
    res, tail = _client([runner, spec, "--timeout", str(timeout)], timeout + grace)
    peak_sum, peak_one = sampler.stop()
    other, steal = load.stop(res.get("cpu", 0.0))
    idle = env.wait_idle(5 if res.get("status") == "ok" else 0.5)
    time.sleep(2.5 * instrument.FLUSH_INTERVAL)
    stats = instrument.collect(env.stats, epoch)
    done = env.count_done(res.get("wf_ids") or [])
    row = {
        "spec": spec,
        "key": shape.key,
        "label": shape.label,
        "tasks": shape.tasks,
        "runner": runner,
        "timeout": timeout,
        **res,
        "done": done,
        "worker_rss_start": sampler.start_sum,
        "worker_rss_peak": peak_sum,
        "worker_rss_peak_one": peak_one,
        "stats": stats,
        "idle_after": idle,
        "other_load": other,
        "steal": steal,
    }
    if res.get("status") in ("timeout", "killed"):
        row["wall"] = None
    if res.get("status") != "ok" and tail:
        row["stderr"] = tail
    if res.get("status") != "ok" or not idle:
        env.restart_worker()  # nothing of this run may leak into the next
    return row


def client_cost(spec: str, runner: str) -> dict[str, Any]:
    res, tail = _client([runner, spec, "--client-cost"], 300)
    return {"spec": spec, "runner": runner, **res}


# -- reporting ---------------------------------------------------------------------------------


def _fmt_s(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 100 else f"{x:.0f}"


#: Other processes' load (cores) above which a run is flagged as disturbed.
DISTURBED = 0.15


def _wall(row: dict | None, spread: bool = False) -> str:
    if row is None:
        return "—"
    if row.get("status") == "ok":
        walls = row.get("walls") or []
        mark = " †" if row.get("other_load", 0) > DISTURBED else ""
        if spread and len(walls) > 1:
            return f"{_fmt_s(row['wall'])} s ({_fmt_s(walls[0])}-{_fmt_s(walls[-1])}){mark}"
        return f"{_fmt_s(row['wall'])} s{mark}"
    if row.get("status") in ("timeout", "killed"):
        how = "" if row["status"] == "timeout" else " (submission unfinished)"
        return (
            f"did not finish in {row['timeout']:.0f} s{how}: {row['done']:,}/{row['tasks']:,} done"
        )
    return f"error: {row.get('error', '?')[:80]}"


def _ratio(a: dict | None, b: dict | None) -> str:
    if not a or not b or a.get("status") != "ok" or b.get("status") != "ok":
        return "—"
    return f"{a['wall'] / b['wall']:.2f}x"


KINDS = ("driver msg", "wake msg", "in node", "client")


def _kind(t: dict) -> str:
    kind = t.get("kind")
    if kind is None:  # results.json of an older harness
        kind = "wake msg" if t.get("wake") else "driver msg"
    return "driver msg" if kind == "task" else kind


def _noop(t: dict) -> bool:
    """A run that claimed nothing (busy, stale, done, a retried driver) or planned nothing."""
    if "ticks" in t and t["task"] == "dyrygent.processor":
        return t["ticks"] == 0
    return t["msgs"] == 0


def _ticks(row: dict) -> dict[str, Any]:
    ticks = row["stats"]["ticks"]
    if not ticks:
        return {}
    cpu = sorted(t["cpu"] * 1000 for t in ticks)
    by = [t["bytes"] for t in ticks]
    kinds = {k: 0 for k in KINDS}
    for t in ticks:
        kinds[_kind(t)] = kinds.get(_kind(t), 0) + 1
    return {
        "n": len(ticks),
        "kinds": kinds,
        "noop": sum(1 for t in ticks if _noop(t)),
        "inner": sum(t.get("ticks", 1) for t in ticks),
        "cpu_mean": statistics.fmean(cpu),
        "cpu_p95": cpu[int(0.95 * (len(cpu) - 1))],
        "cpu_max": cpu[-1],
        "cpu_total": sum(cpu) / 1000,
        "bytes_mean": statistics.fmean(by),
        "bytes_max": max(by),
        "self_max": max(t["self_bytes"] for t in ticks),
        "launch_max": max(t["msgs"] for t in ticks),
    }


def _tick_bins(row: dict) -> list[tuple[str, int, float, float, float]]:
    """Ticks binned by how many messages they published: (bin, ticks, mean CPU ms,
    mean bytes, mean bytes of the processor's own messages)."""
    bins = [(0, 0), (1, 1), (2, 10), (11, 50), (51, 150), (151, 10**9)]
    out = []
    for lo, hi in bins:
        ts = [t for t in row["stats"]["ticks"] if lo <= t["msgs"] <= hi]
        if ts:
            name = f"{lo}" if lo == hi else f"{lo}-{hi}" if hi < 10**9 else f">{lo - 1}"
            out.append(
                (
                    name,
                    len(ts),
                    statistics.fmean(t["cpu"] for t in ts) * 1000,
                    statistics.fmean(t["bytes"] for t in ts),
                    statistics.fmean(t["self_bytes"] for t in ts),
                )
            )
    return out


def _runs_col(row: dict) -> str:
    """Successful runs of the workflow's tasks, and how many ran more than once (runs beyond
    the distinct tasks that succeeded)."""
    ran = row["stats"].get("ran")
    short = (
        f"; only {row['done']:,} of {row['tasks']:,} tasks succeeded"
        if row.get("status") == "ok" and row["done"] != row["tasks"]
        else ""
    )
    if ran is None:
        return "—" + short
    dupes = max(0, ran - row["done"])
    return f"{ran:,} ({dupes:,}{' DUPLICATES' if dupes else ''}){short}"


def _mb(b: float) -> str:
    return f"{b / 2**20:.0f}"


def machine() -> dict[str, str]:
    def sh(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.rstrip()
        except OSError:
            return "?"

    from importlib.metadata import version

    return {
        "nproc": sh(["nproc"]),
        "cpu": next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")
            ),
            "?",
        ),
        "free": sh(["free", "-h"]),
        "python": platform.python_version(),
        "celery": version("celery"),
        "kombu": version("kombu"),
        "redis-py": version("redis"),
        "celery-dyrygent": version("celery-dyrygent"),
        "dyrygent": version("dyrygent"),
        "redis-server": sh(["redis-server", "--version"]),
        "git": os.environ.get("BENCH_SOURCE")
        or sh(["git", "-C", str(ROOT), "describe", "--always", "--dirty"]),
        "kernel": platform.release(),
    }


def report(data: dict[str, Any], out: Path) -> str:
    rows = data["runs"]
    by = {(r["spec"], r["runner"]): r for r in rows}
    specs = list(dict.fromkeys(r["spec"] for r in rows))
    floors = {r["tasks"]: r for r in rows if r["spec"].startswith("floor:")}
    m = data["machine"]
    where = (
        "broker and result backend"
        if data.get("backend", "redis") == "redis"
        else "broker), results in Celery's database backend on PostgreSQL "
        f"{data.get('backend_server', '?')} (`db+postgresql+psycopg2://`, a fresh database"
    )
    lines = [
        f"# dyrygent benchmark results ({data['mode']} run)",
        "",
        f"Command: `{data['command']}`; started {data['started']}, took "
        f"{data['duration']:.0f} s; timeout per run {data['timeout']:.0f} s; "
        + (
            "a fresh worker for every run."
            if data["fresh"]
            else "one worker, restarted after a run that did not finish."
        ),
        "",
        f"Machine: {m['nproc']} cores ({m['cpu']}), kernel {m['kernel']}, Python {m['python']}, "
        f"celery {m['celery']}, kombu {m['kombu']}, redis-py {m['redis-py']}, "
        f"{m['redis-server'].split(' sha')[0]}, celery-dyrygent {m['celery-dyrygent']}, "
        f"dyrygent {m['dyrygent']} (git {m['git']}).",
        "",
        "```",
        m["free"],
        "```",
        "",
        f"One `celery worker -P prefork -c 2` on a private redis-server ({where}); tasks are "
        "`bench.noop`. dyrygent's processor runs with min_interval="
        f"{data['intervals'][0]}, max_interval={data['intervals'][1]}; celery-dyrygent with "
        "its defaults. Ratios are wall time over native Celery's on the same shape, and over "
        "the floor (as many independent noop tasks, one publish each) where it was measured. "
        f"† marks a run during which other processes on the machine used over {DISTURBED} of "
        "a core (CPU time not accounted for by the worker, redis-server, the harness and the "
        "client): its time is suspect.",
        "",
        "## Wall time",
        "",
        "| shape | tasks | native Celery | celery-dyrygent 0.8.0 | dyrygent | dyrygent / native "
        "| dyrygent / floor | celery-dyrygent / native |",
        "|---|---:|---|---|---|---:|---:|---:|",
    ]
    for spec in specs:
        nat, cd, dy = (by.get((spec, r)) for r in RUNNERS)
        first = nat or cd or dy
        assert first is not None
        fl = floors.get(first["tasks"]) if not spec.startswith("floor") else None
        lines.append(
            f"| {first['label']} | {first['tasks']:,} | {_wall(nat)} | {_wall(cd)} | "
            f"{_wall(dy)} | {_ratio(dy, nat)} | {_ratio(dy, fl)} | {_ratio(cd, nat)} |"
        )
    lines += [
        "",
        "## Messages, ticks, memory",
        "",
        "Task runs: successful runs of the workflow's own tasks counted in the worker "
        "(task_success), against the distinct tasks that succeeded (SUCCESS metas): more runs "
        "than tasks means some ran twice. "
        "Messages: task messages published by anyone (client, nodes, processors); size is the "
        "serialized body (the Redis transport adds base64, x4/3, and ~1-2 KiB of headers). "
        "Processor runs: celery-dyrygent's are runs of its `workflow-processor` task; "
        "dyrygent's are `Processor.run` (a processor message: the driver, or a wake-up) and "
        "`Processor.tick_here` (a tick inside the worker that just ran a node, in its "
        "task_postrun, or in the client at submit); a run may tick several times in a row. "
        "No-op runs claimed or planned nothing (busy, stale, finished, a driver retried). CPU "
        "is the process's CPU time during the run; bytes are what it published (nodes and its "
        "own messages); own msg is the largest message a processor sent to itself. Worker "
        "RSS: main process + pool, peak during the run (start in parentheses). Runs under "
        f"{REPEAT_BELOW:.0f} s were made {data.get('repeat', 1)} times: the median run is shown, "
        "with the range of wall times.",
        "",
        "| shape | runner | wall | submit s | task runs (duplicates) | msgs | largest msg B "
        "(task) | processor runs "
        "(driver msg / wake msg / in node / client) | no-op runs | CPU ms per run mean / p95 / "
        "max | processor CPU s | bytes per run mean / max | own msg max B "
        "| worker RSS MB peak (start) | other load, cores |",
        "|---|---|---|---:|---|---:|---|---|---:|---|---:|---|---:|---|---:|",
    ]
    for r in rows:
        st = r["stats"]
        t = _ticks(r)
        tick_cols = (
            (
                f"{t['n']:,} ({' / '.join(str(t['kinds'][k]) for k in KINDS)}) | "
                f"{t['noop']:,} | {t['cpu_mean']:.2f} / {t['cpu_p95']:.2f} / "
                f"{t['cpu_max']:.1f} | {t['cpu_total']:.2f} | {t['bytes_mean']:,.0f} / "
                f"{t['bytes_max']:,} | {t['self_max']:,}"
            )
            if t
            else "— | — | — | — | — | —"
        )
        lines.append(
            f"| {r['label']} | {r['runner']} | {_wall(r, True)} | {_fmt_s(r.get('submit'))} | "
            f"{_runs_col(r)} | {st['n']:,} | {st['max']:,} ({st['max_task']}) | {tick_cols} | "
            f"{_mb(r['worker_rss_peak'])} ({_mb(r['worker_rss_start'])}) | "
            f"{r['other_load']:.2f} |"
            if "other_load" in r
            else f"{_mb(r['worker_rss_peak'])} ({_mb(r['worker_rss_start'])}) | — |"
        )
    big = [r for r in rows if r["runner"] == "dyrygent" and r["stats"]["ticks"]]
    if big:
        r = max(big, key=lambda r: r["tasks"])
        lines += [
            "",
            f"## dyrygent processor runs by messages published ({r['label']})",
            "",
            "| messages in run | runs | CPU ms mean | bytes mean | own msg bytes mean |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, n, cpu, b, own in _tick_bins(r):
            lines.append(f"| {name} | {n} | {cpu:.2f} | {b:,.0f} | {own:,.0f} |")
    if data.get("client"):
        lines += [
            "",
            "## Client build + encode (no publish)",
            "",
            "Building the canvas objects (the same for every runner), then the runner's "
            "payload from them: dyrygent `add_celery_canvas` + `freeze` + `encode_graph`; "
            "celery-dyrygent `add_celery_canvas` + `freeze` + JSON of the processor's "
            "kwargs; native `freeze()`. Times from a plain pass; memory from a second pass "
            "under tracemalloc: the canvas's size, and the peak of the payload step above "
            "it.",
            "",
            "| shape | runner | canvas s | payload s | canvas MB | payload peak MB "
            "| payload bytes |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for c in data["client"]:
            if c.get("status") != "ok":
                lines.append(
                    f"| {parse(c['spec']).label} | {c['runner']} | {c.get('status')} | | | | |"
                )
                continue
            lines.append(
                f"| {parse(c['spec']).label} | {c['runner']} | {c['canvas_s']:.3f} | "
                f"{c['seconds']:.3f} | {c['canvas_mb']:.1f} | {c['peak_mb']:.1f} | "
                f"{c['payload']:,} |"
            )
    lines += ["", "## Goals (reported, not asserted)", ""] + goals(data)
    lines += ["", "![wall time against size](scaling.png)", ""]
    text = "\n".join(lines) + "\n"
    (out / "results.md").write_text(text)
    return text


def goals(data: dict[str, Any]) -> list[str]:
    rows = data["runs"]
    by = {(r["spec"], r["runner"]): r for r in rows}
    floors = {r["tasks"]: r for r in rows if r["spec"].startswith("floor:")}
    out = ["| goal | measured | met |", "|---|---|---|"]

    def ratio(a: dict | None, b: dict | None) -> float | None:
        if a and b and a.get("status") == "ok" and b.get("status") == "ok":
            return a["wall"] / b["wall"]
        return None

    def add(goal: str, value: float | None, limit: float, unit: str = "x") -> None:
        if value is None:
            out.append(f"| {goal} | not measured / did not finish | no |")
        else:
            shown = f"{value:,.0f}" if unit == " B" else f"{value:.2f}"
            out.append(f"| {goal} | {shown}{unit} | {'yes' if value <= limit else 'no'} |")

    dy = [r for r in rows if r["runner"] == "dyrygent"]
    for r in dy:  # the big ones against the floor, the rest against native
        nat = by.get((r["spec"], "native"))
        if r["spec"].startswith("fanout:"):  # its first task makes the list: n + 1 tasks
            add(f"{r['label']} within 1.3x the floor", ratio(r, floors.get(r["tasks"] - 1)), 1.3)
        elif r["tasks"] >= 10000:
            add(f"{r['label']} within 1.5x the floor", ratio(r, floors.get(r["tasks"])), 1.5)
        elif r["spec"].startswith("chain:"):
            add(f"{r['label']} within 2x native", ratio(r, nat), 2.0)
        elif r["spec"].startswith(("group:", "chord:")) and r["tasks"] >= 1000:
            add(f"{r['label']} within 1.2x native", ratio(r, nat), 1.2)
        else:
            add(f"{r['label']} within 1.5x native", ratio(r, nat), 1.5)
    if any("ran" in r["stats"] for r in dy):
        extra = {r["label"]: max(0, r["stats"].get("ran", 0) - r["done"]) for r in dy}
        dupes = sum(extra.values())
        where = f" (most: {max(extra, key=lambda k: extra[k])})" if dupes else ""
        out.append(
            f"| no task run twice by dyrygent (all shapes) | {dupes:,} extra runs{where} "
            f"| {'yes' if dupes == 0 else 'no'} |"
        )
    biggest = max((r["stats"]["max"] for r in dy), default=None)
    add(
        "no dyrygent-run broker message over 64 KiB (largest body)",
        None if biggest is None else biggest / 1024,
        64,
        " KiB",
    )
    ten = [r for r in dy if r["tasks"] >= 10000 and r["stats"]["ticks"]]
    for r in ten:
        ts = [t for t in r["stats"]["ticks"] if 50 <= t["msgs"] <= 150]
        if ts:
            add(
                f"tick CPU, {r['label']}, ticks launching 50-150 nodes (mean)",
                statistics.fmean(t["cpu"] for t in ts) * 1000,
                5,
                " ms",
            )
        add(
            f"largest own (processor) message, {r['label']}, bytes",
            max(t["self_bytes"] for t in r["stats"]["ticks"]),
            1024,
            " B",
        )
    for c in data.get("client") or []:
        if c["runner"] == "dyrygent" and c.get("status") == "ok" and "10000" in c["spec"]:
            add(
                "client build+encode of 10k nodes (canvas excluded), seconds",
                c["seconds"],
                0.3,
                " s",
            )
            add(
                "client build+encode of 10k nodes, seconds, canvas included",
                c["seconds"] + c["canvas_s"],
                0.3,
                " s",
            )
            add(
                "client build+encode of 10k nodes, tracemalloc peak, canvas included",
                c["peak_mb"] + c["canvas_mb"],
                30,
                " MB",
            )
    refs = [
        (
            "native flat group of 10,000",
            next((r for r in rows if r["spec"] == "floorgroup:10000"), None),
        ),
        ("dyrygent on a flat group of 10,000", by.get(("group:10000", "dyrygent"))),
    ]
    for r in ten:
        if not r["spec"].startswith("layered:"):
            continue
        for name, ref in refs:
            if ref and ref.get("worker_rss_peak"):
                add(
                    f"worker peak RSS on the 10k layered workflow vs {name}",
                    r["worker_rss_peak"] / ref["worker_rss_peak"],
                    1.2,
                )
    return out


def plot(data: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = data["runs"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series = [
        ("native", "native Celery", "o-"),
        ("celery-dyrygent", "celery-dyrygent 0.8.0", "s-"),
        ("dyrygent", "dyrygent", "D-"),
    ]
    for runner, label, style in series:
        pts = sorted(
            (r["tasks"], r)
            for r in rows
            if r["spec"].startswith("layered:") and r["runner"] == runner
        )
        ok = [(n, r["wall"]) for n, r in pts if r.get("status") == "ok"]
        shift = {"native": 0.92, "celery-dyrygent": 1.0, "dyrygent": 1.08}[runner]
        dnf = [
            (n * shift, r["timeout"]) for n, r in pts if r.get("status") in ("timeout", "killed")
        ]
        if not ok and not dnf:
            continue
        line = ax.plot([p[0] for p in ok], [p[1] for p in ok], style, label=label)[0]
        if dnf:
            ax.plot(
                [p[0] for p in dnf],
                [p[1] for p in dnf],
                "^",
                mfc="none",
                color=line.get_color(),
                ms=10,
                label=f"{label}: did not finish (at timeout)",
            )
    fl = sorted(
        (r["tasks"], r["wall"])
        for r in rows
        if r["spec"].startswith("floor:") and r.get("status") == "ok"
    )
    if fl:
        ax.plot([p[0] for p in fl], [p[1] for p in fl], "k--", label="floor: independent tasks")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tasks in the workflow (layered: chain of ~sqrt(n) chords)")
    ax.set_ylabel("wall time, s")
    backend = "Redis" if data.get("backend", "redis") == "redis" else "Redis + PostgreSQL results"
    ax.set_title(f"Wall time against workflow size (2 cores, prefork -c 2, {backend})")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "scaling.png", dpi=110)
    plt.close(fig)


def _from_snapshot(argv: list[str], out: Path) -> int:
    """Copy the sources, then run this command again from the copy (--no-snapshot)."""
    snap = Path(tempfile.mkdtemp(prefix="dyrygent-bench-src-"))
    try:
        for d in ("dyrygent", "tests", "benchmarks"):
            shutil.copytree(
                ROOT / d, snap / d, ignore=shutil.ignore_patterns("__pycache__", "out", "*.pyc")
            )
        rev = (
            subprocess.run(
                ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                capture_output=True,
                text=True,
            ).stdout.strip()
            or "?"
        )
        print(f"running from a snapshot of {ROOT} at {rev}: {snap}", flush=True)
        args = [a for a in argv if a not in ("--snapshot", "--no-snapshot")]
        env = {
            **os.environ,
            "PYTHONPATH": str(snap),
            "BENCH_SOURCE": f"{rev}, copied at start",
            "BENCH_COMMAND": " ".join([".venv/bin/python -m benchmarks.run", *argv]),
        }
        return subprocess.run(
            [sys.executable, "-m", "benchmarks.run", *args, "--no-snapshot", "--out", str(out)],
            cwd=str(snap),
            env=env,
        ).returncode
    finally:
        shutil.rmtree(snap, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes, for CI (under a minute)")
    p.add_argument("--timeout", type=float, help="seconds per run (full 300, quick 5)")
    p.add_argument(
        "--repeat",
        type=int,
        help=f"runs of each shape that takes under "
        f"{REPEAT_BELOW:.0f} s; the median is reported (full 3, quick 1)",
    )
    p.add_argument(
        "--quiet-wait",
        type=float,
        help="before each run, wait up to this many "
        "seconds for other processes to leave the CPU (full 60, quick 0)",
    )
    p.add_argument(
        "--only",
        action="append",
        metavar="SPEC",
        help="run only these shape specs (e.g. layered:10000); repeatable",
    )
    p.add_argument("--runners", default=",".join(RUNNERS), help="comma-separated runners")
    p.add_argument(
        "--fresh-worker",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a new worker for every run (default: full yes, quick no)",
    )
    p.add_argument(
        "--backend",
        choices=("redis", "postgresql"),
        default="redis",
        help="result backend: the private Redis (default), or Celery's database "
        "backend on the PostgreSQL server at 127.0.0.1:5432 (a fresh database, "
        "dropped at the end; the broker stays the private Redis)",
    )
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument(
        "--report-only",
        action="store_true",
        help="rebuild results.md and scaling.png from results.json",
    )
    p.add_argument(
        "--snapshot",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run from a copy of dyrygent/, tests/ and benchmarks/ taken at start, "
        "so edits made meanwhile cannot mix versions (default: full yes, "
        "quick no)",
    )
    a = p.parse_args(argv)
    a.out = a.out.resolve()
    a.out.mkdir(parents=True, exist_ok=True)
    if (a.snapshot if a.snapshot is not None else not a.quick) and not a.report_only:
        return _from_snapshot(argv if argv is not None else sys.argv[1:], a.out)
    if a.report_only:
        saved = json.loads((a.out / "results.json").read_text())
        print(report(saved, a.out))
        plot(saved, a.out)
        return 0
    mode = "quick" if a.quick else "full"
    timeout = a.timeout or (5.0 if a.quick else 300.0)
    repeat = a.repeat or (1 if a.quick else 3)
    quiet = a.quiet_wait if a.quiet_wait is not None else (0.0 if a.quick else 60.0)
    fresh = (not a.quick) if a.fresh_worker is None else a.fresh_worker
    runners = [r.strip() for r in a.runners.split(",") if r.strip()]
    plan = [
        (spec, [r for r in rs if r in runners])
        for spec, rs in (QUICK if a.quick else FULL)
        if not a.only or spec in a.only
    ]
    if a.only:
        known = {spec for spec, _ in plan}
        plan += [
            (spec, [r for r in runners if _runs(spec, r)]) for spec in a.only if spec not in known
        ]
    from benchmarks.benchapp import dyrygent_intervals

    started = time.time()
    data: dict[str, Any] = {
        "mode": mode,
        "command": os.environ.get("BENCH_COMMAND")
        or " ".join(
            [".venv/bin/python -m benchmarks.run", *(argv if argv is not None else sys.argv[1:])]
        ),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "timeout": timeout,
        "fresh": fresh,
        "repeat": repeat,
        "intervals": list(dyrygent_intervals()),
        "machine": machine(),
        "runs": [],
        "client": [],
        "duration": 0.0,
        "backend": a.backend,
    }
    env = Env(a.backend)
    if env.db is not None:
        data["backend_server"] = env.db.version
    try:
        for spec, rs in plan:
            for runner in rs:
                t = time.time()
                row = measure(env, spec, runner, timeout, fresh, quiet)
                if row.get("status") == "ok" and row["wall"] < REPEAT_BELOW and repeat > 1:
                    rows = [row] + [
                        measure(env, spec, runner, timeout, fresh, quiet) for _ in range(repeat - 1)
                    ]
                    rows = [r for r in rows if r.get("status") == "ok"]
                    walls = sorted(r["wall"] for r in rows)
                    row = sorted(rows, key=lambda r: r["wall"])[(len(rows) - 1) // 2]
                    row["walls"] = walls
                data["runs"].append(row)
                data["duration"] = time.time() - started
                (a.out / "results.json").write_text(json.dumps(data, indent=1))
                print(
                    f"[{time.time() - started:6.0f}s] {row['label']:<60} {runner:<16} "
                    f"{_wall(row)}  ({time.time() - t:.1f}s)",
                    flush=True,
                )
        sizes = SCALING_QUICK if a.quick else SCALING_FULL
        for n in sizes:
            spec = f"layered:{n}"
            if a.only and spec not in a.only:
                continue
            for runner in runners:
                c = client_cost(spec, runner)
                data["client"].append(c)
                print(
                    f"[{time.time() - started:6.0f}s] client cost {spec} {runner}: "
                    f"{c.get('seconds', 0):.3f} s, {c.get('peak_mb', 0):.1f} MB",
                    flush=True,
                )
    finally:
        env.stop()
    data["duration"] = time.time() - started
    (a.out / "results.json").write_text(json.dumps(data, indent=1))
    text = report(data, a.out)
    plot(data, a.out)
    print(text)
    print(
        f"wrote {a.out / 'results.md'} and {a.out / 'scaling.png'} in "
        f"{data['duration']:.0f} s ({env.worker_starts} worker starts)"
    )
    broken = [r for r in data["runs"] if r.get("status") == "error"]
    for r in broken:  # the harness or a runner broke (not a slow run): fail, e.g. in CI
        print(
            f"FAILED: {r['label']} / {r['runner']}: {r.get('error', r['status'])}", file=sys.stderr
        )
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
