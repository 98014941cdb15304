"""Buses under load, the battery-watch thread, and a converter that stays busy."""

import threading
from dataclasses import replace

from conftest import commands, writes
from conftest import held_line


def force_waiting(controller, on):
    """Turn the battery section's force_dcdc_waiting on or off (as a reload would)."""
    controller.update_config(controller.dcdc_config, replace(controller.bat_config, force_dcdc_waiting=on))


def test_busy_converter_is_400_naming_the_nak(http):
    sim = http.system.dcdc_sim
    sim.clear()
    sim.inject("nak", count=None, ercd=0xFFFC)
    try:
        status, body = http.get("/remote/get/status")
    finally:
        sim.clear_faults()
    assert status == 400
    assert "0xfffc" in body["err"] and "busy" in body["err"]
    retries = http.system.controller.dcdc_config.number_of_dcdc_error_retry
    assert commands(sim) == ["1-1"] * (retries + 1)
    # the server still serves
    assert http.get("/remote/get/status")[0] == 200


def test_parameter_invalid_nak_is_not_retried(http):
    sim = http.system.dcdc_sim
    sim.clear()
    sim.inject("nak", count=None, ercd=0xFFFE)
    try:
        status, body = http.get("/remote/set/current", dig=1)
    finally:
        sim.clear_faults()
    assert status == 400
    assert "0xfffe" in body["err"] and "parameter invalid" in body["err"]
    assert commands(sim) == ["6-4"]


def test_concurrent_requests_and_watch_never_collide(http):
    system = http.system
    sim, bsim = system.dcdc_sim, system.battery_sim
    controller = system.controller
    force_waiting(controller, True)
    bsim.permitted = False
    failures = []
    stop = threading.Event()

    def poll(path, **params):
        for _ in range(6):
            status, body = http.get(path, **params)
            if status != 200:
                failures.append((path, body))

    def watch():
        while not stop.is_set():
            controller.check_and_wait()

    threads = [threading.Thread(target=poll, args=(p,)) for p in
               ("/all/get", "/dcdc/get/status", "/remote/get", "/1/log/data")]
    threads.append(threading.Thread(target=poll, args=("/dcdc/set",), kwargs={"dig": 1.0}))
    watcher = threading.Thread(target=watch)
    for t in threads + [watcher]:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watcher.join()
    assert failures == []
    assert sim.collisions == 0
    assert bsim.collisions == 0
    assert "1-4" in writes(sim)          # the watch thread did put the converter in Waiting


def test_watch_thread_sets_waiting_when_forbidden(system):
    sim, bsim = system.dcdc_sim, system.battery_sim
    controller = system.controller
    sim.set(mode=0x0014)
    sim.clear()
    bsim.permitted = True
    force_waiting(controller, True)
    assert controller.check_and_wait() is False
    assert writes(sim) == []
    bsim.permitted = False
    assert controller.check_and_wait() is True
    assert writes(sim) == ["1-4"]
    assert sim.state["mode"] == 0
    force_waiting(controller, False)
    sim.clear()
    assert controller.check_and_wait() is False
    assert commands(sim) == []


def test_watch_thread_runs_and_stops(system):
    from essx.essx_type_oes import ESSXTypeOES

    cfg = replace(system.controller.bat_config, force_dcdc_waiting=True, check_interval=0.1)
    system.battery_sim.permitted = False
    system.dcdc_sim.set(mode=0x0014)
    controller = ESSXTypeOES(system.controller.dcdc_dev, system.controller.bat_dev,
                             system.controller.dcdc_config, cfg, 0, 16, "dcdc1")
    try:
        deadline = threading.Event()
        for _ in range(50):
            if system.dcdc_sim.state["mode"] == 0:
                break
            deadline.wait(0.1)
        assert system.dcdc_sim.state["mode"] == 0
    finally:
        controller.close()
    assert not controller.watching


def test_set_that_cannot_get_the_line_is_refused_and_never_sent(http):
    """issue 10: a set waits at most line_wait for the converter line, then 400 with nothing sent."""
    system = http.system
    sim, controller = system.dcdc_sim, system.controller
    controller.update_config(replace(controller.dcdc_config, line_wait=0.3), controller.bat_config)
    sim.clear()
    with held_line(controller.link):
        status, body = http.get("/remote/set/current", dig=1)
    assert status == 400
    assert "converter line busy" in body["err"] and "nothing sent" in body["err"], body
    assert commands(sim) == []
    assert http.get("/remote/set/current", dig=1)[0] == 200   # the line is free again
    assert writes(sim) == ["6-4"]
