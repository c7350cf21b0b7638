"""The status surface (/status, /metrics, --status) and the systemd notify/watchdog protocol."""

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.configs import socket_emoncms_config
from tests.support.daemon import DAEMON, WAIT, PortNotBound, free_port, send_lines
from tests.support.emoncms_server import WRITE_KEY


def config(port, status_port, url):
    return socket_emoncms_config(port, url, f"status_port = {status_port}")


def get(status_port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{status_port}{path}", timeout=WAIT) as reply:
        return reply.read().decode()


def test_status_during_an_outage(gateway_factory, emoncms):
    port, status_port = free_port(), free_port()
    emoncms.set_mode("refuse")
    gw = gateway_factory(config(port, status_port, emoncms.url))
    send_lines(port, b"10 1 2\n10 3 4\nbad\nemontx 5\n")
    gw.wait_for_log("delivery failed: cannot connect to")
    status = json.loads(get(status_port, "/status"))
    assert status["config_file"] == str(gw.config_path)
    assert status["version"] and status["uptime_s"] >= 0
    assert status["listeners"]["tcp"] == {"type": "socket", "state": "open", "frames_good": 3,
                                          "frames_bad": 1, "last_frame_age_s": status["listeners"]["tcp"]["last_frame_age_s"]}
    buffer = status["buffers"]["emoncms"]
    assert buffer["state"] == "retrying"
    assert buffer["queued"] == 3 and buffer["accepted"] == 3 and buffer["delivered"] == 0
    assert buffer["oldest_queued_age_s"] >= 0 and buffer["retries"] >= 1
    assert "cannot connect to 127.0.0.1:" in buffer["last_error"]
    assert set(status["nodes"]) == {"10", "emontx"} and status["nodes"]["10"]["frames"] == 2
    text = get(status_port, "/status") + get(status_port, "/metrics")
    assert WRITE_KEY not in text


def test_metrics_parse_as_prometheus_text(gateway_factory, emoncms):
    port, status_port = free_port(), free_port()
    gateway_factory(config(port, status_port, emoncms.url))
    send_lines(port, b"7 1\n7 2\n")
    emoncms.wait_for_rows(2)

    def delivered_of(families):
        return [s.value for s in families["oemgateway_readings_delivered"].samples
                if s.labels == {"buffer": "emoncms"} and s.name.endswith("_total")]
    # emoncms stores the rows before its answer reaches the gateway, which counts them then.
    deadline = time.monotonic() + WAIT
    while True:
        families = {f.name: f for f in text_string_to_metric_families(get(status_port, "/metrics"))}
        delivered = delivered_of(families)
        if delivered and delivered[0] >= 1 or time.monotonic() > deadline:
            break
    assert delivered and delivered[0] >= 1
    frames = {s.labels["result"]: s.value for s in families["oemgateway_listener_frames"].samples
              if s.name.endswith("_total")}
    assert frames == {"good": 2.0, "bad": 0.0}
    assert "oemgateway_readings_queued" in families


def test_a_status_port_taken_before_the_gateway_binds_it_fails_the_start(gateway_factory, emoncms):
    """The status port taken by another program (bound, not listening, as a connection's local
    port is) after free_port(): the harness says so at start, not at the first request."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        status_port = taken.getsockname()[1]
        with pytest.raises(PortNotBound, match=f"cannot serve the status on 127.0.0.1:{status_port}"):
            gateway_factory(config(free_port(), status_port, emoncms.url))


def test_status_command_prints_a_readable_summary(gateway_factory, emoncms):
    port, status_port = free_port(), free_port()
    gw = gateway_factory(config(port, status_port, emoncms.url))
    send_lines(port, b"5 1\n")
    emoncms.wait_for_rows(1)
    result = subprocess.run([sys.executable, str(DAEMON), "--config-file", str(gw.config_path), "--status"],
                            capture_output=True, text=True, timeout=WAIT)
    assert result.returncode == 0, result.stderr
    assert "listeners:" in result.stdout and "tcp" in result.stdout
    assert "emoncms" in result.stdout and "delivered" in result.stdout


def test_status_command_without_a_running_gateway(tmp_path):
    conf = tmp_path / "g.conf"
    conf.write_text(f"[gateway]\nstatus_port = {free_port()}\n")
    result = subprocess.run([sys.executable, str(DAEMON), "--config-file", str(conf), "--status"],
                            capture_output=True, text=True, timeout=WAIT)
    assert result.returncode == 2 and "is the gateway running?" in result.stderr


def test_systemd_notify_ready_watchdog_reload_stopping(gateway_factory, emoncms, tmp_path):
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(path)
        notify.settimeout(WAIT)
        port = free_port()
        gw = gateway_factory(config(port, 0, emoncms.url),
                             env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})

        def next_message(prefix):
            while True:
                message = notify.recv(4096).decode()
                if message.startswith(prefix):
                    return message

        assert next_message("READY=1").startswith("READY=1\nSTATUS=1 listener, 1 buffer")
        next_message("WATCHDOG=1")
        next_message("WATCHDOG=1")          # pinged again and again by the event loop
        gw.signal(signal.SIGHUP)
        assert "MONOTONIC_USEC=" in next_message("RELOADING=1")
        next_message("READY=1")
        gw.signal(signal.SIGTERM)
        next_message("STOPPING=1")
        assert gw.stop() == 0
