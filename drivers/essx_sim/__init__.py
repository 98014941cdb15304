"""The simulation: what lets the driver run without hardware (docs/grid.md).

Below the serial line, beside the driver: the paced pseudo-terminal engine
(``paced_pty``, ``ptyport``), the EZA2500 simulator (``converter``), the
battery's Modbus simulator (``battery``, ``rtu``) and its physics
(``physics``), the DC bus (``dcbus``), a simulated node (``node``) and a
simulated grid (``grid``).  It uses the protocol table (``eza2500.table``,
``eza2500.codec``) and never the service (``essx_service``).

``python3 -m essx_sim.converter`` and ``python3 -m essx_sim.battery`` serve
one simulator on a pty.
"""
