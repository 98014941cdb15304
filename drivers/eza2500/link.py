"""EZA2500Link, the one owner of the converter's line (README.md, "How it is built";
docs/converter-line.md): its lock, the gap between commands (docs/eza2500-protocol.md,
"Timing"), the retries ("Retries"), one ``Exchange`` per try (essx/exchange.py); its
settings are a ``LinkSettings``, made from the configuration by ``link_settings``."""
import itertools
import logging
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from decimal import Decimal
from typing import Any, Deque, Dict, Iterator, List, Mapping, Optional, Protocol, Tuple, Union, get_args

from essx import deadline
from essx.essx_exception import (ESSXChecksumException, ESSXDeviceException, ESSXException, ESSXIOException,
                                 ESSXTimeoutException, ESSXValueException)
from essx.exchange import Exchange, Listeners

from . import codec, table
from .reader import ReplySource, read_reply

log = logging.getLogger(__name__)


class LinkDevice(ReplySource, Protocol):
    """What ``EZA2500Link`` needs of its device (an ``EZA2500Device``): what the
    reply reader reads (``ReplySource``: ``timeout``, ``port``, ``in_waiting()``,
    ``read_some``), and these.  ``timeout`` (s) is also set by ``configure``."""

    @property
    def is_open(self) -> bool:
        """True when the port is open."""

    def ensure_open(self) -> None:
        """Open the port if it is closed.  Raises ESSXIOException (cannot be
        opened), ESSXConfigException (the port refuses its ``dir_pin``)."""

    def write(self, data: bytes) -> int:
        """Write all of ``data`` (one request frame), opening the port first if it
        is closed; returns ``len(data)``.  Raises ESSXTimeoutException, ESSXIOException."""


@dataclass(frozen=True)
class RequestFrame:
    """One validated request: ``name`` ("6-4"), its ``table.Group``, ``write``
    (True for "N-4"), ``params`` (field name -> physical value asked for, V, A,
    ...; {} for a read) and ``frame``, the bytes (SFD .. CHK;
    docs/eza2500-protocol.md, "Frames") sent on every try."""

    name: str
    group: table.Group
    write: bool
    params: Mapping[str, Any]
    frame: bytes


#: Failure class -> (``Exchange.outcome``, retry budget), the most specific
#: first; NAKs aside (docs/eza2500-protocol.md, "Retries").
_FAILURES = ((ESSXIOException, "io_error", "timeout"), (ESSXTimeoutException, "timeout", "timeout"),
             (ESSXChecksumException, "checksum", "error"), (ESSXValueException, "unexpected", "error"))


def _classify(exc: ESSXException) -> Tuple[str, Optional[str]]:
    """(outcome, budget) of a failed try: budget "timeout", "error" or None (fail now)."""
    if isinstance(exc, ESSXDeviceException):
        return "nak_0x%04x" % exc.ercd, "error" if exc.retryable else None
    return next(((o, b) for cls, o, b in _FAILURES if isinstance(exc, cls)), ("unexpected", None))


def describe(request: RequestFrame) -> str:
    """"4-4 dvg=360 drg=0", "1-4 mode=0x0041": a write request as it is named in
    errors and logs ("already applied: ..."; docs/converter-line.md, "Errors name
    the command, the tries and what was already applied"), each value as an
    operator writes it (``mode`` in hex, a float by its shortest form)."""
    words = [request.name]
    for name, value in request.params.items():
        if name == "mode":
            value = "0x%04x" % int(value)
        elif isinstance(value, (float, Decimal)):
            value = format(value, "g")
        words.append("%s=%s" % (name, value))
    return " ".join(words)


@dataclass(frozen=True)
class LinkSettings:
    """The link's settings; each field is named as its configuration key of the
    ``dcdc.<name>`` section (``DcdcSection``; docs/converter-line.md, "Gap and
    retries"; docs/eza2500-protocol.md, "Retries" and "Timing"), with the same
    default.  ``__post_init__`` coerces each value with its type (``int("3")``
    -> 3, ``float(1)`` -> 1.0), as the link always did.

    Attributes:
        number_of_timeout_retry: retries after a timeout or a serial I/O error.
        number_of_dcdc_error_retry: retries after a bad checksum, an unexpected
            LEN or CMD, or a retryable NAK (0xfffd, 0xfffc); other NAKs fail at once.
        wait_for_retry: s between two tries of one command.
        command_interval: s at least from the end of one try to the start of
            the next (docs/eza2500-protocol.md, "Timing": 0.062).
        line_wait: s at most a caller waits for the line.
        max_waiting: refuse at once when this many callers already wait
            (None: no limit); not a configuration key.

    Raises:
        TypeError, ValueError: a value its type does not take (``int(None)``,
            ``float("x")``); None only for ``max_waiting``.
    """

    number_of_timeout_retry: int = 0
    number_of_dcdc_error_retry: int = 0
    wait_for_retry: float = 0.1
    command_interval: float = 0.062
    line_wait: float = 5.0
    max_waiting: Optional[int] = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.default is None:
                continue
            kind = next(t for t in get_args(f.type) if t is not type(None)) if get_args(f.type) else f.type
            object.__setattr__(self, f.name, kind(value))


#: The names ``EZA2500Link.configure`` takes besides ``timeout``.
_SETTING_NAMES = frozenset(f.name for f in fields(LinkSettings))


class EZA2500Link:
    """The converter's line: lock (first come first served), gap, retries and reports.

    Args:
        device: an ``EZA2500Device`` (what ``LinkDevice`` states), opened before
            each command if it is not.
        ad1, ad2: the converter's addresses (0..255; reference 0 and 16;
            docs/eza2500-protocol.md, "Addresses").
        changes: as ``configure`` (``LinkSettings`` fields by name, ``timeout``),
            over the defaults.

    Attributes:
        settings: the ``LinkSettings`` in force; ``configure`` replaces them.
        listeners: ``Listeners`` given one ``Exchange`` per try.

    Raises:
        TypeError, ValueError: as ``configure``.
    """

    def __init__(self, device: LinkDevice, ad1: int, ad2: int, **changes: Any) -> None:
        self.device, self.ad1, self.ad2 = device, ad1, ad2
        self._reads: Dict[Tuple[str, int, int], RequestFrame] = {}  # (name, ad1, ad2) -> frame
        self.listeners = Listeners()
        self.settings = LinkSettings()
        self.configure(**changes)
        self._turn = threading.Condition()    # guards _owner and _queue
        self._owner: Optional[int] = None     # thread ident holding the line
        self._queue: Deque[object] = deque()  # tickets of the callers waiting, in order
        self._applied: List[str] = []         # writes ACKed in the current sequence
        self._next_command_at = 0.0           # monotonic s before which no try starts
        #: the mode last reported by a 1-1 or 1-4 ACK; None at start and after any failed command
        #: (docs/eza2500-protocol.md, "Group 1 (1-1 / 1-4): operation mode")
        self.mode: Optional[int] = None

    @property
    def port(self) -> str:
        """The converter's serial device ("/dev/ttyO2"), as errors and ``Exchange.port`` name it."""
        return str(self.device.port)

    @property
    def is_open(self) -> bool:
        """True when the converter's port is open."""
        return self.device.is_open

    @property
    def waiting(self) -> int:
        """Callers waiting for the line now."""
        return len(self._queue)

    def configure(self, *, timeout: Optional[float] = None, **changes: Any) -> None:
        """Replace ``settings`` with ``changes`` (``LinkSettings`` fields by name;
        None keeps a value) from the next try on; ``timeout`` (s) is the
        device's whole-read/write timeout (docs/eza2500-protocol.md, "Timing").
        Nothing changes when it raises.

        Raises:
            TypeError: an unknown setting ("EZA2500Link has no setting 'x'").
            TypeError, ValueError: a value its type does not take (``LinkSettings``).
        """
        unknown = [name for name in changes if name not in _SETTING_NAMES]
        if unknown:
            raise TypeError("EZA2500Link has no setting %r" % unknown[0])
        settings = replace(self.settings, **{k: v for k, v in changes.items() if v is not None})
        if timeout is not None:
            self.device.timeout = float(timeout)
        self.settings = settings

    @contextmanager
    def sequence(self) -> Iterator["EZA2500Link"]:
        """Hold the line for a whole command sequence (reentrant; callers are
        served in the order they asked, docs/converter-line.md, "One request at
        a time, first come first served"); a command that fails inside it names
        the writes already ACKed in it.  The wait for the line ends at
        ``settings.line_wait`` s or the request's deadline (``essx.deadline``),
        whichever comes first.

        Raises:
            ESSXTimeoutException: "converter line busy ...; nothing sent": not
                free in time, or ``settings.max_waiting`` callers already wait.
        """
        me = threading.get_ident()
        if self._owner == me:
            yield self
            return
        line_wait, max_waiting = self.settings.line_wait, self.settings.max_waiting
        with self._turn:
            if max_waiting is not None and len(self._queue) >= max_waiting:
                raise ESSXTimeoutException(
                    "converter line busy: %d requests already waiting for %s; nothing sent"
                    % (len(self._queue), self.port))
            ticket = object()
            self._queue.append(ticket)
            wait = deadline.bound(line_wait)
            if not self._turn.wait_for(lambda: self._owner is None and self._queue[0] is ticket, wait):
                self._queue.remove(ticket)
                self._turn.notify_all()
                within = "%g s (line_wait)" % line_wait if wait == line_wait else \
                    "the request's deadline (%.2f s)" % wait
                raise ESSXTimeoutException("converter line busy: %s not free within %s; nothing sent"
                                           % (self.port, within))
            self._queue.popleft()
            self._owner, self._applied = me, []
        try:
            yield self
        finally:
            with self._turn:
                self._owner = None
                self._turn.notify_all()

    def open(self) -> None:
        """Open the converter's port now if it is closed, holding the line (start-up
        and ``--check``; commands open it on demand too).

        Raises:
            ESSXIOException: it cannot be opened (``__cause__``: the OS error).
            ESSXTimeoutException: the line stayed busy.
            ESSXConfigException: the port refuses the configured ``dir_pin``.
        """
        with self.sequence():
            self.device.ensure_open()

    def request(self, name: str, params: Optional[Mapping[str, Any]] = None) -> RequestFrame:
        """Validate and encode command ``name`` ("6-4") with ``params`` (field name
        -> physical value, V, A, ...; ignored for a read); no I/O.

        Raises:
            ESSXParameterException: a field is missing.
            ESSXValueException: a value is out of range (the message names the
                field, the value and the range; docs/eza2500-protocol.md, "Range
                checks"); or ``name`` is no command of the "Command table"
                ("no EZA2500 command '17-4'", "No group 17").
        """
        cached = self._reads.get((name, self.ad1, self.ad2))
        if cached is not None:     # a read's frame is the same every time
            return cached
        try:
            group, write = table.parse_name(name)
        except KeyError:
            raise ESSXValueException("no EZA2500 command %r" % (name,)) from None
        if not write:
            req = RequestFrame(name, group, False, {}, codec.build_request(self.ad1, self.ad2, group, False))
            self._reads[name, self.ad1, self.ad2] = req
            return req
        params = dict(params or {})
        frame = codec.build_request(self.ad1, self.ad2, group, write, params)
        asked = {f.name: params[f.name] for f in group.request_fields(write)}   # {} for a read
        return RequestFrame(name, group, write, asked, frame)

    def transact(self, command: Union[str, RequestFrame],
                 params: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        """One command (a name with ``params``, or a ``RequestFrame``) with its
        retries (docs/eza2500-protocol.md, "Retries"), under the line -> the
        decoded ACK: field name -> physical value (a ``codec.QValue``, a float
        in V, A, W, °C; "Q-format scaling"), a raw field as an int.

        Raises:
            ESSXParameterException / ESSXValueException: bad params, nothing sent.
            ESSXTimeoutException: the line stayed busy, or the request's
                deadline (``essx.deadline``) leaves less than one try: the
                command is not sent; or, as
                ESSXIOException, ESSXChecksumException, ESSXValueException and
                ESSXDeviceException (NAK, ``.ercd``; "NAK codes"), the last
                try's failure, naming the command, the tries and the writes
                already applied.
        """
        req = command if isinstance(command, RequestFrame) else self.request(command, params)
        with self.sequence():
            if not self._time_for_try(0.0):
                raise ESSXTimeoutException("command %s not sent: the request's deadline leaves %.3f s, "
                                           "less than one try (%g s timeout)%s"
                                           % (req.name, deadline.remaining(), self.device.timeout,
                                              self._applied_text()))
            left = {"timeout": self.settings.number_of_timeout_retry,
                    "error": self.settings.number_of_dcdc_error_retry}
            for attempt in itertools.count(1):
                try:
                    reply = self._try(req, attempt)
                    break
                except ESSXException as exc:
                    budget = _classify(exc)[1]
                    wait = self.settings.wait_for_retry
                    if budget is None or left[budget] <= 0 or not self._time_for_try(wait):
                        self.mode = None
                        late = budget is not None and left[budget] > 0
                        raise self._final(exc, req, attempt, late) from exc
                    left[budget] -= 1
                    log.info("command %s failed (%s); retrying in %.3f s", req.name, exc, wait)
                    self._next_command_at = max(self._next_command_at, time.monotonic() + wait)
            if req.group.number == 1:
                self.mode = reply["mode"]
            if req.write:
                self._applied.append(describe(req))
        return reply

    def _time_for_try(self, wait: float) -> bool:
        """True when a try after *wait* s (and the gap) still ends within the request's
        deadline (``essx.deadline``), or there is none."""
        gap = max(wait, self._next_command_at - time.monotonic(), 0.0)
        return deadline.has_time(gap + self.device.timeout)

    def _applied_text(self) -> str:
        return "; already applied: " + ", ".join(self._applied) if self._applied else ""

    def _final(self, exc: ESSXException, req: RequestFrame, attempt: int,
               late: bool = False) -> ESSXException:
        """The exception a caller gets: the command, the tries (*late*: the deadline
        cut the retries short), what was applied."""
        applied = self._applied_text()
        tries = "%d %s" % (attempt, "try" if attempt == 1 else "tries")
        if late:
            tries += "; the request's deadline leaves no time for another"
        if isinstance(exc, ESSXDeviceException):
            return codec.nak_error(exc.ercd, "%s after %s%s" % (req.name, tries, applied))
        return type(exc)("command %s: %s (after %s)%s" % (req.name, exc, tries, applied))

    def _try(self, req: RequestFrame, attempt: int) -> Dict[str, Any]:
        """One try: wait out the gap, send, read and decode the reply, report it; the
        ``--debug`` frame log: "-> 6-4 05 0c 00 10 ...", "<- 6-4 ACK 02 0c ..."."""
        gap = self._next_command_at - time.monotonic()
        if gap > 0:     # sleep(0) would still give up the GIL and cost a scheduler turn
            time.sleep(gap)
        start = time.monotonic()
        outcome, reply, error = "unexpected", None, None
        try:
            self.device.write(req.frame)
            debug = log.isEnabledFor(logging.DEBUG)
            if debug:
                log.debug("-> %s %s", req.name, codec.hexdump(req.frame))
            deadline = time.monotonic() + self.device.timeout
            frame = read_reply(self.device, req.group, req.write, deadline, self.ad1, self.ad2)
            if debug:
                kind = "NAK" if frame[4] & table.NAK_BIT else "ACK"
                log.debug("<- %s %s %s", req.name, kind, codec.hexdump(frame))
            # read_reply checked it: an ACK carries the group's CMD, a NAK CMD | 0x80
            reply = codec.decode_reply(frame, req.group, req.write, frame[4] == req.group.cmd)
            outcome = "ack"
            return reply
        except ESSXException as exc:
            outcome, error = _classify(exc)[0], str(exc)
            raise
        finally:
            self._next_command_at = time.monotonic() + self.settings.command_interval
            self.listeners.emit(Exchange(bus="dcdc", command=req.name, outcome=outcome,
                                         seconds=time.monotonic() - start, attempt=attempt,
                                         port=self.port, values=reply, error=error))


def link_settings(section: Any) -> Dict[str, Any]:
    """The link's keyword arguments (``LinkSettings`` fields but ``max_waiting``)
    from a converter section, ``essx.essx_config.DcdcSection``: its attributes of
    the same names (docs/converter-line.md, "Gap and retries"); {} for None (no
    section: the link keeps its settings).

    Raises:
        AttributeError: ``section`` lacks one of them.
    """
    if section is None:
        return {}
    return {
        "number_of_timeout_retry": section.number_of_timeout_retry,
        "number_of_dcdc_error_retry": section.number_of_dcdc_error_retry,
        "wait_for_retry": section.wait_for_retry,
        "command_interval": section.command_interval,
        "line_wait": section.line_wait,
    }
