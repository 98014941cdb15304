"""The battery over Modbus RTU (spec 5.3.2; docs/battery-registers.md): ``BatteryEmulator``,
importable from here as in the reference, and what it needs of its device and its replies
(``ModbusDevice``, ``ModbusReply``). The simulated battery is ``essx_sim.battery``, which
the driver never imports."""
from battery_emulator.battery_emulator import BatteryEmulator, ModbusDevice, ModbusReply

__all__ = ["BatteryEmulator", "ModbusDevice", "ModbusReply"]
