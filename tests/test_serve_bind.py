"""essx_service.serve.bind: every address --host resolves to, on one port (Debian's
localhost is 127.0.0.1 and ::1); an address this machine cannot have is
skipped while another binds; otherwise one line naming the problem."""
import logging
import socket

import pytest

from essx_service.serve import bind
from essx_service.startup import StartupError


def resolving_to(monkeypatch, *addresses):
    """Make every name resolve to *addresses* (the resolver's answer, in order)."""
    def getaddrinfo(host, port, *args, **kwargs):
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (a, port)) for a in addresses]
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_both_loopbacks_on_one_port(monkeypatch):
    resolving_to(monkeypatch, "::1", "127.0.0.1")
    sockets = bind("localhost", 0)
    try:
        names = [s.getsockname()[:2] for s in sockets]
        assert [n[0] for n in names] == ["::1", "127.0.0.1"]
        assert names[0][1] == names[1][1] != 0            # the port the system chose, on both
    finally:
        for s in sockets:
            s.close()


def test_an_address_that_cannot_be_had_is_skipped(monkeypatch, caplog):
    resolving_to(monkeypatch, "2001:db8::1", "127.0.0.1")      # documentation prefix: on no machine
    with caplog.at_level(logging.WARNING):
        sockets = bind("localhost", 0)
    try:
        assert [s.getsockname()[0] for s in sockets] == ["127.0.0.1"]
    finally:
        for s in sockets:
            s.close()
    assert any("cannot listen on 2001:db8::1" in r.getMessage() for r in caplog.records)


def test_no_address_binds_is_one_line(monkeypatch):
    resolving_to(monkeypatch, "2001:db8::1")
    with pytest.raises(StartupError, match=r"--host node1 is not an address of this machine"):
        bind("node1", 0)


def test_a_port_in_use_is_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StartupError, match=r"--port %d: address already in use" % port):
            bind("127.0.0.1", port)
