"""The live page in a real browser: headless Chromium renders it against a server on
the pty simulators, and its DOM shows the converter's mode, the banner and a plot.

Skipped only when no Chromium is installed and the environment variable CI is
not set (in CI a missing browser is a failure: .ci/run installs it).
"""
import html.parser

import pytest

from conftest import ServerThread, render


class Dom(html.parser.HTMLParser):
    """Text of elements by id, and the attributes of each <polyline> by the id of its <svg>."""

    def __init__(self):
        super().__init__()
        self.text, self.polylines, self.classes = {}, {}, {}
        self._open, self._svg = [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.text.setdefault(attrs["id"], "")
            self.classes[attrs["id"]] = attrs.get("class") or ""
            self._open.append(attrs["id"])
        else:
            self._open.append(None)
        if tag == "svg":
            self._svg = attrs.get("id")
        if tag == "polyline":
            self.polylines.setdefault(self._svg, []).append(attrs)
        if tag in ("polyline", "circle", "rect", "meta", "br", "input", "img"):   # void / self-closed
            self._open.pop()

    def handle_endtag(self, tag):
        if self._open:
            self._open.pop()
        if tag == "svg":
            self._svg = None

    def handle_data(self, data):
        for element in self._open:
            if element is not None:
                self.text[element] += data


@pytest.fixture
def served(system):
    """A server on *system* told that its devices are simulated, with some traffic behind it."""
    from essx_server import create_app

    server = ServerThread(create_app(system.controller, simulate=True))
    system.dcdc_sim.set(mode=0x0014, dvg=350, dig=2.5)
    system.battery_sim.rsoc = 47.5
    try:
        for path in ("/remote/get", "/1/log/data", "/remote/get/status"):
            assert server.client.get(path)[0] == 200
        yield server
    finally:
        server.stop()


def test_page_shows_mode_banner_and_plots(chromium, served, tmp_path):
    dom = Dom()
    dom.feed(render(chromium, served.client.base + "/", tmp_path / "profile", "--dump-dom"))
    assert dom.text["mode"].strip() == "Grid Autonomy (0x0014)"
    assert "mode read" in dom.text["mode-age"] and "ago" in dom.text["mode-age"]
    assert "on" in dom.classes["banner"].split() and "SIMULATED" in dom.text["banner"]
    assert "47.5" in dom.text["rsoc"]
    assert "vg" in dom.text["meter"] and "ago" in dom.text["meter"]
    assert "open" in dom.text["buses"]
    for plot in ("plot-vg", "plot-ig", "plot-wb", "plot-rsoc"):
        line, = dom.polylines[plot]
        points = [tuple(map(float, p.split(","))) for p in line["points"].split()]
        assert len(points) >= 1 and all(0 <= x <= 300 and 0 <= y <= 150 for x, y in points), plot


def test_page_screenshot_renders(chromium, served, tmp_path):
    shot = tmp_path / "page.png"
    render(chromium, served.client.base + "/", tmp_path / "profile", "--screenshot=%s" % shot,
           "--window-size=1280,900", "--hide-scrollbars")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10000
