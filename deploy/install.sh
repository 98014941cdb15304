#!/bin/sh
# Install essx-server on a board (Debian 12 / Raspberry Pi OS bookworm /
# BeagleBone images): docs/deployment.md.
#
#   sudo deploy/install.sh [--extras bbb|gpiod] [--start]
#
# 1. a virtual environment under /opt (PEP 668: the system Python is left
#    alone) with the package and the extras asked for;
# 2. the service user (apis) in dialout, and in gpio where the board has GPIO
#    chips (the gpio group and its udev rule are created only when missing);
# 3. the configuration /etc/dcdc_batt_comm/dcdc_batt_comm.yml (an existing
#    one is never overwritten);
# 4. the systemd unit, ExecStart pointing into the venv; enabled, and started
#    with --start (otherwise: check first with essx-server --check).
# Running it again upgrades the package and the unit, and keeps the
# configuration. Extras that pip must build here (bbb always, gpiod where it
# has no wheel, as on armv7l) need gcc and the Python headers; when one is
# missing the script stops before creating anything, naming the packages
# (exit 2).
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
SOURCE=$(dirname "$HERE")
VENV=/opt/dcdc_batt_comm
ETC=/etc/dcdc_batt_comm
UNIT_DIR=/etc/systemd/system
UDEV_DIR=/etc/udev/rules.d
SERVICE_USER=apis
EXTRAS=
MAKE_USER=yes
SYSTEMCTL=auto
START=no
PYTHON=${PYTHON:-python3}

usage() {
    cat <<EOF
usage: $0 [options]
  --extras LIST    pip extras: bbb (BeagleBone pins), gpiod (gpiochip lines); comma separated
  --source PATH    what pip installs (default: $SOURCE; a wheel works too)
  --venv DIR       virtual environment (default: $VENV)
  --etc DIR        configuration directory (default: $ETC)
  --unit-dir DIR   where the unit goes (default: $UNIT_DIR)
  --user NAME      service user (default: $SERVICE_USER)
  --no-user        do not create the user or groups (containers, tests)
  --no-systemctl   do not call systemctl
  --start          start (or restart) the service at the end
Environment: PYTHON (default python3) makes the venv; CC, as for pip's builds,
names the compiler that extras built from source need (default: Python's, gcc).
EOF
}

die() { echo "install.sh: $*" >&2; exit 2; }
say() { echo "install.sh: $*"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --extras) EXTRAS=${2:?--extras needs a value}; shift 2 ;;
        --source) SOURCE=${2:?--source needs a value}; shift 2 ;;
        --venv) VENV=${2:?--venv needs a value}; shift 2 ;;
        --etc) ETC=${2:?--etc needs a value}; shift 2 ;;
        --unit-dir) UNIT_DIR=${2:?--unit-dir needs a value}; shift 2 ;;
        --user) SERVICE_USER=${2:?--user needs a value}; shift 2 ;;
        --no-user) MAKE_USER=no; shift ;;
        --no-systemctl) SYSTEMCTL=no; shift ;;
        --start) START=yes; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option $1" ;;
    esac
done

check_python() {
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null \
        || die "$PYTHON 3.10 or newer is needed (Debian 12 has 3.11)"
    "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null \
        || die "the venv module is missing: apt-get install python3-venv"
}

# Extras that pip builds from C sources here: bbb always (Adafruit_BBIO is
# source only); gpiod where it has no wheel (gpiod 2.x has wheels for CPython
# on 64-bit x86_64 and aarch64; armv7l, the BeagleBone Black and 32-bit
# Raspberry Pi OS, builds it).
building_extras() {
    building=
    ifs=$IFS
    IFS=', '
    for extra in $EXTRAS; do
        case "$extra" in
            bbb) ;;
            gpiod) "$PYTHON" -c 'import platform, struct, sys
sys.exit(not (sys.implementation.name == "cpython" and struct.calcsize("P") == 8
              and platform.machine() in ("x86_64", "aarch64")))' && continue ;;
            *) continue ;;
        esac
        building="$building${building:+,}$extra"
    done
    IFS=$ifs
    echo "$building"
}

# A build needs the compiler pip will call ($CC, else the one Python was built
# with: gcc) and Python.h. Without them pip would fail half-way, after the venv
# was made: stop before creating anything instead.
check_build_prerequisites() {
    [ -n "$EXTRAS" ] || return 0
    building=$(building_extras)
    [ -n "$building" ] || return 0
    cc=${CC:-$("$PYTHON" -c 'import sysconfig; print((sysconfig.get_config_var("CC") or "gcc").split()[0])')}
    missing=
    packages=
    if ! command -v "${cc%% *}" >/dev/null 2>&1; then
        missing=gcc
        packages=gcc
    fi
    if ! "$PYTHON" -c 'import os, sys, sysconfig
sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
        missing="${missing:+$missing and }the Python headers"
        packages="${packages:+$packages }python3-dev"
    fi
    [ -z "$missing" ] || die "--extras $building needs $missing: apt-get install $packages"
}

install_venv() {
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    target=$SOURCE
    if [ -n "$EXTRAS" ]; then target="$SOURCE[$EXTRAS]"; fi
    "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet --upgrade "$target"
    say "installed $("$VENV/bin/essx-server" --version) in $VENV"
}

make_user() {
    [ "$MAKE_USER" = yes ] || return 0
    getent group dialout >/dev/null || groupadd --system dialout
    if ! id "$SERVICE_USER" >/dev/null 2>&1; then
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$SERVICE_USER"
    fi
    groups=dialout
    if getent group gpio >/dev/null; then
        groups=dialout,gpio
    elif ls /dev/gpiochip* >/dev/null 2>&1; then
        # GPIO chips but no group to reach them: create it and let udev give it the chips.
        groupadd --system gpio
        mkdir -p "$UDEV_DIR"
        cat > "$UDEV_DIR/60-essx-gpio.rules" <<EOF
# essx-server (deploy/install.sh): the gpio group may use the GPIO chips.
SUBSYSTEM=="gpio", KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"
EOF
        udevadm control --reload-rules 2>/dev/null && udevadm trigger --subsystem-match=gpio 2>/dev/null || true
        groups=dialout,gpio
    fi
    usermod --append --groups "$groups" "$SERVICE_USER"
    say "user $SERVICE_USER in groups $groups"
}

install_config() {
    install -d -m 0755 "$ETC"
    config="$ETC/dcdc_batt_comm.yml"
    if [ -e "$config" ]; then
        say "kept $config"
        return 0
    fi
    "$VENV/bin/python" -c 'import sys; from essx_service import resources
sys.stdout.buffer.write(resources.read_data("dcdc_batt_comm.yml"))' > "$config.new"
    chmod 0640 "$config.new"
    if [ "$MAKE_USER" = yes ]; then chgrp "$SERVICE_USER" "$config.new"; fi
    mv "$config.new" "$config"
    say "wrote $config (the shipped example: set the ports and addresses of this node)"
}

install_unit() {
    install -d -m 0755 "$UNIT_DIR"
    sed -e "s#/opt/dcdc_batt_comm/#$VENV/#g" \
        -e "s#/etc/dcdc_batt_comm/#$ETC/#g" \
        -e "s#^User=apis\$#User=$SERVICE_USER#" \
        -e "s#^Group=apis\$#Group=$SERVICE_USER#" \
        "$HERE/essx-server.service" > "$UNIT_DIR/essx-server.service.new"
    chmod 0644 "$UNIT_DIR/essx-server.service.new"
    mv "$UNIT_DIR/essx-server.service.new" "$UNIT_DIR/essx-server.service"
    say "installed $UNIT_DIR/essx-server.service"
}

run_systemctl() {
    [ "$SYSTEMCTL" = no ] && return 0
    if [ ! -d /run/systemd/system ]; then
        say "systemd is not running here: skipped systemctl"
        return 0
    fi
    systemctl daemon-reload
    systemctl enable essx-server.service
    if [ "$START" = yes ]; then
        systemctl restart essx-server.service
        say "started: systemctl status essx-server; journalctl -u essx-server"
    fi
}

check_python
check_build_prerequisites
install_venv
make_user
install_config
install_unit
run_systemctl
say "next: sudo -u $SERVICE_USER $VENV/bin/essx-server --config $ETC/dcdc_batt_comm.yml --check"
[ "$START" = yes ] || say "then: systemctl start essx-server"
