"""The grid's live page (essx-grid's control port, ``/``) in a real browser:
headless Chromium renders it against a small grid of real driver stacks, and
its DOM shows the bus voltage, every node's mode and the flows in SVG.

The browser tests are skipped only when no Chromium is installed and the
environment variable CI is not set (conftest's ``chromium`` fixture).
"""
import html.parser
import urllib.request

import pytest
from conftest import render, set_node

from essx_sim.grid import NodeSpec

#: HTML elements without an end tag (SVG elements always have one in Chromium's DOM dump).
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


class Dom(html.parser.HTMLParser):
    """The rendered DOM by id: ``attrs[id]`` (dict, with the tag as ``"<tag>"``)
    and ``text[id]`` (all text inside the element)."""

    def __init__(self, page):
        super().__init__()
        self.attrs, self.text, self._open = {}, {}, []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs, **{"<tag>": tag})
        if "id" in attrs:
            self.attrs[attrs["id"]] = attrs
            self.text[attrs["id"]] = ""
        if tag not in VOID:
            self._open.append(attrs.get("id"))

    def handle_endtag(self, tag):
        if tag not in VOID and self._open:
            self._open.pop()

    def handle_data(self, data):
        for element in self._open:
            if element is not None:
                self.text[element] += data


def show(chromium, g, profile):
    """The DOM of the control port's page after 5 s of virtual time."""
    return Dom(render(chromium, g.control.base + "/", profile, "--dump-dom"))


def test_control_port_serves_the_page_and_keeps_the_grid_json(make_grid):
    g = make_grid([NodeSpec()])
    with urllib.request.urlopen(g.control.base + "/", timeout=30) as r:
        assert r.headers.get_content_type() == "text/html"
        page = r.read().decode()
    assert "SIMULATED GRID" in page and 'fetch("grid"' in page
    assert "--accent:" in page and "/* page.css */" not in page     # the shared stylesheet is put in
    assert "http://" not in page.replace("http://www.w3.org/", "")     # nothing from elsewhere
    status, body = g.control.get("/grid")
    assert status == 200 and set(body) == {"time", "speed", "bus", "nodes"}
    assert body["nodes"][0]["url"] == g.urls[0]
    assert body["nodes"][0]["direction"] == "idle" and body["nodes"][0]["wb"] == 0     # Waiting


def test_page_shows_bus_nodes_and_flows(chromium, make_grid, tmp_path):
    g = make_grid([NodeSpec(rsoc=60), NodeSpec(rsoc=40), NodeSpec()])
    set_node(g, 0, "0x0014", 2.5)          # Grid Autonomy at 350 V, dig 2.5 A
    set_node(g, 1, "0x0002", 2.0)          # discharge 2 A into the bus; node 2 stays in Waiting
    dom = show(chromium, g, tmp_path / "profile")
    assert "SIMULATED GRID" in dom.text["banner"]
    assert dom.text["bus-voltage"].strip() in ("349.99 V", "350.00 V", "350.01 V")
    assert dom.text["bus-state"].strip() == "UP" and "ago" in dom.text["bus-age"]
    modes = [dom.text["node-%d-mode" % i].strip() for i in range(3)]
    assert modes == ["Grid Autonomy (0x0014)", "Heteronomy CV (0x0002)", "Waiting (0x0000)"]
    for i in range(3):
        assert dom.attrs["node-%d-link" % i]["href"] == g.urls[i] + "/"
        assert ":%s" % g.urls[i].rsplit(":", 1)[1] in dom.text["node-%d-link" % i]
    assert "charging" in dom.text["node-0-ig"] and "discharging" in dom.text["node-1-ig"]
    # the meters' sign: node 0 takes node 1's 2 A into its battery (wb > 0), node 1 gives (wb < 0)
    assert "into the battery" in dom.text["node-0-wb"] and not dom.text["node-0-wb"].startswith("-")
    assert "out of the battery" in dom.text["node-1-wb"] and dom.text["node-1-wb"].startswith("-")
    assert "> 0" in dom.text["sign"] and "charging" in dom.text["sign"]
    assert "-2.000 A" in dom.text["node-1-ig"] and "no current" in dom.text["node-2-ig"]
    assert "60." in dom.text["node-0-rsoc"] and "permitted" in dom.text["node-1-permitted"]
    charge, discharge = dom.attrs["flow-0"], dom.attrs["flow-1"]
    assert charge["<tag>"] == discharge["<tag>"] == "line"
    assert charge["class"] == "flow charge" and float(charge["data-ig"]) == pytest.approx(2.0, abs=0.01)
    assert discharge["class"] == "flow discharge"
    assert float(discharge["data-ig"]) == pytest.approx(-2.0, abs=0.01)
    assert "flow-2" not in dom.attrs                  # Waiting: a wire, no flow
    assert dom.attrs["bus-bar"]["class"] == "bus"


def test_page_shows_the_bus_down_without_a_voltage_source(chromium, make_grid, tmp_path):
    g = make_grid([NodeSpec(), NodeSpec()])
    set_node(g, 0, "0x0002", 2.0)          # a current source alone: nothing holds the bus
    dom = show(chromium, g, tmp_path / "profile")
    assert dom.text["bus-voltage"].strip() == "0.00 V"
    assert dom.text["bus-state"].startswith("DOWN")
    assert dom.attrs["bus-bar"]["class"] == "bus off"
    assert dom.text["node-0-mode"].strip() == "Heteronomy CV (0x0002)"
    assert not [k for k in dom.attrs if k.startswith("flow-") and k != "flows"]
