"""The config through the command line and the running daemon: --check, --show-settings,
--version, a bad or missing file at start, every number at its maximum, reloading. (Loading
and its messages in detail: tests/unit/test_config.py.)"""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile

import pytest

from buffers import BUFFERS
from gateway.spool import SPOOL_SPEC
from listeners import LISTENERS
from tests.support.configs import socket_emoncms_config
from tests.support.daemon import DAEMON, ROOT, shipped_config, free_port, rewrite_config, send_lines


def test_tests_read_the_shipped_config_as_committed_not_as_edited(tmp_path, monkeypatch):
    """A user who fills in their API key (or anything else) in the checkout's oemgateway.conf
    does not change what the tests run on."""
    import tests.support.daemon as harness
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    committed = (clone / "oemgateway.conf").read_text()
    (clone / "oemgateway.conf").write_text(committed.replace("apikey =", "apikey = 0123456789abcdef0123456789abcdef")
                                           .replace("port = 50011", "port = 50999"))
    monkeypatch.setattr(harness, "ROOT", clone)
    assert harness.shipped_config() == committed


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, str(DAEMON), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=60)


def test_check_exit_codes_and_messages(tmp_path):
    (tmp_path / "oemgateway.conf").write_text(shipped_config())
    good = run_cli("--config-file", str(tmp_path / "oemgateway.conf"), "--check")
    assert good.returncode == 0, good.stderr
    assert "is valid" in good.stdout
    bad = tmp_path / "bad.conf"
    bad.write_text("[listeners]\n[[s]]\ntype = socket\nport = 0\n")
    result = run_cli("--config-file", str(bad), "--check")
    assert result.returncode == 1
    assert f"{bad}:4: [listeners] [[s]] port = '0': the value \"0\" is too small" in result.stderr


def test_daemon_refuses_to_start_on_bad_config(tmp_path):
    bad = tmp_path / "bad.conf"
    bad.write_text("[buffers]\n[[e]]\ntype = emoncms\ntimeout = soon\n")
    result = run_cli("--config-file", str(bad))
    assert result.returncode == 1
    assert "[buffers] [[e]] timeout = 'soon'" in result.stderr


def test_missing_config_file(tmp_path):
    result = run_cli("--config-file", str(tmp_path / "nope.conf"))
    assert result.returncode == 1
    assert "nope.conf: no such file" in result.stderr


def test_show_settings_masks_secrets(tmp_path):
    key = "0123456789abcdef0123456789abcdef"
    conf = tmp_path / "k.conf"
    conf.write_text(f"[buffers]\n[[e]]\ntype = emoncms\napikey = {key}\n")
    result = run_cli("--config-file", str(conf), "--show-settings")
    assert result.returncode == 0
    assert key not in result.stdout
    assert json.loads(result.stdout)["buffers"]["e"]["apikey"] == "***"


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("OEM Gateway ")


# -- what --check must catch: everything that would fail at start ---------------------------------
def at_maximum(spec: str, skip=()) -> str:
    """Config lines setting every bounded number of a configspec to its maximum."""
    out = []
    for line in spec.splitlines():
        match = re.match(r"\s*(\w+)\s*=\s*(?:float|integer)\(.*max=([^,)]+)", line)
        if match and match.group(1) not in skip:
            out.append(f"{match.group(1)} = {match.group(2)}")
    return "\n".join(out)


def test_every_number_at_its_maximum_runs(gateway_factory, emoncms, tmp_path):
    """The whole class at once: a gateway with each number setting of [gateway] and of every
    listener and buffer type at its maximum starts, takes a frame, re-reads its config and
    stops cleanly."""
    from gateway.config import GATEWAY_SPEC
    from listeners.ds18b20 import DS18B20Listener
    from listeners.gpio_lines import EdgeListener
    from listeners.serialport import SerialPortListener
    from listeners.socket import SocketListener
    from tests.support.emoncms_server import WRITE_KEY
    from tests.support.gpiod_control import gpiod_env
    port = free_port()
    ports = dict(status_port=free_port(), web_port=free_port())
    given = {"emoncms": f"url = {emoncms.url}\napikey = {WRITE_KEY}", "file": f"path = {tmp_path / 'out.csv'}"}

    def section(registry, name):
        cls = registry.resolve(name)
        if issubclass(cls, SocketListener):
            extra = f"port = {port}"
        elif issubclass(cls, SerialPortListener):
            extra = f"com_port = {tmp_path / ('no-such-device-' + name)}"
        elif issubclass(cls, EdgeListener):   # (the gpiod library faked: no GPIO chip here)
            extra = {"pulse": "pin = 17", "gpio": "pins = 27,"}[name]
        elif issubclass(cls, DS18B20Listener):
            extra = f"w1_root = {tmp_path / 'w1'}"
        else:   # a buffer: the test servers take emoncms and files; the others are off
            extra = given.get(name, "active = False")
        return f"[[{name}]]\ntype = {name}\n{extra}\n" + at_maximum(
            cls.settings_spec(), skip=("port", "port_nb", "repeater_port", "keepalive")) + "\n"

    text = "\n".join([
        "[gateway]", "clock = trusted", at_maximum(GATEWAY_SPEC + SPOOL_SPEC, skip=ports),
        *(f"{key} = {value}" for key, value in ports.items()),
        "[listeners]", *(section(LISTENERS, name) for name in LISTENERS.names()),
        "[buffers]", *(section(BUFFERS, name) for name in BUFFERS.names()),
    ])
    with tempfile.TemporaryDirectory(prefix="gpio-") as pins:
        gw = gateway_factory(text, env=gpiod_env(os.path.join(pins, "pins")))
    send_lines(port, b"7 1 2\n")
    emoncms.wait_for_rows(2)
    gw.signal(signal.SIGHUP)
    gw.wait_for_log("re-read")
    assert gw.stop() == 0
    assert "Traceback" not in gw.log and "internal error" not in gw.log and " ERROR " not in gw.log
    assert (tmp_path / "out.csv").read_text().endswith(",7,1,2\n")


def test_check_catches_a_port_used_twice_and_an_overflowing_number(tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text("[gateway]\nhot_max_mb = 1e308\n[listeners]\n[[a]]\ntype = socket\nport = 50120\n"
                    "[[b]]\ntype = socket\nport = 50120\n")
    result = run_cli("--config-file", str(conf), "--check")
    assert result.returncode == 1, result.stdout
    assert result.stderr.splitlines()[1:] == [
        f"  {conf}:2: [gateway] hot_max_mb = '1e308': the value \"1e+308\" is too big "
        "(expected a number from 0.1 to 4096)",
        f"  {conf}:9: [listeners] [[b]] port = 50120: 127.0.0.1:50120 overlaps [listeners] [[a]] port "
        "(127.0.0.1:50120): one port cannot be listened on twice",
        f"warning: {conf}: no buffers: what is read is sent nowhere (add one under [buffers], e.g. "
        "[[file]] with type = file)"]


# -- files the loader must survive ------------------------------------------------------------
def nested(depth: int) -> str:
    return "\n".join("[" * level + f"s{level}" + "]" * level for level in range(1, depth + 1)) + "\n"


@pytest.mark.parametrize("depth", [400, 5000])
def test_deeply_nested_sections_are_a_clear_error(tmp_path, depth):
    conf = tmp_path / "deep.conf"
    conf.write_text("[listeners]\n[[a]]\ntype = socket\n" + nested(depth).split("\n", 2)[2])
    result = run_cli("--config-file", str(conf), "--check")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[1].startswith(f"  {conf}: [listeners] [[a]] [[[s3]]]")
    assert result.stderr.splitlines()[1].endswith(
        "its section 's9' is nested 9 levels deep, more than the 8 a config can have (check the brackets)")


# -- reloading: whatever goes wrong, the file stays watched ---------------------------------------
def test_a_file_that_breaks_the_reader_is_reported_and_later_saves_apply(gateway_factory, emoncms):
    port, port2 = free_port(), free_port()
    text = socket_emoncms_config(port, emoncms.url, "config_check_interval = 0.2\n    clock = trusted")
    gw = gateway_factory(text)
    rewrite_config(gw.config_path, text + "    [nodes]\n" + nested(400).split("\n", 1)[1])
    error = gw.wait_for_log(r"ERROR oemgateway: config .* not applied \(the file changed\)")
    gw.wait_for_log(r"its section 's9' is nested 9 levels deep")
    assert str(gw.config_path) in error
    rewrite_config(gw.config_path, text.replace("[buffers]", f"[[tcp2]]\n    type = socket\n    port = {port2}\n    [buffers]"))
    gw.wait_for_log(f"listening on 127.0.0.1:{port2}")
    send_lines(port2, b"5 5\n")
    assert emoncms.wait_for_rows(1)[0].node == "5"
    assert "Traceback" not in gw.log
