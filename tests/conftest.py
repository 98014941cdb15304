"""Shared pytest setup: make drivers/ importable without an install."""
import os
import sys

DRIVERS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "drivers")
if DRIVERS not in sys.path:
    sys.path.insert(0, DRIVERS)
