"""ESSX: controller, serial/Modbus devices and errors (spec 4, 5.4).

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
