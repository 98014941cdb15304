#!/usr/bin/env python3
"""ESSXServer: the apis-dcdc_batt_comm Web API (spec 4.1, 5.1; web-api.md); its routes
are in ``essx.web``, the command line and start-up in ``essx.cli``."""
import os
import sys

from essx import resources as _resources
from essx.startup import System
from essx.web import build_app

__all__ = ["COMM_INTERFACE_VERSION", "DCDC_BATT_COMM_VERSION", "OPENAPI_PATH", "System",
           "create_app", "installed_path", "main"]
COMM_INTERFACE_VERSION = "2.0"
DCDC_BATT_COMM_VERSION = "1.4"
OPENAPI_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), _resources.OPENAPI_NAME)


def create_app(controller, *, goodbye=None, reload_config=None, config=None, simulate=False):
    """The Bottle application (``essx.web``).

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
    name (``essx/data/``), which may be missing on a broken install."""
    return path if os.path.exists(path) else str(_resources.data_path(os.path.basename(path)))


def main(argv=None):
    """Run essx-server (``essx.cli.main``) -> exit status 0, 1 (failed ``--check``) or 2 (bad input)."""
    from essx.cli import main as cli_main

    return cli_main(argv, create_app=create_app)


if __name__ == "__main__":
    sys.exit(main())
