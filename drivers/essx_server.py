#!/usr/bin/env python3
"""ESSXServer: the apis-dcdc_batt_comm Web API (spec 4.1, 5.1; docs/web-api.md).

The specification's entry point, kept thin: the application is
``essx_service.app``, its routes ``essx_service.web``, the command line and
start-up ``essx_service.cli`` and ``essx_service.startup``.
"""
import sys

from essx_service.app import (COMM_INTERFACE_VERSION, DCDC_BATT_COMM_VERSION, OPENAPI_PATH, create_app,
                              installed_path)
from essx_service.cli import main
from essx_service.startup import System

__all__ = ["COMM_INTERFACE_VERSION", "DCDC_BATT_COMM_VERSION", "OPENAPI_PATH", "System",
           "create_app", "installed_path", "main"]

if __name__ == "__main__":
    sys.exit(main())
