"""The files shipped with the package, found through importlib.resources in
every install form (venv, ``--user``, system pip, editable, a checkout).

``essx_service/data/`` holds the default configuration and ``openapi.json`` (in the
source tree links to ``drivers/``), ``essx_service/static/`` the web pages.  Standard
library only: ``--version`` and ``--help`` need no third-party module.
"""
from pathlib import Path

DEFAULT_CONFIG_NAME = "dcdc_batt_comm.yml"
OPENAPI_NAME = "openapi.json"
#: Where install.sh and the unit put the configuration.
ETC_CONFIG = "/etc/dcdc_batt_comm/dcdc_batt_comm.yml"


def _shipped(*parts: str):
    """``essx_service/<parts>`` as an importlib.resources traversable.  importlib.resources
    is imported here, at the first shipped file asked for: a node's server (its
    configuration in /etc, nobody on the live page) does not carry it (about 0.1 MB;
    named in tests/test_layout.py, LATE_LIBRARIES)."""
    import importlib.resources  # late for memory: tests/test_layout.py

    return importlib.resources.files("essx_service").joinpath(*parts)


def data_path(name: str) -> Path:
    """The path of ``essx_service/data/<name>`` (packages are installed unzipped; it
    may not exist on a broken install, which the caller reports)."""
    return Path(str(_shipped("data", name)))


def read_data(name: str) -> bytes:
    """The content of ``essx_service/data/<name>``; raises OSError when it is missing."""
    return _shipped("data", name).read_bytes()


#: Where a page takes the stylesheet both pages share (``essx_service/static/page.css``).
SHARED_CSS_MARKER = "  /* page.css */\n"


def read_page(name: str) -> str:
    """The text of the web page ``essx_service/static/<name>``, with ``page.css`` put in at
    its marker (the page stays one self-contained file); OSError when a file is missing."""
    page = _shipped("static", name).read_text(encoding="utf-8")
    return page.replace(SHARED_CSS_MARKER, _shipped("static", "page.css").read_text(encoding="utf-8"))


def default_config_path() -> str:
    """:data:`ETC_CONFIG` when it exists (install.sh puts it there), else the
    shipped example."""
    return ETC_CONFIG if Path(ETC_CONFIG).is_file() else str(data_path(DEFAULT_CONFIG_NAME))
