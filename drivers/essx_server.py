#!/usr/bin/env python3
"""ESSXServer: the apis-dcdc_batt_comm Web API (spec 4.1, 5.1; web-api.md).

Every route is a GET answering 200 + JSON, or 400 + ``{"err": "..."}`` for any
failure.  The application is built by :func:`create_app` (tests use it without
a socket); :func:`main` reads the command line, checks the configuration,
opens the devices (or, with ``--simulate``, simulated ones on pseudo-terminals)
and serves with waitress until SIGINT/SIGTERM.
"""

import os
import sys

from essx import resources as _resources
from essx.startup import System  # noqa: F401 - essx_server.System (tests, essx_grid)
from essx.web import build_app

COMM_INTERFACE_VERSION = "2.0"
DCDC_BATT_COMM_VERSION = "1.4"
OPENAPI_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), _resources.OPENAPI_NAME)


def create_app(controller, *, goodbye=None, reload_config=None, config=None, simulate=False):
    """Build the Bottle application (the routes are in ``essx.web``).

    Args:
        controller: an ``ESSXTypeOES`` (None only to list the routes); the
            application's recorder listens to ``controller.link`` and
            ``controller.bat_dev`` (when not None).
        goodbye: None to disable ``/essx/goodbye`` (404); else a callable run
            after its answer is sent (it should stop the server).
        reload_config: None, or a callable returning a new ``Config`` for
            ``/remote/ioctl/set`` (raises ``ESSXConfigException`` on a bad file).
        config: the ``Config`` the server runs with, shown by ``/essx/status``
            (path, baud rates); None when unknown.
        simulate: True when the devices are simulators (``/essx/status``, the
            live page's banner).
    Returns:
        bottle.Bottle; ``app.config["essx.recorder"]`` is its ``essx.observe.Recorder``.
    """
    return build_app(controller, goodbye=goodbye, reload_config=reload_config, config=config,
                     simulate=simulate, openapi_path=lambda: installed_path(OPENAPI_PATH),
                     versions={"comm_interface_version": COMM_INTERFACE_VERSION,
                               "dcdc_batt_comm_version": DCDC_BATT_COMM_VERSION})


def installed_path(path: str) -> str:
    """*path* when it exists (a source tree), else the shipped file of the same
    name found through importlib.resources (``essx/data/``), in every install
    form (venv, --user, system pip, editable).  Raises nothing: the returned
    path may not exist on a broken install (``/openapi.json`` then names it)."""
    if os.path.exists(path):
        return path
    return str(_resources.data_path(os.path.basename(path)))


def main(argv=None):
    """Run essx-server; returns the exit status (0 after SIGINT/SIGTERM or a
    passing ``--check``, 1 for a failed ``--check``, 2 for an operator's
    mistake).  See ``essx.cli``."""
    from essx.cli import main as cli_main

    return cli_main(argv, create_app=create_app)


if __name__ == "__main__":
    sys.exit(main())
