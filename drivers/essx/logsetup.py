"""Logging set-up for essx-server: a terminal format, or journald's.

When stderr is connected to the journal (systemd sets ``JOURNAL_STREAM`` to
``<st_dev>:<st_ino>`` of that stream, see systemd.exec(5)), lines carry no
timestamp (the journal adds its own) and start with a ``<N>`` syslog
priority prefix, which journald strips and stores as the priority, so
``journalctl -u essx-server -p warning`` shows warnings and errors only
(sd-daemon(3)).  Otherwise: ``time LEVEL logger: message``.
"""
import logging
import os
import sys
from typing import Optional, TextIO

#: Names accepted by ``--log-level``.
LEVELS = ("debug", "info", "warning", "error", "critical")

#: Python level -> syslog priority (sd-daemon(3): SD_ERR=3, SD_WARNING=4, ...).
_PRIORITY = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4),
             (logging.INFO, 6))


def syslog_priority(levelno: int) -> int:
    """The syslog priority (0-7) for a Python log level: CRITICAL 2, ERROR 3,
    WARNING 4, INFO and NOTICE 6, DEBUG 7."""
    for level, priority in _PRIORITY:
        if levelno >= level:
            return priority
    return 7


class JournalFormatter(logging.Formatter):
    """``<N>logger: message`` with no timestamp; each line of a multi-line
    message (a traceback) gets the prefix so it keeps its priority."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = "<%d>" % syslog_priority(record.levelno)
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def stream_is_journal(stream: TextIO, environ=os.environ) -> bool:
    """True when *stream* is the journal stream systemd announced in
    ``JOURNAL_STREAM`` (device and inode of the file descriptor match)."""
    announced = environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(stream.fileno())
        dev, ino = (int(part) for part in announced.split(":"))
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def setup_logging(level: str = "info", debug: bool = False,
                  stream: Optional[TextIO] = None) -> logging.Handler:
    """Configure the root logger once for the process.

    Args:
        level: one of :data:`LEVELS` (``--log-level``).
        debug: ``--debug``: level debug, and pymodbus's own log kept.
        stream: where to write (default ``sys.stderr``).
    Returns:
        The handler installed (replacing any previous root handlers).
    """
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    if stream_is_journal(stream):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else getattr(logging, level.upper()))
    # pymodbus logs every failed read at ERROR itself; ours name the port.
    logging.getLogger("pymodbus").setLevel(logging.DEBUG if debug else logging.CRITICAL)
    return handler
