"""Nothing starves (issue 10, point 6), at the process and HTTP level.

Clients stuck on a silent converter hold at most the threads the link lets
wait; idle and half-open connections hold sockets, not threads.  The
routes that do not need the converter keep answering within 0.5 s.
"""
import socket
import threading
import time

from conftest import write_config

#: The bound of issue 10, point 6 (s).
BOUND = 0.5


def _timed(client, path):
    start = time.monotonic()
    status, body = client.get(path)
    return status, time.monotonic() - start


def _stuck_clients(client, count):
    """*count* threads asking /remote/get of a silent converter."""
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(client.get("/remote/get")[0]))
               for _ in range(count)]
    for t in threads:
        t.start()
    return threads, answers


def test_silent_converter_leaves_threads_for_other_routes(tmp_path, devices, process):
    dcdc, battery = devices
    p = process("--config", write_config(tmp_path, dcdc.port, battery.port))
    p.wait_ready()
    assert p.client.get("/1/log/data")[0] == 200
    dcdc.inject("silent", count=None)
    threads, answers = _stuck_clients(p.client, 16)
    try:
        time.sleep(0.3)                         # let them reach the line
        for path in ("/version/get", "/1/log/data", "/version/get", "/battery/get"):
            status, seconds = _timed(p.client, path)
            assert status == 200 and seconds < BOUND, (path, status, seconds)
    finally:
        for t in threads:
            t.join(60)
    assert answers == [400] * 16                # each got an answer: refused or timed out


def test_idle_and_half_open_connections_do_not_block(tmp_path, devices, process):
    dcdc, battery = devices
    p = process("--config", write_config(tmp_path, dcdc.port, battery.port), "--host", "127.0.0.1")
    p.wait_ready()
    idle = []
    try:
        for i in range(120):
            s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
            if i % 2:                           # half a request, never finished
                s.sendall(b"GET /remote/get HTTP/1.1\r\nHost: x\r\n")
            idle.append(s)
        for path in ("/version/get", "/1/log/data", "/remote/get"):
            status, seconds = _timed(p.client, path)
            assert status == 200 and seconds < BOUND, (path, status, seconds)
    finally:
        for s in idle:
            s.close()
