"""Every answer inside apis-main's attempt (docs/apis-main.md: 5 s, 3 attempts).

Each request is answered, 200 or 400, within ``request_deadline`` (default
4 s): the wait for the converter's line, the commands' tries and retries and
the battery's tries fit inside it, and nothing of a request runs after its
answer.  These tests use the default deadline, as apis-main meets it.
"""
import threading
import time

import pytest

from conftest import ServerThread, fast_config, with_settings

#: The default request_deadline (s) and the allowance for HTTP and a loaded machine.
DEADLINE = 4.0
MARGIN = 0.5


def timed_get(client, path, **params):
    start = time.monotonic()
    status, body = client.get(path, **params)
    return status, body, time.monotonic() - start


@pytest.fixture
def node(no_leaks):
    """(HTTPClient, System) of a server on the simulators, with the shipped
    deadline and many retries (a fault can hold a command for 20 s)."""
    from essx_server import System, create_app

    config = with_settings(fast_config(), dcdc={"number_of_timeout_retry": 100, "number_of_dcdc_error_retry": 100})
    assert config.dcdc.request_deadline == DEADLINE
    system = System(config, simulate=True, watch=False)
    server = ServerThread(create_app(system.controller))
    try:
        yield server.client, system
    finally:
        server.stop()
        system.close()


def quiet_for(sim, seconds):
    """The number of commands the simulator received during *seconds* from now."""
    before = len(sim.received)
    time.sleep(seconds)        # observing that nothing happens takes this long
    return len(sim.received) - before


def test_retries_end_at_the_deadline_and_nothing_runs_after(node):
    client, system = node
    sim = system.dcdc_sim
    sim.inject("silent", count=None)
    status, body, seconds = timed_get(client, "/remote/get/status")
    assert status == 400 and "deadline" in body["err"], body
    assert seconds < DEADLINE + MARGIN, seconds
    assert seconds > 1.0, seconds                        # it did retry, within the deadline
    assert quiet_for(sim, 0.5) == 0                      # no retry after the answer
    sim.clear_faults()
    assert client.get("/remote/get/status")[0] == 200


def test_a_request_that_cannot_get_the_line_in_time_sends_nothing(node):
    """Another caller holds the line past the deadline: the request is refused
    within the deadline with nothing sent, not run after apis-main gave up."""
    client, system = node
    link, sim = system.controller.link, system.dcdc_sim
    held, release = threading.Event(), threading.Event()

    def hold():
        with link.sequence():
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(5)
        sim.clear()
        status, body, seconds = timed_get(client, "/remote/set", mode="0x0014", dvg=350, dig=1, drg=0)
    finally:
        release.set()
        holder.join()
    assert status == 400 and "nothing sent" in body["err"] and "deadline" in body["err"], body
    assert seconds < DEADLINE + MARGIN, seconds
    assert quiet_for(sim, 0.5) == 0 and sim.received == []
    assert sim.state["mode"] == 0x0000


def test_two_overlapping_requests_on_a_slow_converter(node):
    """Each of two requests meeting a slow converter answers within its own deadline."""
    client, system = node
    system.dcdc_sim.inject("delay", count=None, seconds=0.3)      # late replies: every try times out
    answers = []

    def ask():
        answers.append(timed_get(client, "/remote/get"))

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(answers) == 2 and {a[0] for a in answers} <= {200, 400}, answers
    assert max(a[2] for a in answers) < DEADLINE + MARGIN, [(a[0], a[2]) for a in answers]
