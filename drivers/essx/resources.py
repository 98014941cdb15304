"""The files shipped with the package, found through importlib.resources.

``essx/data/`` holds the default configuration (``dcdc_batt_comm.yml``) and
the API document (``openapi.json``): in the source tree symbolic links to
``drivers/dcdc_batt_comm.yml`` and ``drivers/openapi.json``, in a wheel or
sdist their content.  ``essx/static/`` holds the web pages.
``importlib.resources`` finds them in every install form (venv, ``pip
install --user``, system pip, editable, a source checkout on ``sys.path``),
with no look-up under ``sys.prefix``.

Standard library only: ``--version`` and ``--help`` work before the
third-party modules are imported.
"""
import importlib.resources
from pathlib import Path

#: Name of the default configuration file inside ``essx/data``.
DEFAULT_CONFIG_NAME = "dcdc_batt_comm.yml"
#: Name of the API document inside ``essx/data``.
OPENAPI_NAME = "openapi.json"
#: Where install.sh and the unit put the configuration.
ETC_CONFIG = "/etc/dcdc_batt_comm/dcdc_batt_comm.yml"


def data_path(name: str) -> Path:
    """The path of the shipped file ``essx/data/<name>``.

    Returns:
        A filesystem path (packages are installed unzipped; the path may not
        exist when the file is not shipped, which the caller reports).
    """
    return Path(str(importlib.resources.files("essx").joinpath("data", name)))


def read_data(name: str) -> bytes:
    """The content of the shipped file ``essx/data/<name>``.

    Raises:
        OSError: the file is not there (a broken install).
    """
    return importlib.resources.files("essx").joinpath("data", name).read_bytes()


def read_page(name: str) -> str:
    """The text of the shipped web page ``essx/static/<name>`` (UTF-8).

    Raises:
        OSError: the file is not there (a broken install).
    """
    return importlib.resources.files("essx").joinpath("static", name).read_text(encoding="utf-8")


def default_config_path() -> str:
    """The configuration used without ``--config``: /etc/dcdc_batt_comm/
    dcdc_batt_comm.yml when it exists (install.sh puts it there), else the
    shipped example (``essx/data/dcdc_batt_comm.yml``)."""
    if Path(ETC_CONFIG).is_file():
        return ETC_CONFIG
    return str(data_path(DEFAULT_CONFIG_NAME))
