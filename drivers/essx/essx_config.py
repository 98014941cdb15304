"""The configuration model: dcdc_batt_comm.yml read once into frozen dataclasses (spec 5.1.3).

The file has the reference's shape: ``ess_system.dcdc_dev`` and
``ess_system.battery_dev`` are lists of one device each (the spec's mapping
form, and ``vparams`` for ``params``, are accepted too); ``dcdc.<config>`` and
``battery.<config>`` hold the detailed settings they point to (top level, or
inside ``ess_system``).

Drop-in rule: every file the reference starts with starts this driver with the
same behaviour.  Keys the reference ignores are ignored here too, and values
it coerces (numbers written as strings, integral floats for counts, the
5-element ``params``) are taken as it takes them; whatever this driver ignores
or reads differently becomes one entry of :attr:`Config.warnings`, naming the
key path and what happens to it (with "did you mean" for a near-miss of a
known key).  A value that cannot work raises ``ESSXConfigException`` whose
one-line message names the file, the key path, the value and what is
expected.  Start-up and ``/remote/ioctl/set`` both go through
:func:`load_config`: one validation path.
"""

import dataclasses
import decimal
import difflib
import logging
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

import yaml

from essx.essx_exception import ESSXConfigException, ESSXException

log = logging.getLogger(__name__)

#: Keys of ``dcdc.<name>.config`` (converter set-up values, physical units).
DCDC_CONFIG_KEYS = ("cib", "ubv", "obv", "ugv", "ogv", "bcf", "cvb", "dlb", "cdb", "ddb", "drb")
#: The specification's table calls four of them by other names.
DCDC_CONFIG_ALIASES = {"tbv": "cvb", "lbv": "dlb", "cud": "cdb", "dld": "ddb"}
#: ``params`` of the converter as the reference passes them to serial.Serial:
#: port, baud rate, byte size, parity, stop bits.
SERIAL_PARAMS = ("port", "baudrate", "bytesize", "parity", "stopbits")
#: pymodbus 2.x ModbusSerialClient options that pymodbus 3 does not have.
PYMODBUS2_KEYS = ("strict", "retry_on_empty", "retry_on_invalid", "close_comm_on_error",
                  "reset_socket", "backoff", "broadcast_enable", "inter_char_timeout", "unit")
PARITIES = ("N", "E", "O", "M", "S")
STOPBITS = (1, 1.5, 2)
BYTESIZES = (5, 6, 7, 8)


@dataclass(frozen=True)
class DcdcDev:
    """``ess_system.dcdc_dev``: the converter's port (ESSXRS485) and addresses.

    ``rs485`` holds the other ESSXRS485 keyword arguments (bytesize, parity,
    stopbits from a 5-element ``params``; ``drop_echo``).
    """

    name: str
    config: str
    port: str
    baudrate: int
    dir_pin: str
    rs485: Dict[str, Any]
    address1: int
    address2: int


@dataclass(frozen=True)
class ModbusParams:
    """``ess_system.battery_dev.kwparams``: the battery's Modbus RTU line.

    timeout in s, baudrate in bit/s; ``dir_pin`` and ``drop_echo`` go to the
    ESSXRS485 the client opens, the rest to pymodbus's ModbusSerialClient.
    """

    port: str
    method: str = "rtu"
    timeout: float = 1.0
    baudrate: int = 9600
    parity: str = "N"
    stopbits: float = 1
    bytesize: int = 8
    retries: int = 0
    dir_pin: str = "P8_9"
    drop_echo: bool = False
    handle_local_echo: bool = False


@dataclass(frozen=True)
class BatteryDev:
    """``ess_system.battery_dev``: the battery's Modbus unit and registers
    (input register numbers 30001..39999, battery-modbus.md)."""

    name: str
    config: str
    kwparams: ModbusParams
    unit: int
    modbus_adr_rsoc: int
    modbus_adr_status: int


@dataclass(frozen=True)
class DcdcSection:
    """``dcdc.<name>``: retries, timings (s) and the converter's set-up values.

    ``config`` maps cib, ubv, obv, ugv, ogv, bcf, cvb, dlb, cdb, ddb, drb to
    numbers exactly as the reference would pass them to the Q-format encoder
    (int, float, or Decimal for a number written as a string; bcf an int).
    ``line_wait``: how long a request may wait for the converter line before
    it is refused with nothing sent.
    """

    type: str
    number_of_dcdc_error_retry: int
    number_of_timeout_retry: int
    wait_for_retry: float
    command_interval: float
    timeout: float
    line_wait: float
    config: Dict[str, Any]


@dataclass(frozen=True)
class BatterySection:
    """``battery.<name>.config``: provisional battery_voltage (V) and
    battery_current (A) of /1/log/data, force_dcdc_waiting, and the watch
    thread's check_interval (s)."""

    type: str
    battery_voltage: float
    battery_current: float
    force_dcdc_waiting: bool
    check_interval: float


@dataclass(frozen=True)
class Config:
    """A checked configuration; ``battery_dev`` is None for ``class: 'None'``.

    ``warnings``: one line per key this driver ignores or reads differently
    from the reference, each naming the file and key path.
    """

    path: str
    dcdc_dev: DcdcDev
    battery_dev: Optional[BatteryDev]
    dcdc: DcdcSection
    battery: BatterySection
    warnings: Tuple[str, ...] = ()


def load_config(path: str, *, strict: bool = False) -> Config:
    """Read and check the YAML file at ``path``.

    Args:
        strict: turn every warning into an error (``--strict-config``).
    Raises:
        ESSXConfigException: unreadable or non-UTF-8 file, bad YAML, or a
            value that cannot work; one line naming the file and key path.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ESSXConfigException("cannot read configuration %s: %s" % (path, e.strerror or e)) from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ESSXConfigException("configuration %s is not UTF-8 text (byte 0x%02x at offset %d): save it as UTF-8"
                                  % (path, data[e.start], e.start)) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ESSXConfigException("configuration %s is not valid YAML: %s"
                                  % (path, " ".join(str(e).split()))) from None
    return parse_config(doc, path, strict=strict)


def parse_config(doc: Any, path: str = "<config>", *, strict: bool = False) -> Config:
    """Check an already parsed document; see :func:`load_config`."""
    r = _Reader(path)
    root = r.mapping(doc, "(top level)")
    r.known(root, ("ess_system", "dcdc", "battery"), "")
    ess = r.mapping(r.get(root, "ess_system", ""), "ess_system")
    r.known(ess, ("type", "dcdc_dev", "battery_dev", "dcdc", "battery"), "ess_system")
    if ess.get("type") != "essx_type_oes":
        r.fail("ess_system.type", ess.get("type"), "expected 'essx_type_oes'")
    dcdc_raw = _device(r, ess, "dcdc_dev")
    bat_raw = _device(r, ess, "battery_dev")
    dcdc_dev = _dcdc_dev(r, dcdc_raw)
    dcdc = _dcdc_section(r, *_section(r, root, ess, "dcdc", dcdc_dev.config))
    battery_dev = _battery_dev(r, bat_raw)
    if battery_dev is None:
        battery = _battery_section(r, *_section(r, root, ess, "battery", bat_raw.get("config"), optional=True))
    else:
        battery = _battery_section(r, *_section(r, root, ess, "battery", battery_dev.config))
    if strict and r.warnings:
        raise ESSXConfigException("%s (--strict-config turns this warning into an error)" % r.warnings[0])
    return Config(path=path, dcdc_dev=dcdc_dev, battery_dev=battery_dev, dcdc=dcdc, battery=battery,
                  warnings=tuple(r.warnings))


def log_warnings(config: Config) -> None:
    """Log each of ``config.warnings`` once, at WARNING."""
    for line in config.warnings:
        log.warning("%s", line)


def modbus_params(kwparams: Mapping[str, Any], where: str = "ess_system.battery_dev.kwparams",
                  path: str = "<config>") -> ModbusParams:
    """Check the battery's Modbus keyword parameters (the reference's
    ``ESSXModbusClient(**kwparams)``); the one validator of these keys.

    Keys of pymodbus 2.x that pymodbus 3 lacks, and unknown keys, are ignored
    with a warning (logged here; collected in :attr:`Config.warnings` when
    called through :func:`load_config`).
    Raises:
        ESSXConfigException: ``port`` missing, or a value that cannot work.
    """
    r = _Reader(path)
    params = _modbus_params(r, kwparams, where)
    for line in r.warnings:
        log.warning("%s", line)
    return params


def restart_needed(old: Config, new: Config) -> List[str]:
    """Key paths whose change a reload cannot apply (ports, addresses, units):
    ``["ess_system.dcdc_dev"]`` when the converter device changed, etc."""
    return [where for where, a, b in (("ess_system.dcdc_dev", old.dcdc_dev, new.dcdc_dev),
                                      ("ess_system.battery_dev", old.battery_dev, new.battery_dev))
            if a != b]


# -- devices -----------------------------------------------------------------

def _device(r, ess, key):
    """The first device of ``ess_system.<key>`` (list or mapping form) as a mapping."""
    where = "ess_system.%s" % key
    value = r.get(ess, key, "ess_system")
    if isinstance(value, list):
        if not value:
            r.fail(where, value, "expected one device")
        if len(value) > 1:
            r.warn(where, "lists %d devices; only the first is used, as by the reference" % len(value))
        value = value[0]
        where += "[0]"
    return r.mapping(value, where)


def _dcdc_dev(r, dev):
    where = "ess_system.dcdc_dev"
    r.known(dev, ("name", "config", "class", "params", "vparams", "kwparams", "address1", "address2"), where)
    cls = r.get(dev, "class", where)
    if cls != "ESSXRS485":
        r.fail(where + ".class", cls, "expected 'ESSXRS485'")
    serial = _serial_params(r, dev, where)
    kw = dict(r.mapping(dev.get("kwparams") or {}, where + ".kwparams"))
    rs485 = {k: serial[k] for k in ("bytesize", "parity", "stopbits") if k in serial}
    for key in ("bytesize", "parity", "stopbits"):
        if key in kw:
            rs485[key] = _serial_value(r, key, kw.pop(key), "%s.kwparams.%s" % (where, key))
    if "drop_echo" in kw:
        rs485["drop_echo"] = r.boolean(kw.pop("drop_echo"), where + ".kwparams.drop_echo")
    dir_pin = r.text(kw.pop("dir_pin", "P8_9"), where + ".kwparams.dir_pin")
    r.known(kw, (), where + ".kwparams", what="serial option this driver does not use")
    return DcdcDev(
        name=r.text(dev.get("name", "dcdc1"), where + ".name"),
        config=r.text(r.get(dev, "config", where), where + ".config"),
        port=serial["port"], baudrate=serial["baudrate"], dir_pin=dir_pin, rs485=rs485,
        address1=r.integer(dev.get("address1", 0), where + ".address1", 0, 255),
        address2=r.integer(dev.get("address2", 16), where + ".address2", 0, 255),
    )


def _serial_params(r, dev, where):
    """``params`` as serial.Serial takes it positionally: [port, baudrate,
    bytesize, parity, stopbits] (the reference's ``ESSXRS485(*params)``)."""
    key = "params" if "params" in dev else "vparams"
    if key not in dev:
        r.fail(where + ".params", None, 'expected [device file, baud rate], e.g. ["/dev/ttyO2", 19200]')
    params = dev[key]
    if not isinstance(params, list) or not 1 <= len(params) <= len(SERIAL_PARAMS):
        r.fail(where + "." + key, params,
               'expected [device file, baud rate] (up to [port, baudrate, bytesize, parity, stopbits])')
    out = {"port": r.text(params[0], "%s.%s[0]" % (where, key)), "baudrate": 19200}
    for i, name in enumerate(SERIAL_PARAMS[1:len(params)], start=1):
        out[name] = _serial_value(r, name, params[i], "%s.%s[%d]" % (where, key, i))
    return out


def _serial_value(r, name, value, where):
    """A checked serial setting: baudrate (bit/s), bytesize, parity or stopbits."""
    if name == "baudrate":
        return r.integer(value, where, 50, 4000000)
    if name == "bytesize":
        return r.choice(r.integer(value, where, 5, 8), where, BYTESIZES)
    if name == "parity":
        return r.choice(str(value).upper(), where, PARITIES)
    return r.choice(r.number(value, where, 1, 2), where, STOPBITS)


def _battery_dev(r, dev):
    where = "ess_system.battery_dev"
    r.known(dev, ("name", "config", "class", "params", "kwparams", "unit", "modbus_adr_rsoc",
                  "modbus_adr_status"), where)
    cls = dev.get("class")
    if cls in (None, "None"):
        return None
    if cls not in ("ESSXModbus", "ESSXModbusClient"):
        r.fail(where + ".class", cls, "expected 'ESSXModbus' or 'None'")
    kw = dict(r.mapping(r.get(dev, "kwparams", where), where + ".kwparams"))
    params = dev.get("params") or []
    if not isinstance(params, list):
        r.fail(where + ".params", params, "expected a list (the reference's positional arguments), e.g. []")
    if params:  # pymodbus 2.x: ModbusSerialClient(method, **kwargs)
        kw.setdefault("method", params[0])
        if len(params) > 1:
            r.warn(where + ".params", "only the first element (method) is used; %r ignored" % (params[1:],))
    return BatteryDev(
        name=r.text(dev.get("name", "battery"), where + ".name"),
        config=r.text(r.get(dev, "config", where), where + ".config"),
        kwparams=_modbus_params(r, kw, where + ".kwparams"),
        unit=r.integer(dev.get("unit", 1), where + ".unit", 1, 247),
        modbus_adr_rsoc=r.integer(dev.get("modbus_adr_rsoc", 30030), where + ".modbus_adr_rsoc", 30001, 39999),
        modbus_adr_status=r.integer(dev.get("modbus_adr_status", 30031), where + ".modbus_adr_status",
                                    30001, 39999),
    )


def _modbus_params(r, kw, where):
    kw = dict(r.mapping(kw, where))
    for key in PYMODBUS2_KEYS:
        if key in kw:
            kw.pop(key)
            r.warn("%s.%s" % (where, key), "a pymodbus 2.x option that pymodbus 3 does not have; ignored")
    r.known(kw, tuple(f.name for f in dataclasses.fields(ModbusParams)), where)
    method = str(kw.get("method", "rtu")).lower()
    return ModbusParams(
        port=r.text(r.get(kw, "port", where), where + ".port"),
        method=r.choice(method, where + ".method", ("rtu", "ascii")),
        timeout=float(r.number(kw.get("timeout", 1), where + ".timeout", 0.01, 60)),
        baudrate=_serial_value(r, "baudrate", kw.get("baudrate", 9600), where + ".baudrate"),
        parity=_serial_value(r, "parity", kw.get("parity", "N"), where + ".parity"),
        stopbits=_serial_value(r, "stopbits", kw.get("stopbits", 1), where + ".stopbits"),
        bytesize=_serial_value(r, "bytesize", kw.get("bytesize", 8), where + ".bytesize"),
        retries=r.integer(kw.get("retries", 0), where + ".retries", 0, 10),
        dir_pin=r.text(kw.get("dir_pin", "P8_9"), where + ".dir_pin"),
        drop_echo=r.boolean(kw.get("drop_echo", False), where + ".drop_echo"),
        handle_local_echo=r.boolean(kw.get("handle_local_echo", False), where + ".handle_local_echo"),
    )


# -- sections -----------------------------------------------------------------

def _section(r, root, ess, key, name, optional=False):
    """The ``<key>.<name>`` section and its key path; ``dcdc``/``battery``
    live at the top level (reference) or in ``ess_system``.  With
    ``optional`` (no battery fitted) a missing section is ``{}``."""
    holder, prefix = (root, key) if key in root else (ess, "ess_system." + key)
    if key not in holder:
        if optional:
            return {}, key
        r.fail(key, None, "expected a mapping of %s configurations at the top level" % key)
    sections = r.mapping(holder[key], prefix)
    if optional and name not in sections:
        return {}, prefix
    where = "%s.%s" % (prefix, name)
    return r.mapping(r.get(sections, name, prefix), where), where


def _dcdc_section(r, sec, where):
    r.known(sec, ("type", "number_of_dcdc_error_retry", "number_of_timeout_retry", "wait_for_retry",
                  "wait_retry", "command_interval", "timeout", "line_wait", "config"), where)
    if "wait_retry" in sec and "wait_for_retry" not in sec:
        r.warn(where + ".wait_retry", "read as wait_for_retry, in seconds (the reference truncates it "
               "to a whole number of seconds with int())")
    wait = sec.get("wait_for_retry", sec.get("wait_retry", 0.1))
    return DcdcSection(
        type=str(sec.get("type", "tdk_eza2500")),
        number_of_dcdc_error_retry=r.integer(sec.get("number_of_dcdc_error_retry", 0),
                                             where + ".number_of_dcdc_error_retry", 0, 100),
        number_of_timeout_retry=r.integer(sec.get("number_of_timeout_retry", 0),
                                          where + ".number_of_timeout_retry", 0, 100),
        wait_for_retry=float(r.number(wait, where + ".wait_for_retry", 0, 60)),
        command_interval=float(r.number(sec.get("command_interval", 0.062), where + ".command_interval", 0, 10)),
        timeout=float(r.number(sec.get("timeout", 0.1), where + ".timeout", 0.01, 60)),
        line_wait=float(r.number(sec.get("line_wait", 5.0), where + ".line_wait", 0.1, 600)),
        config=_setup_values(r, r.mapping(r.get(sec, "config", where), where + ".config"), where + ".config"),
    )


def _setup_values(r, raw, where):
    """cib..drb from ``dcdc.<name>.config``, range-checked by the very
    commands that will send them (6-4, 7-4, 3-4)."""
    config = {}
    for key, value in raw.items():
        canon = DCDC_CONFIG_ALIASES.get(key, key)
        if canon == key:
            if key in DCDC_CONFIG_KEYS:
                config[key] = value
        elif canon in raw:
            r.warn("%s.%s" % (where, key), "ignored: %s is given too" % canon)
        else:
            r.warn("%s.%s" % (where, key), "read as %s (the specification's name; the reference "
                   "ignores %s)" % (canon, key))
            config[canon] = value
    r.known(raw, DCDC_CONFIG_KEYS + tuple(DCDC_CONFIG_ALIASES), where)
    for key in DCDC_CONFIG_KEYS:
        if key not in config:
            r.fail("%s.%s" % (where, key), None, "expected a number")
        if key == "bcf":
            config[key] = r.integer(config[key], where + ".bcf", 0, 0xFFFF)
        else:
            config[key] = r.number(config[key], "%s.%s" % (where, key), exact=True)
    _check_setup_ranges(r, config, where)
    return config


def _check_setup_ranges(r, config, where):
    from eza2500 import Command0304, Command0604, Command0704  # the command table is the authority

    checks = (
        (Command0604, dict({k: config[k] for k in ("cib", "ubv", "ugv", "obv", "ogv")}, dig=0)),
        (Command0704, {k: config[k] for k in ("bcf", "cvb", "dlb", "cdb", "ddb")}),
        (Command0304, {"cvb": config["cvb"], "drb": config["drb"]}),
    )
    for cls, params in checks:
        try:
            cls(None).pack_senddata(0, 0, params)
        except ESSXException as e:
            raise ESSXConfigException("configuration %s: %s: %s" % (r.path, where, e)) from None


def _battery_section(r, sec, where):
    r.known(sec, ("type", "config"), where)
    raw = r.mapping(sec.get("config") or {}, where + ".config")
    r.known(raw, ("battery_voltage", "battery_current", "force_dcdc_waiting", "check_interval"), where + ".config")
    return BatterySection(
        type=str(sec.get("type", "battery_emulator")),
        battery_voltage=r.number(raw.get("battery_voltage", 52.0), where + ".config.battery_voltage"),
        battery_current=r.number(raw.get("battery_current", 20.0), where + ".config.battery_current"),
        force_dcdc_waiting=_force_waiting(r, raw.get("force_dcdc_waiting", False),
                                          where + ".config.force_dcdc_waiting"),
        check_interval=float(r.number(raw.get("check_interval", 10), where + ".config.check_interval", 0.1, 3600)),
    )


def _force_waiting(r, value, where):
    """The reference tests ``value == True``: a YAML boolean, or 1/0."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return value == 1
    r.warn(where, "%r is not a YAML boolean; read as No, as the reference does "
                  "(write Yes/No or true/false without quotes)" % (value,))
    return False


# -- the reader ---------------------------------------------------------------

class _Reader:
    """Typed getters for one document: errors name the file and key path,
    warnings are collected in ``warnings``."""

    def __init__(self, path):
        self.path = path
        self.warnings = []

    def fail(self, where, value, expected):
        shown = " is missing" if value is None else "=%r" % (value,)
        raise ESSXConfigException("configuration %s: %s%s: %s" % (self.path, where, shown, expected))

    def warn(self, where, text):
        self.warnings.append("configuration %s: %s: %s" % (self.path, where, text))

    def known(self, mapping, keys, where, what="key this driver does not use"):
        """Warn about each key of ``mapping`` not in ``keys`` (ignored, as by the reference)."""
        for key in mapping:
            if key in keys:
                continue
            path = "%s.%s" % (where, key) if where else str(key)
            near = difflib.get_close_matches(str(key), keys, n=1, cutoff=0.8)
            hint = "did you mean %s? " % near[0] if near else ""
            self.warn(path, "%sunknown %s; ignored" % (hint, what))

    def get(self, mapping, key, where):
        if key not in mapping:
            self.fail("%s.%s" % (where, key) if where else key, None, "add it")
        return mapping[key]

    def mapping(self, value, where):
        if not isinstance(value, dict):
            self.fail(where, value, "expected a mapping")
        return value

    def text(self, value, where):
        if not isinstance(value, str) or not value:
            self.fail(where, value, "expected a non-empty string")
        return value

    def choice(self, value, where, allowed):
        if value not in allowed:
            self.fail(where, value, "expected one of %s" % ", ".join(str(a) for a in allowed))
        return value

    def boolean(self, value, where):
        if not isinstance(value, bool):
            self.fail(where, value, "expected true/false")
        return value

    def integer(self, value, where, lo, hi):
        """A whole number: int, an integral float (3.0, as int() takes it) or
        a numeric string ("3", "0x0003")."""
        number = value
        if isinstance(value, str):
            try:
                number = int(value.strip(), 0)
            except ValueError:
                number = None
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        if isinstance(number, bool) or not isinstance(number, int):
            self.fail(where, value, "expected a whole number from %d to %d" % (lo, hi))
        if not lo <= number <= hi:
            self.fail(where, value, "out of range: expected %d to %d" % (lo, hi))
        return number

    def number(self, value, where, lo=None, hi=None, exact=False):
        """A finite number.  A numeric string becomes a Decimal when
        ``exact`` (a Q-format value: the reference's Decimal(str)), else a
        float with a warning."""
        number = value
        if isinstance(value, str):
            try:
                number = decimal.Decimal(value.strip())
            except decimal.InvalidOperation:
                number = None
            else:
                if not exact:
                    number = float(number)
                    self.warn(where, "the string %r is read as the number %s" % (value, number))
        if isinstance(number, bool) or not isinstance(number, (int, float, decimal.Decimal)) \
                or not math.isfinite(number):
            self.fail(where, value, "expected a number")
        if (lo is not None and number < lo) or (hi is not None and number > hi):
            self.fail(where, value, "out of range: expected %s to %s" % (lo, hi))
        return number
