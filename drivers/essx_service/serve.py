"""The HTTP server of essx-server: waitress sized so that nothing starves
(``poll()``, so that more than 1024 descriptors work), with systemd's
``READY=1`` once the socket listens and, with ``WatchdogSec=``, a heartbeat
while waitress's loop turns (``sdnotify.Heartbeat``).
"""
import errno
import logging
import resource
import socket
from typing import Any, Callable, List, Tuple

from essx_service import sdnotify
from essx_service.startup import StartupError

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
#: An address of a family this machine does not have (IPv6 switched off).
_ABSENT_FAMILY = (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT)


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

    def close(self) -> None:
        """Nothing to close (waitress closes every member of the map on exit)."""


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


def _url(address: Tuple[str, int]) -> str:
    """"127.0.0.1:8080", "[::1]:8080"."""
    host, port = address[:2]
    return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)


def bind(host: str, port: int) -> List[socket.socket]:
    """Bound TCP sockets on every address *host* resolves to, in the resolver's
    order (Debian's ``/etc/hosts`` gives ``localhost`` both 127.0.0.1 and ::1),
    all on one port (*port*, or the one the system chose for the first when 0).
    An address whose family this machine lacks (IPv6 switched off) is skipped
    with a WARNING as long as another one binds.

    Raises:
        StartupError: *host* cannot be resolved, or an address cannot be
            bound (in use, not this machine's, privileged port); one line.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise StartupError("--host %s cannot be resolved: %s" % (host, e.strerror)) from None
    addresses = list(dict.fromkeys((family, address[0]) for family, _, _, _, address in infos))
    sockets: List[socket.socket] = []
    for family, address in addresses:
        sock = None
        try:        # an IPv6 socket cannot even be made where IPv6 is switched off
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address, port))
        except OSError as e:
            if sock is not None:
                sock.close()
            if e.errno in _ABSENT_FAMILY and (sockets or (family, address) != addresses[-1]):
                log.warning("--host %s: cannot listen on %s (%s); skipped", host, address, e.strerror)
                continue
            for s in sockets:
                s.close()
            text = _BIND_PROBLEMS.get(e.errno, "cannot listen on {host}:{port}: {reason}")
            raise StartupError(text.format(host=host, port=port, reason=e.strerror or e)) from None
        port = port or sock.getsockname()[1]
        sockets.append(sock)
    return sockets


def serve(app: Any, host: str, port: int, threads: int = THREADS) -> None:
    """Serve the WSGI *app* on every address of *host* (:func:`bind`) at *port*
    (0: any free port) until KeyboardInterrupt (SIGINT/SIGTERM); logs and
    notifies the addresses in use (READY=1) once listening, STOPPING=1 after;
    waitress finishes the requests in progress.

    Raises:
        StartupError: the address cannot be resolved or bound (one line).
    """
    import waitress

    period = sdnotify.watchdog_period()
    heartbeat = sdnotify.Heartbeat(period) if period else None
    socket_map: dict = {}
    raise_nofile()
    sockets = bind(host, port)
    listening = " ".join(_url(s.getsockname()) for s in sockets)
    try:
        server = waitress.create_server(
            app, map=socket_map, sockets=sockets, threads=threads,
            connection_limit=CONNECTION_LIMIT, channel_timeout=CHANNEL_TIMEOUT,
            cleanup_interval=min(10, CHANNEL_TIMEOUT), asyncore_use_poll=True, ident="essx-server")
    except BaseException:
        for s in sockets:
            s.close()
        raise
    log.info("serving on %s", ", ".join("http://" + u for u in listening.split()))
    sdnotify.notify("READY=1\nSTATUS=serving on %s" % listening)
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
