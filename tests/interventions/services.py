"""Real processes for end-to-end tests of command delivery: a private redis-server, a Celery
worker, a uvicorn ASGI server, and a webhook receiver that checks Standard Webhooks signatures.

Plain helpers without pytest: `conftest.py` wraps them in fixtures, and `bench/intervention.py`
starts the same processes. Every child runs in its own process group, so that killing it
(`kill()`, SIGKILL to the group) also kills what it forked (prefork pool, embedded beat), as a
crashed machine would; its output goes to a log file that a failing test shows.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

from interventions import signing

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv's bin/, where celery and uvicorn live
REDIS_SERVER = os.environ.get("FLIGHTDECK_REDIS_SERVER") or shutil.which("redis-server") or (
    "/usr/bin/redis-server"
)

# Timeouts shortened so that faults recover in seconds, the same in the test process (through
# Django settings) and in the worker and server processes (through the environment).
FAST_TIMEOUTS = {
    "CELERY_BROKER_VISIBILITY_TIMEOUT": 5,
    "COMMAND_STUCK_AFTER_SECONDS": 2,
    "COMMAND_CLAIM_LEASE_SECONDS": 3,
    "COMMAND_RETRY_BACKOFF_BASE_SECONDS": 1,
    "COMMAND_SWEEP_INTERVAL_SECONDS": 1,
    "WEBHOOK_TIMEOUT_SECONDS": 2,
}
LOOPBACK_NETWORKS = ["127.0.0.1/32"]


def free_port() -> int:
    """A TCP port nobody listens on now (the OS picks it; a race with another process taking
    it before the child binds is possible but rare, and fails loudly at start-up)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(predicate: Callable[[], object], *, timeout: float = 30.0,
               interval: float = 0.05, what: str = "the condition"):
    """Poll `predicate` until it returns something truthy, and return that; AssertionError
    naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def database_url(settings_dict: dict) -> str:
    """A DATABASE_URL for a Django PostgreSQL connection's settings (the test database's name
    is only known once pytest-django has created it)."""
    user = quote(settings_dict.get("USER") or "", safe="")
    password = quote(settings_dict.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    return f"postgres://{credentials}{host}{port}/{quote(settings_dict['NAME'], safe='')}"


def app_environment(*, database_url: str, redis_url: str, var_dir: Path, secret_key: str,
                    fast: bool = True, **extra: str) -> dict[str, str]:
    """The environment of a worker or server process: this one's, pointed at the given
    database and Redis, with the same SECRET_KEY (sessions, sealed webhook secrets)."""
    env = dict(os.environ)
    env.update(
        DEBUG="1",
        SECRET_KEY=secret_key,
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        CELERY_BROKER_URL=redis_url,
        FLIGHTDECK_VAR_DIR=str(var_dir),
        ALLOWED_HOSTS="127.0.0.1",
        PYTHONUNBUFFERED="1",
        DJANGO_SETTINGS_MODULE="dashboard.settings",
    )
    if fast:
        env.update({name: str(value) for name, value in FAST_TIMEOUTS.items()})
        env["WEBHOOK_ALLOWED_NETWORKS"] = ",".join(LOOPBACK_NETWORKS)
    env.update(extra)
    return env


class ServiceProcess:
    """A child process in its own process group, writing to `log_path`."""

    name = "process"

    def __init__(self, argv: list[str], *, env: dict[str, str], log_path: Path):
        self.argv = argv
        self.env = env
        self.log_path = Path(log_path)
        self.process: subprocess.Popen | None = None

    def start(self) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n--- start: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(  # noqa: S603 - our own binaries, fixed arguments
                self.argv, env=self.env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check_running(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(
                f"{self.name} exited with status {self.process.returncode}:\n{self.log_tail()}"
            )

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)

    def kill(self) -> None:
        """SIGKILL to the whole group: no clean-up, no acks, as in a crash."""
        if self.process is None:
            return
        self._signal_group(signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, then SIGKILL for what is still there after `timeout` seconds."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        # Children of the group (pool processes) may outlive the leader.
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 150) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


class RedisServer(ServiceProcess):
    """A redis-server of our own, without persistence: stopping it loses every queue."""

    name = "redis-server"

    def __init__(self, directory: Path, port: int | None = None):
        self.directory = Path(directory)
        self.port = port or free_port()
        super().__init__(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory), "--daemonize", "no"],
            env=dict(os.environ), log_path=self.directory / "redis.log",
        )

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self):
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)

    def start(self, timeout: float = 15) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        super().start()

        def answers() -> bool:
            self.check_running()
            try:
                with socket.create_connection(("127.0.0.1", self.port), 1) as sock:
                    sock.sendall(b"PING\r\n")
                    return sock.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        wait_until(answers, timeout=timeout, what=f"redis-server on port {self.port}")
        return self

    def restart(self) -> RedisServer:
        """Stop and start again on the same port: everything it held is gone."""
        self.stop()
        return self.start()


class CeleryWorker(ServiceProcess):
    """`celery -A dashboard worker` on both command queues, prefork, optionally with an
    embedded beat that runs the sweeper every COMMAND_SWEEP_INTERVAL_SECONDS."""

    name = "celery worker"

    def __init__(self, *, env: dict[str, str], log_path: Path, beat: bool = True,
                 concurrency: int = 2, node_name: str | None = None):
        argv = [
            str(BIN / "celery"), "-A", "dashboard", "worker", "-Q", "commands,slow",
            "-c", str(concurrency), "--pool=prefork", "--without-heartbeat", "--without-gossip",
            "--without-mingle", "-l", "info",
            "-n", node_name or f"flightdeck-test-{os.getpid()}-{time.monotonic_ns()}@%h",
        ]
        if beat:
            schedule = Path(log_path).with_suffix(".beat-schedule")
            argv += ["-B", "-s", str(schedule)]
        super().__init__(argv, env=env, log_path=log_path)
        self._log_offset = 0

    def start(self, timeout: float = 60) -> CeleryWorker:
        # Only this start's lines count as "ready" (a log may hold a previous worker's).
        self._log_offset = len(self.log_text())
        super().start()

        def ready() -> bool:
            self.check_running()
            return " ready." in self.log_text()[self._log_offset:]

        wait_until(ready, timeout=timeout, interval=0.1, what="the Celery worker to be ready")
        return self


class AsgiServer(ServiceProcess):
    """`uvicorn dashboard.asgi:application`, one worker process."""

    name = "uvicorn"

    def __init__(self, *, env: dict[str, str], log_path: Path, port: int | None = None,
                 access_log: bool = True):
        self.port = port or free_port()
        argv = [
            str(BIN / "uvicorn"), "dashboard.asgi:application", "--host", "127.0.0.1",
            "--port", str(self.port), "--workers", "1", "--lifespan", "off",
            "--log-level", "info" if access_log else "warning",
        ]
        if not access_log:
            argv.append("--no-access-log")
        super().__init__(argv, env=env, log_path=log_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> AsgiServer:
        super().start()

        def answers() -> bool:
            self.check_running()
            try:
                status, _, _ = request(self.url, "GET", "/accounts/login/", timeout=5)
            except OSError:
                return False
            return status == 200

        wait_until(answers, timeout=timeout, interval=0.1, what=f"uvicorn on port {self.port}")
        return self


def request(base_url: str, method: str, path: str, *, body: bytes | dict | None = None,
            headers: dict[str, str] | None = None,
            timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request on a fresh connection: (status, headers in lower case, body)."""
    host_port = base_url.split("://", 1)[1]
    host, _, port = host_port.partition(":")
    connection = http.client.HTTPConnection(host, int(port or 80), timeout=timeout)
    headers = dict(headers or {})
    if isinstance(body, dict):
        body = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return (
            response.status,
            {name.lower(): value for name, value in response.getheaders()},
            response.read(),
        )
    finally:
        connection.close()


class WebhookReceiver:
    """An agent's webhook endpoint on 127.0.0.1, as the docs ask receivers to behave: it
    refuses (401) a request whose signature does not verify or whose timestamp is stale, and
    applies each `webhook-id` once, answering 200 to repeats without applying them again.

    `hold_first()` makes the first request it applies wait until `release()` (a delivery that
    hangs); `stop()` and `start()` take it down and bring it back on the same port.
    """

    def __init__(self, secret: str, port: int | None = None):
        self.secret = secret
        self.port = port or free_port()
        self.received: list[str] = []  # webhook-id of every verified request, repeats included
        self.applied: dict[str, dict] = {}  # webhook-id -> body, each applied once
        self.refused = 0
        self.first_arrived = threading.Event()
        self._hold = False
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/flightdeck"

    def hold_first(self) -> None:
        self._hold = True

    def release(self) -> None:
        self._released.set()

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = receiver.handle(
                    {name.lower(): value for name, value in self.headers.items()}, body
                )
                with contextlib.suppress(OSError):  # the sender may be gone (killed)
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def log_message(self, format, *args):
                pass  # no access log on the test output

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Close the listening socket: connections are refused until `start()`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        if not signing.verify(self.secret, headers, body, now=int(time.time())):
            with self._lock:
                self.refused += 1
            return 401
        message_id = headers["webhook-id"]
        with self._lock:
            self.received.append(message_id)
            first_time = message_id not in self.applied
            if first_time:
                self.applied[message_id] = json.loads(body)
        if first_time and self._hold and not self.first_arrived.is_set():
            self.first_arrived.set()
            self._released.wait(60)
        return 200
