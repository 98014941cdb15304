"""ESSX: controller, low-level serial/Modbus devices and errors (spec 4, 5.4).

The package-level names of the reference's ``essx``: the exception classes
(``essx.ESSXValueException`` ...), and the submodules ``essx.essx_rs485``
and ``essx.essx_modbus``, imported on first use (the reference imports them
at once; here ``import essx`` stays light).  The reference's debugging
helpers (``log``, ``hexstr``, ``dump``, ``debug_log``) and ``ESSXGlobal`` are
not provided: logging goes through the ``logging`` module.
"""
import importlib
from types import ModuleType

from .essx_exception import (
    ESSXChecksumException,
    ESSXConfigException,
    ESSXDeviceException,
    ESSXException,
    ESSXFatalException,
    ESSXIOException,
    ESSXParameterException,
    ESSXTimeoutException,
    ESSXValueException,
)

#: Submodules reachable as attributes of the package, imported on first use.
_LAZY_SUBMODULES = ("essx_rs485", "essx_modbus")

__all__ = [
    "ESSXException", "ESSXTimeoutException", "ESSXChecksumException",
    "ESSXValueException", "ESSXParameterException", "ESSXDeviceException",
    "ESSXFatalException", "ESSXConfigException", "ESSXIOException",
    "essx_rs485", "essx_modbus",
]


def __getattr__(name: str) -> ModuleType:
    """``essx.essx_rs485`` / ``essx.essx_modbus`` without an explicit import."""
    if name in _LAZY_SUBMODULES:
        return importlib.import_module("%s.%s" % (__name__, name))
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
