"""Load and check dcdc_batt_comm.yml (spec 5.1.3).

The file has the reference's shape: ``ess_system.dcdc_dev`` and
``ess_system.battery_dev`` are lists of one device each (the spec's mapping
form, and ``vparams`` for ``params``, are accepted too); ``dcdc.<config>`` and
``battery.<config>`` hold the detailed settings they point to (top level, or
inside ``ess_system``).

Everything is checked before a port is opened: a missing or mistyped key
raises ``ESSXConfigException`` whose message names the key path, the value
found and what was expected.  The result is a :class:`Config` whose sections
are plain dicts with every default filled in.
"""

import dataclasses
import logging
import math

import yaml

from essx.essx_exception import ESSXConfigException, ESSXException

log = logging.getLogger(__name__)

#: Keys of ``dcdc.<name>.config`` (converter set-up values, physical units).
DCDC_CONFIG_KEYS = ("cib", "ubv", "obv", "ugv", "ogv", "bcf", "cvb", "dlb", "cdb", "ddb", "drb")
#: The specification's table calls four of them by other names.
DCDC_CONFIG_ALIASES = {"tbv": "cvb", "lbv": "dlb", "cud": "cdb", "dld": "ddb"}

_MISSING = object()


@dataclasses.dataclass
class Config:
    """A checked configuration.

    Attributes:
        path: the file it came from.
        dcdc_dev: ``{name, config, class, params: [port, baudrate], kwparams,
            address1, address2}``.
        battery_dev: ``{name, config, class, kwparams, unit, modbus_adr_rsoc,
            modbus_adr_status}``, or ``None`` for ``class: 'None'``.
        dcdc: the converter section ``{type, number_of_dcdc_error_retry,
            number_of_timeout_retry, wait_for_retry (s), command_interval (s),
            timeout (s), config: {cib, ubv, obv, ugv, ogv, bcf, cvb, dlb, cdb,
            ddb, drb}}``.
        battery: the battery section ``{type, config: {battery_voltage (V),
            battery_current (A), force_dcdc_waiting (bool), check_interval (s)}}``.
    """

    path: str
    dcdc_dev: dict
    battery_dev: dict
    dcdc: dict
    battery: dict


def load_config(path):
    """Read and check the YAML file at *path*.

    Returns:
        Config.
    Raises:
        ESSXConfigException: unreadable file, bad YAML, or a bad key (the
            message names the key path).
    """
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except OSError as e:
        raise ESSXConfigException("cannot read configuration %s: %s" % (path, e.strerror or e)) from e
    except yaml.YAMLError as e:
        raise ESSXConfigException("configuration %s is not valid YAML: %s" % (path, e)) from e
    return parse_config(doc, path)


def parse_config(doc, path="<config>"):
    """Check an already parsed document; see :func:`load_config`."""
    root = _mapping(doc, "(top level)")
    ess = _mapping(_get(root, "ess_system", "(top level)"), "ess_system")
    kind = _get(ess, "type", "ess_system")
    if kind != "essx_type_oes":
        raise ESSXConfigException("ess_system.type=%r: expected 'essx_type_oes'" % (kind,))

    dcdc_dev = _device(ess, "dcdc_dev")
    battery_dev = _device(ess, "battery_dev")

    dcdc_name = _str(_get(dcdc_dev, "config", "ess_system.dcdc_dev"), "ess_system.dcdc_dev.config")
    dcdc = _dcdc_section(*_section(root, ess, "dcdc", dcdc_name))

    dcdc_dev = _dcdc_dev(dcdc_dev)
    battery_cls = battery_dev.get("class", _MISSING)
    if battery_cls in (None, "None"):
        bat_out = None
        battery = _battery_section({}, "battery")
    else:
        bat_out = _battery_dev(battery_dev)
        battery = _battery_section(*_section(root, ess, "battery", bat_out["config"]))
    return Config(path=path, dcdc_dev=dcdc_dev, battery_dev=bat_out, dcdc=dcdc, battery=battery)


# -- sections -----------------------------------------------------------------

def _device(ess, key):
    where = "ess_system.%s" % key
    value = _get(ess, key, "ess_system")
    if isinstance(value, list):
        if not value:
            raise ESSXConfigException("%s is an empty list: expected one device" % where)
        if len(value) > 1:
            log.warning("%s lists %d devices; only the first is used", where, len(value))
        value = value[0]
    return _mapping(value, where)


def _dcdc_dev(dev):
    where = "ess_system.dcdc_dev"
    cls = _get(dev, "class", where)
    if cls != "ESSXRS485":
        raise ESSXConfigException("%s.class=%r: expected 'ESSXRS485'" % (where, cls))
    params = dev.get("params", dev.get("vparams", _MISSING))
    if params is _MISSING:
        raise ESSXConfigException("%s.params is missing: expected [device file, baud rate]" % where)
    if not isinstance(params, list) or len(params) not in (1, 2):
        raise ESSXConfigException("%s.params=%r: expected [device file, baud rate], e.g. [\"/dev/ttyO2\", 19200]"
                                  % (where, params))
    port = _str(params[0], where + ".params[0]")
    baud = _int(params[1], where + ".params[1]", 50, 4000000) if len(params) > 1 else 19200
    kwparams = _mapping(dev.get("kwparams") or {}, where + ".kwparams")
    if "dir_pin" in kwparams:
        _str(kwparams["dir_pin"], where + ".kwparams.dir_pin")
    return {
        "name": _str(dev.get("name", "dcdc1"), where + ".name"),
        "config": dev["config"],
        "class": cls,
        "params": [port, baud],
        "kwparams": dict(kwparams),
        "address1": _int(dev.get("address1", 0), where + ".address1", 0, 255),
        "address2": _int(dev.get("address2", 16), where + ".address2", 0, 255),
    }


def _battery_dev(dev):
    where = "ess_system.battery_dev"
    cls = _get(dev, "class", where)
    if cls not in ("ESSXModbus", "ESSXModbusClient"):
        raise ESSXConfigException("%s.class=%r: expected 'ESSXModbus' or 'None'" % (where, cls))
    kw = dict(_mapping(_get(dev, "kwparams", where), where + ".kwparams"))
    method = kw.get("method", "rtu")
    if method != "rtu":
        raise ESSXConfigException("%s.kwparams.method=%r: expected 'rtu'" % (where, method))
    _str(_get(kw, "port", where + ".kwparams"), where + ".kwparams.port")
    if "timeout" in kw:
        kw["timeout"] = _number(kw["timeout"], where + ".kwparams.timeout", 0.01, 60)
    if "baudrate" in kw:
        kw["baudrate"] = _int(kw["baudrate"], where + ".kwparams.baudrate", 50, 4000000)
    if "dir_pin" in kw:
        _str(kw["dir_pin"], where + ".kwparams.dir_pin")
    return {
        "name": _str(dev.get("name", "battery"), where + ".name"),
        "config": _str(_get(dev, "config", where), where + ".config"),
        "class": cls,
        "kwparams": kw,
        "unit": _int(dev.get("unit", 1), where + ".unit", 0, 247),
        "modbus_adr_rsoc": _int(dev.get("modbus_adr_rsoc", 30030), where + ".modbus_adr_rsoc", 30001, 39999),
        "modbus_adr_status": _int(dev.get("modbus_adr_status", 30031), where + ".modbus_adr_status",
                                  30001, 39999),
    }


def _section(root, ess, key, name):
    """The ``<key>.<name>`` section and its key path.

    ``dcdc``/``battery`` live at the top level (reference) or in ``ess_system``.
    Returns:
        (mapping, "dcdc.dcdc_default_eza2500").
    """
    if key in root:
        prefix = key
        sections = root[key]
    elif key in ess:
        prefix = "ess_system." + key
        sections = ess[key]
    else:
        raise ESSXConfigException("%s is missing: expected a mapping of %s configurations at the top level"
                                  % (key, key))
    where = "%s.%s" % (prefix, name)
    return _mapping(_get(_mapping(sections, prefix), name, prefix), where), where


def _dcdc_section(sec, where):
    raw = _mapping(_get(sec, "config", where), where + ".config")
    config = {}
    for key, value in raw.items():
        canon = DCDC_CONFIG_ALIASES.get(key, key)
        if canon not in DCDC_CONFIG_KEYS:
            raise ESSXConfigException("%s.config.%s: unknown key; expected one of %s"
                                      % (where, key, ", ".join(DCDC_CONFIG_KEYS)))
        config[canon] = value
    for key in DCDC_CONFIG_KEYS:
        if key not in config:
            raise ESSXConfigException("%s.config.%s is missing: expected a number" % (where, key))
        if key == "bcf":
            config[key] = _int(config[key], "%s.config.bcf" % where, 0, 0xFFFF)
        else:
            config[key] = _number(config[key], "%s.config.%s" % (where, key))
    wait = sec.get("wait_for_retry", sec.get("wait_retry", 0.1))
    out = {
        "type": sec.get("type", "tdk_eza2500"),
        "number_of_dcdc_error_retry": _int(sec.get("number_of_dcdc_error_retry", 0),
                                           where + ".number_of_dcdc_error_retry", 0, 100),
        "number_of_timeout_retry": _int(sec.get("number_of_timeout_retry", 0),
                                        where + ".number_of_timeout_retry", 0, 100),
        "wait_for_retry": _number(wait, where + ".wait_for_retry", 0, 60),
        "command_interval": _number(sec.get("command_interval", 0.062), where + ".command_interval", 0, 10),
        "timeout": _number(sec.get("timeout", 0.1), where + ".timeout", 0.01, 60),
        "config": config,
    }
    _check_dcdc_ranges(config, where + ".config")
    return out


def _check_dcdc_ranges(config, where):
    """Range-check the set-up values with the very commands that will send them."""
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
            raise ESSXConfigException("%s: %s" % (where, e)) from e


def _battery_section(sec, where):
    raw = _mapping(sec.get("config") or {}, where + ".config")
    force = raw.get("force_dcdc_waiting", False)
    if not isinstance(force, bool):
        raise ESSXConfigException("%s.config.force_dcdc_waiting=%r: expected Yes/No (true/false)" % (where, force))
    return {
        "type": sec.get("type", "battery_emulator"),
        "config": {
            "battery_voltage": _number(raw.get("battery_voltage", 52.0), where + ".config.battery_voltage"),
            "battery_current": _number(raw.get("battery_current", 20.0), where + ".config.battery_current"),
            "force_dcdc_waiting": force,
            "check_interval": _number(raw.get("check_interval", 10), where + ".config.check_interval", 0.1, 3600),
        },
    }


# -- typed getters --------------------------------------------------------------

def _get(mapping, key, where):
    if key not in mapping:
        raise ESSXConfigException("%s.%s is missing" % (where, key) if where != "(top level)"
                                  else "%s is missing at the top level" % key)
    return mapping[key]


def _mapping(value, where):
    if not isinstance(value, dict):
        raise ESSXConfigException("%s=%r: expected a mapping" % (where, value))
    return value


def _str(value, where):
    if not isinstance(value, str) or not value:
        raise ESSXConfigException("%s=%r: expected a non-empty string" % (where, value))
    return value


def _int(value, where, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ESSXConfigException("%s=%r: expected a whole number from %d to %d" % (where, value, lo, hi))
    if not lo <= value <= hi:
        raise ESSXConfigException("%s=%r is out of range: expected %d to %d" % (where, value, lo, hi))
    return value


def _number(value, where, lo=None, hi=None):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ESSXConfigException("%s=%r: expected a number" % (where, value))
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ESSXConfigException("%s=%r is out of range: expected %s to %s" % (where, value, lo, hi))
    return value
