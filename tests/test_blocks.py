"""essx.blocks, the one description of the Web API's response blocks: it agrees with
drivers/openapi.json's schemas, with eza2500.table's units and with docs/web-api.md's
"Units", and every route's real answer on the simulators has exactly the described keys,
in order, made of replies of the commands the route sent."""
import json
import os
import re

import pytest

from conftest import DRIVERS, commands, openapi_resolve
from essx import blocks
from essx.blocks import (ALL_GET, BATTERY, BATTERY_GET, DCDC_GET, IOCTL_GET, IOCTL_SET, LOG_DATA, METER,
                         PARAM, POWERMETER, REMOTE_GET, REMOTE_GET_STATUS, REMOTE_SET, SET_CURRENT,
                         SET_VOLTAGE, SETUP, STATUS, STATUS_SHORT, VDIS, Block, Readings, Reply)
from essx_service.web import ApiRoutes

DOCS = os.path.join(os.path.dirname(DRIVERS), "docs")

#: openapi.json component schema -> the block it describes.
SCHEMAS = {
    "Status": STATUS, "StatusShort": STATUS_SHORT, "Meter": METER, "Vdis": VDIS, "Param": PARAM,
    "Powermeter": POWERMETER, "LogData": BATTERY, "BatteryGet": BATTERY_GET, "RemoteGet": REMOTE_GET,
    "DcdcGet": DCDC_GET, "RemoteGetStatus": REMOTE_GET_STATUS, "RemoteSet": REMOTE_SET,
    "SetCurrent": SET_CURRENT, "SetVoltage": SET_VOLTAGE, "IoctlSet": IOCTL_SET, "IoctlGet": IOCTL_GET,
    "AllGet": ALL_GET,
}

#: (route, parameters, the body described), in an order the simulators answer 200 to.
CALLS = [
    ("/1/log/data", {}, LOG_DATA),
    ("/battery/get", {}, BATTERY_GET),
    ("/remote/get", {}, REMOTE_GET),
    ("/dcdc/get", {}, DCDC_GET),
    ("/remote/get/status", {}, REMOTE_GET_STATUS),
    ("/dcdc/get/status", {}, REMOTE_GET_STATUS),
    ("/remote/set", {"mode": "0x0014", "dvg": 350, "dig": 2.5, "drg": 0.1}, REMOTE_SET),
    ("/remote/set", {"mode": "0x0000", "dvg": 0.0}, REMOTE_SET),     # a stop: 4-4 skipped, 4-1 reads dvg
    ("/dcdc/set", {"mode": "0x0041", "dvg": 350, "dig": 1, "drg": 0}, REMOTE_SET),
    ("/dcdc/set", {"dig": 1.5}, SET_CURRENT),
    ("/dcdc/set", {"dvg": 360, "drg": 0}, SET_VOLTAGE),
    ("/remote/set/current", {"dig": 2}, SET_CURRENT),
    ("/remote/set/voltage", {"dvg": 300, "drg": 0.1}, SET_VOLTAGE),
    ("/remote/ioctl/set", {}, IOCTL_SET),
    ("/remote/ioctl/get", {}, IOCTL_GET),
    ("/all/get", {}, ALL_GET),
    ("/remote/ioctl/clr_alarm", {}, REMOTE_GET),
]
#: The apis-main routes that answer no block.
NO_BLOCK = {"/version/get", "/essx/hello", "/essx/goodbye", "/openapi.json"}
#: How openapi.json writes a unit.
OPENAPI_UNITS = {"°C": "degC"}


@pytest.fixture(scope="module")
def doc():
    with open(os.path.join(DRIVERS, "openapi.json"), encoding="utf-8") as f:
        return json.load(f)


def described(block):
    """[(key, nested or None)] of a block, in key order."""
    return [(item.key, described(item) if isinstance(item, Block) else None) for item in block.items]


def answered(body):
    """[(key, nested or None)] of a JSON object, in key order."""
    return [(k, answered(v) if isinstance(v, dict) else None) for k, v in body.items()]


def schema_keys(doc, schema):
    """{key: nested or None} of an object schema (its properties, which are all required)."""
    schema = openapi_resolve(doc, schema)
    assert schema["additionalProperties"] is False and set(schema["required"]) == set(schema["properties"])
    return {k: schema_keys(doc, v) if "properties" in openapi_resolve(doc, v) else None
            for k, v in schema["properties"].items()}


def as_dict(pairs):
    return {k: None if nested is None else as_dict(nested) for k, nested in pairs}


def with_block(block):
    """(field, the innermost block holding it) of every field of *block*."""
    for item in block.items:
        if isinstance(item, Block):
            yield from with_block(item)
        else:
            yield item, block


# -- the description against openapi.json -------------------------------------------------

@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_each_block_has_the_schemas_keys(doc, name):
    assert as_dict(described(SCHEMAS[name])) == schema_keys(doc, doc["components"]["schemas"][name])


def test_every_schema_of_a_block_is_described(doc):
    objects = {name for name, schema in doc["components"]["schemas"].items()
               if schema.get("type") == "object" and schema.get("properties")}
    not_blocks = {"Error", "Version", "Hello", "Goodbye"} | {n for n in objects if n.startswith("Essx")}
    assert objects - not_blocks == set(SCHEMAS)


def test_each_route_answers_its_blocks_schema(doc):
    schema_of = {id(block): name for name, block in SCHEMAS.items()}
    for route, params, block in CALLS:
        schema = doc["paths"][route]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        refs = [s["$ref"] for s in schema.get("oneOf", [schema])]
        assert "#/components/schemas/" + schema_of[id(block)] in refs, route


def _described_units(doc):
    """(schema, key, field, openapi description, the block's description) of every field."""
    for name, block in SCHEMAS.items():
        schema = doc["components"]["schemas"][name]

        def walk(block, schema):
            for item in block.items:
                prop = openapi_resolve(doc, schema["properties"][item.key])
                if isinstance(item, Block):
                    yield from walk(item, prop)
                else:
                    yield name, item.key, item, prop.get("description", ""), schema.get("description", "")
        yield from walk(block, schema)


def test_units_and_sources_agree_with_openapi(doc):
    for name, key, f, text, block_text in _described_units(doc):
        found = re.search(r", (V|A|W|degC|%)[ .]", text)
        unit = OPENAPI_UNITS.get(f.unit, f.unit)
        assert (found.group(1) if found else "") == unit, (name, key, text)
        if len(f.sources) == 1 and f.make is None:
            source = f.sources[0]
            if isinstance(source, Reply):
                assert source.command in text, (name, key, text)
            if isinstance(source, (blocks.Setup, blocks.BatteryConfig)):
                assert "configur" in (text + block_text).lower(), (name, key, text)


# -- the description against eza2500.table and docs/web-api.md ------------------------------

def test_units_of_reply_and_setup_fields_are_the_tables():
    for body in SCHEMAS.values():
        for f in body.fields():
            if len(f.sources) == 1 and f.make is None and isinstance(f.sources[0], (Reply, blocks.Setup)):
                assert f.unit == f.sources[0].table_field.unit, f.key


def test_units_are_those_of_web_api_md():
    section = _section(_web_api_md(), "### Units")
    documented = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and "`" in cells[0]:
            unit = "" if "no unit" in cells[1] else cells[1]
            documented.update((key, unit) for key in re.findall(r"`(\w+)`", cells[0]))
    assert documented, "no Units table in docs/web-api.md"
    seen = set()
    for body in SCHEMAS.values():
        for f in body.fields():
            if f.key in documented:
                assert f.unit == documented[f.key], f.key
                seen.add(f.key)
            else:
                assert f.unit == "", "%s (%s) is missing from docs/web-api.md's Units" % (f.key, f.unit)
    assert seen == set(documented)


def _web_api_md():
    with open(os.path.join(DOCS, "web-api.md"), encoding="utf-8") as f:
        return f.read()


def _section(text, heading):
    """The text under the markdown heading *heading* ("### /remote/ioctl/set") up to the next one."""
    return re.split(r"\n#+ ", text.split("\n" + heading + "\n", 1)[1], 1)[0]


#: docs/web-api.md section -> the body its JSON example shows.
EXAMPLES = {
    "### /battery/get": BATTERY_GET, "### /remote/get and /dcdc/get": REMOTE_GET,
    "### /remote/get/status and /dcdc/get/status": REMOTE_GET_STATUS,
    "### /remote/ioctl/get and /all/get": ALL_GET, "### /remote/set/current": SET_CURRENT,
    "### /remote/set/voltage": SET_VOLTAGE, "### /remote/ioctl/set": IOCTL_SET,
}


@pytest.mark.parametrize("heading", sorted(EXAMPLES))
def test_key_order_is_that_of_the_documented_examples(heading):
    """The order of keys, which openapi.json does not fix, as docs/web-api.md's examples show it."""
    example = re.search(r"```json\n(.*?)```", _section(_web_api_md(), heading), re.S).group(1)
    assert answered(json.loads(example)) == described(EXAMPLES[heading])


@pytest.mark.parametrize("heading, block", [("### status", STATUS), ("### battery block", BATTERY)])
def test_key_order_is_that_of_the_documented_tables(heading, block):
    rows = re.findall(r"^\| `(\w+)` \|", _section(_web_api_md(), heading), re.M)
    assert tuple(rows) == block.keys()


# -- the description itself ----------------------------------------------------------------

def test_a_reply_source_names_a_field_of_the_table():
    assert Reply("10-1", "vg").table_field.unit == "V"
    assert Reply("4-1", "dvg").carried_by == ("4-1", "4-4") and Reply("10-1", "ig").carried_by == ("10-1",)
    with pytest.raises(ValueError, match="10-1 carries no field 'volts'"):
        Reply("10-1", "volts")
    with pytest.raises(KeyError):
        Reply("10-4", "vg")


def test_shape_from_readings():
    reply = {"mode": 0x0014, "cst": 0x0005, "alm1": 0x0012, "dvg": 350.0, "drg": 0.1, "dig": 2.5}
    setup = {"cib": 52, "ubv": 40, "ogv": 400, "obv": 59, "ugv": 300, "ugv_unused": 1}
    readings = Readings(reply=reply, setup=setup)
    assert STATUS.shape(readings) == {
        "status": "0x0014", "alarmState": "Light alarm", "statusName": "Ignore", "alarm": "0012 0001 0001",
        "runningState": "charge", "operationMode": "Grid Autonomy"}
    assert list(PARAM.shape(readings).items()) == [("cib", 52), ("ubv", 40), ("ogv", 400), ("obv", 59),
                                                   ("ugv", 300), ("dig", 2.5)]
    assert STATUS_SHORT.shape(Readings(reply={"mode": 0, "cst": 0})) == {
        "alarmState": "No alarm", "runningState": "off", "operationMode": "Waiting"}   # no alm1 needed
    with pytest.raises(KeyError):
        METER.shape(readings)      # no 10-1 reply


def test_replies_in_group_then_wire_order():
    assert [(s.command, s.field) for s in REMOTE_GET.replies()] == [
        ("1-1", "mode"), ("2-1", "cst"), ("4-1", "dvg"), ("4-1", "drg"), ("6-1", "dig"), ("9-1", "alm1"),
        ("10-1", "vg"), ("10-1", "ig"), ("10-1", "vb"), ("10-1", "ib"), ("10-1", "wg"), ("10-1", "wb"),
        ("10-1", "tmp")]
    assert [f.key for f in METER.reply_fields()] == ["vg", "ig", "vb", "ib", "wg", "wb", "tmp"]
    assert [f.key for f in PARAM.reply_fields()] == ["dig"] and STATUS.reply_fields() == ()
    assert SETUP.replies() == () and BATTERY.replies() == ()


def test_every_apis_main_route_is_called():
    routes = ApiRoutes(None, {}, None, None, {}, lambda: "").table()
    assert set(routes) - NO_BLOCK == {route for route, _, _ in CALLS}


# -- real answers --------------------------------------------------------------------------

def test_real_answers_have_exactly_the_described_keys(http, sim):
    http.system.battery_sim.rsoc, http.system.battery_sim.permitted = 55.5, True
    for route, params, block in CALLS:
        sim.clear()
        status, body = http.get(route, **params)
        assert status == 200, (route, body)
        assert answered(body) == described(block), route
        sent = commands(sim)
        for source in block.replies():
            assert set(source.carried_by) & set(sent), (route, source, sent)
