"""The house (README.md, "How it is built"): the driver, the service and the
simulation as packages of one layer each, read from the sources' import
statements; and the reference's import paths."""
import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

DRIVERS = Path(__file__).resolve().parent.parent / "drivers"
#: Top-level packages and modules of the project, by part.
DRIVER = {"essx", "eza2500", "battery_emulator"}
SERVICE = {"essx_service"}
SIMULATION = {"essx_sim"}
CLIENT = {"apismain"}
ENTRIES = {"essx_server", "essx_grid"}
PROJECT = DRIVER | SERVICE | SIMULATION | CLIENT | ENTRIES
#: What each part may import of the project (besides itself).
MAY_IMPORT = {
    "driver": DRIVER,
    "simulation": DRIVER | SIMULATION,
    "service": DRIVER | SIMULATION | SERVICE,
    "client": CLIENT,
    "entry": SERVICE,
}
#: Optional dependencies a function may import late (a board's GPIO library).
OPTIONAL = {"Adafruit_BBIO", "gpiod"}
#: Project modules a function may import late, each an optional part and why; no cycle is dodged.
OPTIONAL_PARTS = {
    ("essx_service.startup", "essx_sim"): "the simulation, for --simulate only: a node's server "
                                          "does not carry the simulators (about 1.2 MB)",
    ("essx_service.startup", "essx_sim.node"): "the same import",
    ("essx_service.exposition", "essx_service.metrics"): "prometheus_client, at the first /metrics "
                                                         "scrape: a server nobody scrapes does not "
                                                         "carry it (about 1-2 MB)",
}
#: Libraries a function imports late, for memory (or for one mode), and why.
LATE_LIBRARIES = {
    ("essx.essx_config", "difflib"): "a key's \"did you mean\", only for an unknown key: a server "
                                      "whose configuration has none does not carry it (about 0.15 MB)",
    ("essx_service.resources", "importlib.resources"): "the shipped files, at the first one asked "
                                                        "for: a node's configuration is in /etc "
                                                        "(about 0.1 MB)",
    ("essx_service.serve", "waitress"): "the WSGI server, when serving: --check, --help and "
                                         "--version do not load it",
}
#: What a node's server (essx_server and its command line) leaves out until asked:
#: the simulation, prometheus_client (first /metrics), difflib (an unknown key),
#: importlib.resources (a shipped file), importlib.metadata (never: essx_service.__version__).
NOT_LOADED_AT_START = ("essx_sim", "prometheus_client", "difflib", "importlib.resources",
                       "importlib.metadata")


def part(module: str) -> str:
    top = module.split(".")[0]
    for name, tops in (("driver", DRIVER), ("service", SERVICE), ("simulation", SIMULATION),
                       ("client", CLIENT), ("entry", ENTRIES)):
        if top in tops:
            return name
    raise AssertionError("%s belongs to no part" % module)


def modules() -> Dict[str, Path]:
    """Every project module under drivers/: dotted name -> file."""
    found = {}
    for path in sorted(DRIVERS.rglob("*.py")):
        rel = path.relative_to(DRIVERS).with_suffix("")
        if rel.parts[0] not in PROJECT:
            continue
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        found[name] = path
    return found


MODULES = modules()


def _targets(node: ast.AST, module: str, is_package: bool) -> List[str]:
    """The project modules an import statement loads (packages on the way included)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
        bases = names
    else:
        base = node.module or ""
        if node.level:
            package = module.split(".") if is_package else module.split(".")[:-1]
            package = package[:len(package) - (node.level - 1)]
            base = ".".join(package + ([base] if base else []))
        subs = ["%s.%s" % (base, alias.name) for alias in node.names]
        # "from . import table": the package is the importer's own, already loading; only
        # the submodules are new.  A name defined in the package itself is an edge to it.
        own_package = module == base or module.startswith(base + ".")
        bases = subs if own_package and all(s in MODULES for s in subs) else [base] + subs
    loaded = []
    for name in bases:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            ancestor = module.startswith(prefix + ".")   # loaded before the importer itself
            if prefix in MODULES and prefix != module and (not ancestor or i == len(parts)):
                loaded.append(prefix)
    return loaded


def imports() -> Tuple[Dict[str, Set[str]], List[Tuple[str, str, int]], List[Tuple[str, str, int]],
                       List[Tuple[str, str, int]]]:
    """(module-level graph {module: {project modules}}, [(module, function-level import, line)],
    [(module, optional dependency, line)], [(module, library a function imports, line)])."""
    graph: Dict[str, Set[str]] = {name: set() for name in MODULES}
    late, optional, libraries = [], [], []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        is_package = path.name == "__init__.py"

        def visit(node: ast.AST, in_function: bool) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    targets = _targets(child, name, is_package)
                    if in_function:
                        late.extend((name, t, child.lineno) for t in targets)
                        mod = child.names[0].name if isinstance(child, ast.Import) else child.module or ""
                        if mod.split(".")[0] in OPTIONAL:
                            optional.append((name, mod, child.lineno))
                        elif not getattr(child, "level", 0) and mod.split(".")[0] not in PROJECT:
                            libraries.append((name, mod, child.lineno))
                    elif not _type_checking_only(child, tree):
                        graph[name].update(targets)
                else:
                    visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

        visit(tree, False)
    return graph, late, optional, libraries


def _type_checking_only(node: ast.AST, tree: ast.Module) -> bool:
    for top in tree.body:
        if isinstance(top, ast.If) and "TYPE_CHECKING" in ast.unparse(top.test):
            if any(node is n for n in ast.walk(top)):
                return True
    return False


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components of more than one module (or a self-loop)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


GRAPH, LATE, OPTIONAL_LATE, LATE_LIBRARY = imports()


def test_every_module_is_seen():
    for name in ("essx.essx_type_oes", "eza2500.link", "battery_emulator.battery_emulator",
                 "essx_service.web", "essx_sim.converter", "apismain.deal", "essx_server"):
        assert name in MODULES
    assert "eza2500.table" in GRAPH["eza2500.codec"]
    assert "essx.essx_exception" in GRAPH["eza2500.codec"]


def test_no_module_level_import_cycle():
    assert cycles(GRAPH) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}}) == [["a"]]


def test_no_project_import_inside_a_function():
    assert [(m, t) for m, t, _ in LATE if (m, t) not in OPTIONAL_PARTS] == []


def test_every_optional_part_is_still_imported_late():
    assert {(m, t) for m, t, _ in LATE} == set(OPTIONAL_PARTS)
    for module, target in OPTIONAL_PARTS:        # and by nothing at module level
        assert target not in GRAPH[module]


def test_a_function_imports_only_the_named_libraries():
    assert {(m, lib) for m, lib, _ in LATE_LIBRARY} == set(LATE_LIBRARIES)
    for module, lib in LATE_LIBRARIES:          # and the module does not import it at its top
        source = ast.parse(MODULES[module].read_text(encoding="utf-8"))
        top = {a.name for n in source.body if isinstance(n, ast.Import) for a in n.names}
        top |= {n.module for n in source.body if isinstance(n, ast.ImportFrom)}
        assert lib not in top, (module, lib)


def test_a_nodes_server_does_not_load_what_it_may_never_need():
    """NOT_LOADED_AT_START stays out of a node's server (its configuration the
    example's, read from a file as from /etc) until asked for."""
    code = ("import sys, essx_server\n"
            "from essx_service import cli\n"
            "from essx import essx_config\n"
            "essx_config.load_config('dcdc_batt_comm.yml')\n"
            "print(sorted(set(sys.modules) & set(%r)))" % (NOT_LOADED_AT_START,))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=str(DRIVERS))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_each_part_imports_only_the_parts_below_it():
    wrong = ["%s (%s) imports %s (%s)" % (m, part(m), t, part(t))
             for m, targets in sorted(GRAPH.items()) for t in sorted(targets)
             if t.split(".")[0] not in MAY_IMPORT[part(m)]]
    assert wrong == []


def test_the_driver_knows_nothing_of_service_and_simulation():
    for m, targets in GRAPH.items():
        if part(m) == "driver":
            assert not {t for t in targets if part(t) != "driver"}, m


def test_entry_points_are_thin():
    for entry in ENTRIES:
        source = MODULES[entry].read_text(encoding="utf-8")
        defs = [n for n in ast.parse(source).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
        assert defs == [], entry


def test_essx_init_stays_light():
    code = ("import sys, essx\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in %r))" % sorted(PROJECT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=str(DRIVERS))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['essx', 'essx.essx_exception']"


#: The reference's import paths (its essx_server.py, essx_type_oes.py and
#: tests), each with a name it takes from there.
REFERENCE_IMPORTS = [
    "import essx; essx.ESSXException; essx.ESSXTimeoutException; essx.ESSXDeviceException",
    "from essx.essx_exception import ESSXException, ESSXTimeoutException, ESSXValueException, "
    "ESSXParameterException, ESSXDeviceException, ESSXChecksumException, ESSXFatalException, "
    "ESSXConfigException",
    "from essx.essx_modbus import ESSXModbusClient",
    "from essx.essx_rs485 import ESSXRS485",
    "from essx.essx_type_oes import ESSXTypeOES",
    "import essx; essx.essx_rs485.ESSXRS485; essx.essx_modbus.ESSXModbusClient",
    "from eza2500 import EZA2500Device",
    "from eza2500 import Command0101, Command0104, Command0201, Command0301, Command0304, "
    "Command0401, Command0404, Command0501, Command0504, Command0601, Command0604, Command0701, "
    "Command0704, Command0801, Command0804, Command0901, Command0904, Command1001, Command1101, "
    "Command1201, Command1301, Command1401, Command1501, Command1601",
    "import eza2500; eza2500.Command0404; eza2500.EZA2500Device",
    "from battery_emulator import BatteryEmulator",
    "import battery_emulator; battery_emulator.BatteryEmulator",
    "from essx_server import create_app, main",
    "import essx_server; essx_server.create_app; essx_server.main",
]


@pytest.mark.parametrize("statement", REFERENCE_IMPORTS)
def test_reference_import_path(statement):
    out = subprocess.run([sys.executable, "-c", statement], capture_output=True, text=True, timeout=60,
                         cwd=str(DRIVERS))
    assert out.returncode == 0, out.stderr
