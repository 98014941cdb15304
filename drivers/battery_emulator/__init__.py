"""The battery over Modbus RTU (spec 5.3.2) and a simulated battery for tests.

``BatteryEmulator`` is the driver; ``battery_emulator.simulator`` (imported on
demand, it pulls in the pymodbus server) is the simulated battery.
"""
from battery_emulator.battery_emulator import BatteryEmulator

__all__ = ["BatteryEmulator"]
