"""``/metrics``'s answer, with prometheus_client loaded at the first scrape.

prometheus_client and what it imports (http.server, urllib.request, wsgiref,
socketserver, html, ...) hold about 1 MB of a server's resident memory; a
server nobody scrapes does not need them.  The ``Recorder`` keeps its counts
itself (essx_service.observe) and the registry reads it at each scrape, so a
registry built at the first scrape exposes the same text as one built at
start.  This module owns that one late import of ``essx_service.metrics``
(named in tests/test_layout.py, OPTIONAL_PARTS); it needs nothing of
prometheus_client before then.
"""
import threading
from typing import Callable, Optional

from essx_service.observe import Recorder

#: Content type of ``generate_latest``'s classic text format (prometheus_client's
#: CONTENT_TYPE_PLAIN_0_0_4, named CONTENT_TYPE_LATEST before 0.22).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Exposition:
    """The body of ``/metrics`` for *recorder*: calling it answers the
    exposition (bytes, ``CONTENT_TYPE``) of ``essx_service.metrics.scraper``,
    built once, at the first call, with *version* as ``essx_build``'s."""

    def __init__(self, recorder: Recorder, version: str) -> None:
        self.recorder, self.version = recorder, version
        self._scrape: Optional[Callable[[], bytes]] = None
        self._lock = threading.Lock()

    def __call__(self) -> bytes:
        with self._lock:          # two first scrapes at once build one registry
            if self._scrape is None:
                from essx_service import metrics  # optional part: tests/test_layout.py

                self._scrape = metrics.scraper(self.recorder, self.version)
            scrape = self._scrape
        return scrape()
