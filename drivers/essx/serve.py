"""The HTTP server of essx-server: waitress sized so that nothing starves
(``poll()``, so that more than 1024 descriptors work), with systemd's
``READY=1`` once the socket listens and, with ``WatchdogSec=``, a heartbeat
while waitress's loop turns (``sdnotify.Heartbeat``).
"""
import errno
import logging
import resource
import socket
from typing import Any, Callable

from essx import sdnotify
from essx.startup import StartupError

log = logging.getLogger("essx_server")

#: waitress worker threads.
THREADS = 8
#: Threads kept free of callers waiting for the converter's line, so that
#: /version/get, the battery and the observation routes always find one.
RESERVED_THREADS = 3
#: Connections accepted (a socket each, not a thread), closed after
#: CHANNEL_TIMEOUT s of silence; open files wanted for them.
CONNECTION_LIMIT = 1000
CHANNEL_TIMEOUT = 30
NOFILE_WANTED = 4096

_BIND_PROBLEMS = {
    errno.EADDRINUSE: "--port {port}: address already in use on {host} (another essx-server?): "
                      "stop it or choose another --port",
    errno.EADDRNOTAVAIL: "--host {host} is not an address of this machine: use one of its "
                         "addresses, 127.0.0.1 or 0.0.0.0",
    errno.EACCES: "--port {port} needs privileges (ports below 1024): choose a port >= 1024",
}


def max_waiting(threads: int = THREADS) -> int:
    """Callers that may wait for the converter's line (``EZA2500Link.max_waiting``)."""
    return max(1, threads - 1 - RESERVED_THREADS)


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


def serve(app: Any, host: str, port: int, threads: int = THREADS) -> None:
    """Serve the WSGI *app* on *host*:*port* (0: any free port) until
    KeyboardInterrupt (SIGINT/SIGTERM); notifies READY=1 once listening and
    STOPPING=1 after; waitress finishes the requests in progress.

    Raises:
        StartupError: the address cannot be resolved or bound (one line).
    """
    import waitress

    period = sdnotify.watchdog_period()
    heartbeat = sdnotify.Heartbeat(period) if period else None
    socket_map: dict = {}
    raise_nofile()
    try:
        server = waitress.create_server(
            app, map=socket_map, host=host, port=port, threads=threads,
            connection_limit=CONNECTION_LIMIT, channel_timeout=CHANNEL_TIMEOUT,
            cleanup_interval=min(10, CHANNEL_TIMEOUT), asyncore_use_poll=True, ident="essx-server")
    except ValueError:     # waitress: "Invalid host/port specified."
        raise StartupError("--host %s cannot be resolved to an address of this machine: "
                           "use an IP address or a resolvable name" % host) from None
    except socket.gaierror as e:
        raise StartupError("--host %s cannot be resolved: %s" % (host, e.strerror)) from None
    except OSError as e:
        text = _BIND_PROBLEMS.get(e.errno, "cannot listen on {host}:{port}: {reason}")
        raise StartupError(text.format(host=host, port=port, reason=e.strerror or e)) from None
    log.info("serving on http://%s:%s", host, server.effective_port)
    sdnotify.notify("READY=1\nSTATUS=serving on port %s" % server.effective_port)
    if heartbeat is not None:
        socket_map[-1] = _LoopTick(heartbeat.tick)
        heartbeat.start()
    try:
        server.run()
    finally:
        sdnotify.notify("STOPPING=1")
        if heartbeat is not None:
            heartbeat.stop()
        server.close()
