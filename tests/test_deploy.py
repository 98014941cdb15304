"""The install recipe, as far as a container allows (docs/deployment.md).

A wheel is built from the repository; deploy/install.sh installs it into a
venv in a temporary directory (no user, no systemctl, no index: the
dependencies come from the test's own environment through a path file);
the installed server then finds its package data and passes ``--check
--simulate``.  The unit is checked with systemd-analyze where it exists.
"""
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from conftest import DRIVERS

ROOT = os.path.dirname(DRIVERS)
INSTALL = os.path.join(ROOT, "deploy", "install.sh")
BOARD = os.path.join(ROOT, "deploy", "board.sh")
BOARD_CHECK = os.path.join(ROOT, "deploy", "board_check.py")
UNIT = os.path.join(ROOT, "deploy", "essx-server.service")
ANALYZE = shutil.which("systemd-analyze")
#: What a wheel must carry besides the modules, and the repository file it comes from.
PACKAGE_DATA = {
    "essx_service/data/dcdc_batt_comm.yml": os.path.join(DRIVERS, "dcdc_batt_comm.yml"),
    "essx_service/data/openapi.json": os.path.join(DRIVERS, "openapi.json"),
    "essx_service/static/index.html": os.path.join(DRIVERS, "essx_service", "static", "index.html"),
}


def _run(args, **kw):
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=600, **kw)


def _read(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel of the repository (pip, with build isolation)."""
    out = tmp_path_factory.mktemp("wheel")
    r = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), ROOT])
    if r.returncode != 0 and "No matching distribution found for setuptools" in r.stdout:
        pytest.skip("no package index to fetch the build backend from")
    assert r.returncode == 0, r.stdout
    names = [n for n in os.listdir(out) if n.endswith(".whl")]
    assert len(names) == 1, names
    return os.path.join(out, names[0])


def _deps_dir(tmp_path):
    """This environment's third-party packages without dcdc_batt_comm itself,
    as a directory of links for a path file."""
    deps = tmp_path / "deps"
    deps.mkdir()
    site = sysconfig.get_paths()["purelib"]
    ours = ("dcdc_batt_comm", "__editable__", "essx", "eza2500", "battery_emulator", "essx_server",
            "pip", "_distutils_hack", "distutils-precedence")
    for name in os.listdir(site):
        if not name.startswith(ours) and not name.endswith(".pth"):
            os.symlink(os.path.join(site, name), deps / name)
    return deps


def test_wheel_carries_the_package_data(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for inside, source in PACKAGE_DATA.items():
            assert z.read(inside) == _read(source), inside
    assert "essx_server.py" in names
    assert not any(n.startswith("dcdc_batt_comm/") for n in names)    # no stray data package


def test_install_script_builds_a_working_venv(wheel, tmp_path):
    venv, etc, units = tmp_path / "opt", tmp_path / "etc", tmp_path / "units"
    r = _run([sys.executable, "-m", "venv", str(venv)])
    assert r.returncode == 0, r.stdout
    purelib = _run([str(venv / "bin" / "python"), "-c",
                    "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    with open(os.path.join(purelib, "test-deps.pth"), "w") as f:
        f.write(str(_deps_dir(tmp_path)) + "\n")
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_NO_DEPS="1", PYTHON=sys.executable)
    args = ["sh", INSTALL, "--source", wheel, "--venv", str(venv), "--etc", str(etc),
            "--unit-dir", str(units), "--no-user", "--no-systemctl"]
    r = _run(args, env=env)
    assert r.returncode == 0, r.stdout
    assert "essx-server 1.4.0" in r.stdout
    config = etc / "dcdc_batt_comm.yml"
    assert _read(config) == _read(PACKAGE_DATA["essx_service/data/dcdc_batt_comm.yml"])
    unit = (units / "essx-server.service").read_text()
    assert "ExecStart=%s/bin/essx-server --config %s " % (venv, config) in unit
    assert "/usr/local/bin" not in unit
    found = _run([str(venv / "bin" / "python"), "-c",
                  "from essx_service import resources; print(resources.data_path('openapi.json'))"])
    assert found.stdout.strip().startswith(purelib), found.stdout     # the venv's copy, not the repository's
    check = _run([str(venv / "bin" / "essx-server"), "--config", str(config), "--simulate", "--check"],
                 cwd=str(tmp_path))
    assert check.returncode == 0, check.stdout
    assert "check passed" in check.stdout
    config.write_text(config.read_text() + "# edited on site\n")
    r = _run(args, env=env)                 # again: upgrade, keep the configuration
    assert r.returncode == 0, r.stdout
    assert "kept %s" % config in r.stdout
    assert config.read_text().endswith("# edited on site\n")
    if ANALYZE:
        v = _run([ANALYZE, "verify", str(units / "essx-server.service")])
        assert v.returncode == 0, v.stdout


@pytest.mark.parametrize("how", ["PATH without gcc", "CC names a missing compiler"])
def test_install_script_stops_before_creating_anything_without_a_compiler(tmp_path, how):
    """--extras bbb always builds Adafruit_BBIO: without a compiler install.sh stops (exit 2) with one
    line naming the packages, before the venv, the configuration or the unit exists."""
    venv, etc, units = tmp_path / "opt", tmp_path / "etc", tmp_path / "units"
    env = {k: v for k, v in os.environ.items() if k != "CC"}
    env["PYTHON"] = sys.executable
    if how == "PATH without gcc":
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        os.symlink(shutil.which("dirname"), bin_dir / "dirname")    # all the script runs before it stops
        env["PATH"] = str(bin_dir)
    else:
        env["CC"] = str(tmp_path / "no-such-cc") + " -pthread"
    r = _run(["/bin/sh", INSTALL, "--extras", "bbb", "--venv", str(venv), "--etc", str(etc),
              "--unit-dir", str(units), "--no-user", "--no-systemctl"], env=env)
    headers = os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h"))
    expected = ("install.sh: --extras bbb needs gcc: apt-get install gcc" if headers else
                "install.sh: --extras bbb needs gcc and the Python headers: apt-get install gcc python3-dev")
    assert r.returncode == 2, r.stdout
    assert r.stdout.splitlines() == [expected]
    assert not venv.exists() and not etc.exists() and not units.exists()


def test_user_install_finds_the_package_data(wheel, tmp_path):
    """``pip install --user`` (here into a PYTHONUSERBASE of the test) with the system Python."""
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None or _run([python, "-m", "pip", "--version"]).returncode != 0:
        pytest.skip("no system python3 with pip")
    env = dict(os.environ, PYTHONUSERBASE=str(tmp_path / "user"), PIP_NO_INDEX="1",
               PIP_BREAK_SYSTEM_PACKAGES="1")
    env.pop("VIRTUAL_ENV", None)
    r = _run([python, "-m", "pip", "install", "--user", "--no-deps", "--quiet", wheel], env=env,
             cwd=str(tmp_path))
    assert r.returncode == 0, r.stdout
    found = _run([python, "-c", "from essx_service import resources; import sys;"
                  "sys.stdout.write(str(resources.data_path('dcdc_batt_comm.yml')))"],
                 env=env, cwd=str(tmp_path))
    assert found.stdout.startswith(str(tmp_path / "user")), found.stdout
    assert _read(found.stdout) == _read(PACKAGE_DATA["essx_service/data/dcdc_batt_comm.yml"])


def test_source_tree_finds_the_package_data():
    """Editable installs and a checkout on sys.path read the repository's files."""
    from essx_service import resources

    for name in ("dcdc_batt_comm.yml", "openapi.json"):
        assert resources.read_data(name) == _read(os.path.join(DRIVERS, name))


def test_unit_shape():
    with open(UNIT, encoding="utf-8") as f:
        unit = f.read()
    for line in ("Type=notify", "NotifyAccess=main", "WatchdogSec=30", "RestartPreventExitStatus=2",
                 "ExecStart=/opt/dcdc_batt_comm/bin/essx-server ", "DevicePolicy=closed",
                 "DeviceAllow=char-ttyS rw", "DeviceAllow=char-ttyUSB rw", "DeviceAllow=char-gpiochip rw"):
        assert line in unit, line
    assert "\nSupplementaryGroups=" not in unit     # a board without a gpio group still starts


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
def test_unit_is_rated_safe(tmp_path):
    r = _run([ANALYZE, "security", "--offline=yes", "--no-pager", UNIT])
    match = re.search(r"Overall exposure level for essx-server.service: (\d+\.\d+)", r.stdout)
    assert match, r.stdout
    assert float(match.group(1)) <= 4.0, r.stdout


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
def test_unit_verifies(tmp_path):
    """systemd-analyze verify, with ExecStart pointing at an executable that exists here."""
    with open(UNIT, encoding="utf-8") as f:
        unit = f.read().replace("/opt/dcdc_batt_comm/bin/essx-server", sys.executable)
    path = tmp_path / "essx-server.service"
    path.write_text(unit)
    r = _run([ANALYZE, "verify", str(path)])
    assert r.returncode == 0, r.stdout
    assert r.stdout.strip() == "", r.stdout


def test_board_script_parses_and_explains_itself():
    """deploy/board.sh runs on demand under emulation (docs/deployment.md); here only its shell and usage."""
    assert _run(["bash", "-n", BOARD]).returncode == 0
    r = _run(["bash", BOARD, "--help"])
    assert r.returncode == 0 and r.stdout.startswith("usage: ") and "--arch armhf|arm64|both" in r.stdout
    r = _run(["bash", BOARD, "--arch", "mips"])
    assert r.returncode == 2 and "--arch must be armhf, arm64 or both" in r.stdout


def test_board_check_requests_every_route_within_its_schema():
    """board_check.py serve requests every route of openapi.json; each parameter it sends is allowed."""
    spec = importlib.util.spec_from_file_location("board_check", BOARD_CHECK)
    board_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(board_check)
    with open(os.path.join(DRIVERS, "openapi.json"), encoding="utf-8") as f:
        paths = json.load(f)["paths"]
    queries = {path: board_check._query(path, item["get"]) for path, item in paths.items()}
    assert queries["/remote/set"] == "/remote/set?mode=0x0014&dvg=350&dig=2.5&drg=0"
    assert queries["/remote/set/current"] == "/remote/set/current?dig=2.5"
    for path, item in paths.items():
        for p in item["get"].get("parameters", []):
            if p.get("required"):
                assert "%s=" % p["name"] in queries[path], (path, p["name"])
