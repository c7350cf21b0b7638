"""Whom the spool keeps readings for: an inactive destination records nothing, and a destination
removed from the config (while running or while stopped) is forgotten, its readings counted."""

import json
import os
import urllib.request

from tests.support import daemon
from tests.support.configs import socket_buffer_config, socket_emoncms_config
from tests.support.daemon import WAIT, free_port, rewrite_config, runtime_dir_for, send_lines


REMOVED = "readings dropped: the buffer was removed from the config"


def segments(gw):
    """The spool's segment files, hot tier and cold tier."""
    folders = [os.path.join(runtime_dir_for(gw.config_path.parent), "spool"),
               str(gw.config_path.parent / "state" / "spool")]
    return [name for folder in folders if os.path.isdir(folder)
            for name in os.listdir(folder) if name.endswith(".seg")]


def status(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=WAIT) as reply:
        return json.load(reply)


def shipped_config(port, status_port):
    """The shipped config (an emoncms section without an API key, a file buffer), saving to
    disk at once what a destination has not taken."""
    text = daemon.shipped_config().replace("port = 50011", f"port = {port}")
    text = text.replace("loglevel = INFO", "loglevel = DEBUG")
    return text.replace("[gateway]\n", f"[gateway]\n    status_port = {status_port}\n"
                                       "    spill_after = 0\n    spill_interval = 1\n", 1)


def test_an_inactive_destination_keeps_nothing_and_says_why(gateway_factory):
    port, status_port = free_port(), free_port()
    text = shipped_config(port, status_port)
    gw = gateway_factory(text)
    for start in range(0, 1000, 100):
        send_lines(port, b"".join(b"10 %d 2\n" % i for i in range(start, start + 100)))
    gw.wait_for_log("connection closed by the client", count=10)
    emoncms = status(status_port)["buffers"]["emoncms"]
    assert emoncms["state"] == "inactive" and emoncms["recording"] is False
    assert emoncms["inactive_reason"].startswith("no apikey set")
    assert emoncms["queued"] == 0 and emoncms["accepted"] == 0
    assert gw.stop() == 0   # a clean stop saves to disk whatever some destination still needs
    assert segments(gw) == []
    assert len((gw.config_path.parent / "readings").glob("*.csv").__next__().read_text().splitlines()) == 1001

    gw = gateway_factory(text)
    assert status(status_port)["buffers"]["emoncms"]["queued"] == 0
    gw.stop()


def queue_300_for_a_refusing_emoncms(gateway_factory, emoncms, port):
    emoncms.set_mode("refuse")
    gw = gateway_factory(socket_emoncms_config(port, emoncms.url, "spill_after = 3600\n    shutdown_timeout = 0.5\n"
                                               "    config_check_interval = 0.2"))
    send_lines(port, b"".join(b"1 %d\n" % i for i in range(300)))
    gw.wait_for_log("connection closed by the client")
    return gw


def without_emoncms(port):
    """The config without the emoncms section: a removed buffer gets 0.5 s to deliver."""
    text = socket_buffer_config(port, "file", "file", {"path": "out.csv"})
    return text.replace("[gateway]", "[gateway]\n    shutdown_timeout = 0.5", 1)


def test_a_destination_removed_while_stopped_is_forgotten_at_start(gateway_factory, emoncms):
    port = free_port()
    gw = queue_300_for_a_refusing_emoncms(gateway_factory, emoncms, port)
    gw.stop()
    assert "300 readings not delivered yet: kept in the spool" in gw.log

    gw = gateway_factory(without_emoncms(port))
    line = gw.wait_for_log(REMOVED)
    assert "WARNING" in line and "buffer 'emoncms': 300 readings dropped" in line
    send_lines(port, b"2 1\n")
    gw.wait_for_log("connection closed by the client")
    gw.stop()
    assert segments(gw) == []

    gw = gateway_factory(without_emoncms(port))
    gw.stop()
    assert "removed from the config" not in gw.log and "emoncms" not in gw.log


def test_a_destination_removed_while_running_is_forgotten_the_same_way(gateway_factory, emoncms):
    port = free_port()
    gw = queue_300_for_a_refusing_emoncms(gateway_factory, emoncms, port)
    rewrite_config(gw.config_path, without_emoncms(port))
    line = gw.wait_for_log(REMOVED)
    assert "WARNING" in line and "buffer 'emoncms': 300 readings dropped" in line
    gw.stop()
    assert "kept in the spool" not in gw.log
    assert "buffer 'emoncms': accepted 300 = delivered 0 + queued 0 + dropped 300 (removed 300)" in gw.log
    assert segments(gw) == []

    gw = gateway_factory(without_emoncms(port))
    gw.stop()
    assert "removed from the config" not in gw.log and "emoncms" not in gw.log
