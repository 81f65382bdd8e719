"""HTTP calls to Flightdeck with the agent's token: ingest, reading runs back, the command
channel and acknowledgements (docs/api.md). One connection per call, so a thread can cut
another's long-poll short by closing its socket."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import threading
from urllib.parse import parse_qsl, urlencode, urlsplit

from flightdeck_sdk.version import __version__


class Unavailable(Exception):
    """Flightdeck could not be reached or answered with a temporary error: try again later."""


class Refused(Exception):
    """Flightdeck answered with a permanent error for this request (4xx other than 408/429)."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


RETRYABLE = {408, 425, 429, 500, 502, 503, 504}


class Transport:
    def __init__(self, url: str, token: str, timeout: float = 30.0):
        parts = urlsplit(url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"FLIGHTDECK_URL must be an http(s) address, not {url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port
        self.base_path = parts.path
        self.token = token
        self.timeout = timeout
        self._open: set[http.client.HTTPConnection] = set()
        self._open_lock = threading.Lock()

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def call(self, method: str, path: str, body: dict | None = None, *,
             query: dict | None = None, timeout: float | None = None) -> tuple[int, dict]:
        """(status, decoded JSON body) for a 2xx answer; raises Unavailable or Refused."""
        target = self.base_path + path + (f"?{urlencode(query)}" if query else "")
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json",
                   "User-Agent": f"flightdeck-sdk/{__version__}"}
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
        connection = self._connection(timeout or self.timeout)
        with self._open_lock:
            self._open.add(connection)
        try:
            connection.request(method, target, body=data, headers=headers)
            response = connection.getresponse()
            raw = response.read()
            status = response.status
        except (OSError, http.client.HTTPException) as exc:
            raise Unavailable(f"{method} {path}: {exc.__class__.__name__}: {exc}") from exc
        finally:
            with self._open_lock:
                self._open.discard(connection)
            connection.close()
        try:
            decoded = json.loads(raw) if raw else {}
        except ValueError:
            decoded = {"detail": raw[:500].decode("utf-8", "replace")}
        if 200 <= status < 300:
            return status, decoded
        detail = decoded.get("detail") if isinstance(decoded, dict) else None
        detail = str(detail if detail is not None else decoded)[:1000]
        if status in RETRYABLE:
            raise Unavailable(f"{method} {path}: HTTP {status}: {detail}")
        raise Refused(status, detail)

    def interrupt(self) -> None:
        """Cut every call in flight (a long-poll waiting), e.g. when the client closes."""
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            sock = connection.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    # --- the endpoints ---------------------------------------------------------------------

    def ingest(self, events: list[dict]) -> tuple[int, dict]:
        return self.call("POST", "/api/v1/ingest", {"events": events})

    def find_run(self, workflow_id: str, run_id: str) -> dict | None:
        """The run with exactly these ids among the agent's runs, or None."""
        query = {"workflow_id": workflow_id, "q": run_id, "limit": 500}
        path = "/api/v1/runs"
        while True:
            _, page = self.call("GET", path, query=query)
            for run in page.get("results", []):
                if run.get("workflow_id") == workflow_id and run.get("run_id") == run_id:
                    return run
            following = page.get("next")
            if not following:
                return None
            parts = urlsplit(following)
            path = parts.path[len(self.base_path):] if self.base_path else parts.path
            query = dict(parse_qsl(parts.query))

    def run_events(self, run_uuid: str) -> list[dict]:
        """Every stored event of the run, raw (unmasked), in event id order."""
        events: list[dict] = []
        after = 0
        while True:
            _, page = self.call("GET", f"/api/v1/runs/{run_uuid}/events",
                                query={"after": after, "limit": 1000, "raw": "true"})
            events.extend(page.get("events", []))
            after = page.get("next_after")
            if after is None:
                return events

    def poll_commands(self, wait: float) -> list[dict]:
        _, body = self.call("GET", "/api/v1/agent/commands", query={"wait": f"{wait:g}"},
                            timeout=wait + 30)
        return list(body.get("commands", []))

    def ack(self, command_id: str, status: str, detail: str) -> None:
        self.call("POST", f"/api/v1/agent/commands/{command_id}/ack",
                  {"status": status, "detail": detail[:2000]})
