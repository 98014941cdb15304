"""A battery port that goes away is not fatal: the routes say which port, over HTTP
(docs/reference-defects.md, D16; docs/battery-registers.md, "Retries and deadlines")."""


def test_a_vanished_battery_port_is_a_400_naming_it_and_nothing_else_breaks(http):
    sim = http.system.battery_sim
    port = sim.port
    assert http.get("/battery/get") == (200, {"rsoc": 55.5, "battery_operation_status": 3})
    sim.stop()  # the battery's device disappears (USB adapter unplugged)
    for route in ("/battery/get", "/1/log/data"):
        status, body = http.get(route)
        assert status == 400, body
        assert port in body["err"]
    status, body = http.get("/version/get")
    assert status == 200
