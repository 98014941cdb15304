"""ESSX, the driver's core (README.md, "How it is built"): the controller
(``essx_type_oes``), the Web API's response blocks (``blocks``) and what the
controller needs of its devices (``devices``), the configuration
(``essx_config``), the ports (``essx_rs485``, ``essx_modbus`` with its RTU
reply scanner ``modbus_reply``), the request's deadline (``deadline``), one
report per bus try (``exchange``) and the errors (``essx_exception``).  Nothing
of the service (``essx_service``) or the simulation (``essx_sim``).

The reference's package-level names: the exception classes, and the submodules
``essx.essx_rs485`` and ``essx.essx_modbus``, imported on first use so that
``import essx`` stays light.  The reference's debugging helpers (``log``,
``hexstr``, ``dump``, ``debug_log``) and ``ESSXGlobal`` are replaced by ``logging``.
"""
import importlib
from types import ModuleType

from .essx_exception import (
    ESSXChecksumException, ESSXConfigException, ESSXDeviceException, ESSXException, ESSXFatalException,
    ESSXIOException, ESSXParameterException, ESSXTimeoutException, ESSXValueException,
)

__all__ = [
    "ESSXException", "ESSXTimeoutException", "ESSXChecksumException", "ESSXValueException",
    "ESSXParameterException", "ESSXDeviceException", "ESSXFatalException", "ESSXConfigException",
    "ESSXIOException", "essx_rs485", "essx_modbus",
]


def __getattr__(name: str) -> ModuleType:
    """``essx.essx_rs485`` / ``essx.essx_modbus`` without an explicit import."""
    if name in ("essx_rs485", "essx_modbus"):
        return importlib.import_module("%s.%s" % (__name__, name))
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
