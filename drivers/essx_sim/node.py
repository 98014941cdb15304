"""One simulated node: a converter simulator and a battery simulator sharing
one battery model, the converter a node of a DC bus.

``essx-server --simulate`` starts one such node alone on its bus (the
converter's private bus, see ``essx_sim.converter``); ``essx-grid`` starts N
of them on one shared ``DCBus``.
"""
from typing import Hashable, Optional, Tuple

from .battery import BatterySimulator
from .converter import EZA2500Simulator
from .dcbus import DCBus
from .physics import BatteryModel


def start_simulated_node(ad1: int, ad2: int, baud: int, unit: Optional[int],
                         battery_baud: int = 9600, *, bus: Optional[DCBus] = None,
                         model: Optional[BatteryModel] = None, name: Optional[Hashable] = None,
                         speed: float = 1.0) -> Tuple[EZA2500Simulator, Optional[BatterySimulator]]:
    """Start a simulated converter (and battery) on pseudo-terminals.

    Args:
        ad1, ad2: the converter's addresses; baud: its line speed (bits/s).
        unit: the battery's Modbus unit, or None for a node without battery.
        battery_baud: the battery line's speed (bits/s).
        bus: the ``DCBus`` to join; None: alone on a private bus.
        model: the battery's ``BatteryModel``; None: a default one (4800 Wh,
            RSOC 55.5 %, always permitted) running at ``speed``.
        name: node name on ``bus`` (default "ad1/ad2").
        speed: simulated seconds per real second for a default model.
    Returns:
        (EZA2500Simulator, BatterySimulator or None), both started; their
        ``port`` is what the driver opens.  The caller stops them.
    Raises:
        ValueError: a bad value (unit, speed, a taken ``name``); OSError or
            RuntimeError: a pty or the Modbus server could not start.
    """
    battery_sim = None
    if unit is not None:
        model = model if model is not None else BatteryModel(speed=speed)
        battery_sim = BatterySimulator(unit=unit, baudrate=battery_baud, model=model)
    eza_sim = EZA2500Simulator(ad1=ad1, ad2=ad2, baudrate=baud, bus=bus, battery=model, name=name)
    eza_sim.start()
    try:
        if battery_sim is not None:
            battery_sim.start()
    except BaseException:
        eza_sim.stop()
        raise
    return eza_sim, battery_sim
