"""Who may feed the gateway, what it does under a flood, and that secrets never leak."""

import os
import re
import socket
import subprocess
import sys

from tests.conftest import DAEMON, WAIT, free_port, send_lines, socket_emoncms_config
from tests.emoncms_server import WRITE_KEY


def config(port, url, listener_extra="", gateway_extra=""):
    return socket_emoncms_config(port, url, "clock = trusted\n    " + gateway_extra, listener_extra,
                                 buffer="timeout = 0.5")


def closed_by_server(sock) -> bool:
    """Block until the server closes the connection (EOF or reset)."""
    sock.settimeout(WAIT)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return True


def test_allow_list_refuses_other_addresses(gateway_factory, emoncms):
    port = free_port()
    gw = gateway_factory(config(port, emoncms.url, "allow = 10.0.0.0/8, 192.168.1.7"))
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(b"1 1\n")
        assert closed_by_server(s)
    gw.wait_for_log(r"refused a connection from 127\.0\.0\.1:\d+ \(not in 'allow'\)")
    # the same config with our network allowed: frames arrive
    text = config(port, emoncms.url, "allow = 10.0.0.0/8, 127.0.0.0/8")
    gw.config_path.write_text(text)
    gw.signal(__import__("signal").SIGHUP)
    gw.wait_for_log("re-read")
    send_lines(port, b"2 2\n")
    assert [r.node for r in emoncms.wait_for_rows(1)] == ["2"]


def test_bad_allow_entry_is_a_config_error(tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text("[listeners]\n[[s]]\ntype = socket\nallow = 10.0.0.0/33\n")
    result = subprocess.run([sys.executable, str(DAEMON), "--config-file", str(conf), "--check"],
                            capture_output=True, text=True, timeout=WAIT)
    assert result.returncode == 1
    assert "[listeners] [[s]]: allow: '10.0.0.0/33' is not an address or network" in result.stderr


def test_token_must_be_the_first_line(gateway_factory, emoncms):
    port = free_port()
    token = "s3cret-token-123"
    gw = gateway_factory(config(port, emoncms.url, f"token = {token}"))
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(b"wrong\n1 1\n")
        assert closed_by_server(s)
    send_lines(port, token.encode() + b"\n2 2\n")
    rows = emoncms.wait_for_rows(1)
    assert [r.node for r in rows] == ["2"]
    assert "its first line was not the token" in gw.log
    assert token not in gw.log


def test_idle_clients_are_closed(gateway_factory, emoncms):
    port = free_port()
    gw = gateway_factory(config(port, emoncms.url, "idle_timeout = 0.3"))
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        assert closed_by_server(s)
    gw.wait_for_log("no complete line for 0.3 s")


def test_a_connection_flood_never_stops_a_good_client(gateway_factory, emoncms):
    port = free_port()
    gw = gateway_factory(config(port, emoncms.url, "max_clients = 50"))
    good = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    flood = []
    try:
        good.sendall(b"3 -1\n")     # a client that talks keeps its place; silent ones make room
        emoncms.wait_for_rows(1)
        for _ in range(1000):
            try:
                flood.append(socket.create_connection(("127.0.0.1", port), timeout=WAIT))
            except OSError:
                break   # the machine's own limits: the flood is big enough
        for i in range(20):
            good.sendall(b"3 %d\n" % i)
        rows = emoncms.wait_for_rows(21)
        assert [int(r.value) for r in rows] == list(range(-1, 20))
    finally:
        for s in flood:
            s.close()
        good.close()
    assert len(flood) >= 500
    gw.wait_for_log("the 'max_clients'")
    assert gw.proc.poll() is None


def test_a_flood_of_bad_frames_gives_a_handful_of_log_lines(gateway_factory, emoncms):
    port = free_port()
    gw = gateway_factory(config(port, emoncms.url))
    send_lines(port, b"not a frame\n" * 10000 + b"4 4\n")
    emoncms.wait_for_rows(1)
    assert gw.stop() == 0
    lines = [l for l in gw.log.splitlines() if "bad input" in l]
    assert len(lines) == 2, lines
    assert "9999 more like that" in lines[1]


def test_readable_config_with_secrets_is_warned_about(gateway_factory, emoncms):
    port = free_port()
    gw = gateway_factory(config(port, emoncms.url), wait_ready=False)
    gw.wait_ready()
    os.chmod(gw.config_path, 0o644)
    gw.stop()
    gw2 = gateway_factory(config(port, emoncms.url), name="other.conf", wait_ready=False)
    os.chmod(gw2.config_path, 0o644)
    gw2.wait_ready()
    assert "holds secrets and every user of this machine can read it" in gw2.log


def test_no_secret_in_any_byte_logged_at_debug_with_failing_servers(gateway_factory, emoncms, tmp_path):
    """A whole session at DEBUG: wrong key, server errors, garbage, hangs, a bad frame flood,
    status and metrics read, a reload, a stop. Not one byte of output holds a secret."""
    import signal
    import urllib.request
    port, status_port = free_port(), free_port()
    token = "listener-token-xyz"
    wrong_key = "a" * 32
    text = config(port, emoncms.url, f"token = {token}", f"status_port = {status_port}")
    gw = gateway_factory(text.replace(WRITE_KEY, wrong_key))
    send_lines(port, token.encode() + b"\n1 1\nbad\n")
    gw.wait_for_log("refused the API key")
    for path in ("/status", "/metrics"):
        urllib.request.urlopen(f"http://127.0.0.1:{status_port}{path}", timeout=WAIT).read()
    gw.config_path.write_text(text)   # the right key now
    gw.signal(signal.SIGHUP)
    emoncms.wait_for_rows(1)
    for mode in ("error500", "garbage", "reset", "hang"):
        emoncms.fail_next(1, mode)
        send_lines(port, token.encode() + b"\n2 2\n")
    rows = emoncms.wait_until(lambda rows: sum(r.node == "2" for r in rows) >= 4, what="four frames")
    status = urllib.request.urlopen(f"http://127.0.0.1:{status_port}/status", timeout=WAIT).read().decode()
    show = subprocess.run([sys.executable, str(DAEMON), "--config-file", str(gw.config_path),
                           "--show-settings"], capture_output=True, text=True, timeout=WAIT)
    gw.stop()
    everything = gw.log + status + show.stdout + show.stderr
    assert "DEBUG" in gw.log and rows
    for secret in (WRITE_KEY, wrong_key, token):
        assert secret not in everything
    assert not re.search(r"apikey=\w", everything)
