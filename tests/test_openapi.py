"""drivers/openapi.json: it describes exactly the Bottle app's routes, its query
parameters carry docs/eza2500-protocol.md's ranges, and real 200/400 bodies validate
against its schemas (jsonschema; those tests skip when it is not installed,
as does the check with openapi-spec-validator).
"""

import json
import os
import re
import urllib.request

import pytest

from conftest import DRIVERS, openapi_resolve

from battery_emulator.battery_emulator import RSOC_PLAUSIBLE_MAX

OPENAPI = os.path.join(DRIVERS, "openapi.json")
SET_PARAMS = {
    "/remote/set": {"mode": False, "dvg": False, "dig": False, "drg": False},
    "/dcdc/set": {"mode": False, "dvg": False, "dig": False, "drg": False},
    "/remote/set/current": {"dig": True},
    "/remote/set/voltage": {"dvg": True, "drg": False},
}


@pytest.fixture(scope="module")
def doc():
    with open(OPENAPI, encoding="utf-8") as f:
        return json.load(f)


def operations(doc):
    """{(path, METHOD): operation} of the document."""
    return {(path, method.upper()): op for path, item in doc["paths"].items()
            for method, op in item.items()
            if method in ("get", "put", "post", "delete", "patch", "head", "options")}


def test_document_is_openapi_3(doc):
    assert re.match(r"^3\.\d+\.\d+$", doc["openapi"])
    assert doc["info"]["title"] and doc["info"]["version"]
    ids = [op["operationId"] for op in operations(doc).values()]
    assert len(ids) == len(set(ids))


def test_document_passes_the_openapi_validator(doc):
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(doc)


def test_every_route_is_documented_and_nothing_else():
    from essx_server import create_app

    app = create_app(controller=None)
    routes = {(r.rule, r.method) for r in app.routes}
    with open(OPENAPI, encoding="utf-8") as f:
        documented = set(operations(json.load(f)))
    assert routes - documented == set(), "routes missing from openapi.json"
    assert documented - routes == set(), "openapi.json documents routes the app does not have"
    # the aliases of docs/web-api.md are there
    for path in ("/dcdc/get", "/dcdc/get/status", "/dcdc/set", "/all/get", "/battery/get",
                 "/essx/goodbye", "/openapi.json"):
        assert (path, "GET") in routes


def test_every_reference_resolves(doc):
    targets = []

    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                targets.append(openapi_resolve(doc, node))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(doc)
    assert targets and all(isinstance(t, dict) for t in targets)   # local, and each names an object


#: Observation routes that answer text, not JSON (and never 400).
TEXT_ROUTES = {"/metrics": "text/plain", "/": "text/html"}


def test_every_operation_answers_json_200_and_400_error(doc):
    for (path, _), op in operations(doc).items():
        responses = op["responses"]
        if path in TEXT_ROUTES:
            assert set(responses) == {"200"} and set(responses["200"]["content"]) == {TEXT_ROUTES[path]}, path
            continue
        assert "200" in responses and "application/json" in responses["200"]["content"], path
        error = responses["400"]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/Error"}, path
    err = doc["components"]["schemas"]["Error"]
    assert err["required"] == ["err"] and err["additionalProperties"] is False
    assert "404" in doc["paths"]["/essx/goodbye"]["get"]["responses"]


def test_set_parameters_carry_the_command_table_ranges(doc):
    import eza2500
    from eza2500.table import SETTABLE_MODES

    fields = {f.name: f for g in (eza2500.group(4), eza2500.group(6))
              for f in g.request_fields(True)}
    for path, expected in SET_PARAMS.items():
        params = {p["name"]: p for p in doc["paths"][path]["get"].get("parameters", [])}
        assert set(params) == set(expected), path
        for name, required in expected.items():
            p = params[name]
            assert p["in"] == "query" and p["required"] is required, (path, name)
            schema = p["schema"]
            if name == "mode":
                assert schema == {"type": "string", "enum": ["0x%04x" % m for m in SETTABLE_MODES]}
            else:
                assert schema["type"] == "number"
                assert (schema["minimum"], schema["maximum"]) == (fields[name].lo, fields[name].hi), name
    assert (fields["dvg"].lo, fields["dvg"].hi) == (260, 390)
    assert (fields["drg"].lo, fields["drg"].hi) == (0, 3.999)
    assert (fields["dig"].lo, fields["dig"].hi) == (0, 8.5162)
    # routes that take no parameters declare none
    for (path, _), op in operations(doc).items():
        if path not in SET_PARAMS and path != "/essx/history":
            assert not op.get("parameters"), path
    since, = doc["paths"]["/essx/history"]["get"]["parameters"]
    assert (since["name"], since["in"], since["required"], since["schema"]["type"]) == \
        ("since", "query", False, "number")


def test_served_document_is_the_file(http, doc):
    status, body = http.get("/openapi.json")
    assert status == 200
    assert body == doc


def test_installed_copy_is_found(tmp_path):
    """Outside a source tree the shipped copy is found through importlib.resources
    (essx_service/data/, package data in pyproject.toml); tests/test_deploy.py checks the
    install forms."""
    import essx_server

    missing = str(tmp_path / "site-packages" / "openapi.json")
    found = essx_server.installed_path(missing)
    assert found.endswith(os.path.join("essx_service", "data", "openapi.json"))
    with open(found, encoding="utf-8") as f, open(OPENAPI, encoding="utf-8") as g:
        assert json.load(f) == json.load(g)
    assert essx_server.installed_path(OPENAPI) == OPENAPI


# -- bodies against the schemas ---------------------------------------------------------

def draft7(node):
    """An OpenAPI 3.0 schema as JSON Schema draft 7: ``nullable: true`` becomes a "null" type."""
    if isinstance(node, list):
        return [draft7(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: draft7(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable"):
        out["type"] = [node["type"], "null"]
    return out


def validator(doc, path, status="200", method="get"):
    jsonschema = pytest.importorskip("jsonschema")
    schema = doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
    root = draft7(dict(schema, components=doc["components"]))
    cls = jsonschema.Draft7Validator
    cls.check_schema(root)
    return cls(root)


def assert_valid(doc, path, body, status="200"):
    errors = sorted(validator(doc, path, status).iter_errors(body), key=str)
    assert not errors, "%s %s: %s" % (path, status, "; ".join(e.message for e in errors[:5]))


CALLS = [
    ("/1/log/data", {}),
    ("/battery/get", {}),
    ("/remote/get", {}),
    ("/dcdc/get", {}),
    ("/remote/get/status", {}),
    ("/dcdc/get/status", {}),
    ("/remote/set", {"mode": "0x0014", "dvg": 350, "dig": 2.5, "drg": 0.1}),
    ("/dcdc/set", {"mode": "0x0041", "dvg": 350, "dig": 1, "drg": 0}),
    ("/dcdc/set", {"dig": 1.5}),
    ("/dcdc/set", {"dvg": 360, "drg": 0}),
    ("/remote/set/current", {"dig": 2}),
    ("/remote/set/voltage", {"dvg": 300, "drg": 0.1}),
    ("/remote/ioctl/set", {}),
    ("/remote/ioctl/get", {}),
    ("/all/get", {}),
    ("/remote/ioctl/clr_alarm", {}),
    ("/version/get", {}),
    ("/essx/hello", {}),
    ("/openapi.json", {}),
    ("/essx/status", {}),   # after the calls above: every block and both buses are known
    ("/essx/history", {}),
    ("/essx/history", {"since": 0}),
]


def test_real_200_bodies_validate(http, doc):
    pytest.importorskip("jsonschema")
    for path, params in CALLS:
        status, body = http.get(path, **params)
        assert status == 200, (path, body)
        assert_valid(doc, path, body)
    assert {p for p, _ in CALLS} | {"/essx/goodbye"} | set(TEXT_ROUTES) == set(doc["paths"])
    status, body = http.get("/essx/status")
    assert set(body["converter"]) == {"mode", "status", "alarm", "meter", "vdis", "param"}
    assert set(body["buses"]) == {"dcdc", "battery"} and set(body["battery"]) == {"rsoc", "permitted"}
    assert all(len(points) >= 1 for points in http.get("/essx/history")[1]["series"].values())
    for path, content_type in TEXT_ROUTES.items():
        with urllib.request.urlopen(http.base + path, timeout=30) as r:
            assert (r.status, r.headers.get_content_type()) == (200, content_type), path


def test_real_400_and_404_bodies_validate(http, doc):
    pytest.importorskip("jsonschema")
    for path, params in [("/remote/set", {"mode": "0x0014", "dvg": 1000, "dig": 1, "drg": 0}),
                         ("/remote/set/current", {}), ("/dcdc/set", {"mode": "20"}),
                         ("/essx/history", {"since": "yesterday"})]:
        status, body = http.get(path, **params)
        assert status == 400
        assert_valid(doc, path, body, "400")
    http.system.battery_sim.silent = True
    status, body = http.get("/all/get")
    http.system.battery_sim.silent = False
    assert status == 400
    assert_valid(doc, "/all/get", body, "400")
    status, body = http.get("/essx/goodbye")
    assert status == 404
    assert_valid(doc, "/essx/goodbye", body, "404")


def test_an_rsoc_the_battery_passes_on_validates(http, doc):
    """A reading over 100 % up to RSOC_PLAUSIBLE_MAX (110.0 %) is answered 200 with a
    WARNING (docs/battery-registers.md): the schemas admit it, and nothing above."""
    pytest.importorskip("jsonschema")
    limit = RSOC_PLAUSIBLE_MAX / 10.0
    status, body = http.get("/1/log/data")
    assert status == 200
    for path in ("/1/log/data", "/battery/get", "/all/get", "/remote/ioctl/get"):
        _, body = http.get(path)
        body.update(rsoc=limit, **({"battery_rsoc": limit} if "battery_rsoc" in body else {}))
        assert_valid(doc, path, body)
        body["rsoc"] = limit + 0.1
        assert list(validator(doc, path, "200").iter_errors(body)), path


def test_schemas_fix_the_exact_key_sets(http, doc):
    """A body with a key more or a key less does not validate."""
    pytest.importorskip("jsonschema")
    status, body = http.get("/remote/get")
    assert status == 200
    v = validator(doc, "/remote/get")
    assert v.is_valid(body)
    assert not v.is_valid(dict(body, extra=1))
    for key in body:
        assert not v.is_valid({k: b for k, b in body.items() if k != key}), key
    nested = json.loads(json.dumps(body))
    nested["meter"].pop("ig")
    assert not v.is_valid(nested)
    nested = json.loads(json.dumps(body))
    nested["status"]["status"] = "20"
    assert not v.is_valid(nested)
    # /dcdc/set's three shapes are told apart
    v = validator(doc, "/dcdc/set")
    status, body = http.get("/dcdc/set", dig=1)
    assert status == 200 and v.is_valid(body)
    assert not v.is_valid(dict(body, vdis={"dvg": 350.0, "drg": 0.0}))
