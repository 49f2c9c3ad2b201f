"""Real servers and real workers for integration tests and benchmarks.

Everything started here is ended by pid (never by name), in the finaliser of whoever
started it. Waits are on conditions (a PING answered, a task round trip), each bounded.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
WORKER_APP_DIR = ROOT / "tests" / "integration"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> Any:
    """Call ``condition`` until it returns a truthy value; raise TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # the condition's own errors mean "not yet"
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc!r})")


class RedisServer:
    """A private redis-server on a free port, without persistence unless asked."""

    def __init__(self, persist: bool = False) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="dyrygent-redis-")
        self.args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            self.dir,
            "--save",
            "",
            "--appendonly",
            "yes" if persist else "no",
            "--appendfsync",
            "always",
        ]
        import redis

        self.client = redis.Redis(port=self.port)
        self._start()

    def _start(self) -> None:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for(self.client.ping, 10, f"redis-server on port {self.port}")

    def shutdown(self) -> None:
        """Stop the server as an operator would (SHUTDOWN: it persists, then exits)."""
        try:
            self.client.shutdown()
        except Exception:  # the connection drops as the server exits
            pass
        self.proc.wait(10)

    def start_again(self) -> None:
        """Start the server again on the same port and data directory."""
        self._start()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class RabbitVhost:
    """A fresh vhost on the RabbitMQ server at 127.0.0.1:5672 (guest/guest)."""

    def __init__(self) -> None:
        self.name = f"dyrygent-test-{os.getpid()}-{int(time.time() * 1000)}"
        subprocess.run(
            ["rabbitmqctl", "add_vhost", self.name], check=True, capture_output=True, timeout=60
        )
        subprocess.run(
            ["rabbitmqctl", "set_permissions", "-p", self.name, "guest", ".*", ".*", ".*"],
            check=True,
            capture_output=True,
            timeout=60,
        )

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:5672/{self.name}"

    def delete(self) -> None:
        subprocess.run(["rabbitmqctl", "delete_vhost", self.name], capture_output=True, timeout=60)

    @staticmethod
    def available() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", 5672), timeout=1):
                pass
        except OSError:
            return False
        return shutil.which("rabbitmqctl") is not None


RABBIT_BIN = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


class RabbitServer:
    """A private rabbitmq-server node on free ports, with its own data directory, cookie
    and (empty) plugin list, so a test can stop and restart a broker without touching the
    machine's shared one. Started in its own process group; ended by pid."""

    def __init__(self) -> None:
        self.port, self.dist_port = free_port(), free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="dyrygent-rabbit-"))
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq.conf").write_text("loopback_users = none\n")
        (self.dir / "rabbitmq-env.conf").write_text("")  # not the machine's NODENAME
        self.node = f"dyrygent{os.getpid()}x{self.port}@localhost"
        self.env = {
            **os.environ,
            "HOME": str(self.dir),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq"),
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": str(self.dir / "pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        self.proc: subprocess.Popen | None = None
        self._start()

    @staticmethod
    def available() -> bool:
        return RABBIT_BIN.exists()

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def _start(self) -> None:
        log = open(self.dir / "stdout.log", "ab")
        self.proc = subprocess.Popen(
            [str(RABBIT_BIN)],
            env=self.env,
            cwd=str(self.dir),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

        def accepting() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited: {self.tail()}")
            import kombu

            with kombu.Connection(self.url, connect_timeout=1) as conn:
                conn.connect()
            return True

        wait_for(accepting, 60, f"rabbitmq-server on port {self.port}", interval=0.2)

    def shutdown(self) -> None:
        """Stop the node as an operator would (SIGTERM: it closes its connections,
        keeps durable queues and persistent messages on disk, and exits)."""
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        self.proc.wait(30)
        self._wait_group_gone()

    def start_again(self) -> None:
        """Start the node again on the same ports and data directory."""
        self._start()

    def _wait_group_gone(self) -> None:
        assert self.proc is not None
        pgid = self.proc.pid

        def gone() -> bool:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return True
            return False

        wait_for(gone, 30, "the rabbitmq-server processes to exit", interval=0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.shutdown()
            except (subprocess.TimeoutExpired, TimeoutError):
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def tail(self, n: int = 20) -> str:
        try:
            return "\n".join((self.dir / "stdout.log").read_text().splitlines()[-n:])
        except OSError:
            return ""


class PostgresDatabase:
    """A fresh database on the PostgreSQL server at 127.0.0.1:5432 (trust auth)."""

    ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"

    def __init__(self) -> None:
        import sqlalchemy as sa

        self.name = f"dyrygent_{os.getpid()}_{int(time.time() * 1000)}"
        self._admin = sa.create_engine(self.ADMIN, isolation_level="AUTOCOMMIT")
        with self._admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{self.name}"'))

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:5432/{self.name}"

    def drop(self) -> None:
        import sqlalchemy as sa

        with self._admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self._admin.dispose()

    @staticmethod
    def available() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", 5432), timeout=1):
                pass
            import psycopg2  # noqa: F401
        except (OSError, ImportError):
            return False
        return True


class Worker:
    """A `celery worker` subprocess running tests/integration/workerapp.py, in its own
    process group so a test can SIGKILL the whole worker or one pool child."""

    def __init__(
        self,
        env: dict[str, str],
        concurrency: int = 2,
        pool: str = "prefork",
        app: str = "workerapp",
        extra: tuple[str, ...] = (),
        name: str = "w1",
    ) -> None:
        self.log = tempfile.NamedTemporaryFile(
            prefix=f"dyrygent-{name}-", suffix=".log", delete=False
        )
        full_env = {
            **os.environ,
            **env,
            "PYTHONPATH": os.pathsep.join([str(WORKER_APP_DIR), str(ROOT)]),
        }
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            app,
            "worker",
            "-P",
            pool,
            "-c",
            str(concurrency),
            "-l",
            "info",
            "-n",
            f"{name}-{os.getpid()}@%h",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            *extra,
        ]
        self.proc = subprocess.Popen(
            cmd,
            env=full_env,
            cwd=str(WORKER_APP_DIR),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def children(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def wait_ready(self, app: Any, timeout: float = 60) -> None:
        def answered() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}: {self.tail()}")
            return app.send_task("t.ping").get(timeout=2) == "pong"

        wait_for(answered, timeout, "the worker to answer a ping task", interval=0.2)

    def kill(self) -> None:
        """SIGKILL the worker and its pool children (the whole process group)."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
            except ProcessLookupError:
                pass
        self.log.close()

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(Path(self.log.name).read_text().splitlines()[-n:])
        except OSError:
            return ""


class Ledger:
    """What the test tasks recorded (see tests/integration/workerapp.py): one entry per run,
    ``[id, name, args, kwargs, pid, started]``, and one end per run that returned or raised.
    Times are the ledger Redis server's clock (``TIME``), never a worker's."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def clear(self) -> None:
        self.client.delete(
            "ledger", "ledger:ends", "processor", "processor:done", "publish:tried", "publish:done"
        )

    def handled(self, *message_ids: str) -> bool:
        """Whether a worker has ended a processor run for each of ``message_ids``."""
        done = {x.decode() for x in self.client.lrange("processor:done", 0, -1)}
        return set(message_ids) <= done

    def starts(self) -> dict[str, list[float]]:
        """task id -> the start time of each of its runs, in order."""
        out: dict[str, list[float]] = {}
        for e in self.entries():
            out.setdefault(e[0], []).append(e[5])
        return out

    def ends(self) -> dict[str, list[float]]:
        """task id -> the end time of each of its runs that returned or raised, in order."""
        out: dict[str, list[float]] = {}
        for raw in self.client.lrange("ledger:ends", 0, -1):
            task_id, ended = json.loads(raw)
            out.setdefault(task_id, []).append(ended)
        return out

    def entries(self) -> list[list]:
        return [json.loads(x) for x in self.client.lrange("ledger", 0, -1)]

    def runs(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for e in self.entries():
            counts[e[0]] = counts.get(e[0], 0) + 1
        return counts

    def args_of(self) -> dict[str, list]:
        """task id -> [args, kwargs] of its (first) run."""
        out: dict[str, list] = {}
        for e in self.entries():
            out.setdefault(e[0], [e[2], e[3]])
        return out
