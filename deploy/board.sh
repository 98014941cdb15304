#!/bin/bash
# The board under emulation (docs/deployment.md, "The board under emulation
# (deploy/board.sh)"): a Debian 12 armhf (BeagleBone Black, 32-bit Raspberry
# Pi OS) and/or arm64 (64-bit Raspberry Pi OS) root run by qemu-user on this
# machine, the README's deployment recipe in it, and the server checked there.
#
# Run on demand, as root, on a Debian (or Ubuntu) host; not part of CI.
# What one run does, per architecture:
#   1. the host: debootstrap, qemu-user-static, binfmt-support installed when
#      missing; binfmt_misc mounted and the qemu interpreter registered;
#   2. a minimal bookworm root (debootstrap --variant=minbase) with python3,
#      python3-venv and systemd, cached under --root; gcc and python3-dev are
#      only downloaded into it (the recipe installs them);
#   3. the run works in an overlay over the cached root (the cache never
#      changes; --keep keeps the overlay's changes), with proc, sys, dev and
#      dev/pts mounted; everything is unmounted on exit (trap);
#   4. the project from `git archive HEAD` (a clean tree; uncommitted changes
#      are not in the run) into /root/dcdc_batt_comm of the root;
#   5. in the root: deploy/install.sh --extras bbb without gcc must stop
#      (exit 2, nothing created); apt-get install gcc python3-dev; install.sh
#      --extras bbb (and a second venv with --extras gpiod); the installed
#      essx-server --simulate --check; deploy/board_check.py serve: the server
#      started with --simulate, every route of drivers/openapi.json requested,
#      start time, RSS, CPU per request, SIGTERM -> exit 0, /essx/goodbye;
#   6. systemd-analyze verify and security --offline=true on the installed
#      unit, in the root (emulated) and on the host with --root (native);
#   7. the same server natively on this host, for comparison;
#   8. a report: printed, and written as JSON and Markdown under --out.
# Numbers are qemu-user's on this machine, not a board's.
set -euo pipefail
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin     # debootstrap, chroot, update-binfmts

HERE=$(cd "$(dirname "$0")" && pwd)
SOURCE=$(dirname "$HERE")
ARCH=both
CACHE=/var/cache/dcdc_batt_comm-board
OUT=
KEEP=no
REBUILD=no
REQUESTS=50
PORT=18080
MIRROR=http://deb.debian.org/debian
SUITE=bookworm
ROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

usage() {
    cat <<EOF
usage: $0 [--arch armhf|arm64|both] [--root DIR] [--keep] [options]
  --arch A        armhf (BeagleBone Black, 32-bit Pi OS), arm64 (64-bit Pi OS) or both (default: $ARCH)
  --root DIR      where the cached Debian 12 roots live, one per architecture (default: $CACHE)
  --keep          keep this run's changes to the root (venvs, project copy) in DIR/$SUITE-ARCH/run/upper
                  instead of discarding them; the cached root itself never changes
  --out DIR       where the reports and logs go (default: DIR/report)
  --requests N    requests per route for the CPU measurement (default: $REQUESTS)
  --port P        TCP port of the server in the root (default: $PORT)
  --mirror URL    Debian mirror (default: $MIRROR)
  --rebuild       build the cached root again
Needs root. Installs debootstrap, qemu-user-static and binfmt-support on this
host when missing. Slow: qemu-user emulates every instruction (the first run
builds the roots; later runs reuse them). Runs at nice 10.
EOF
}

die() { echo "board.sh: $*" >&2; exit 2; }
say() { echo "board.sh: $*"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --arch) ARCH=${2:?--arch needs a value}; shift 2 ;;
        --root) CACHE=${2:?--root needs a value}; shift 2 ;;
        --keep) KEEP=yes; shift ;;
        --out) OUT=${2:?--out needs a value}; shift 2 ;;
        --requests) REQUESTS=${2:?--requests needs a value}; shift 2 ;;
        --port) PORT=${2:?--port needs a value}; shift 2 ;;
        --mirror) MIRROR=${2:?--mirror needs a value}; shift 2 ;;
        --rebuild) REBUILD=yes; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option $1" ;;
    esac
done
case "$ARCH" in
    armhf|arm64) ARCHES=$ARCH ;;
    both) ARCHES="arm64 armhf" ;;
    *) die "--arch must be armhf, arm64 or both, not $ARCH" ;;
esac
case "$REQUESTS" in ''|*[!0-9]*|0) die "--requests must be a positive number" ;; esac
case "$PORT" in ''|*[!0-9]*) die "--port must be a number" ;; esac
case "$CACHE" in /*) ;; *) CACHE=$PWD/$CACHE ;; esac
case "$OUT" in ''|/*) ;; *) OUT=$PWD/$OUT ;; esac
OUT=${OUT:-$CACHE/report}

qemu_of() { case "$1" in armhf) echo qemu-arm ;; arm64) echo qemu-aarch64 ;; esac; }

# -- 1. the host ---------------------------------------------------------------
host_prerequisites() {
    local missing="" cmd pkg
    for pair in debootstrap:debootstrap qemu-arm-static:qemu-user-static \
                qemu-aarch64-static:qemu-user-static update-binfmts:binfmt-support \
                systemd-analyze:systemd git:git python3:python3 chroot:coreutils; do
        cmd=${pair%%:*}; pkg=${pair#*:}
        if ! command -v "$cmd" >/dev/null 2>&1; then
            case " $missing " in *" $pkg "*) ;; *) missing="$missing $pkg" ;; esac
        fi
    done
    missing=${missing# }
    if [ "$(id -u)" != 0 ]; then
        if [ -n "$missing" ]; then
            die "needs root, and on this host: apt-get install $missing"
        fi
        die "needs root (debootstrap, chroot and mounts)"
    fi
    if [ -n "$missing" ]; then
        say "installing on this host: $missing"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    fi
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
        say "mounting binfmt_misc on this host (stays mounted)"
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    local q
    for a in $ARCHES; do
        q=$(qemu_of "$a")
        if [ ! -e "/proc/sys/fs/binfmt_misc/$q" ]; then
            say "registering $q with binfmt_misc on this host (update-binfmts --enable $q; stays registered)"
            update-binfmts --enable "$q"
        fi
        grep -q '^enabled' "/proc/sys/fs/binfmt_misc/$q" || die "$q is registered but disabled: update-binfmts --enable $q"
    done
}

# -- mounts, always undone -----------------------------------------------------
MOUNTS=()
ROOTS=()
mnt() {     # mnt MOUNT-ARGS... TARGET
    mount "$@"
    MOUNTS+=("${!#}")
}
pids_in_root() {    # processes running inside a root (ours: only this script starts them)
    local pid
    for pid in $(ls /proc | grep -E '^[0-9]+$'); do
        [ "$(readlink "/proc/$pid/root" 2>/dev/null)" != "$1" ] || echo "$pid"
    done
}
kill_in_root() {
    local r=$1 pid left
    left=$(pids_in_root "$r")
    [ -n "$left" ] || return 0
    say "stopping processes left in $r:" $left
    kill -TERM $left 2>/dev/null || true
    sleep 2
    left=$(pids_in_root "$r")
    [ -z "$left" ] || kill -KILL $left 2>/dev/null || true
    sleep 0.5
}
unmount_all() {
    local i r
    for r in "${ROOTS[@]}"; do kill_in_root "$r"; done
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" 2>/dev/null \
            || echo "board.sh: could not unmount ${MOUNTS[i]}" >&2
    done
    MOUNTS=()
    ROOTS=()
}
trap unmount_all EXIT
trap 'exit 130' INT TERM

mount_root() {      # the kernel file systems a root needs; pseudo-terminals for the simulators
    local r=$1
    ROOTS+=("$r")
    mnt -t proc proc "$r/proc"
    mnt -t sysfs sysfs "$r/sys"
    mnt --bind /dev "$r/dev"
    mnt --bind /dev/pts "$r/dev/pts"
    cp /etc/resolv.conf "$r/etc/resolv.conf" 2>/dev/null || true
    if [ -n "$HOST_CA" ] && [ -f "$HOST_CA" ]; then
        mkdir -p "$r/etc/ssl"
        cp "$HOST_CA" "$r/etc/ssl/board-host-ca.pem"
    fi
}

# A command in a root, in a clean environment as a login on the board would have:
#   "${IN[@]}" CMD... (an array, so that timeout can run it), or in_root ROOT CMD...
# What the host's network needs passes in: its proxy variables, and its CA
# bundle for pip when it names one (PIP_CERT, SSL_CERT_FILE or
# REQUESTS_CA_BUNDLE: a host behind a TLS-intercepting proxy), copied into the
# root as /etc/ssl/board-host-ca.pem.
HOST_CA=${PIP_CERT:-${SSL_CERT_FILE:-${REQUESTS_CA_BUNDLE:-}}}
IN=()
in_root_prefix() {
    local v
    IN=(env -i "PATH=$ROOT_PATH" HOME=/root LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive)
    for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
        [ -z "${!v:-}" ] || IN+=("$v=${!v}")
    done
    [ ! -f "$1/etc/ssl/board-host-ca.pem" ] || IN+=(PIP_CERT=/etc/ssl/board-host-ca.pem)
    IN+=(chroot "$1")
}
in_root() {
    local r=$1; shift
    in_root_prefix "$r"
    "${IN[@]}" "$@"
}

# -- 2. the cached root --------------------------------------------------------
# Debian's default /etc/hosts (what the installer writes): localhost has two addresses.
DEBIAN_HOSTS='127.0.0.1	localhost
127.0.1.1	board

# The following lines are desirable for IPv6 capable hosts
::1     localhost ip6-localhost ip6-loopback
ff02::1 ip6-allnodes
ff02::2 ip6-allrouters'

build_root() {      # build_root ARCH BASE LOG
    local arch=$1 base=$2 log=$3 t0
    t0=$(date +%s)
    rm -rf "$base.partial"
    say "$arch: building the cached root $base (debootstrap under qemu: many minutes; log $log)"
    debootstrap --arch="$arch" --variant=minbase "$SUITE" "$base.partial" "$MIRROR" >"$log" 2>&1 \
        || { tail -n 20 "$log" >&2; die "$arch: debootstrap failed (log $log)"; }
    printf '%s\n' "$DEBIAN_HOSTS" > "$base.partial/etc/hosts"
    echo board > "$base.partial/etc/hostname"
    mount_root "$base.partial"
    {
        in_root "$base.partial" apt-get update
        in_root "$base.partial" apt-get install -y python3 python3-venv systemd
        # The recipe installs these in each run (from the cache, so no download then).
        in_root "$base.partial" apt-get install -y --download-only gcc python3-dev
    } >>"$log" 2>&1 || { unmount_all; tail -n 20 "$log" >&2; die "$arch: apt-get in the new root failed (log $log)"; }
    unmount_all
    date -u +%Y-%m-%dT%H:%M:%SZ > "$base.partial/.board-root"
    rm -rf "$base"
    mv "$base.partial" "$base"
    say "$arch: cached root ready in $(( $(date +%s) - t0 )) s"
    echo "$(( $(date +%s) - t0 ))" > "$base/.board-build-seconds"
}

# -- 5. steps in the root, each recorded ---------------------------------------
STEPS=
LOGS=
STEP_TIMEOUT=3600   # seconds; exit 124 when a step takes longer
step() {    # step NAME EXPECTED-EXIT CMD...: run, log, record
    local name=$1 expect=$2 t0 t1 rc cmd
    shift 2
    cmd="$*"
    cmd=${cmd/#"${IN[*]} "/"(in the root) "}
    t0=$(date +%s.%N)
    set +e
    # In the background and waited for: Ctrl-C or SIGTERM interrupts the wait at once and the
    # EXIT trap stops what still runs in the root (timeout has a process group of its own).
    timeout --kill-after=30 "$STEP_TIMEOUT" "$@" >"$LOGS/$name.log" 2>&1 &
    wait $!
    rc=$?
    set -e
    t1=$(date +%s.%N)
    python3 "$HERE/board_check.py" step --name "$name" --rc "$rc" --expect "$expect" \
        --seconds "$(echo "$t1 - $t0" | awk '{print $1 - $3}')" --log "$LOGS/$name.log" \
        --command "$cmd" >>"$STEPS"
}
fact() {    # fact NAME OK(yes|no) NOTE: a check made here, recorded like a step
    python3 "$HERE/board_check.py" step --name "$1" --rc "$([ "$2" = yes ] && echo 0 || echo 1)" \
        --expect 0 --seconds 0 --note "$3" >>"$STEPS"
}

run_arch() {
    local arch=$1 base run r q project log
    base=$CACHE/$SUITE-$arch/root
    run=$CACHE/$SUITE-$arch/run
    q=$(qemu_of "$arch")
    mkdir -p "$CACHE/$SUITE-$arch" "$OUT/$arch"
    LOGS=$OUT/$arch/logs
    rm -rf "$LOGS"; mkdir -p "$LOGS"
    STEPS=$OUT/$arch/steps.jsonl
    : > "$STEPS"
    if [ "$REBUILD" = yes ] || [ ! -e "$base/.board-root" ]; then
        build_root "$arch" "$base" "$LOGS/root-build.log"
        fact root-build yes "built now in $(cat "$base/.board-build-seconds") s (debootstrap --variant=minbase $SUITE, python3 python3-venv systemd)"
    else
        fact root-build yes "cached since $(cat "$base/.board-root") ($base)"
    fi

    # 3. an overlay over the cached root
    rm -rf "$run"
    mkdir -p "$run/upper" "$run/work" "$run/merged"
    r=$run/merged
    mnt -t overlay overlay -o "lowerdir=$base,upperdir=$run/upper,workdir=$run/work" "$r"
    mount_root "$r"
    in_root_prefix "$r"

    # 4. the project, from HEAD
    project=/root/dcdc_batt_comm
    mkdir -p "$r$project"
    git -C "$SOURCE" archive --format=tar HEAD | tar -x -C "$r$project"
    local commit dirty
    commit=$(git -C "$SOURCE" rev-parse --short HEAD)
    dirty=$(git -C "$SOURCE" status --porcelain --untracked-files=no | wc -l)
    python3 "$HERE/board_check.py" meta --arch "$arch" --commit "$commit" --dirty "$dirty" \
        --qemu "$($q-static --version | head -n 1)" --root "$base" \
        --machine "$(in_root "$r" uname -m)" --debian "$(cat "$r/etc/debian_version")" \
        --python "$(in_root "$r" python3 -c 'import sys; print(sys.version.split()[0])')" \
        --hosts "$r/etc/hosts" --requests "$REQUESTS" \
        --ca "$([ -f "$r/etc/ssl/board-host-ca.pem" ] && echo "$HOST_CA" || true)" > "$OUT/$arch/meta.json"
    say "$arch: HEAD $commit in $r$project ($(in_root "$r" uname -m), Debian $(cat "$r/etc/debian_version"))"

    # 5. the recipe. First without a compiler: install.sh must stop before creating anything.
    local install="sh $project/deploy/install.sh"
    say "$arch: install.sh --extras bbb without gcc (must stop, exit 2)"
    step no-compiler 2 "${IN[@]}" $install --extras bbb --no-user --no-systemctl
    if grep -q 'needs gcc and the Python headers: apt-get install gcc python3-dev' "$LOGS/no-compiler.log"; then
        fact no-compiler-line yes "names gcc and python3-dev in one line"
    else
        fact no-compiler-line no "the line naming gcc and python3-dev is missing: $(tail -n 3 "$LOGS/no-compiler.log" | tr '\n' ' ')"
    fi
    if [ -e "$r/opt/dcdc_batt_comm" ]; then
        fact no-compiler-nothing-created no "/opt/dcdc_batt_comm was created"
    else
        fact no-compiler-nothing-created yes "no /opt/dcdc_batt_comm"
    fi

    say "$arch: apt-get install gcc python3-dev"
    step apt-gcc 0 "${IN[@]}" apt-get install -y gcc python3-dev
    say "$arch: install.sh --extras bbb (pip builds Adafruit_BBIO under emulation: minutes)"
    step install-bbb 0 "${IN[@]}" $install --extras bbb --no-user --no-systemctl
    say "$arch: install.sh --extras gpiod (a second venv)"
    step install-gpiod 0 "${IN[@]}" $install --extras gpiod --no-user --no-systemctl \
        --venv /opt/dcdc_batt_comm-gpiod --etc /root/gpiod/etc --unit-dir /root/gpiod/units
    # What pip built here rather than downloaded (its cache of locally built wheels).
    step wheels-built 0 "${IN[@]}" find /root/.cache/pip/wheels -name '*.whl' -printf '%f\n'
    step modules-bbb 0 "${IN[@]}" /opt/dcdc_batt_comm/bin/python -c \
        'import importlib.metadata as m, Adafruit_BBIO.GPIO, yaml; print("Adafruit_BBIO", m.version("Adafruit_BBIO"), "imports;", "PyYAML", yaml.__version__, "libyaml" if yaml.__with_libyaml__ else "pure Python")'
    step modules-gpiod 0 "${IN[@]}" /opt/dcdc_batt_comm-gpiod/bin/python -c \
        'import gpiod; print("gpiod", gpiod.__version__, "imports")'
    local config=/etc/dcdc_batt_comm/dcdc_batt_comm.yml
    say "$arch: essx-server --simulate --check (both venvs)"
    step check-bbb 0 "${IN[@]}" /opt/dcdc_batt_comm/bin/essx-server --config "$config" --simulate --check
    step check-gpiod 0 "${IN[@]}" /opt/dcdc_batt_comm-gpiod/bin/essx-server --config /root/gpiod/etc/dcdc_batt_comm.yml \
        --simulate --check
    say "$arch: the server: every route, start time, RSS, CPU per request ($REQUESTS requests a route)"
    cp "$HERE/board_check.py" "$r/root/board_check.py"
    step serve 0 "${IN[@]}" python3 /root/board_check.py serve --server /opt/dcdc_batt_comm/bin/essx-server \
        --config "$config" --openapi "$project/drivers/openapi.json" --port "$PORT" --requests "$REQUESTS" \
        --out /root/serve.json
    cp "$r/root/serve.json" "$OUT/$arch/serve.json" 2>/dev/null || true
    cp "$r/root/serve.log" "$LOGS/server.log" 2>/dev/null || true
    cp "$r/root/serve.log.goodbye" "$LOGS/server-goodbye.log" 2>/dev/null || true

    # 6. the unit: in the root (emulated), and with the host's systemd-analyze on the root's files
    local unit=/etc/systemd/system/essx-server.service
    say "$arch: systemd-analyze verify / security --offline=true on $unit"
    cp "$r$unit" "$OUT/$arch/essx-server.service" 2>/dev/null || true
    step verify-in-root 0 "${IN[@]}" systemd-analyze verify "$unit"
    step security-in-root 0 "${IN[@]}" systemd-analyze security --offline=true --no-pager "$unit"
    step verify-on-host 0 systemd-analyze verify --root="$r" "$unit"
    step security-on-host 0 systemd-analyze security --offline=true --no-pager --root="$r" "$unit"

    unmount_all
    if [ "$KEEP" = yes ]; then
        say "$arch: kept this run's changes in $run/upper"
    else
        rm -rf "$run"
    fi
}

# The same checks natively on this host, for comparison (what emulation adds).
native() {
    local dir=$OUT/native tmp py
    LOGS=$dir/logs
    STEPS=$dir/steps.jsonl
    IN=()
    rm -rf "$LOGS"; mkdir -p "$LOGS"
    : > "$STEPS"
    tmp=$(mktemp -d /tmp/board-native.XXXXXX)
    git -C "$SOURCE" archive --format=tar --prefix=src/ HEAD | tar -x -C "$tmp"
    py=$(command -v python3)
    python3 "$HERE/board_check.py" meta --arch native --commit "$(git -C "$SOURCE" rev-parse --short HEAD)" \
        --dirty "$(git -C "$SOURCE" status --porcelain --untracked-files=no | wc -l)" --qemu "none" \
        --root "-" --machine "$(uname -m)" --debian "$(cat /etc/debian_version)" \
        --python "$("$py" -c 'import sys; print(sys.version.split()[0])')" --hosts /etc/hosts \
        --requests "$REQUESTS" > "$dir/meta.json"
    say "native: the same on this host ($(uname -m), $py)"
    step install 0 env "PYTHON=$py" sh "$tmp/src/deploy/install.sh" --venv "$tmp/venv" --etc "$tmp/etc" \
        --unit-dir "$tmp/units" --no-user --no-systemctl
    step serve 0 "$py" "$HERE/board_check.py" serve --server "$tmp/venv/bin/essx-server" \
        --config "$tmp/etc/dcdc_batt_comm.yml" --openapi "$tmp/src/drivers/openapi.json" --port "$PORT" \
        --requests "$REQUESTS" --out "$dir/serve.json"
    rm -rf "$tmp"
}

host_prerequisites
renice -n 10 -p $$ >/dev/null
mkdir -p "$CACHE" "$OUT"
CACHE=$(cd "$CACHE" && pwd -P)      # as /proc/PID/root shows it
status=0
for a in $ARCHES; do
    run_arch "$a"
    python3 "$HERE/board_check.py" report --dir "$OUT/$a" || status=1
done
native
python3 "$HERE/board_check.py" report --dir "$OUT/native" >/dev/null || status=1
python3 "$HERE/board_check.py" summary --out "$OUT" $ARCHES native
say "reports: $OUT/<arch>/report.md, report.json; logs: $OUT/<arch>/logs/"
exit $status
