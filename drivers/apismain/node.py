"""One unit as its apis-main sees it: the interface-v2 driver calls, the
unit-data cache, the exclusive lock and the dynamic-safety-check switch.

Every set goes through ``set_mode`` / ``set_voltage`` / ``set_current``
(DcdcDeviceControlling.java:304-420), written as apis-main writes the URL
(DcdcV2DeviceControlling.java:226-254, numbers by ``javafloat``):

    /dcdc/set?mode=0x0041&dvg=350.0&dig=1.0&drg=0
    /dcdc/set?dvg=349.9878&drg=0.039
    /dcdc/set?dig=1.9994507

Each answer is merged into the cached unit data (DeviceControlling.java:504,
DcdcDeviceControlling.java:159-162), which the next command reads
(``dcdc.param.dig``, ``dcdc.vdis.dvg``, ``dcdc.status.status``).
"""

import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from . import javafloat
from .errors import CheckFailed, SafetyError
from .http import DriverConnection
from .policy import HwConfig, Policy
from .safety import DealRole, Finding, LocalSafety

__all__ = ["Node", "MODE_CODES", "OPERATION_MODES", "INTERFACE_VERSIONS"]

#: DDCon.Mode -> the code apis-main sends as ``mode`` (DDCon.java:125-149).
MODE_CODES = {"WAIT": "0x0000", "VOLTAGE_REFERENCE": "0x0014", "CHARGE": "0x0041", "DISCHARGE": "0x0002"}
#: DDCon.Mode -> the ``status.operationMode`` it requires after the set (DDCon.java:351-359).
OPERATION_MODES = {
    "WAIT": "Waiting",
    "VOLTAGE_REFERENCE": "Grid Autonomy",
    "CHARGE": "Heteronomy CV",
    "DISCHARGE": "Heteronomy CV",
}
#: Major interface versions apis-main accepts (DcdcV2DataAcquisition.java:39).
INTERFACE_VERSIONS = ("2",)

Number = Union[int, float]


def merge(into: Dict[str, Any], value: Dict[str, Any]) -> None:
    """Deep-merge ``value`` into ``into`` (Vert.x ``JsonObject.mergeIn(other, true)``)."""
    for key, v in value.items():
        if isinstance(v, dict) and isinstance(into.get(key), dict):
            merge(into[key], v)
        else:
            into[key] = v


def get_float(data: Optional[Dict[str, Any]], *path: str) -> Optional[float]:
    """``JsonObjectUtil.getFloat(data, path...)``: the number at ``path`` as a
    Java ``float`` (``javafloat.f32``), or None when absent or not a number."""
    value: Any = data
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return javafloat.f32(value)


class Node:
    """A driver node and apis-main's state about it.

    Args:
        url: the driver, ``http://HOST:PORT``.
        unit_id: apis-main's unit id (default: the URL).
        policy, hw: POLICY and HWCONFIG.
        clock: monotonic seconds for the unit data's ``time``.
    Attributes:
        cache: the unit data (``DataAcquisition.cache``): ``dcdc`` (the driver's
            answer less ``rsoc`` and ``battery_operation_status``), ``battery``
            (those two), ``time`` (the clock at the poll).
        lock: ``DataAcquisition``'s exclusive lock (DataAcquisition.java:85):
            a poll and a device-control command never overlap (DataAcquisition.java:413,
            DeviceControlling.java:363); re-entrant because commands nest.
        ignore_dynamic_safety_check: DeviceControlling.java:60-89.
        deal_roles: the deals this unit takes part in (``safety.DealRole``s, or a
            callable returning them), for the local safety check.
        operation_mode: apis-main's operation mode ("autonomous" ...).
        warnings: the WARN findings of the local safety checks so far.
        data_link, control_link: the two HTTP clients.
    Raises:
        ValueError: a bad URL.
    """

    def __init__(
        self,
        url: str,
        *,
        unit_id: Optional[str] = None,
        policy: Policy = Policy(),
        hw: HwConfig = HwConfig(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url, self.unit_id = url.rstrip("/"), unit_id or url.rstrip("/")
        self.policy, self.hw, self.clock = policy, hw, clock
        # two clients, one for data acquisition and one for control, as apis-main has
        self.data_link, self.control_link = (
            DriverConnection(self.url, timeout_s=policy.request_timeout_s, attempts=policy.retry_limit,
                             name="%s %s" % (self.unit_id, role), source=source)
            for role, source in (("data", "DataAcquisition.java:713-762"),
                                 ("control", "DeviceControlling.java:499-551")))
        self.cache: Dict[str, Any] = {}
        self.lock = threading.RLock()
        self.ignore_dynamic_safety_check = False
        self.deal_roles: Union[Sequence[DealRole], Callable[[], Sequence[DealRole]]] = ()
        self.operation_mode = "autonomous"
        self.warnings: List[Finding] = []
        self.safety = LocalSafety(policy, hw)
        self.interface_version: Optional[str] = None

    # --- data acquisition ------------------------------------------------------------

    def negotiate(self) -> str:
        """``/version/get`` at start: the major interface version, which must be
        one apis-main knows (DcdcV2DataAcquisition.java:78-105).

        Raises:
            CommunicationError: no answer in 3 attempts.
            CheckFailed: no ``comm_interface_version``, no ``.`` in it, or a major
                version other than "2".
        """
        body = self.data_link.get("/version/get")
        version = body.get("comm_interface_version")
        source = "DcdcV2DataAcquisition.java:83-99"
        if not isinstance(version, str):
            raise CheckFailed(
                "version",
                route="/version/get",
                expected="a comm_interface_version string",
                got=body,
                source=source,
            )
        pos = version.find(".")
        if pos <= 0 or version[:pos] not in INTERFACE_VERSIONS:
            raise CheckFailed(
                "version",
                route="/version/get",
                source=source,
                expected="comm_interface_version 'MAJOR.MINOR' with MAJOR in %s"
                % (list(INTERFACE_VERSIONS),),
                got=version,
            )
        self.interface_version = version[:pos]
        return self.interface_version

    def get_data(self) -> Dict[str, Any]:
        """``/all/get`` into the unit data (DcdcV2DataAcquisition.java:122-134):
        ``rsoc`` and ``battery_operation_status`` move to ``battery``; the cache
        is replaced (DataAcquisition.java:474). No safety check (see ``poll``).

        Raises:
            CommunicationError: no answer in 3 attempts.
        """
        with self.lock:
            dcdc = self.data_link.get("/all/get")
            battery = {
                "rsoc": dcdc.pop("rsoc", None),
                "battery_operation_status": dcdc.pop("battery_operation_status", None),
            }
            self.cache = {"dcdc": dcdc, "battery": battery, "time": self.clock()}
            return self.cache

    def poll(self) -> Dict[str, Any]:
        """One data acquisition: ``get_data`` and the local safety check on it
        (DataAcquisition.java:449-483, LocalSafetyEvaluation.check at :475).
        WARN findings are kept in ``warnings``.

        Raises:
            CommunicationError: no answer in 3 attempts (ERROR, DataAcquisition.java:722).
            SafetyError: a finding at ERROR level.
        """
        with self.lock:
            data = self.get_data()
            roles = self.deal_roles() if callable(self.deal_roles) else self.deal_roles
            findings = self.safety.check(
                data,
                roles,
                operation_mode=self.operation_mode,
                ignore_dynamic=self.ignore_dynamic_safety_check,
            )
        self.warnings.extend(f for f in findings if f.level == "WARN")
        errors = [f for f in findings if f.level == "ERROR"]
        if errors:
            raise SafetyError(
                "local safety check of %s" % self.unit_id,
                route="/all/get",
                expected="; ".join(f.expected for f in errors),
                got="; ".join(f.got for f in errors),
                source=", ".join(f.source for f in errors),
            )
        return data

    def get_device_status(self) -> Dict[str, Any]:
        """``/dcdc/get/status`` merged into ``cache['dcdc']``, which is returned
        (DcdcV2DataAcquisition.java:139-141, DataAcquisition.java:627-640,
        DcdcDataAcquisition.java:306-309). Used by the checkpoint.

        Raises:
            CommunicationError: no answer in 3 attempts.
        """
        with self.lock:
            self._merge(self.data_link.get("/dcdc/get/status"))
            return self.dcdc

    # --- the cache ---------------------------------------------------------------------

    @property
    def dcdc(self) -> Dict[str, Any]:
        """``cache['dcdc']``: what every command answers
        (AbstractDcdcDeviceControllingCommand.java:118-120)."""
        return self.cache.setdefault("dcdc", {})

    @property
    def mode(self) -> Optional[str]:
        """``DDCon.modeFromCode(dcdc.status.status)``: "WAIT", "VOLTAGE_REFERENCE",
        "CHARGE", "DISCHARGE" or None (DDCon.java:210-216)."""
        code = (
            self.dcdc.get("status", {}).get("status") if isinstance(self.dcdc.get("status"), dict) else None
        )
        return next((m for m, c in MODE_CODES.items() if c == code), None)

    def value(self, *path: str) -> Optional[float]:
        """``cache.getFloat("dcdc", path...)``: a Java float, or None."""
        return get_float(self.dcdc, *path)

    def _merge(self, value: Dict[str, Any]) -> None:
        merge(self.dcdc, value)

    # --- device control ----------------------------------------------------------------

    def set_mode(self, mode: str, dvg: Number, dig: Number, drg: Number = 0) -> Dict[str, Any]:
        """``setDcdcMode``: ``/dcdc/set?mode=&dvg=&dig=&drg=`` and then
        ``status.operationMode`` must be the mode's (DcdcDeviceControlling.java:328-351);
        ``drg`` the int 0 unless given (DcdcDeviceControlling.java:304-306).
        dvg V, dig A (a float is a Java Float), drg ratio.

        Raises:
            CheckFailed: dig < 0 or > gridCurrentCapacityA (nothing sent), or the
                wrong operationMode after the set.
            CommunicationError: no answer in 3 attempts.
        """
        self._check_current("set " + mode, dig)
        query = "mode=%s&dvg=%s&dig=%s&drg=%s" % (
            MODE_CODES[mode],
            javafloat.number_to_string(dvg),
            javafloat.number_to_string(dig),
            javafloat.number_to_string(drg),
        )
        with self.lock:
            self._merge(self.control_link.get("/dcdc/set?" + query))
            got = self.dcdc.get("status", {}).get("operationMode")
        if got != OPERATION_MODES[mode]:
            raise CheckFailed(
                "set " + mode,
                route="/dcdc/set",
                params=query,
                expected="status.operationMode %r" % OPERATION_MODES[mode],
                got=repr(got),
                source="DcdcDeviceControlling.java:334-340",
            )
        return self.dcdc

    def set_voltage(self, dvg: Number, drg: Number = 0) -> Dict[str, Any]:
        """``setDcdcVoltage``: ``/dcdc/set?dvg=&drg=`` (DcdcDeviceControlling.java:367-393);
        ``drg`` the int 0 unless given. dvg V.

        Raises:
            CommunicationError: no answer in 3 attempts.
        """
        query = "dvg=%s&drg=%s" % (javafloat.number_to_string(dvg), javafloat.number_to_string(drg))
        with self.lock:
            self._merge(self.control_link.get("/dcdc/set?" + query))
            return self.dcdc

    def set_current(self, dig: Number) -> Dict[str, Any]:
        """``setDcdcCurrent``: ``/dcdc/set?dig=`` (DcdcDeviceControlling.java:409-420). dig A.

        Raises:
            CheckFailed: dig < 0 or > gridCurrentCapacityA (nothing sent).
            CommunicationError: no answer in 3 attempts.
        """
        self._check_current("set current", dig)
        query = "dig=%s" % javafloat.number_to_string(dig)
        with self.lock:
            self._merge(self.control_link.get("/dcdc/set?" + query))
            return self.dcdc

    def _check_current(self, what: str, dig: Number) -> None:
        """checkCurrentValueRange_ (DcdcDeviceControlling.java:177-213)."""
        value = javafloat.f32(dig)
        if value != 0 and (value < 0 or javafloat.f32(self.hw.grid_current_capacity_a) < value):
            raise CheckFailed(
                what,
                expected="0 <= dig <= gridCurrentCapacityA %s A"
                % javafloat.float_to_string(self.hw.grid_current_capacity_a),
                got="dig %s" % javafloat.float_to_string(value),
                source="DcdcDeviceControlling.java:185-211",
            )

    def close(self) -> None:
        """Close both connections."""
        self.data_link.close()
        self.control_link.close()
