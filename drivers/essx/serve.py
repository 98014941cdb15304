"""The HTTP server of essx-server: waitress sized so that nothing starves
(``startup.THREADS``, ``CONNECTION_LIMIT``, ``CHANNEL_TIMEOUT``; ``poll()``
so that more than 1024 descriptors work), with systemd's ``READY=1`` once
the socket listens and, with ``WatchdogSec=``, a heartbeat while waitress's
loop turns (``sdnotify.Heartbeat``).
"""
import errno
import logging
import os
import resource
import socket
from typing import Any, Callable, Optional

from essx import sdnotify
from essx.startup import CHANNEL_TIMEOUT, CONNECTION_LIMIT, NOFILE_WANTED, THREADS, StartupError

log = logging.getLogger("essx_server")


class _LoopTick:
    """A member of waitress's socket map that is never polled: the loop asks
    every member ``readable()`` on each turn, which calls *tick*."""

    accepting = False

    def __init__(self, tick: Callable[[], None]) -> None:
        self._tick = tick

    def readable(self) -> bool:
        self._tick()
        return False

    def writable(self) -> bool:
        return False


def raise_nofile(wanted: int = NOFILE_WANTED) -> None:
    """Raise the soft limit of open files towards *wanted*, within the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError) as e:     # a seccomp filter may refuse it (unit: LimitNOFILE=)
        log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, e)


def _bind_problem(host: str, port: int, exc: OSError) -> str:
    """An operator's line for a socket that could not be bound."""
    if exc.errno == errno.EADDRINUSE:
        return ("--port %d: address already in use on %s (another essx-server?): stop it or "
                "choose another --port" % (port, host))
    if exc.errno == errno.EADDRNOTAVAIL:
        return ("--host %s is not an address of this machine: use one of its addresses, "
                "127.0.0.1 or 0.0.0.0" % host)
    if exc.errno == errno.EACCES:
        return "--port %d needs privileges (ports below 1024): choose a port >= 1024" % port
    return "cannot listen on %s:%d: %s" % (host, port, exc.strerror or exc)


class HTTPServer:
    """waitress serving *app* on *host*:*port* (0: any free port) with
    *threads* workers; ``NOTIFY_SOCKET``/``WATCHDOG_USEC`` read from *environ*.

    Raises:
        StartupError: the address cannot be resolved or bound (one line).
    """

    def __init__(self, app: Any, host: str, port: int, threads: int = THREADS,
                 environ: Optional[dict] = None) -> None:
        import waitress

        self.host, self.environ = host, os.environ if environ is None else environ
        period = sdnotify.watchdog_period(self.environ)
        self.heartbeat = sdnotify.Heartbeat(period, self.environ) if period else None
        self.map: dict = {}
        raise_nofile()
        try:
            self.server = waitress.create_server(
                app, map=self.map, host=host, port=port, threads=threads,
                connection_limit=CONNECTION_LIMIT, channel_timeout=CHANNEL_TIMEOUT,
                cleanup_interval=min(10, CHANNEL_TIMEOUT), asyncore_use_poll=True,
                ident="essx-server")
        except ValueError:     # waitress: "Invalid host/port specified."
            raise StartupError("--host %s cannot be resolved to an address of this machine: "
                               "use an IP address or a resolvable name" % host) from None
        except socket.gaierror as e:
            raise StartupError("--host %s cannot be resolved: %s" % (host, e.strerror)) from None
        except OSError as e:
            raise StartupError(_bind_problem(host, port, e)) from None
        if self.heartbeat is not None:
            self.map[-1] = _LoopTick(self.heartbeat.tick)

    @property
    def port(self) -> int:
        """The TCP port listened on."""
        return int(self.server.effective_port)

    def run(self) -> None:
        """Notify READY=1, serve until KeyboardInterrupt (SIGINT/SIGTERM),
        notify STOPPING=1; waitress finishes the requests in progress."""
        log.info("serving on http://%s:%d", self.host, self.port)
        sdnotify.notify("READY=1\nSTATUS=serving on port %d" % self.port, self.environ)
        if self.heartbeat is not None:
            self.heartbeat.start()
        try:
            self.server.run()
        finally:
            sdnotify.notify("STOPPING=1", self.environ)
            if self.heartbeat is not None:
                self.heartbeat.stop()
            self.server.close()
