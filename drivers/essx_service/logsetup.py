"""Logging set-up for essx-server: a terminal format, or journald's.

When stderr is the journal (``JOURNAL_STREAM`` names its device and inode,
systemd.exec(5)), lines carry no timestamp and start with a ``<N>`` syslog
priority that journald stores, so ``journalctl -p warning`` works
(sd-daemon(3)).  Otherwise: ``time LEVEL logger: message``.
"""
import logging
import os
import sys
from typing import TextIO

#: Names accepted by ``--log-level``.
LEVELS = ("debug", "info", "warning", "error", "critical")

#: Python level -> syslog priority (sd-daemon(3): SD_CRIT=2, SD_ERR=3, ...); below INFO 7.
_PRIORITY = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


class JournalFormatter(logging.Formatter):
    """``<N>logger: message``; every line of a multi-line message (a
    traceback) gets the prefix so it keeps its priority."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = "<%d>" % next((p for level, p in _PRIORITY if record.levelno >= level), 7)
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def stream_is_journal(stream: TextIO) -> bool:
    """True when *stream* is the journal stream named by ``JOURNAL_STREAM``."""
    try:
        st = os.fstat(stream.fileno())
        dev, ino = (int(part) for part in os.environ.get("JOURNAL_STREAM", "").split(":"))
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def setup_logging(level: str = "info", debug: bool = False) -> None:
    """Replace the root logger's handlers by one writing to stderr at *level*
    (one of :data:`LEVELS`; *debug*: debug, and pymodbus's own log kept)."""
    handler = logging.StreamHandler(sys.stderr)
    if stream_is_journal(handler.stream):
        handler.setFormatter(JournalFormatter())
    logging.basicConfig(handlers=[handler], force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        level=logging.DEBUG if debug else getattr(logging, level.upper()))
    # pymodbus logs every failed read at ERROR itself; ours name the port.
    logging.getLogger("pymodbus").setLevel(logging.DEBUG if debug else logging.CRITICAL)
