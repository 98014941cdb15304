"""The grid's live page (essx-grid's control port, ``/``) in a real browser:
headless Chromium renders it against a small grid of real driver stacks, and
its DOM shows the bus voltage, every node's mode and the flows in SVG, the
simulated clock, and the day's figures (``/figures``) as charts and a table.

The browser tests are skipped only when no Chromium is installed and the
environment variable CI is not set (conftest's ``chromium`` fixture).
"""
import datetime
import html.parser
import time
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
    assert "SIMULATED GRID" in page and 'fetch("grid"' in page and 'fetch("figures"' in page
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


#: The power lines of the day's chart (the figures' series keys).
POWER = ("pv", "load", "ac_in", "loss", "exchanged", "wasted")


def figures(g):
    status, body = g.control.get("/figures")
    assert status == 200, body
    return body


def the_day(report):
    """The page's day: the date of the latest series row, and that day's rows."""
    day = report["series"][-1]["time"][:10]
    return day, [r for r in report["series"] if r["time"][:10] == day]


def moment(iso):
    return datetime.datetime.fromisoformat(iso)


def seconds_of_day(iso):
    t = moment(iso)
    return 3600 * t.hour + 60 * t.minute + t.second


def plotted(dom, chart, key):
    """The (s since midnight, value) of every point of polyline plot-<key> in svg#<chart>,
    read back through the chart's frame (0:00-24:00 across, data-lo..data-hi up)."""
    frame, svg = dom.attrs[chart + "-frame"], dom.attrs[chart]
    x0, y0, w, h = (float(frame[k]) for k in ("x", "y", "width", "height"))
    lo, hi = float(svg["data-lo"]), float(svg["data-hi"])
    points = [tuple(map(float, p.split(","))) for p in dom.attrs["plot-" + key]["points"].split()]
    return [((x - x0) / w * 86400, lo + (y0 + h - y) / h * (hi - lo)) for x, y in points], (86400 / w, (hi - lo) / h)


def test_page_plots_the_day_and_tables_the_figures(chromium, make_grid, tmp_path):
    # 8640x: a simulated day in 10 s; the clock moves 1728 s a 0.2 s tick, so a row every tick
    g = make_grid([NodeSpec()] * 3, speed=8640, grid={"profiles": "sample"}, sample_s=600)
    set_node(g, 0, "0x0014", 2.5)          # a deal: node 0 holds the bus, node 1 gives it 1 A
    set_node(g, 1, "0x0002", 1.0)
    deadline = time.monotonic() + 120
    while True:                            # a closed day, and the next one well begun
        report = figures(g)
        if report["days"] and len(the_day(report)[1]) >= 20:
            break
        assert time.monotonic() < deadline, "no closed day and 20 rows after it: %r" % report["today"]
        time.sleep(0.1)
    # the clock all but stops (1 simulated s in 1000 real s); wait for the row of the tick in flight
    assert g.control.get("/control/speed", value=0.001)[0] == 200
    while True:
        report, now = figures(g), g.snapshot()["time"]
        if (moment(now) - moment(report["series"][-1]["time"])).total_seconds() < 600:
            break                          # the next row is > 1000 real s away at least
        assert time.monotonic() < deadline, "the row in flight did not come"
        time.sleep(0.1)
    dom = show(chromium, g, tmp_path / "profile")
    assert figures(g) == report            # the page read these very figures
    snapshot = g.snapshot()

    assert "on" not in dom.attrs["offline"].get("class", "").split()
    shown = moment(dom.text["clock-time"].strip().replace(" ", "T"))
    assert abs((shown - moment(now)).total_seconds()) <= 2, (dom.text["clock-time"], now)
    assert "8640" not in dom.text["clock-speed"] and "0.001" in dom.text["clock-speed"]

    day, rows = the_day(report)
    assert dom.text["day-date"] == day and len(rows) >= 20
    assert dom.text["day-rows"].startswith("%d rows" % len(rows))
    for chart, keys in (("chart-power", POWER), ("chart-rsoc", ("rsoc",))):
        for key in keys:
            points, (per_x, per_y) = plotted(dom, chart, key)
            assert len(points) == len(rows), key          # a point a row of the day, no more
            for (t, v), r in zip(points, rows):           # coordinates are drawn to 0.1 px
                assert t == pytest.approx(seconds_of_day(r["time"]), abs=0.06 * per_x), key
                assert v == pytest.approx(r[key], abs=0.06 * per_y), key
    assert float(dom.attrs["chart-rsoc"]["data-lo"]) == 0 and float(dom.attrs["chart-rsoc"]["data-hi"]) == 100
    power = [r[k] for r in rows for k in POWER]
    assert float(dom.attrs["chart-power"]["data-hi"]) >= max(power) > 0   # the axis holds every line
    assert "%.0f W" % rows[-1]["pv"] in dom.text["key-pv"]                # the legend: the latest row

    for name, figs in [("today", report["today"])] + [(d["date"], d) for d in report["days"]]:
        assert dom.text["day-%s-date" % name].startswith(figs["date"])
        for key in ("pv", "load", "ac_in", "loss", "wasted", "exchanged", "delta_stored"):
            assert float(dom.text["day-%s-%s" % (name, key)].replace("\u2212", "-")) == pytest.approx(
                figs[key] / 1000, abs=0.0051), (name, key)
        ssr = figs["self_sufficiency"]
        assert float(dom.text["day-%s-self_sufficiency" % name]) == pytest.approx(100 * ssr, abs=0.051)
        assert abs(float(dom.text["day-%s-balance" % name])) <= max(0.01, abs(figs["balance"]) + 0.01)
    assert report["days"][0]["pv"] > 1000                 # the sample profiles: a sunny day, kWh of PV

    for i, node in enumerate(snapshot["nodes"]):          # the household side of every node
        assert dom.text["node-%d-unit" % i] == node["unit"] == "E%03d" % (i + 1)
        for key in ("pv", "load", "ac_in", "loss"):
            assert float(dom.text["node-%d-%s" % (i, key)].split()[0]) == pytest.approx(node[key], abs=1.0), key
        ups = dom.text["node-%d-ups" % i]
        assert ("bypass" in ups) == node["bypass"] and ("AC charging" in ups) == node["ac_charging"]
        assert ("normal" in ups) == (not node["bypass"] and not node["ac_charging"])
