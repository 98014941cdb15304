"""The Web API's Bottle application: the routes of docs/web-api.md, each a GET answering
200 + JSON or 400 + ``{"err": "..."}`` (docs/web-api.md, "Conventions"), and the observation routes
``/``, ``/essx/status``, ``/essx/history``, ``/metrics``, which read only the
``Recorder`` (essx_service.observe), never a device (docs/observability.md)."""
import dataclasses
import functools
import json
import logging
import threading
import time
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import bottle

from essx import blocks, deadline
from essx.essx_exception import ESSXConfigException, ESSXException, ESSXParameterException
from essx.essx_type_oes import ESSXTypeOES
from essx_service import resources, status
from essx_service.exposition import CONTENT_TYPE, Exposition
from essx_service.observe import Recorder
from essx_service.params import parse_mode, parse_number
from eza2500.table import MODE_WAITING

log = logging.getLogger("essx_server")

#: Routes that change the converter's state: each logs one INFO line (route,
#: parameters, converter commands sent, result, ms).
CHANGING = frozenset(("/remote/set", "/remote/set/current", "/remote/set/voltage", "/dcdc/set",
                      "/remote/ioctl/set", "/remote/ioctl/clr_alarm"))
#: Routes answering one controller method (docs/web-api.md, "Routes"): rule -> (the
#: ``ESSXTypeOES`` method, the keys of its body kept, from ``essx.blocks``; None: all).
READS: Dict[str, Tuple[Callable[[ESSXTypeOES, Any], Dict[str, Any]], Optional[Tuple[str, ...]]]] = {
    "/1/log/data": (ESSXTypeOES.log_data, None), "/remote/get": (ESSXTypeOES.remote_get, None),
    "/remote/get/status": (ESSXTypeOES.remote_get_status, None),
    "/dcdc/get/status": (ESSXTypeOES.remote_get_status, None),
    "/remote/ioctl/get": (ESSXTypeOES.remote_ioctl_get, None),
    "/remote/ioctl/clr_alarm": (ESSXTypeOES.remote_ioctl_clr_alarm, None),
    "/battery/get": (ESSXTypeOES.log_data, blocks.BATTERY_GET.keys()),
    "/dcdc/get": (ESSXTypeOES.remote_get, blocks.DCDC_GET.keys()),     # without "powermeter"
    "/all/get": (ESSXTypeOES.remote_ioctl_get, blocks.ALL_GET.keys()),
}
#: The parameters of /remote/set, in the order they are checked.
SET_NAMES = ("mode", "dvg", "dig", "drg")


def _decoded(params, key):
    """The request's value of *key* as text; a value that is not UTF-8 (which
    Bottle's ``getunicode`` answers as None, "absent") is kept with ``\\xff``
    escapes, so the parameter check refuses it and names it."""
    raw = params.get(key, "").encode("latin-1", "backslashreplace")
    return params.getunicode(key) or raw.decode("utf-8", "backslashreplace")


def _call(fn, params) -> str:
    """Run the route function *fn*; its body, or its failure shaped as the reference does."""
    try:
        return json.dumps(fn(params), default=float)  # Decimal set-up values, as the reference's JSON plugin
    except ESSXException as e:
        log.warning("%s: %s", bottle.request.path, e)
        bottle.response.status = 400
        return json.dumps({"err": str(e)})
    except Exception as e:   # a defect of ours: logged with its traceback, still JSON
        log.exception("%s failed", bottle.request.path)
        bottle.response.status = 400
        return json.dumps({"err": "internal error: %s: %s" % (type(e).__name__, e)})


def _log_change(rule, params, sent, code, text, started):
    """The one INFO line of a state-changing request."""
    result = "200" if code == 200 else "%d %s" % (code, json.loads(text).get("err"))
    # a value holding a character that is not printable is quoted: a newline cannot forge a log line
    given = " ".join("%s=%s" % (k, v if v.isprintable() else repr(v))
                     for k, v in sorted(params.items())) or "(no parameters)"
    log.info("%s %s: %s; %d converter command(s) sent%s; %.1f ms", rule, given, result, len(sent),
             " (%s)" % " ".join(sent) if sent else "", (time.perf_counter() - started) * 1000)


def _json_route(app, recorder, rule, fn, limit=lambda: None):
    """Register GET *rule* answering *fn(params)* as JSON, counted in *recorder*,
    within the deadline ``limit()`` (s; None: none) of ``essx.deadline``."""
    def handler():
        started = time.perf_counter()
        bottle.response.content_type = "application/json"
        params = bottle.request.params
        given = {k: _decoded(params, k) for k in params.keys()}
        with recorder.commands_sent() as sent, deadline.within(limit()):
            text = _call(fn, given)
        if rule in CHANGING:
            _log_change(rule, given, sent, bottle.response.status_code, text, started)
        recorder.on_http(rule, bottle.response.status_code)
        return text

    app.route(rule, "GET", handler)


def _raw_route(app, recorder, rule, content_type, fn):
    """Register GET *rule* answering the bytes/text of *fn()* with *content_type*."""
    def handler():
        body = fn()
        bottle.response.content_type = content_type
        recorder.on_http(rule, 200)
        return body

    app.route(rule, "GET", handler)


#: A route's JSON body (docs/web-api.md, "Routes").
Body = Dict[str, Any]


@dataclasses.dataclass
class ApiRoutes:
    """The apis-main routes (docs/web-api.md, "Routes"): each takes the request's
    parameters (dict of str) and returns the JSON body, raising ``ESSXException``
    for a 400 (docs/web-api.md, "Conventions").

    Attributes:
        controller: the ``ESSXTypeOES`` behind the routes; None in an app built
            only to list its routes.
        cache: the last applied ``mode`` (int), ``dvg`` (V), ``dig`` (A), ``drg``
            (docs/web-api.md, "Set parameters and the previous-value rule").
        reload_config: None, or returns a new ``Config`` for /remote/ioctl/set.
        goodbye: None (/essx/goodbye is 404), or stops the server.
        versions: the body of /version/get.
        openapi_path: where the API document is.
    """

    controller: Optional[ESSXTypeOES]
    cache: Dict[str, Any]
    reload_config: Optional[Callable[[], Any]]
    goodbye: Optional[Callable[[], None]]
    versions: Mapping[str, str]
    openapi_path: Callable[[], str]

    def request_deadline(self) -> Optional[float]:
        """The configured ``request_deadline`` (s) every route answers within
        (docs/web-api.md, "Conventions"); None without a controller or a
        converter section: no deadline."""
        if self.controller is None or self.controller.dcdc_config is None:
            return None
        return self.controller.dcdc_config.request_deadline

    def read(self, method: Callable[[ESSXTypeOES, Any], Body], keys: Optional[Tuple[str, ...]],
             params: Mapping[str, str]) -> Body:
        """The body of ``method(controller, params)`` (a ``READS`` method), only
        its *keys* unless None; raises as the method does."""
        body = method(self.controller, params)
        return body if keys is None else {k: body[k] for k in keys}

    def _apply(self, method: Callable[[Dict[str, Any]], Body], **given: Any) -> Body:
        """The controller's *method* with *given* parsed in order (``parse_mode``,
        ``parse_number``; ESSXParameterException, ESSXValueException naming the
        first bad one), which become the last applied values once it succeeds."""
        values = {n: parse_mode(v) if n == "mode" else parse_number(n, v) for n, v in given.items()}
        body = method(values)
        self.cache.update(values)
        return body

    def full_set(self, params: Mapping[str, str]) -> Body:
        """/remote/set: mode, dvg (V), dig (A), drg; an absent one takes the last
        applied value (drg: else 0; ESSXParameterException when there is none)."""
        given = {n: params.get(n, self.cache.get(n, 0 if n == "drg" else None)) for n in SET_NAMES}
        if given["mode"] is not None and parse_mode(given["mode"]) == MODE_WAITING:
            return self.stop(given)
        for name in SET_NAMES:
            if given[name] is None:
                raise ESSXParameterException("%s is missing and no previous value was set" % name)
        return self._apply(self.controller.remote_set, **given)

    def stop(self, given: Mapping[str, Any]) -> Body:
        """/remote/set with mode 0x0000: Waiting is reached whatever else *given*
        carries (``ESSXTypeOES.set_waiting``); a dvg, dig or drg that is missing
        or not a number is not sent (a WARNING naming it).  The values sent
        become the last applied ones (docs/web-api.md, "/remote/set")."""
        values = {}
        for name in SET_NAMES[1:]:
            try:
                values[name] = parse_number(name, given[name])
            except ESSXException as e:
                log.warning("mode=0x0000 (Waiting): %s not sent (%s); the stop goes on", name, e)
        body, sent = self.controller.set_waiting(values)
        self.cache.update(sent)
        return body

    def set_current(self, params: Mapping[str, str]) -> Body:
        """/remote/set/current: dig (A), required."""
        return self._apply(self.controller.remote_set_current, dig=params.get("dig"))

    def set_voltage(self, params: Mapping[str, str]) -> Body:
        """/remote/set/voltage: dvg (V), required, and drg (absent: the last applied, else 0)."""
        return self._apply(self.controller.remote_set_voltage, dvg=params.get("dvg"),
                           drg=params.get("drg", self.cache.get("drg", 0)))

    def dcdc_set(self, params: Mapping[str, str]) -> Body:
        """/dcdc/set: the current set for dig alone, the voltage set for dvg
        (with or without drg) alone, else the full set."""
        present = set(SET_NAMES) & set(params)
        if present == {"dig"}:
            return self.set_current(params)
        if "dvg" in present and not present & {"dig", "mode"}:
            return self.set_voltage(params)
        return self.full_set(params)

    def ioctl_set(self, params: Mapping[str, str]) -> Body:
        """/remote/ioctl/set: reload the configuration (when the server can),
        then write the set-up values (ESSXConfigException for a bad file: nothing changed)."""
        if self.reload_config is not None:
            config = self.reload_config()
            self.controller.update_config(config.dcdc, config.battery)
        return self.controller.remote_ioctl_set(params)

    def hello(self, params: Mapping[str, str]) -> Body:
        """/essx/hello: forget the set routes' previous values."""
        self.cache.clear()
        return {"message": "hello world"}

    def goodbye_route(self, params: Mapping[str, str]) -> Body:
        """/essx/goodbye: 404 unless enabled; else stop the server 0.2 s after answering."""
        if self.goodbye is None:
            bottle.response.status = 404
            return {"err": "/essx/goodbye is disabled; start the server with --goodbye to enable it"}
        threading.Timer(0.2, self.goodbye).start()
        return {"message": "goodbye"}

    def openapi(self, params: Mapping[str, str]) -> Any:
        """/openapi.json: the API document (ESSXConfigException when it cannot be read)."""
        path = self.openapi_path()
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError) as e:
            raise ESSXConfigException("API document %s cannot be read: %s" % (path, e)) from e

    def table(self) -> Dict[str, Callable[[Mapping[str, str]], Any]]:
        """rule -> route function, for every apis-main route (aliases included)."""
        routes = {rule: functools.partial(self.read, method, keys) for rule, (method, keys) in READS.items()}
        routes.update({
            "/remote/set": self.full_set, "/remote/set/current": self.set_current,
            "/remote/set/voltage": self.set_voltage, "/dcdc/set": self.dcdc_set,
            "/remote/ioctl/set": self.ioctl_set, "/version/get": lambda p: dict(self.versions),
            "/essx/hello": self.hello, "/essx/goodbye": self.goodbye_route, "/openapi.json": self.openapi,
        })
        return routes


@functools.lru_cache(maxsize=1)
def page() -> str:
    """The live page (package data essx_service/static/index.html); OSError when the install left it out."""
    return resources.read_page("index.html")


def _since(params) -> float:
    """The ``since`` parameter of /essx/history (Unix time, s; 0 when absent)."""
    text = params.get("since") or "0"
    try:
        return float(text)
    except ValueError:
        raise ESSXParameterException("since must be a Unix time in seconds, got %r" % text) from None


def build_app(controller: Optional[ESSXTypeOES], *, versions: Mapping[str, str],
              openapi_path: Callable[[], str], goodbye: Optional[Callable[[], None]] = None,
              reload_config: Optional[Callable[[], Any]] = None, config: Any = None,
              simulate: bool = False) -> bottle.Bottle:
    """The Bottle application (see ``essx_service.app.create_app`` for the arguments).

    ``versions``: the body of /version/get; ``openapi_path()``: where the API
    document is.  ``app.config["essx.recorder"]`` is the application's
    ``Recorder`` (attached to the controller's line and battery, docs/observability.md),
    ``app.config["essx.cache"]`` the set routes' last applied values (dict).
    """
    app = bottle.Bottle()
    app.config["essx.cache"] = cache = {}
    app.config["essx.recorder"] = recorder = Recorder()
    api = ApiRoutes(controller, cache, reload_config, goodbye, dict(versions), openapi_path)
    for rule, fn in api.table().items():
        _json_route(app, recorder, rule, fn, api.request_deadline)
    version = versions["dcdc_batt_comm_version"]
    _json_route(app, recorder, "/essx/status",
                lambda p: status.status_body(recorder, version=version, simulate=simulate, config=config))
    _json_route(app, recorder, "/essx/history", lambda p: status.history_body(recorder, _since(p)))
    _raw_route(app, recorder, "/metrics", CONTENT_TYPE, Exposition(recorder, version))
    _raw_route(app, recorder, "/", "text/html; charset=utf-8", page)

    def json_error(error):
        # the route label in the HTTP counters: no route matched (404, 405), or Bottle failed (500)
        recorder.on_http("(unmatched)" if error.status_code in (404, 405) else "(failed)", error.status_code)
        bottle.response.content_type = "application/json"
        return json.dumps({"err": "%s: %s" % (error.status_line, bottle.request.path)})

    for code in (404, 405, 500):
        app.error(code)(json_error)
    if controller is not None:       # None: an app built only to list its routes
        recorder.attach("dcdc", controller.link)
        if controller.bat_dev is not None:
            recorder.attach("battery", controller.bat_dev)
    return app
