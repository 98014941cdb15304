"""What the controller (``essx.essx_type_oes.ESSXTypeOES``) needs of its devices, as
``typing.Protocol``s: the converter's port (``eza2500.EZA2500Device``), the line that
owns it (``eza2500.EZA2500Link``) and the battery (``battery_emulator.BatteryEmulator``).

Each is ``runtime_checkable``: ``isinstance(obj, ConverterLine)`` is True when ``obj``
has every member named here (Python checks the names, not the signatures;
tests/test_devices.py checks both against the real classes).
"""
from typing import Any, ContextManager, Dict, Mapping, Optional, Protocol, Tuple, Union, runtime_checkable

from essx.exchange import Listeners
from eza2500.link import LinkDevice, RequestFrame


@runtime_checkable
class BusOwner(Protocol):
    """The one owner of a bus, as the observation listens to it (docs/observability.md):
    one ``essx.exchange.Exchange`` per try to its ``listeners``, its serial device's
    name (``port``, "/dev/ttyO2") and whether that is open (``is_open``; reading it sends nothing)."""

    listeners: Listeners

    @property
    def port(self) -> str:
        """The serial device's name."""

    @property
    def is_open(self) -> bool:
        """True while the serial device is open."""


@runtime_checkable
class ConverterPort(LinkDevice, Protocol):
    """The converter's port, which the controller hands to its line
    (``eza2500.EZA2500Device``): what ``EZA2500Link`` needs of it,
    ``eza2500.link.LinkDevice`` (``timeout`` s, ``port``, ``is_open``,
    ``ensure_open``, ``write``, ``read_some``, ``in_waiting``;
    docs/eza2500-protocol.md, "Timing"), checkable at run time."""


@runtime_checkable
class ConverterLine(BusOwner, Protocol):
    """The converter's line (``eza2500.EZA2500Link``): the commands of
    docs/eza2500-protocol.md by name ("6-4"), one caller at a time.

    The controller sends with ``request``, ``transact`` and ``sequence``, reads
    ``mode`` to order a set (docs/web-api.md, "/remote/set") and applies a
    reloaded section with ``configure``; ``open`` and the ``BusOwner`` members
    serve those who reach the line through ``ESSXTypeOES.link``.
    """

    #: The mode last reported by a 1-1 or 1-4 ACK; None when unknown.
    mode: Optional[int]

    def request(self, name: str, params: Optional[Mapping[str, Any]] = None) -> RequestFrame:
        """The checked request frame of command ``name`` with ``params`` (V, A, ...); nothing sent.
        ``ESSXParameterException`` (a field missing), ``ESSXValueException`` (out of range)."""

    def transact(self, command: Union[str, RequestFrame],
                 params: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        """Send one command with its retries -> its decoded reply's fields (V, A, W, °C).
        ``ESSXException`` subclasses: timeout, I/O, checksum, unexpected reply, NAK."""

    def sequence(self) -> ContextManager[Any]:
        """Hold the line for a whole command sequence; ``ESSXTimeoutException`` when it stays busy."""

    def configure(self, *, timeout: Optional[float] = None, **changes: Any) -> None:
        """Apply the line's settings by name and the port's ``timeout`` (s) from the next try on."""

    def open(self) -> None:
        """Open the port now, holding the line; ``ESSXIOException`` when it cannot be opened."""


@runtime_checkable
class Battery(BusOwner, Protocol):
    """The battery (``battery_emulator.BatteryEmulator``; docs/battery-registers.md):
    RSOC and interchange permission over Modbus.

    The controller calls ``check_battery`` (the battery watch, /1/log/data) and
    names ``last_error`` when it failed; ``remote_rsoc_and_status``, ``read_rsoc``
    and ``read_status`` serve a one-off read (``essx-server --check``).
    """

    #: Why the last read failed; "" after a success.
    last_error: str

    def check_battery(self) -> Tuple[float, int, int]:
        """Read RSOC and status -> (rsoc %, battery_operation_status 0 or 3, comm_err 0 or -1);
        never raises ``ESSXException`` ((0.0, 0, -1) on a communication error)."""

    def remote_rsoc_and_status(self) -> None:
        """Read both registers; ``ESSXException`` after all tries."""

    def read_rsoc(self) -> float:
        """The RSOC last read, %."""

    def read_status(self) -> int:
        """The permission last read: 1 permitted, 0 not."""
