"""The failures of the apis-main client: each names what was asked, what
apis-main expected, what came back, and the apis-main source that expects it.

apis-main's own reaction to these is to report an error and (for ERROR
level) stop the unit or the deal (ErrorCollection.java:160: WARN is only
logged); this client raises instead, so a test or an operator sees it at once.
"""

from typing import Any, Optional

__all__ = ["ApisMainError", "CommunicationError", "CheckFailed", "SafetyError"]


class ApisMainError(Exception):
    """A failed expectation of apis-main.

    Attributes:
        what: the step ("WAIT", "poll", "checkpoint" ...).
        route: the driver route involved ("/dcdc/set"), or None.
        params: the query string sent ("mode=0x0000&dvg=0.0&dig=0.0&drg=0"), or None.
        expected: what apis-main expects.
        got: what came back.
        source: apis-main's file and line ("DcdcDeviceControlling.java:334-340").
    """

    def __init__(
        self,
        what: str,
        *,
        expected: str,
        got: Any,
        source: str,
        route: Optional[str] = None,
        params: Optional[str] = None,
    ) -> None:
        self.what, self.route, self.params = what, route, params
        self.expected, self.got, self.source = expected, got, source
        where = ""
        if route is not None:
            where = " %s%s" % (route, "?" + params if params else "")
        super().__init__("%s%s: expected %s; got %s (apis-main %s)" % (what, where, expected, got, source))


class CommunicationError(ApisMainError):
    """Every attempt of an HTTP request failed (apis-main: "Communication
    failed with Device Driver", ERROR, DataAcquisition.java:722,
    DeviceControlling.java:511)."""


class CheckFailed(ApisMainError):
    """A command's own check failed: operationMode after a set, a checkpoint,
    a current out of range, missing policy values, the interface version."""


class SafetyError(ApisMainError):
    """A local or global safety check failed at ERROR level (the first
    occurrence of a dynamic check is a WARN, LocalSafetyEvaluation.java:158-162)."""
