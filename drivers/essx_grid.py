#!/usr/bin/env python3
"""essx-grid: N nodes of this driver on one simulated DC bus; a thin entry
point for ``essx_service.grid`` (its docstring has the command line)."""
import sys

from essx_service.grid import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
