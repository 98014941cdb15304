"""The configuration model: dcdc_batt_comm.yml read once into frozen dataclasses (spec 5.1.3).

Drop-in rule: a file the reference starts with starts this driver with the same effect.
Its shape (device lists, ``dcdc.<config>``/``battery.<config>`` at the top level), the
spec's forms (a device mapping, ``vparams``, sections in ``ess_system``) and the
reference's coercions (numbers in strings, integral floats for counts, the 5-element
``params``) are accepted, what is read differently is a :attr:`Config.warnings` line.
"""

import decimal
import logging
from contextlib import suppress
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import yaml

from essx.deadline import DEFAULT_S as DEFAULT_DEADLINE_S
from essx.essx_exception import ESSXConfigException, ESSXException
from eza2500 import Command0304, Command0604, Command0704

log = logging.getLogger(__name__)

#: Keys of ``dcdc.<name>.config`` (converter set-up values, physical units).
DCDC_CONFIG_KEYS = ("cib", "ubv", "obv", "ugv", "ogv", "bcf", "cvb", "dlb", "cdb", "ddb", "drb")
#: The specification's table calls four of them by other names.
DCDC_CONFIG_ALIASES = {"tbv": "cvb", "lbv": "dlb", "cud": "cdb", "dld": "ddb"}
#: The converter's ``params`` as the reference passes them to serial.Serial.
SERIAL_PARAMS = ("port", "baudrate", "bytesize", "parity", "stopbits")
#: How long apis-main waits for one answer, s (docs/apis-main.md).
APIS_MAIN_ATTEMPT_S = 5.0
#: PyYAML's libyaml loader where PyYAML was built with it, else its Python one: the same
#: documents, ten times less CPU (/remote/ioctl/set reads the file at every call).
FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: pymodbus 2.x ModbusSerialClient options that pymodbus 3 does not have.
PYMODBUS2_KEYS = ("strict", "retry_on_empty", "retry_on_invalid", "close_comm_on_error",
                  "reset_socket", "backoff", "broadcast_enable", "inter_char_timeout", "unit")


def _key(kind: str, default: Any = MISSING, *bounds: Any) -> Any:
    """A field read from the YAML key of its name by the ``_Reader`` method ``kind``
    (with ``bounds``), ``default`` when absent."""
    return field(default=default, metadata={"read": (kind, bounds)})


@dataclass(frozen=True, kw_only=True)
class DcdcDev:
    """``ess_system.dcdc_dev``: the converter's port (baudrate in bit/s) and addresses;
    ``rs485``: other ESSXRS485 keyword arguments (bytesize, parity, stopbits, drop_echo)."""

    name: str = _key("text", "dcdc1")
    config: str = _key("text")
    port: str
    baudrate: int
    dir_pin: str
    rs485: Dict[str, Any]
    address1: int = _key("integer", 0, 0, 255)
    address2: int = _key("integer", 16, 0, 255)


@dataclass(frozen=True, kw_only=True)
class ModbusParams:
    """``ess_system.battery_dev.kwparams``: timeout in s, baudrate in bit/s; ``dir_pin`` and
    ``drop_echo`` go to ESSXRS485, the rest to pymodbus's ModbusSerialClient."""

    port: str = _key("text")
    method: str = _key("choice", "rtu", ("rtu", "ascii"), str.lower)
    timeout: float = _key("real", 1.0, 0.01, 60)
    baudrate: int = _key("integer", 9600, 50, 4000000)
    parity: str = _key("choice", "N", ("N", "E", "O", "M", "S"), str.upper)
    stopbits: float = _key("stopbits", 1)
    bytesize: int = _key("integer", 8, 5, 8)
    retries: int = _key("integer", 0, 0, 10)
    dir_pin: str = _key("text", "P8_9")
    drop_echo: bool = _key("boolean", False)
    handle_local_echo: bool = _key("boolean", False)


@dataclass(frozen=True, kw_only=True)
class BatteryDev:
    """``ess_system.battery_dev``: Modbus unit and input registers 30001..39999 (docs/battery-registers.md)."""

    name: str = _key("text", "battery")
    config: str = _key("text")
    kwparams: ModbusParams
    unit: int = _key("integer", 1, 1, 247)
    modbus_adr_rsoc: int = _key("integer", 30030, 30001, 39999)
    modbus_adr_status: int = _key("integer", 30031, 30001, 39999)


@dataclass(frozen=True, kw_only=True)
class DcdcSection:
    """``dcdc.<name>``: retries, timings (s; ``line_wait``: longest wait for the converter line
    before a request is refused; ``request_deadline``: every HTTP request is answered within
    it, battery reads included, see ``essx.deadline``) and ``config``, cib..drb as the reference gives them to the
    Q-format encoder (int, float, or Decimal for a number written as a string; bcf an int)."""

    type: str
    number_of_dcdc_error_retry: int = _key("integer", 0, 0, 100)
    number_of_timeout_retry: int = _key("integer", 0, 0, 100)
    wait_for_retry: float = _key("real", 0.1, 0, 60)
    command_interval: float = _key("real", 0.062, 0, 10)
    timeout: float = _key("real", 0.1, 0.01, 60)
    line_wait: float = _key("real", 5.0, 0.1, 600)
    request_deadline: float = _key("real", DEFAULT_DEADLINE_S, 0.2, 60)
    config: Dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class BatterySection:
    """``battery.<name>.config``: provisional battery_voltage (V) and battery_current (A)
    of /1/log/data, force_dcdc_waiting, and the watch thread's check_interval (s)."""

    type: str
    battery_voltage: float = _key("number", 52.0)
    battery_current: float = _key("number", 20.0)
    force_dcdc_waiting: bool = _key("yes_no", False)
    check_interval: float = _key("real", 10.0, 0.1, 3600)


@dataclass(frozen=True, kw_only=True)
class Config:
    """A checked configuration; ``battery_dev`` is None for ``class: 'None'``;
    ``warnings``: one line per key ignored or read differently from the reference."""

    path: str
    dcdc_dev: DcdcDev
    battery_dev: Optional[BatteryDev]
    dcdc: DcdcSection
    battery: BatterySection
    warnings: Tuple[str, ...] = ()


def _rules(cls) -> Dict[str, Any]:
    """{YAML key: dataclass field} of the fields of ``cls`` made with :func:`_key`."""
    return {f.name: f for f in fields(cls) if f.metadata}


def load_config(path: str, *, strict: bool = False) -> Config:
    """Read and check the YAML file at ``path``; ``strict`` (``--strict-config``)
    turns every warning into an error.

    Raises:
        ESSXConfigException: unreadable or non-UTF-8 file, bad YAML, or a value that
            cannot work; one line naming the file, key path, value and what is expected.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ESSXConfigException("cannot read configuration %s: %s" % (path, e.strerror or e)) from e
    try:
        doc = _parse_yaml(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ESSXConfigException("configuration %s is not UTF-8 text (byte 0x%02x at offset %d): save it "
                                  "as UTF-8" % (path, data[e.start], e.start)) from None
    except yaml.YAMLError as e:
        raise ESSXConfigException("configuration %s is not valid YAML: %s"
                                  % (path, " ".join(str(e).split()))) from None
    return parse_config(doc, path, strict=strict)


def _parse_yaml(text: str) -> Any:
    """``text`` as ``yaml.safe_load`` reads it, with FAST_LOADER; a document it
    refuses is read again by the Python loader, whose message (line, column,
    what was expected) is then the same on every machine.  yaml.YAMLError."""
    try:
        return yaml.load(text, Loader=FAST_LOADER)
    except yaml.YAMLError:
        return yaml.safe_load(text)


def parse_config(doc: Any, path: str = "<config>", *, strict: bool = False) -> Config:
    """Check an already parsed document; see :func:`load_config`."""
    r = _Reader(path)
    root = r.mapping(doc, "(top level)")
    r.known(root, ("ess_system", "dcdc", "battery"), "")
    ess = r.mapping(r.get(root, "ess_system", ""), "ess_system")
    r.known(ess, ("type", "dcdc_dev", "battery_dev", "dcdc", "battery"), "ess_system")
    if ess.get("type") != "essx_type_oes":
        r.fail("ess_system.type", ess.get("type"), "expected 'essx_type_oes'")
    dcdc_dev = _dcdc_dev(r, _device(r, ess, "dcdc_dev"))
    bat_raw = _device(r, ess, "battery_dev")
    dcdc = _dcdc_section(r, *_section(r, root, ess, "dcdc", dcdc_dev.config))
    battery_dev = _battery_dev(r, bat_raw)
    battery = _battery_section(r, *_section(r, root, ess, "battery", bat_raw.get("config"),
                                            optional=battery_dev is None))
    if strict and r.warnings:
        raise ESSXConfigException("%s (--strict-config turns this warning into an error)" % r.warnings[0])
    return Config(path=path, dcdc_dev=dcdc_dev, battery_dev=battery_dev, dcdc=dcdc, battery=battery,
                  warnings=tuple(r.warnings))


def log_warnings(config: Config) -> None:
    """Log each of ``config.warnings`` once, at WARNING."""
    for line in config.warnings:
        log.warning("%s", line)


def modbus_params(kwparams: Mapping[str, Any]) -> ModbusParams:
    """Check the reference's ``ESSXModbusClient(**kwparams)``; ignored keys (pymodbus 2.x,
    unknown) are logged at WARNING.

    Raises:
        ESSXConfigException: ``port`` missing, or a value that cannot work.
    """
    r = _Reader("<config>")
    params = _modbus_params(r, kwparams, "ess_system.battery_dev.kwparams")
    for line in r.warnings:
        log.warning("%s", line)
    return params


def restart_needed(old: Config, new: Config) -> List[str]:
    """Key paths whose change a reload cannot apply, e.g. ``["ess_system.dcdc_dev"]``."""
    return ["ess_system." + k for k in ("dcdc_dev", "battery_dev") if getattr(old, k) != getattr(new, k)]


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
    r.known(dev, ("class", "params", "vparams", "kwparams") + tuple(_rules(DcdcDev)), where)
    if r.get(dev, "class", where) != "ESSXRS485":
        r.fail(where + ".class", dev["class"], "expected 'ESSXRS485'")
    key = "params" if "params" in dev else "vparams"
    if key not in dev:
        r.fail(where + ".params", None, 'expected [device file, baud rate], e.g. ["/dev/ttyO2", 19200]')
    params = dev[key]
    if not isinstance(params, list) or not 1 <= len(params) <= len(SERIAL_PARAMS):
        r.fail(where + "." + key, params,
               'expected [device file, baud rate] (up to [port, baudrate, bytesize, parity, stopbits])')
    rs485 = {"baudrate": 19200}  # the reference's ESSXRS485(*params) passes them on to serial.Serial
    for i, (name, value) in enumerate(zip(SERIAL_PARAMS, params)):
        rs485[name] = r.check(ModbusParams, name, value, "%s.%s[%d]" % (where, key, i))
    kw = dict(r.mapping(dev.get("kwparams") or {}, where + ".kwparams"))
    for option in SERIAL_PARAMS[2:] + ("drop_echo",):
        if option in kw:
            rs485[option] = r.check(ModbusParams, option, kw.pop(option), "%s.kwparams.%s" % (where, option))
    dir_pin = r.text(kw.pop("dir_pin", "P8_9"), where + ".kwparams.dir_pin")
    r.known(kw, (), where + ".kwparams", what="serial option this driver does not use")
    return DcdcDev(port=rs485.pop("port"), baudrate=rs485.pop("baudrate"), dir_pin=dir_pin, rs485=rs485,
                   **r.fields(dev, where, DcdcDev))


def _battery_dev(r, dev):
    where = "ess_system.battery_dev"
    r.known(dev, ("class", "params", "kwparams") + tuple(_rules(BatteryDev)), where)
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
    return BatteryDev(kwparams=_modbus_params(r, kw, where + ".kwparams"), **r.fields(dev, where, BatteryDev))


def _modbus_params(r, kw, where):
    kw = dict(r.mapping(kw, where))
    for key in PYMODBUS2_KEYS:
        if key in kw:
            del kw[key]
            r.warn("%s.%s" % (where, key), "a pymodbus 2.x option that pymodbus 3 does not have; ignored")
    r.known(kw, tuple(_rules(ModbusParams)), where)
    return ModbusParams(**r.fields(kw, where, ModbusParams))


def _section(r, root, ess, key, name, optional=False):
    """The ``<key>.<name>`` section and its key path (``<key>`` at the top level, or in
    ``ess_system``); with ``optional`` (no battery fitted) a missing one is ``{}``."""
    holder, prefix = (root, key) if key in root else (ess, "ess_system." + key)
    if optional and (key not in holder or name not in r.mapping(holder[key], prefix)):
        return {}, prefix
    if key not in holder:
        r.fail(key, None, "expected a mapping of %s configurations at the top level" % key)
    where = "%s.%s" % (prefix, name)
    return r.mapping(r.get(r.mapping(holder[key], prefix), name, prefix), where), where


def _dcdc_section(r, sec, where):
    r.known(sec, ("type", "wait_retry", "config") + tuple(_rules(DcdcSection)), where)
    sec = dict(sec)
    if "wait_retry" in sec and "wait_for_retry" not in sec:
        r.warn(where + ".wait_retry", "read as wait_for_retry, in seconds (the reference truncates it "
               "to a whole number of seconds with int())")
        sec["wait_for_retry"] = sec["wait_retry"]
    fields = r.fields(sec, where, DcdcSection)
    if fields["request_deadline"] >= APIS_MAIN_ATTEMPT_S:
        r.warn(where + ".request_deadline", "%g s: apis-main gives up an attempt after %g s and retries; "
               "an answer later than that is lost" % (fields["request_deadline"], APIS_MAIN_ATTEMPT_S))
    config = _setup_values(r, r.mapping(r.get(sec, "config", where), where + ".config"), where + ".config")
    return DcdcSection(type=str(sec.get("type", "tdk_eza2500")), config=config, **fields)


def _setup_values(r, raw, where):
    """cib..drb from ``dcdc.<name>.config``, range-checked by the very
    commands that will send them (6-4, 7-4, 3-4)."""
    config = {k: v for k, v in raw.items() if k in DCDC_CONFIG_KEYS}
    for alias in [k for k in raw if k in DCDC_CONFIG_ALIASES]:
        canon = DCDC_CONFIG_ALIASES[alias]
        r.warn("%s.%s" % (where, alias), "ignored: %s is given too" % canon if canon in raw else
               "read as %s (the specification's name; the reference ignores %s)" % (canon, alias))
        config.setdefault(canon, raw[alias])
    r.known(raw, DCDC_CONFIG_KEYS + tuple(DCDC_CONFIG_ALIASES), where)
    for key in DCDC_CONFIG_KEYS:
        if key not in config:
            r.fail("%s.%s" % (where, key), None, "expected a number")
        config[key] = (r.integer(config[key], where + ".bcf", 0, 0xFFFF) if key == "bcf"
                       else r.number(config[key], "%s.%s" % (where, key), exact=True))
    for cls in (Command0604, Command0704, Command0304):   # the command table is the authority
        try:
            cls(None).pack_senddata(0, 0, dict(config, dig=0))
        except ESSXException as e:
            raise ESSXConfigException("configuration %s: %s: %s" % (r.path, where, e)) from None
    return config


def _battery_section(r, sec, where):
    r.known(sec, ("type", "config"), where)
    raw = r.mapping(sec.get("config") or {}, where + ".config")
    r.known(raw, tuple(_rules(BatterySection)), where + ".config")
    return BatterySection(type=str(sec.get("type", "battery_emulator")),
                          **r.fields(raw, where + ".config", BatterySection))


def _close_match(key: str, keys: Tuple[str, ...]) -> Optional[str]:
    """The one of *keys* that *key* is probably a misspelling of (difflib, cutoff
    0.8), or None.  difflib is imported here, when a key is unknown: a server
    whose configuration has none does not carry it (about 0.15 MB of resident
    memory; named in tests/test_layout.py, LATE_LIBRARIES)."""
    import difflib  # late for memory: tests/test_layout.py

    near = difflib.get_close_matches(key, keys, n=1, cutoff=0.8)
    return near[0] if near else None


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
            if key not in keys:
                near = _close_match(str(key), keys)
                hint = "did you mean %s? " % near if near else ""
                self.warn("%s.%s" % (where, key) if where else str(key),
                          "%sunknown %s; ignored" % (hint, what))

    def get(self, mapping, key, where):
        if key not in mapping:
            self.fail("%s.%s" % (where, key) if where else key, None, "add it")
        return mapping[key]

    def fields(self, raw, where, cls):
        """{name: checked value} for each field of ``cls`` made with :func:`_key`."""
        out = {}
        for key, f in _rules(cls).items():
            value = self.get(raw, key, where) if f.default is MISSING else raw.get(key, f.default)
            out[key] = self.check(cls, key, value, "%s.%s" % (where, key))
        return out

    def check(self, cls, key, value, where):
        kind, bounds = _rules(cls)[key].metadata["read"]
        return getattr(self, kind)(value, where, *bounds)

    def need(self, ok, value, where, expected):
        if not ok:
            self.fail(where, value, expected)
        return value

    def mapping(self, value, where):
        return self.need(isinstance(value, dict), value, where, "expected a mapping")

    def text(self, value, where):
        return self.need(isinstance(value, str) and value, value, where, "expected a non-empty string")

    def choice(self, value, where, allowed, fold=None):
        value = fold(str(value)) if fold else value
        return self.need(value in allowed, value, where, "expected one of %s" % ", ".join(map(str, allowed)))

    def boolean(self, value, where):
        return self.need(isinstance(value, bool), value, where, "expected true/false")

    def yes_no(self, value, where):
        """The reference tests ``value == True``: a YAML boolean or 1/0; anything else is No."""
        if isinstance(value, (bool, int, float)) and value in (0, 1):
            return value == 1
        self.warn(where, "%r is not a YAML boolean; read as No, as the reference does "
                         "(write Yes/No or true/false without quotes)" % (value,))
        return False

    def integer(self, value, where, lo, hi):
        """A whole number: int, an integral float or a numeric string ("3", "0x0003"), as int() takes them."""
        number = value
        if isinstance(value, str):
            with suppress(ValueError):
                number = int(value, 0)
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        if isinstance(number, bool) or not isinstance(number, int):
            self.fail(where, value, "expected a whole number from %d to %d" % (lo, hi))
        return self._within(number, value, where, lo, hi)

    def number(self, value, where, lo=None, hi=None, exact=False):
        """A finite number.  A numeric string becomes a Decimal when ``exact`` (a
        Q-format value: the reference's Decimal(str)), else a float with a warning."""
        number = value
        if isinstance(value, str):
            with suppress(decimal.InvalidOperation, ValueError):  # ValueError: float(Decimal("sNaN"))
                number = decimal.Decimal(value)
                if not exact:
                    number = float(number)
                    self.warn(where, "the string %r is read as the number %s" % (value, number))
        if isinstance(number, bool) or not isinstance(number, (int, float, decimal.Decimal)) \
                or not decimal.Decimal(number).is_finite():
            self.fail(where, value, "expected a number")
        return self._within(number, value, where, lo, hi)

    def _within(self, number, value, where, lo, hi):
        if (lo is not None and number < lo) or (hi is not None and number > hi):
            self.fail(where, value, "out of range: expected %s to %s" % (lo, hi))
        return number

    def real(self, value, where, lo, hi):
        return float(self.number(value, where, lo, hi))

    def stopbits(self, value, where):
        return self.choice(self.number(value, where, 1, 2), where, (1, 1.5, 2))
