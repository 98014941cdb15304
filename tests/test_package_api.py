"""The reference's package-level names (issue 9 point 2): ``import essx``
gives the exception classes, each carrying ``.reason`` (its message)."""
import pickle
import subprocess
import sys

import pytest

import essx
from essx import essx_exception
from eza2500 import codec, table

REFERENCE_NAMES = ("ESSXException", "ESSXTimeoutException", "ESSXChecksumException",
                   "ESSXValueException", "ESSXParameterException", "ESSXDeviceException",
                   "ESSXFatalException", "ESSXConfigException")


@pytest.mark.parametrize("name", REFERENCE_NAMES + ("ESSXIOException",))
def test_exception_at_package_level_with_reason(name):
    cls = getattr(essx, name)
    assert cls is getattr(essx_exception, name)
    assert issubclass(cls, essx.ESSXException) and name in essx.__all__
    exc = cls("dvg=1000 is out of range")
    assert exc.reason == str(exc) == "dvg=1000 is out of range"
    clone = pickle.loads(pickle.dumps(exc))
    assert type(clone) is cls and clone.reason == exc.reason


def test_io_exception_is_retried_as_a_timeout():
    assert issubclass(essx.ESSXIOException, essx.ESSXTimeoutException)


def test_device_exception_from_a_nak_code():
    exc = codec.nak_error(table.ERCD_BUSY, "1-1")
    nak = table.NAKS[table.ERCD_BUSY]
    assert (exc.ercd, exc.command, exc.meaning, exc.retryable) == (nak.ercd, "1-1", nak.meaning, True)
    assert exc.reason == str(exc) == "NAK 0x%04x (%s) to command 1-1" % (nak.ercd, nak.meaning)
    clone = pickle.loads(pickle.dumps(exc))
    assert (clone.ercd, clone.command, clone.reason) == (exc.ercd, "1-1", exc.reason)


@pytest.mark.parametrize("ercd", sorted(table.NAKS) + [0x1234])
def test_device_exception_meaning_and_retry_come_from_the_table(ercd):
    exc = codec.nak_error(ercd)
    nak = table.NAKS.get(ercd)
    assert exc.meaning == (nak.meaning if nak else table.UNKNOWN_ERCD)
    assert exc.retryable == (nak.retry if nak else False)
    assert str(exc) == "NAK 0x%04x (%s)" % (ercd, exc.meaning)


def test_device_exception_reference_form():
    exc = essx.ESSXDeviceException("error: ERCD=fffc")
    assert exc.reason == str(exc) == "error: ERCD=fffc"
    assert exc.ercd is None and exc.meaning is None and not exc.retryable


def test_retry_classes_in_the_table():
    assert {n.ercd for n in table.NAKS.values() if n.retry} == {table.ERCD_CANNOT_ACCEPT, table.ERCD_BUSY}


def test_submodules_reachable_from_a_fresh_import():
    code = ("import essx, sys\n"
            "assert 'essx.essx_modbus' not in sys.modules\n"
            "print(essx.essx_rs485.ESSXRS485.__name__, essx.essx_modbus.__name__)\n"
            "from essx import *\n"
            "print(ESSXFatalException.__name__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ESSXRS485", "essx.essx_modbus", "ESSXFatalException"]


def test_unknown_package_attribute():
    with pytest.raises(AttributeError):
        essx.no_such_name  # noqa: B018
