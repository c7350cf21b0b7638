#!/bin/bash
# OEM Gateway as a service, on Debian and Raspberry Pi OS (Bullseye, Bookworm and later):
#
#   sudo ./install.sh                      install; run it again to upgrade (after git pull)
#   sudo ./install.sh --uninstall          remove it; keep the config and the data
#   sudo ./install.sh --uninstall --purge  remove those too
#
# It makes a Python virtual environment in /opt/oemgateway and installs the gateway into it
# with pip (as pip is configured: /etc/pip.conf, PIP_* variables: piwheels, a local index...),
# the `oemgateway` system user (in dialout, and in gpio, spi and i2c where they exist),
# /etc/oemgateway/oemgateway.conf (from the shipped one, once: it is never overwritten), and
# /var/lib/oemgateway; then installs, enables and starts the systemd unit, or the SysV init
# script where systemd is not running.
#
# For tests only: OEMGATEWAY_ROOT (install under this folder instead of /), OEMGATEWAY_USER,
# OEMGATEWAY_INIT (systemd or sysv), OEMGATEWAY_PYTHON.
set -euo pipefail
umask 022

SOURCE=$(cd "$(dirname "$0")" && pwd)
ROOT=${OEMGATEWAY_ROOT:-}
SERVICE_USER=${OEMGATEWAY_USER:-oemgateway}
VENV=$ROOT/opt/oemgateway
CONFIG_DIR=$ROOT/etc/oemgateway
CONFIG=$CONFIG_DIR/oemgateway.conf
STATE_DIR=$ROOT/var/lib/oemgateway
LOG_DIR=$ROOT/var/log/oemgateway
RUN_DIR=$ROOT/run/oemgateway
PIDFILE=$ROOT/run/oemgateway.pid
UNIT=$ROOT/etc/systemd/system/oemgateway.service
UNIT_LINK=$ROOT/etc/systemd/system/multi-user.target.wants/oemgateway.service
INIT_SCRIPT=$ROOT/etc/init.d/oemgateway
COMMAND=$ROOT/usr/local/bin/oemgateway
DEVICE_GROUPS="dialout gpio spi i2c"   # serial ports; GPIO, SPI and I2C on a Raspberry Pi

step() { printf '  %-9s %s\n' "$1" "$2"; }
fail() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }
next_step() { printf '  %-44s %s\n' "$1" "$2"; }
usage() { sed -n '2,6s/^# \{0,1\}//p' "$0"; }
systemd_running() { [ -d /run/systemd/system ]; }

# -- what is needed ---------------------------------------------------------------------
find_python() {
    PYTHON=${OEMGATEWAY_PYTHON:-}
    if [ -z "$PYTHON" ]; then
        if [ -x /usr/bin/python3 ]; then
            PYTHON=/usr/bin/python3
        else
            PYTHON=$(command -v python3) || fail "python3 is missing: sudo apt install python3 python3-venv"
        fi
    fi
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))' ||
        fail "OEM Gateway needs Python 3.9 or later, and $PYTHON is $("$PYTHON" -V 2>&1)"
    if ! "$PYTHON" -c 'import ensurepip' 2>/dev/null; then
        command -v apt-get >/dev/null ||
            fail "$PYTHON cannot make virtual environments: install your system's python3-venv package"
        step python "$PYTHON cannot make virtual environments: installing python3-venv with apt-get"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; } ||
            fail "could not install python3-venv; run  sudo apt update && sudo apt install python3-venv  then this script again"
        "$PYTHON" -c 'import ensurepip' 2>/dev/null ||
            fail "python3-venv is installed but $PYTHON still cannot make virtual environments"
    fi
    step python "$PYTHON ($("$PYTHON" -V 2>&1))"
}

ensure_user() {
    local made=exists group groups=""
    if ! getent passwd "$SERVICE_USER" >/dev/null; then
        if getent group "$SERVICE_USER" >/dev/null; then
            set -- --gid "$SERVICE_USER"
        else
            set -- --user-group
        fi
        useradd --system "$@" --home-dir "$STATE_DIR" --no-create-home --shell /usr/sbin/nologin \
            --comment "OEM Gateway" "$SERVICE_USER"
        made=created
    fi
    for group in $DEVICE_GROUPS; do
        if getent group "$group" >/dev/null; then
            groups="$groups${groups:+,}$group"
        fi
    done
    if [ -n "$groups" ]; then
        usermod -a -G "$groups" "$SERVICE_USER"
    fi
    SERVICE_GROUP=$(id -gn "$SERVICE_USER")
    step user "$SERVICE_USER $made (groups: ${groups//,/ })"
}

# -- the software -----------------------------------------------------------------------
venv_version() { sed -n 's/^version\(_info\)\{0,1\} *= *\([0-9]*\.[0-9]*\).*/\2/p' "$1/pyvenv.cfg"; }

install_software() {
    if [ -e "$VENV" ] && [ ! -f "$VENV/pyvenv.cfg" ]; then
        fail "$VENV exists and is not a Python virtual environment: move it away first"
    fi
    if [ ! -f "$VENV/pyvenv.cfg" ] ||
       [ "$(venv_version "$VENV")" != "$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" ]; then
        "$PYTHON" -m venv --clear "$VENV"   # new, or made by a Python the system no longer has
    fi
    # pip builds inside the folder it is given: build a copy, so that no root-owned build
    # files are left in your checkout.
    BUILD=$(mktemp -d)
    trap 'rm -rf "$BUILD"' EXIT
    tar -C "$SOURCE" --exclude=./.git --exclude=./.venv --exclude=./build --exclude='./*.egg-info' \
        --exclude=./readings --exclude=./.hypothesis --exclude=./.pytest_cache -cf - . | tar -C "$BUILD" -xf -
    # The example config that goes with the software is the shipped one, not your edited copy
    # (which may hold an API key, and would be readable by everyone there).
    git -c safe.directory="$SOURCE" -C "$SOURCE" show HEAD:oemgateway.conf > "$BUILD/oemgateway.conf" \
        2>/dev/null || cp "$SOURCE/oemgateway.conf" "$BUILD/oemgateway.conf"
    step software "installing it and its dependencies into $VENV with pip..."
    "$VENV/bin/python" -m pip install --quiet --use-pep517 "$BUILD" ||
        fail "pip could not install the gateway (see above)"
    step software "$("$VENV/bin/oemgateway" --version) installed"
    mkdir -p "$(dirname "$COMMAND")"
    if [ -L "$COMMAND" ] || [ ! -e "$COMMAND" ]; then
        ln -sfn "$VENV/bin/oemgateway" "$COMMAND"
    else
        step software "$COMMAND is left from an earlier install: remove it (sudo pip uninstall oemgateway)"
    fi
}

# -- config and data --------------------------------------------------------------------
install_config() {
    local made
    install -d -o root -g "$SERVICE_GROUP" -m 0750 "$CONFIG_DIR"
    if [ -e "$CONFIG" ]; then
        chgrp "$SERVICE_GROUP" "$CONFIG"   # the gateway reads it; nobody else may (secrets)
        chmod o-rwx "$CONFIG"
        step config "$CONFIG kept (the shipped one is $VENV/share/oemgateway/oemgateway.conf)"
    else
        # The shipped config, with the readings files in the gateway's own folder.
        made=$(mktemp "$CONFIG_DIR/.oemgateway.conf.XXXXXX")
        sed "s|^\([[:space:]]*path[[:space:]]*=[[:space:]]*\)readings/|\1$STATE_DIR/readings/|" \
            "$SOURCE/oemgateway.conf" > "$made"
        chown "root:$SERVICE_GROUP" "$made"
        chmod 0640 "$made"
        mv "$made" "$CONFIG"
        step config "$CONFIG created from $SOURCE/oemgateway.conf"
    fi
}

make_folders() {
    install -d -o "$SERVICE_USER" -g "$SERVICE_GROUP" -m 0750 "$STATE_DIR"
    chown -hR "$SERVICE_USER:$SERVICE_GROUP" "$STATE_DIR"   # files kept from an earlier install
    step data "$STATE_DIR (readings files; readings waiting for a server)"
}

# -- the service ------------------------------------------------------------------------
render() {   # a shipped service file, with this installation's paths and user
    sed -e "s|/opt/oemgateway|$VENV|g" -e "s|/etc/oemgateway|$CONFIG_DIR|g" \
        -e "s|/var/lib/oemgateway|$STATE_DIR|g" -e "s|/var/log/oemgateway|$LOG_DIR|g" \
        -e "s|/run/oemgateway|$RUN_DIR|g" -e "s|^User=oemgateway\$|User=$SERVICE_USER|" \
        -e "s|^Group=oemgateway\$|Group=$SERVICE_GROUP|" \
        -e "s|^SERVICE_USER=oemgateway\$|SERVICE_USER=$SERVICE_USER|" "$1" > "$2.new"
    chmod "$3" "$2.new"
    mv "$2.new" "$2"
}

remove_systemd_unit() {
    if [ ! -e "$UNIT" ] && [ ! -L "$UNIT_LINK" ]; then
        return 0
    fi
    if [ -n "$ROOT" ]; then
        systemctl --root="$ROOT" disable --quiet oemgateway.service 2>/dev/null || rm -f "$UNIT_LINK"
    elif systemd_running; then
        systemctl disable --now --quiet oemgateway.service || true
    else
        systemctl disable --quiet oemgateway.service 2>/dev/null || rm -f "$UNIT_LINK"
    fi
    rm -f "$UNIT"
    if [ -z "$ROOT" ] && systemd_running; then
        systemctl daemon-reload
        systemctl reset-failed oemgateway.service 2>/dev/null || true
    fi
    step service "systemd unit stopped, disabled and removed"
}

remove_sysv_script() {
    if [ ! -e "$INIT_SCRIPT" ]; then
        return 0
    fi
    "$INIT_SCRIPT" stop >/dev/null || true
    rm -f "$INIT_SCRIPT"
    if [ -z "$ROOT" ] && command -v update-rc.d >/dev/null; then
        update-rc.d oemgateway remove >/dev/null
    fi
    step service "SysV init script stopped and removed"
}

check_config() {
    local report
    if report=$(cd / && runuser -u "$SERVICE_USER" -- "$VENV/bin/oemgateway" --config-file "$CONFIG" --check 2>&1); then
        printf '%s\n' "$report" | sed 's/^/  check     /'
    else
        printf '%s\n' "$report" | sed 's/^/    /' >&2
        fail "installed, but not started: the config has problems (above). Fix them with
    sudo nano $CONFIG
then start it: sudo ./install.sh (again)"
    fi
}

start_systemd() {
    mkdir -p "$(dirname "$UNIT")"
    render "$SOURCE/init.d/oemgateway.service" "$UNIT" 0644
    remove_sysv_script   # an earlier install's, if the system has moved to systemd
    check_config
    if [ -n "$ROOT" ]; then
        systemctl --root="$ROOT" enable --quiet oemgateway.service
        step service "systemd unit $UNIT installed and enabled (under $ROOT: not started)"
        return 0
    fi
    if ! systemd_running; then
        systemctl enable --quiet oemgateway.service
        step service "systemd unit installed and enabled: it starts when systemd runs"
        return 0
    fi
    systemctl daemon-reload
    systemctl enable --quiet oemgateway.service
    if ! systemctl restart oemgateway.service; then
        journalctl -u oemgateway.service -n 20 --no-pager >&2 || true
        fail "the service did not start (its log is above)"
    fi
    step service "systemd unit oemgateway.service installed, enabled and running"
}

start_sysv() {
    local before=0 waited=0
    mkdir -p "$(dirname "$INIT_SCRIPT")"
    render "$SOURCE/init.d/oemgateway" "$INIT_SCRIPT" 0755
    remove_systemd_unit
    install -d -o "$SERVICE_USER" -g "$SERVICE_GROUP" -m 0750 "$LOG_DIR"
    if [ -z "$ROOT" ] && command -v update-rc.d >/dev/null; then
        update-rc.d oemgateway defaults >/dev/null
    fi
    check_config
    if [ -f "$LOG_DIR/oemgateway.log" ]; then
        before=$(stat -c %s "$LOG_DIR/oemgateway.log")
    fi
    "$INIT_SCRIPT" restart >/dev/null || fail "the service did not start (see $LOG_DIR/oemgateway.log)"
    # start-stop-daemon does not wait: wait for the gateway's "ready" (or its end).
    until tail -c +$((before + 1)) "$LOG_DIR/oemgateway.log" 2>/dev/null | grep -q "oemgateway: ready"; do
        if ! "$INIT_SCRIPT" status >/dev/null 2>&1 || [ "$waited" -ge 300 ]; then
            tail -c +$((before + 1)) "$LOG_DIR/oemgateway.log" 2>/dev/null | tail -n 20 >&2
            fail "the service did not start (its log is above: $LOG_DIR/oemgateway.log)"
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    step service "SysV init script $INIT_SCRIPT installed, enabled and running"
}

# -- the two actions --------------------------------------------------------------------
install_all() {
    local init=${OEMGATEWAY_INIT:-}
    if [ -z "$init" ]; then
        if systemd_running; then init=systemd; else init=sysv; fi
    fi
    case $init in systemd|sysv) ;; *) fail "OEMGATEWAY_INIT must be systemd or sysv" ;; esac
    echo "Installing OEM Gateway as a service ($init)"
    find_python
    ensure_user
    install_software
    install_config
    make_folders
    "start_$init"
    echo
    echo "Done. Next:"
    next_step "sudo nano $CONFIG" "your listeners, buffers, API key (saving applies it)"
    next_step "sudo oemgateway --check" "checks the config"
    if [ "$init" = systemd ]; then
        next_step "journalctl -u oemgateway -f" "its log"
    else
        next_step "tail -f $LOG_DIR/oemgateway.log" "its log"
    fi
    next_step "sudo ./install.sh --uninstall" "removes it (sudo ./install.sh again: upgrades it)"
}

uninstall_all() {
    local purge=$1
    echo "Removing OEM Gateway"
    remove_systemd_unit
    remove_sysv_script
    rm -rf "$RUN_DIR" "$PIDFILE"
    if [ -L "$COMMAND" ] && [ "$(readlink "$COMMAND")" = "$VENV/bin/oemgateway" ]; then
        rm -f "$COMMAND"
    fi
    if [ -e "$VENV" ]; then
        rm -rf "$VENV"
        step software "$VENV removed"
    fi
    if getent passwd "$SERVICE_USER" >/dev/null; then
        userdel "$SERVICE_USER" || fail "could not remove the user $SERVICE_USER (does it still run something?)"
        step user "$SERVICE_USER removed"
    fi
    if getent group "$SERVICE_USER" >/dev/null; then
        groupdel "$SERVICE_USER"
    fi
    if [ "$purge" = yes ]; then
        rm -rf "$CONFIG_DIR" "$STATE_DIR" "$LOG_DIR"
        step purged "$CONFIG_DIR, $STATE_DIR, $LOG_DIR"
    else
        for kept in "$CONFIG_DIR" "$STATE_DIR" "$LOG_DIR"; do
            if [ -e "$kept" ]; then
                step kept "$kept"
            fi
        done
        echo "  (sudo ./install.sh --uninstall --purge removes them too)"
    fi
}

action=install
purge=no
for arg in "$@"; do
    case $arg in
        --uninstall) action=uninstall ;;
        --purge) action=uninstall; purge=yes ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || fail "it installs a system service: run it as root (sudo $0 $*)"
if [ "$action" = install ]; then
    install_all
else
    uninstall_all "$purge"
fi
