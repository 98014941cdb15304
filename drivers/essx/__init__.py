"""ESSX: controller, low-level serial/Modbus devices and errors (spec 4, 5.4)."""
