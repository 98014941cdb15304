"""The battery over Modbus RTU (spec 5.3.2): ``BatteryEmulator``, importable from here as in the
reference; ``essx_sim.battery`` (imported on demand) is the simulated battery."""
from battery_emulator.battery_emulator import BatteryEmulator

__all__ = ["BatteryEmulator"]
