"""The battery over Modbus RTU (spec 5.3.2) and a simulated battery for tests.

``BatteryEmulator`` is the driver, importable from here as in the reference
(``battery_emulator.BatteryEmulator(dev, modbus_adr_rsoc, modbus_adr_status,
unit)``, addresses as register numbers 30030/30031 or PDU addresses 29/30);
``battery_emulator.simulator`` (imported on demand, it pulls in the pymodbus
server) is the simulated battery.
"""
from battery_emulator.battery_emulator import BatteryEmulator

__all__ = ["BatteryEmulator"]
