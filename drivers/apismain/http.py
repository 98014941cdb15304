"""apis-main's HTTP client to the driver: 5 s per attempt, 3 attempts, its own
keep-alive connection.

apis-main (interface v2) makes one Vert.x ``HttpClient`` for data
acquisition (``/version/get``, ``/all/get``, ``/dcdc/get/status``;
DcdcV2DataAcquisition.java:63-65) and another for device control
(``/dcdc/set``; DcdcV2DeviceControlling.java:184), each with
``new HttpClientOptions().setDefaultHost(host).setDefaultPort(port)``:
Vert.x 3.7.1's defaults (apis-bom pom.xml, vertx.version), HTTP/1.1 with
keep-alive (DEFAULT_KEEP_ALIVE true, keep-alive timeout 60 s, no pipelining).
A ``DriverConnection`` is one such client on one persistent connection.

Each request is a GET of the path (DataAcquisition.java:742-762,
DeviceControlling.java:531-551): status 200 with a JSON object body
succeeds; any other status, a body that is not a JSON object, a connection
error or no answer within ``requestTimeoutMsec`` (5000 ms,
DataAcquisition.java:75, DeviceControlling.java:50; ``setTimeout`` at :759 /
:548) fails the attempt. A failed attempt is retried at once until
``retryLimit`` (3, DataAcquisition.java:83, DeviceControlling.java:58)
attempts have failed (``0 < --retryLimit_``, DataAcquisition.java:718,
DeviceControlling.java:507); then the request fails.
"""

import collections
import http.client
import json
import logging
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Deque, Dict, List, Optional

from .errors import CommunicationError

__all__ = ["Attempt", "DriverConnection", "TIMEOUT_S", "ATTEMPTS"]

log = logging.getLogger("apismain.http")

#: Seconds an attempt may take (POLICY.controller.requestTimeoutMsec default).
TIMEOUT_S = 5.0
#: Attempts per request (POLICY.controller.retryLimit default).
ATTEMPTS = 3
#: Attempts kept in ``DriverConnection.attempts``.
KEPT = 10000
#: Errors of a reused keep-alive connection the server had already closed:
#: Vert.x's pool drops such a connection and uses a new one, so do we,
#: within the same attempt and deadline.
STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


@dataclass(frozen=True)
class Attempt:
    """One attempt of a request: path with query, start (monotonic s),
    duration (s), ok, and its outcome ("200", "400 {...}", "timeout ...")."""

    path: str
    started: float
    seconds: float
    ok: bool
    outcome: str


class _Failed(Exception):
    """One attempt failed (the message says how)."""


class DriverConnection:
    """GET requests to a driver node on one keep-alive connection, with
    apis-main's timeout and attempts.

    Args:
        url: the node, ``http://HOST:PORT``.
        timeout_s: seconds per attempt (5).
        attempts: attempts per request (3).
        source: apis-main's file:line of this client, for the error message.
        name: for the log.
    Raises:
        ValueError: ``url`` is not http://HOST[:PORT].
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = TIMEOUT_S,
        attempts: int = ATTEMPTS,
        source: str = "DeviceControlling.java:499-551",
        name: str = "",
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/"):
            raise ValueError("url=%r: expected http://HOST[:PORT]" % (url,))
        self.host, self.port = parts.hostname, parts.port or 80
        self.timeout_s, self.max_attempts, self.source = float(timeout_s), max(1, int(attempts)), source
        self.name = name or url
        self.attempts: Deque[Attempt] = collections.deque(maxlen=KEPT)
        self.connections = 0  #: TCP connections opened so far
        self._conn: Optional[http.client.HTTPConnection] = None
        self._lock = threading.Lock()

    def get(self, path: str) -> Dict[str, Any]:
        """GET ``path`` (with its query); the JSON object of the first 200 answer.

        Raises:
            CommunicationError: every attempt failed (route, query, each outcome).
        """
        with self._lock:
            outcomes: List[str] = []
            for _ in range(self.max_attempts):
                log.info("%s uri : %s", self.name, path)
                started = time.monotonic()
                try:
                    body = self._attempt(path, started + self.timeout_s)
                except _Failed as e:
                    self._drop()
                    self.attempts.append(Attempt(path, started, time.monotonic() - started, False, str(e)))
                    outcomes.append(str(e))
                    log.warning("%s: communication failed with device driver: %s: %s", self.name, path, e)
                    continue
                self.attempts.append(Attempt(path, started, time.monotonic() - started, True, "200"))
                return body
        route, _, query = path.partition("?")
        raise CommunicationError(
            "request",
            route=route,
            params=query or None,
            source=self.source,
            expected="200 with a JSON object within %g s, in %d attempts"
            % (self.timeout_s, self.max_attempts),
            got="; ".join("attempt %d: %s" % (i + 1, o) for i, o in enumerate(outcomes)),
        )

    def _attempt(self, path: str, deadline: float) -> Dict[str, Any]:
        try:
            status, raw = self._exchange(path, deadline, retry_stale=True)
        except (OSError, http.client.HTTPException) as e:
            late = time.monotonic() >= deadline
            raise _Failed(
                "timeout after %g s" % self.timeout_s
                if late or _is_timeout(e)
                else "%s: %s" % (type(e).__name__, e)
            ) from e
        if time.monotonic() > deadline:
            raise _Failed("timeout: the answer took longer than %g s" % self.timeout_s)
        text = raw.decode("utf-8", "replace")
        if status != 200:
            raise _Failed("%d %s" % (status, text[:300]))
        try:
            body = json.loads(text)
        except ValueError as e:
            raise _Failed("200 but not JSON: %r" % text[:300]) from e
        if not isinstance(body, dict):
            raise _Failed("200 but not a JSON object: %r" % text[:300])
        return body

    def _exchange(self, path: str, deadline: float, retry_stale: bool) -> tuple:
        reused = self._conn is not None
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=_left(deadline))
            self.connections += 1
        conn = self._conn
        try:
            if conn.sock is not None:
                conn.sock.settimeout(_left(deadline))
            conn.timeout = _left(deadline)
            conn.request("GET", path, headers={"Accept": "application/json"})
            conn.sock.settimeout(_left(deadline))
            response = conn.getresponse()
            return response.status, response.read()
        except STALE:
            self._drop()
            if not (reused and retry_stale):
                raise
            return self._exchange(path, deadline, retry_stale=False)

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Close the connection (a later ``get`` opens a new one)."""
        with self._lock:
            self._drop()


def _left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.001)


def _is_timeout(e: BaseException) -> bool:
    return isinstance(e, TimeoutError) or "timed out" in str(e)
