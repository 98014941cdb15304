"""apis-main's data acquisition: ``/all/get`` every 5 s on its own connection.

DataAcquisition starts its timer once the interface version is agreed
(DataAcquisition.java:137-148, DcdcV2DataAcquisition.java:59-66) and then
acquires unit data every ``dataAcquisitionPeriodMsec`` (5000 ms,
DataAcquisition.java:67, :374-420), under the exclusive lock a device
command also takes, and checks local safety on each (:475). A ``Poller``
is that timer in a thread; what went wrong is kept, not raised in the
thread, and ``raise_if_failed`` raises it in the caller.
"""

import threading
from typing import List, Optional

from .errors import ApisMainError
from .node import Node

__all__ = ["Poller"]


class Poller:
    """Poll ``node`` every ``period_s`` seconds (default POLICY's 5 s) until ``stop``.

    Attributes:
        polls: completed polls; failures: the errors of failed ones.
    """

    def __init__(self, node: Node, period_s: Optional[float] = None) -> None:
        self.node = node
        self.period_s = node.policy.data_acquisition_period_s if period_s is None else float(period_s)
        self.polls = 0
        self.failures: List[ApisMainError] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="apismain-poll " + node.unit_id, daemon=True)

    def start(self) -> "Poller":
        """Start polling (the first poll at once, DataAcquisition.java:148)."""
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.node.poll()
                self.polls += 1
            except ApisMainError as e:
                self.failures.append(e)
            self._stop.wait(self.period_s)  # the timer's period: a schedule

    def raise_if_failed(self) -> None:
        """Raise the first failure of a poll, if any.

        Raises:
            ApisMainError: the first poll that failed (communication or safety).
        """
        if self.failures:
            raise self.failures[0]

    def stop(self) -> None:
        """Stop and join the thread (a poll under way completes first)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def __enter__(self) -> "Poller":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
