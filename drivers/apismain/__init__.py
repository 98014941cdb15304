"""apis-main as a test client of the driver (interface v2).

A Python re-enactment of what Sony CSL's apis-main does to a
dcdc_batt_comm node: the version check and the 5 s data acquisition
(``node``, ``poller``), the device-controlling commands (``commands``),
the local and global safety checks (``safety``), deals between units with
their energy counted from ``wb`` (``deal``), with apis-main's HTTP client
(``http``: 5 s per attempt, 3 attempts) and its number formatting
(``javafloat``). Every behaviour cites apis-main's source file and line;
docs/apis-main.md is the contract. Run it: ``python3 -m apismain --help``.
"""

from .errors import ApisMainError, CheckFailed, CommunicationError, SafetyError
from .node import Node
from .policy import HwConfig, Policy

__all__ = ["ApisMainError", "CheckFailed", "CommunicationError", "SafetyError", "HwConfig", "Node", "Policy"]
