"""Logging set-up for essx-server: a terminal format, or journald's.

When stderr is the journal (``JOURNAL_STREAM`` names its device and inode,
systemd.exec(5)), lines carry no timestamp and start with a ``<N>`` syslog
priority that journald stores, so ``journalctl -p warning`` works
(sd-daemon(3)).  Otherwise: ``time LEVEL logger: message``.
"""
import logging
import os
import sys
from typing import Optional, TextIO

#: Names accepted by ``--log-level``.
LEVELS = ("debug", "info", "warning", "error", "critical")

#: Python level -> syslog priority (sd-daemon(3): SD_ERR=3, SD_WARNING=4, ...).
_PRIORITY = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


def syslog_priority(levelno: int) -> int:
    """The syslog priority (0-7) of a Python log level: CRITICAL 2, ERROR 3,
    WARNING 4, INFO 6, DEBUG 7."""
    return next((priority for level, priority in _PRIORITY if levelno >= level), 7)


class JournalFormatter(logging.Formatter):
    """``<N>logger: message``; every line of a multi-line message (a
    traceback) gets the prefix so it keeps its priority."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = "<%d>" % syslog_priority(record.levelno)
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def stream_is_journal(stream: TextIO, environ=os.environ) -> bool:
    """True when *stream* is the journal stream named by ``JOURNAL_STREAM``."""
    try:
        st = os.fstat(stream.fileno())
        dev, ino = (int(part) for part in environ.get("JOURNAL_STREAM", "").split(":"))
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def setup_logging(level: str = "info", debug: bool = False,
                  stream: Optional[TextIO] = None) -> logging.Handler:
    """Replace the root logger's handlers by one writing to *stream* (default
    stderr) at *level* (one of :data:`LEVELS`; *debug*: debug, and pymodbus's
    own log kept); returns that handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if stream_is_journal(handler.stream):
        handler.setFormatter(JournalFormatter())
    logging.basicConfig(handlers=[handler], force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        level=logging.DEBUG if debug else getattr(logging, level.upper()))
    # pymodbus logs every failed read at ERROR itself; ours name the port.
    logging.getLogger("pymodbus").setLevel(logging.DEBUG if debug else logging.CRITICAL)
    return handler
