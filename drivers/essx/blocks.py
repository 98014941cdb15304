"""The Web API's response blocks, described once (docs/web-api.md, "Blocks" and "Units";
the component schemas of drivers/openapi.json).

A ``Block`` is a JSON object: its key ("meter"; None for a whole body) and its
items in key order, each a ``Field`` or a nested ``Block``.  A ``Field`` names
its key, its unit ("V", "A", "W", "°C", "%"; "" for none) and its sources: a
field of a converter reply (``Reply``: a command and field of
``eza2500.table``, e.g. 10-1 ``vg``), a configuration value (``Setup``,
``BatteryConfig``, ``ConverterName``), a value of the battery read
(``BatteryRead``) or a constant (``Constant``); with several sources, or
with a value that is not the source's as is, ``make`` turns the sources'
values into the field's.

:meth:`Block.shape` builds the JSON object from ``Readings``, the values at
hand; the controller (``essx.essx_type_oes``) shapes every body so, and the
service takes its keys, units and sources from here.  The bodies of the
controller's methods and of the routes that keep part of one are described
at the end (docs/web-api.md, "Routes").
"""
import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Tuple, Union

from eza2500 import table

#: Units as docs/web-api.md, "Units" writes them; "" for none (a droop rate, a code, a count).
VOLT, AMPERE, WATT, CELSIUS, PERCENT, NONE = "V", "A", "W", "°C", "%", ""


@dataclass(frozen=True)
class Readings:
    """The values a body is made of.

    Attributes:
        reply: the fields of the converter replies received, by field name
            ({"mode": 20, "vg": 350.0, ...}; those of several commands merged:
            no name is in two of a sequence's replies).
        setup: the converter's set-up values, ``dcdc.<name>.config``
            (``DcdcSection.config``: cib A, ubv V, ..., bcf int).
        battery_config: the battery's section, ``battery.<name>.config``
            (``BatterySection``: battery_voltage V, battery_current A).
        battery: the battery read: {"rsoc": %, "operation_status": 0 or 3,
            "comm_err": 0 or -1} (``BatteryEmulator.check_battery``).
        name: the converter's name (``ess_system.dcdc_dev.name``).
    """

    reply: Mapping[str, Any] = field(default_factory=dict)
    setup: Mapping[str, Any] = field(default_factory=dict)
    battery_config: Any = None
    battery: Mapping[str, Any] = field(default_factory=dict)
    name: Optional[str] = None


@dataclass(frozen=True)
class Reply:
    """A field of a converter reply: ``command`` the read ("10-1") and ``field``
    its name in ``eza2500.table`` ("vg"); the ACK of the group's write carries it
    too when the write has it (4-4 ``dvg``; docs/eza2500-protocol.md, "Command table").

    Raises:
        KeyError: a command the table lacks; ValueError: a field its reply lacks.
    """

    command: str
    field: str

    def __post_init__(self) -> None:
        group, write = table.parse_name(self.command)
        if self.field not in {f.name for f in group.ack_fields(write)}:
            raise ValueError("%s carries no field %r" % (self.command, self.field))

    @property
    def group(self) -> int:
        """The command group's number (10 for "10-1")."""
        return table.parse_name(self.command)[0].number

    @property
    def table_field(self) -> table.Field:
        """The ``eza2500.table.Field`` (its Q-format, rating and unit)."""
        group, write = table.parse_name(self.command)
        return next(f for f in group.ack_fields(write) if f.name == self.field)

    @property
    def carried_by(self) -> Tuple[str, ...]:
        """The commands whose reply carries the field: ("4-1", "4-4"), ("10-1",)."""
        group = table.group(self.group)
        written = group.write is not None and any(f.name == self.field for f in group.write)
        return (group.name(False), group.name(True)) if written else (group.name(False),)

    def read(self, readings: Readings) -> Any:
        """The field's value in ``readings.reply``; KeyError when no reply carried it."""
        return readings.reply[self.field]


@dataclass(frozen=True)
class Setup:
    """A converter set-up value, ``dcdc.<name>.config`` ``key`` (docs/web-api.md, "param"),
    as written there (52, not 52.0); the write that sends it is in ``eza2500.table``."""

    key: str

    @property
    def table_field(self) -> table.Field:
        """The ``eza2500.table.Field`` of the write that sends it (6-4, 7-4, 3-4); its unit."""
        return next(f for g in table.GROUPS for f in g.write or () if f.name == self.key)

    def read(self, readings: Readings) -> Any:
        """``readings.setup[key]``; KeyError when the configuration lacks it."""
        return readings.setup[self.key]


@dataclass(frozen=True)
class BatteryConfig:
    """A value of the battery's section, ``battery.<name>.config`` ``key``
    (docs/web-api.md, "battery block": the provisional battery_voltage, battery_current)."""

    key: str

    def read(self, readings: Readings) -> Any:
        """The section's attribute ``key``; AttributeError when it has none."""
        return getattr(readings.battery_config, self.key)


@dataclass(frozen=True)
class BatteryRead:
    """A value of the battery read (``BatteryEmulator.check_battery``; docs/battery-registers.md):
    "rsoc" (%), "operation_status" (0 not permitted, 3 permitted), "comm_err" (0, -1)."""

    key: str

    def read(self, readings: Readings) -> Any:
        """``readings.battery[key]``; KeyError when the battery was not read."""
        return readings.battery[self.key]


@dataclass(frozen=True)
class ConverterName:
    """The converter's name, ``ess_system.dcdc_dev.name`` (docs/web-api.md, "/remote/ioctl/set")."""

    def read(self, readings: Readings) -> Any:
        """``readings.name``."""
        return readings.name


@dataclass(frozen=True)
class Constant:
    """A value that never changes (the reference's placeholders: 0, "Ignore")."""

    value: Any

    def read(self, readings: Readings) -> Any:
        """``value``."""
        return self.value


Source = Union[Reply, Setup, BatteryConfig, BatteryRead, ConverterName, Constant]


@dataclass(frozen=True)
class Field:
    """One key of a block: its ``unit`` ("" none), its ``sources`` and ``make``,
    which turns the sources' values (in order) into the JSON value (None: the
    one source's value as is); ``text`` says what it is."""

    key: str
    unit: str
    sources: Tuple[Source, ...]
    text: str
    make: Optional[Callable[..., Any]] = None

    def value(self, readings: Readings) -> Any:
        """The field's JSON value from ``readings``; raises as the sources' ``read``."""
        return self.make_from([source.read(readings) for source in self.sources])

    def make_from(self, values: Any) -> Any:
        """The field's JSON value from its sources' values, in order."""
        return self.make(*values) if self.make is not None else values[0]


@dataclass(frozen=True)
class Block:
    """A JSON object: ``key`` (None for a whole body) and its items in key order."""

    key: Optional[str]
    items: Tuple[Union[Field, "Block"], ...]
    text: str = ""

    def keys(self) -> Tuple[str, ...]:
        """The keys of the object, in order."""
        return tuple(item.key for item in self.items)

    def item(self, key: str) -> Union[Field, "Block"]:
        """The item of ``key``; KeyError when there is none."""
        for item in self.items:
            if item.key == key:
                return item
        raise KeyError(key)

    def only(self, *keys: str) -> "Block":
        """The block with the items of ``keys`` alone, in the order given; KeyError as :meth:`item`."""
        return Block(self.key, tuple(self.item(k) for k in keys), self.text)

    def fields(self) -> Iterator[Field]:
        """Every field, nested blocks' included, in key order."""
        for item in self.items:
            if isinstance(item, Block):
                yield from item.fields()
            else:
                yield item

    def replies(self) -> Tuple[Reply, ...]:
        """The converter reply fields the block is made of, each once, by command
        group then in the reply's wire order (docs/eza2500-protocol.md, "Command table")."""
        found = {s for f in self.fields() for s in f.sources if isinstance(s, Reply)}
        order = {(g.number, f.name): i for g in table.GROUPS for i, f in enumerate(g.read)}
        return tuple(sorted(found, key=lambda s: (s.group, order[s.group, s.field])))

    def reply_fields(self) -> Tuple[Field, ...]:
        """The fields that show one reply field as it is (meter, vdis, dig), in
        the order of :meth:`replies`."""
        plain = {f.sources[0]: f for f in self.fields()
                 if len(f.sources) == 1 and isinstance(f.sources[0], Reply) and f.make is None}
        return tuple(plain[s] for s in self.replies() if s in plain)

    def shape(self, readings: Readings) -> Dict[str, Any]:
        """The JSON object from ``readings``: {key: value} in key order; raises as
        the sources' ``read`` (a reply field not received, a configuration key absent)."""
        return {item.key: item.value(readings) for item in self.items}

    def value(self, readings: Readings) -> Dict[str, Any]:
        """As :meth:`shape` (a nested block is an item like a field)."""
        return self.shape(readings)


def _zero(key: str, text: str = "Always 0") -> Field:
    return Field(key, NONE, (Constant(0),), text)


def _zeros(key: Optional[str], keys: str, text: str) -> Block:
    return Block(key, tuple(_zero(k) for k in keys.split()), text)


def _reply(key: str, unit: str, command: str, text: str) -> Field:
    """A field showing reply field ``key`` of ``command`` as it is."""
    return Field(key, unit, (Reply(command, key),), text)


def _setup(key: str, unit: str, text: str) -> Field:
    return Field(key, unit, (Setup(key),), text)


def _hex4(code: int) -> str:
    return "0x%04x" % code


def _alarm(alm1: int, cst: int) -> str:
    running, alarm_state = table.decode_cst(cst)
    return "%04x %04x %04x" % (alm1, alarm_state, running)


# --- the converter's status words (docs/eza2500-protocol.md, "Status word decoding") ---

#: The operation mode, from 1-1 or the 1-4 ACK.
MODE = Reply("1-1", "mode")
#: The status word ``cst`` (2-1): bits 0-1 running state, bits 2-3 alarm state.
CST = Reply("2-1", "cst")
#: The alarm word ``alm1`` (9-1).
ALM1 = Reply("9-1", "alm1")

# --- the blocks (docs/web-api.md, "Blocks") ---------------------------------------------

#: ``status``: the mode, the status and alarm words decoded (openapi.json ``Status``).
STATUS = Block("status", (
    Field("status", NONE, (MODE,), 'The converter\'s operation mode, "0x%04x"', _hex4),
    Field("alarmState", NONE, (CST,), "cst bits 2-3: No alarm, Light alarm, Heavy alarm",
          lambda cst: table.cst_names(cst)[1]),
    Field("statusName", NONE, (Constant("Ignore"),), 'Always "Ignore"'),
    Field("alarm", NONE, (ALM1, CST), '"%04x %04x %04x" of alm1, the alarm state and the running state',
          _alarm),
    Field("runningState", NONE, (CST,), "cst bits 0-1: off, charge, discharge",
          lambda cst: table.cst_names(cst)[0]),
    Field("operationMode", NONE, (MODE,), "Name of the operation mode", table.mode_name),
), "The converter's mode and status words (1-1, 2-1, 9-1)")

#: ``status`` of /remote/get/status (openapi.json ``StatusShort``).
STATUS_SHORT = STATUS.only("alarmState", "runningState", "operationMode")

#: ``meter``: the 10-1 meters (openapi.json ``Meter``); charging makes ig, wg, ib, wb positive
#: (docs/eza2500-protocol.md, "Sign convention of the meters").
METER = Block("meter", (
    _reply("wg", WATT, "10-1", "Grid-side power"),
    _reply("tmp", CELSIUS, "10-1", "Converter temperature"),
    _reply("vb", VOLT, "10-1", "Battery-side voltage"),
    _reply("wb", WATT, "10-1", "Battery-side power"),
    _reply("vg", VOLT, "10-1", "Grid-side voltage"),
    _reply("ib", AMPERE, "10-1", "Battery-side current"),
    _reply("ig", AMPERE, "10-1", "Grid-side current"),
), "The meters (10-1)")

#: ``vdis``: 4-1, or the 4-4 ACK after a set (openapi.json ``Vdis``).
VDIS = Block("vdis", (
    _reply("dvg", VOLT, "4-1", "Grid voltage set-point"),
    _reply("drg", NONE, "4-1", "Droop ratio"),
), "The grid voltage set-point and droop (4-1 or the 4-4 ACK)")

#: ``dcdc_setup_parameter``: the set-up values /remote/ioctl/set wrote, from the configuration.
SETUP = Block("dcdc_setup_parameter", (
    _setup("ubv", VOLT, "Battery low-voltage threshold"),
    _setup("ugv", VOLT, "Grid low-voltage threshold"),
    _setup("obv", VOLT, "Battery over-voltage threshold"),
    _setup("ogv", VOLT, "Grid over-voltage threshold"),
    _setup("cvb", VOLT, "Battery target voltage"),
    _setup("dlb", VOLT, "Battery end-of-discharge voltage"),
    _setup("cdb", VOLT, "Battery maximum-charge notice voltage deviation"),
    _setup("ddb", VOLT, "Battery end-of-charge notice voltage deviation"),
    _setup("drb", NONE, "Battery droop rate"),
    _setup("cib", AMPERE, "Maximum battery current"),
    Field("bcf", NONE, (Setup("bcf"),), 'Converter settings bit field, "0x%04x"',
          lambda bcf: _hex4(int(bcf))),
), "The set-up values written (6-4, 7-4, 3-4), from the configuration")

#: ``powermeter``: no power meter is fitted (openapi.json ``Powermeter``).
POWERMETER = _zeros("powermeter", "p1 p2 v1 i1 kwh1 kwh2", "No power meter is fitted: all 0")

#: The provisional battery values of the battery's section (docs/web-api.md, "battery block").
BATTERY_VOLTAGE, BATTERY_CURRENT = BatteryConfig("battery_voltage"), BatteryConfig("battery_current")

#: The battery block, the body of /1/log/data (openapi.json ``LogData``).
BATTERY = Block(None, (
    _zeros("system_time", "year month day hour minute", "All 0"),
    Field("rsoc", PERCENT, (BatteryRead("rsoc"),), "Battery relative state of charge"),
    Field("battery_rsoc", PERCENT, (BatteryRead("rsoc"),), "The same as rsoc"),
    _zeros("dischargeable_time", "hour minute", "Both 0"),
    Field("battery_voltage", VOLT, (BATTERY_VOLTAGE,), "Configured provisional battery voltage"),
    Field("battery_current", AMPERE, (BATTERY_CURRENT,), "Configured provisional battery current"),
    Field("charge_discharge_power", WATT, (BATTERY_VOLTAGE, BATTERY_CURRENT),
          "battery_voltage × battery_current", operator.mul),
    _zero("battery_status"),
    _zero("battery_warning"),
    Field("battery_operation_status", NONE, (BatteryRead("operation_status"),),
          "0 interchange not permitted, 3 permitted (status register bit 0)"),
    Field("battery_comm_err", NONE, (BatteryRead("comm_err"),),
          "0 (a battery that cannot be read fails the call instead)"),
    _zero("ups_operation_schedule"),
    _zeros("ups_operation_mode", "mode parameter stop_mode", "All 0"),
), "The battery block (the battery read and the battery's section)")

#: ``param``: the configured limits and dig from 6-1, or the 6-4 ACK after a set
#: (openapi.json ``Param``); these are also the values a 6-4 sends.
PARAM = Block("param", SETUP.only("cib", "ubv", "ogv", "obv", "ugv").items + (
    _reply("dig", AMPERE, "6-1", "Grid current limit"),
), "The configured limits and the grid current limit (6-1 or the 6-4 ACK)")

# --- the bodies (docs/web-api.md, "Routes") ---------------------------------------------

#: ``log_data`` (/1/log/data).
LOG_DATA = BATTERY
#: ``remote_get`` (/remote/get, /remote/ioctl/clr_alarm).
REMOTE_GET = Block(None, (STATUS, POWERMETER, METER, VDIS, PARAM), "/remote/get")
#: ``remote_get_status`` (/remote/get/status, /dcdc/get/status).
REMOTE_GET_STATUS = Block(None, (STATUS_SHORT, METER), "/remote/get/status")
#: ``remote_set`` and ``set_waiting`` (/remote/set, /dcdc/set).
REMOTE_SET = Block(None, (STATUS, METER, VDIS, PARAM), "/remote/set")
#: ``remote_set_current`` (/remote/set/current).
SET_CURRENT = Block(None, (METER, PARAM), "/remote/set/current")
#: ``remote_set_voltage`` (/remote/set/voltage).
SET_VOLTAGE = Block(None, (METER, VDIS), "/remote/set/voltage")
#: ``remote_ioctl_set`` (/remote/ioctl/set).
IOCTL_SET = Block(None, (Field("dcdc_converter_name", NONE, (ConverterName(),), "The converter's name"),
                         SETUP), "/remote/ioctl/set")
#: ``remote_ioctl_get`` (/remote/ioctl/get): /remote/get's body, then the battery block's keys.
IOCTL_GET = Block(None, REMOTE_GET.items + BATTERY.items, "/remote/ioctl/get")
#: /battery/get: of /1/log/data's body, these keys.
BATTERY_GET = BATTERY.only("rsoc", "battery_operation_status")
#: /dcdc/get (interface 2.0): /remote/get without ``powermeter``.
DCDC_GET = REMOTE_GET.only("status", "meter", "vdis", "param")
#: /all/get (interface 2.0, apis-main's poll): of /remote/ioctl/get's body, these keys.
ALL_GET = IOCTL_GET.only("rsoc", "battery_operation_status", "meter", "param", "status", "vdis")
