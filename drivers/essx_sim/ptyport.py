"""A pseudo-terminal standing in for a serial device (for the simulators).

The simulated converter and battery each serve on the master side of a pty;
the driver opens the slave side (or a symlink to it) exactly as it would open
``/dev/ttyO2``.
"""

import logging
import os
import tty

log = logging.getLogger(__name__)


class PtyPort:
    """A pty pair in raw mode, the master non-blocking.

    The slave fd stays open as long as this object does, so the master never
    reads EIO while no client has the port open.

    Args:
        link: optional path of a symlink to point at the slave (replaced
            atomically if it exists); clients may open the link instead of
            ``/dev/pts/N``, which lets a test unplug and replug the device.
    Attributes:
        master, slave: file descriptors.
        path: the slave's device name (``/dev/pts/N``).
        port: what a client opens: ``link`` if given, else ``path``.
    Raises:
        OSError: no pty could be made; ValueError: ``link`` exists and is not
            a symlink.
    """

    def __init__(self, link=None):
        self.link = link
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        if link:
            if os.path.lexists(link) and not os.path.islink(link):
                self.close()
                raise ValueError("link %r exists and is not a symlink" % link)
            tmp = "%s.%d.tmp" % (link, os.getpid())
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(self.path, tmp)
            os.replace(tmp, link)

    @property
    def port(self):
        return self.link or self.path

    def close(self):
        """Close both fds, and remove ``link`` if it still points here."""
        if self.link and os.path.islink(self.link) and os.readlink(self.link) == self.path:
            try:
                os.unlink(self.link)
            except FileNotFoundError:
                pass
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError as exc:
                log.debug("closing pty fd %d: %s", fd, exc)
