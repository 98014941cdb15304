"""EZA2500Link: the one owner of the converter's line (spec 5.2.1.2; design.md).

Everything that concerns the line itself lives here and nowhere else:

* the line's lock: one command and its reply -- and, with :meth:`sequence`,
  a route's whole command sequence -- is one critical section, granted in
  the order callers asked for it; a caller that
  cannot get the line within ``line_wait`` s (or finds ``max_waiting``
  callers already waiting) is refused before anything is sent;
* the minimum gap between commands (``command_interval`` s, a deadline kept
  from the end of one try to the start of the next);
* the retry budgets and their error mapping (spec 5.2.1.2): timeouts and
  serial I/O errors use ``timeout_retries``; bad checksums, unexpected
  replies and the NAKs the table marks retryable use ``error_retries``; other
  NAKs fail at once; ``retry_wait`` s pass between tries;
* one report per try: ``listeners.emit(Exchange(...))`` (essx/exchange.py);
* the converter's mode as last reported by 1-1/1-4 (``mode``);
* the ``--debug`` frame log: "-> 6-4 05 0c 00 10 ...", "<- 6-4 ACK 02 0c ...".

A request is validated and encoded once (:meth:`request`) and the same bytes
go out on every try.
"""
import logging
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Deque, Dict, Iterator, List, Mapping, Optional, Tuple, Union

from essx.essx_exception import (
    ESSXChecksumException,
    ESSXDeviceException,
    ESSXException,
    ESSXIOException,
    ESSXTimeoutException,
    ESSXValueException,
)
from essx.exchange import Exchange, Listeners

from . import codec, table
from .reader import read_reply

log = logging.getLogger(__name__)

#: Defaults (spec 5.2.1.2 and the reference's dcdc section).
DEFAULT_RETRY_WAIT = 0.1
DEFAULT_COMMAND_INTERVAL = 0.062
DEFAULT_LINE_WAIT = 5.0


@dataclass(frozen=True)
class RequestFrame:
    """One validated, encoded request.

    Attributes:
        name: command name ("6-4").
        group: its ``table.Group``.
        write: True for "N-4".
        params: the physical values asked for (V, A, ...); {} for a read.
        frame: the request bytes (SFD .. CHK), sent as they are on every try.
    """

    name: str
    group: table.Group
    write: bool
    params: Mapping[str, Any]
    frame: bytes


#: Failure class -> ``Exchange.outcome``, the most specific first (NAKs aside).
_OUTCOMES = ((ESSXIOException, "io_error"), (ESSXTimeoutException, "timeout"),
             (ESSXChecksumException, "checksum"))


def outcome_of(exc: ESSXException) -> str:
    """The ``Exchange.outcome`` of a failed try (contracts.md section 1):
    "nak_0xfffc", "io_error", "timeout", "checksum" or "unexpected"."""
    if isinstance(exc, ESSXDeviceException):
        return "nak_0x%04x" % exc.ercd
    return next((outcome for cls, outcome in _OUTCOMES if isinstance(exc, cls)), "unexpected")


def _budget(exc: ESSXException) -> Optional[str]:
    """Which retry budget a failure draws on: "timeout", "error" or None (fail now)."""
    if isinstance(exc, ESSXTimeoutException):
        return "timeout"
    if isinstance(exc, ESSXDeviceException):
        return "error" if exc.retryable else None
    if isinstance(exc, (ESSXChecksumException, ESSXValueException)):
        return "error"
    return None


def _shown(name: str, value: Any) -> str:
    """"mode=0x0041", "dvg=360", "dig=2.5": a request value as an operator writes it."""
    if name == "mode":
        return "mode=0x%04x" % int(value)
    if isinstance(value, (float, Decimal)):
        return "%s=%s" % (name, format(value, "g"))
    return "%s=%s" % (name, value)


def describe(request: RequestFrame) -> str:
    """"4-4 dvg=360 drg=0": a write request as it is named in errors and logs."""
    return " ".join([request.name] + [_shown(k, v) for k, v in request.params.items()])


def _tries(n: int) -> str:
    return "%d tr%s" % (n, "y" if n == 1 else "ies")


#: The link's settings and their types (``configure``).
_SETTING_TYPES = {"timeout_retries": int, "error_retries": int, "retry_wait": float,
                  "command_interval": float, "line_wait": float, "max_waiting": int}


class EZA2500Link:
    """The converter's line: lock, gap, retries and reports for every command.

    Args:
        device: an ``EZA2500Device`` (``write``, ``read_some``, ``timeout``,
            ``port``, ``is_open``); its port may be unopened or absent, it is
            opened before each command.
        ad1, ad2: the converter's addresses (0..255; reference 0 and 16).
        timeout_retries: retries after a timeout or serial I/O error
            (``number_of_timeout_retry``).
        error_retries: retries after a bad checksum, an unexpected reply or
            a retryable NAK (``number_of_dcdc_error_retry``).
        retry_wait: s between two tries of one command (``wait_for_retry``).
        command_interval: minimum s from the end of one try to the start of
            the next (``command_interval``; reference 0.062).
        line_wait: at most s a caller waits for the line (``line_wait``).
        max_waiting: refuse at once when this many callers already wait for
            the line (None: no limit).

    Attributes:
        listeners: ``Listeners`` given one ``Exchange`` per try.
    """

    def __init__(self, device: Any, ad1: int, ad2: int, *, timeout_retries: int = 0,
                 error_retries: int = 0, retry_wait: float = DEFAULT_RETRY_WAIT,
                 command_interval: float = DEFAULT_COMMAND_INTERVAL,
                 line_wait: float = DEFAULT_LINE_WAIT, max_waiting: Optional[int] = None) -> None:
        self.device = device
        self.ad1 = ad1
        self.ad2 = ad2
        self.listeners = Listeners()
        self.timeout_retries = int(timeout_retries)
        self.error_retries = int(error_retries)
        self.retry_wait = float(retry_wait)
        self.command_interval = float(command_interval)
        self.line_wait = float(line_wait)
        self.max_waiting = max_waiting
        self._turn = threading.Condition()    # guards _owner and _queue
        self._owner: Optional[int] = None     # thread ident holding the line
        self._depth = 0                       # sequence() nesting of the owner
        self._queue: Deque[object] = deque()  # tickets of the callers waiting, in order
        self._applied: List[str] = []         # writes ACKed in the current sequence
        self._next_command_at = 0.0           # monotonic s before which no try starts
        self._mode: Optional[int] = None

    # -- state (reading it sends nothing) ------------------------------------------

    @property
    def port(self) -> str:
        """The converter's serial device ("/dev/ttyO2")."""
        return str(self.device.port)

    @property
    def is_open(self) -> bool:
        """True when the converter's port is open."""
        return bool(getattr(self.device, "is_open", True))

    @property
    def mode(self) -> Optional[int]:
        """The mode last reported by a 1-1 or 1-4 ACK; None when unknown (at
        start, and after any command failed)."""
        return self._mode

    @property
    def waiting(self) -> int:
        """Callers waiting for the line now."""
        return len(self._queue)

    def configure(self, *, timeout_retries: Optional[int] = None, error_retries: Optional[int] = None,
                  retry_wait: Optional[float] = None, command_interval: Optional[float] = None,
                  line_wait: Optional[float] = None, max_waiting: Optional[int] = None,
                  timeout: Optional[float] = None) -> None:
        """Apply new settings (reload); None keeps a setting.  ``timeout`` (s)
        is the device's whole-read/write timeout.  Takes effect from the next
        try on."""
        given = {"timeout_retries": timeout_retries, "error_retries": error_retries,
                 "retry_wait": retry_wait, "command_interval": command_interval,
                 "line_wait": line_wait, "max_waiting": max_waiting}
        for name, value in given.items():
            if value is not None:
                setattr(self, name, _SETTING_TYPES[name](value))
        if timeout is not None:
            self.device.timeout = float(timeout)

    # -- the line -----------------------------------------------------------------------

    def _acquire(self) -> None:
        """Take the line, first come first served, within ``line_wait`` s."""
        me = threading.get_ident()
        if self._owner == me:
            self._depth += 1
            return
        with self._turn:
            if self.max_waiting is not None and len(self._queue) >= self.max_waiting:
                raise ESSXTimeoutException(
                    "converter line busy: %d requests already waiting for %s; nothing sent"
                    % (len(self._queue), self.port))
            ticket = object()
            self._queue.append(ticket)
            deadline = time.monotonic() + self.line_wait
            while self._owner is not None or self._queue[0] is not ticket:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._queue.remove(ticket)
                    self._turn.notify_all()
                    raise ESSXTimeoutException("converter line busy: %s not free within %g s (line_wait); "
                                               "nothing sent" % (self.port, self.line_wait))
                self._turn.wait(left)
            self._queue.popleft()
            self._owner, self._depth, self._applied = me, 1, []

    def _release(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            with self._turn:
                self._owner = None
                self._turn.notify_all()

    @contextmanager
    def sequence(self) -> Iterator["EZA2500Link"]:
        """Hold the line for a whole command sequence (reentrant).

        A command that fails inside a sequence names, in its error, the
        writes that the converter already acknowledged in that sequence.
        Raises:
            ESSXTimeoutException: "converter line busy ...; nothing sent".
        """
        self._acquire()
        try:
            yield self
        finally:
            self._release()

    # -- commands ---------------------------------------------------------------------

    def request(self, name: str, params: Optional[Mapping[str, Any]] = None) -> RequestFrame:
        """Validate and encode command ``name`` ("6-4") with ``params``; no I/O.

        Raises:
            ESSXParameterException: a field is missing.
            ESSXValueException: a value is out of range (the message names the
                field, the value and the range); or ``name`` is no command.
        """
        try:
            group, write = table.parse_name(name)
        except KeyError:
            raise ESSXValueException("no EZA2500 command %r" % (name,)) from None
        params = dict(params or {}) if write else {}
        frame = codec.build_request(self.ad1, self.ad2, group, write, params)
        if write:
            params = {f.name: params[f.name] for f in group.request_fields(True)}
        return RequestFrame(name, group, write, params, frame)

    def transact(self, command: Union[str, RequestFrame],
                 params: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        """One command with its retries, under the line.

        Args:
            command: a command name ("6-4") with ``params``, or a
                ``RequestFrame`` from :meth:`request`.
        Returns:
            dict, the decoded ACK (physical values: V, A, W, °C).
        Raises:
            ESSXParameterException / ESSXValueException: bad params, nothing sent.
            ESSXTimeoutException: the line stayed busy (nothing sent), or the
                last try timed out / the port failed (ESSXIOException).
            ESSXChecksumException, ESSXValueException, ESSXDeviceException
                (NAK, ``.ercd``): the last failure once the budget ran out;
                the message names the command, the number of tries and the
                writes already applied in the current sequence.
        """
        req = command if isinstance(command, RequestFrame) else self.request(command, params)
        with self.sequence():
            try:
                reply = self._with_retries(req)
            except ESSXException:
                self._mode = None
                raise
            if req.group.number == 1:
                self._mode = reply["mode"]
            if req.write:
                self._applied.append(describe(req))
        return reply

    def _with_retries(self, req: RequestFrame) -> Dict[str, Any]:
        left = {"timeout": self.timeout_retries, "error": self.error_retries}
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._try(req, attempt)
            except ESSXException as exc:
                budget = _budget(exc)
                if budget is None or left[budget] <= 0:
                    raise self._final(exc, req, attempt) from exc
                left[budget] -= 1
                log.info("command %s failed (%s); retrying in %.3f s", req.name, exc, self.retry_wait)
                self._next_command_at = max(self._next_command_at, time.monotonic() + self.retry_wait)

    def _final(self, exc: ESSXException, req: RequestFrame, attempt: int) -> ESSXException:
        """The exception a caller gets: the command, the tries, what was applied."""
        applied = "; already applied: %s" % ", ".join(self._applied) if self._applied else ""
        if isinstance(exc, ESSXDeviceException):
            return ESSXDeviceException(exc.ercd, "%s after %s%s" % (req.name, _tries(attempt), applied))
        return type(exc)("command %s: %s (after %s)%s" % (req.name, exc, _tries(attempt), applied))

    def _try(self, req: RequestFrame, attempt: int) -> Dict[str, Any]:
        """One try: wait out the gap, send the frame, read and decode the reply."""
        delay = self._next_command_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        start = time.monotonic()
        try:
            reply = self._exchange(req)
        except ESSXException as exc:
            self._report(req, outcome_of(exc), start, attempt, error=str(exc))
            raise
        finally:
            self._next_command_at = time.monotonic() + self.command_interval
        self._report(req, "ack", start, attempt, values=reply)
        return reply

    def _exchange(self, req: RequestFrame) -> Dict[str, Any]:
        debug = log.isEnabledFor(logging.DEBUG)
        self.device.write(req.frame)
        if debug:
            log.debug("-> %s %s", req.name, codec.hexdump(req.frame))
        deadline = time.monotonic() + self.device.timeout
        frame = read_reply(self.device, req.group, req.write, deadline, self.ad1, self.ad2)
        if debug:
            kind = "NAK" if frame[4] & table.NAK_BIT else "ACK"
            log.debug("<- %s %s %s", req.name, kind, codec.hexdump(frame))
        return codec.parse_reply(frame, req.group, req.write, self.ad1, self.ad2)

    def _report(self, req: RequestFrame, outcome: str, start: float, attempt: int,
                values: Optional[Mapping[str, Any]] = None, error: Optional[str] = None) -> None:
        self.listeners.emit(Exchange(bus="dcdc", command=req.name, outcome=outcome,
                                     seconds=time.monotonic() - start, attempt=attempt,
                                     port=self.port, values=values, error=error))


#: (EZA2500Link keyword, DcdcSection attribute) for :func:`link_settings`.
SETTINGS: Tuple[Tuple[str, str], ...] = (
    ("timeout_retries", "number_of_timeout_retry"),
    ("error_retries", "number_of_dcdc_error_retry"),
    ("retry_wait", "wait_for_retry"),
    ("command_interval", "command_interval"),
    ("line_wait", "line_wait"),
)


def link_settings(section: Any) -> Dict[str, Any]:
    """The link's keyword arguments from a converter section (``DcdcSection``,
    contracts.md section 4); attributes it lacks keep the link's defaults."""
    out = {}
    for keyword, attribute in SETTINGS:
        value = getattr(section, attribute, None)
        if value is not None:
            out[keyword] = value
    return out
