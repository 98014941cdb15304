"""essx-server's application: ``create_app`` (the Web API of ``essx_service.web``
with this release's versions and OpenAPI document), re-exported by the
specification's entry point ``essx_server.py``."""
import os
from typing import Any, Callable, Optional

from essx_service import resources
from essx_service.web import build_app

#: ``/version/get``'s values (docs/web-api.md).
COMM_INTERFACE_VERSION = "2.0"
DCDC_BATT_COMM_VERSION = "1.4"
#: The OpenAPI document in a source tree (``drivers/openapi.json``); installed,
#: the shipped copy (``installed_path``).
OPENAPI_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            resources.OPENAPI_NAME)


def create_app(controller: Any, *, goodbye: Optional[Callable[[], Any]] = None,
               reload_config: Optional[Callable[[], Any]] = None, config: Any = None,
               simulate: bool = False) -> Any:
    """The Bottle application (``essx_service.web``).

    Args:
        controller: an ``ESSXTypeOES`` (None only to list the routes); the
            recorder listens to its ``link`` and ``bat_dev``.
        goodbye: None: ``/essx/goodbye`` is 404; else run after its answer.
        reload_config: None, or returns a new ``Config`` for ``/remote/ioctl/set``
            (raises ``ESSXConfigException`` on a bad file).
        config, simulate: the ``Config`` in use (None: unknown) and whether the
            devices are simulators, for ``/essx/status`` and the live page.
    """
    return build_app(controller, goodbye=goodbye, reload_config=reload_config, config=config,
                     simulate=simulate, openapi_path=lambda: installed_path(OPENAPI_PATH),
                     versions={"comm_interface_version": COMM_INTERFACE_VERSION,
                               "dcdc_batt_comm_version": DCDC_BATT_COMM_VERSION})


def installed_path(path: str) -> str:
    """*path* when it exists (a source tree), else the shipped file of that
    name (``essx_service/data/``), which may be missing on a broken install."""
    return path if os.path.exists(path) else str(resources.data_path(os.path.basename(path)))
