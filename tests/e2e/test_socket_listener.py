"""The TCP socket listener, end to end: the daemon runs as a subprocess, frames go to emoncms."""

import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.support.configs import listener_config, values_by_node
from tests.support.daemon import DAEMON, WAIT, PortNotBound, free_port, send_lines
from tests.support.raw_http import closed_by_server


def config(port, emoncms, extra_listener="", extra=""):
    return listener_config(emoncms, f"[[tcp]]\ntype = socket\nport = {port}\n{extra_listener}", extra)


def test_a_frame_arrives_with_node_values_and_receive_time(gateway_factory, emoncms):
    port = free_port()
    gateway_factory(config(port, emoncms))
    before = int(time.time())
    send_lines(port, b"14 15 26\r\n")
    rows = emoncms.wait_for_rows(2)
    after = time.time()
    assert [(r.node, r.name, r.value) for r in rows] == [("14", "1", 15), ("14", "2", 26)]
    assert all(before <= r.time <= after for r in rows)


def test_many_clients_with_open_connections_and_split_lines(gateway_factory, emoncms):
    port = free_port()
    gateway_factory(config(port, emoncms))
    clients = [socket.create_connection(("127.0.0.1", port), timeout=WAIT) for _ in range(10)]
    try:
        # each client sends half a line, then the rest, interleaved with the others
        for i, c in enumerate(clients):
            c.sendall(f"{i} {i}.".encode())
        for i, c in enumerate(clients):
            c.sendall(f"5 -{i}\r\n{i + 100} 1\n".encode())
        rows = emoncms.wait_for_rows(30)
    finally:
        for c in clients:
            c.close()
    nodes = values_by_node(rows)
    for i in range(10):
        assert nodes[str(i)] == {"1": float(f"{i}.5"), "2": -i}
        assert nodes[str(i + 100)] == {"1": 1}


def test_bad_input_is_dropped_and_the_connection_carries_on(gateway_factory, emoncms):
    port = free_port()
    gw = gateway_factory(config(port, emoncms, "max_line = 64"))
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as c:
        c.sendall(b"\xff\xfe\x00garbage\n")       # not UTF-8
        c.sendall(b"10\n")                          # too few fields
        c.sendall(b"10 nan\n10 1e999\n300 1\n")    # wrong numbers, node out of range
        c.sendall(b"1 " + b"9" * 500 + b"\n")        # longer than max_line
        c.sendall(b"\n\r\n")                        # empty lines are ignored
        c.sendall(b"11 42\n")
        rows = emoncms.wait_for_rows(1)
    assert [(r.node, r.value) for r in rows] == [("11", 42)]
    gw.wait_for_log(r"dropped bad input \(not UTF-8 line\)")
    gw.stop()
    # first bad line logged, the other five summarised in one line at stop
    warnings = [line for line in gw.log.splitlines() if " WARNING oemgateway.listener" in line]
    assert len(warnings) == 2, warnings
    assert "dropped bad input (not UTF-8 line)" in warnings[0]
    assert "5 more like that" in warnings[1]


def test_last_line_without_newline_counts_when_the_client_closes(gateway_factory, emoncms):
    port = free_port()
    gateway_factory(config(port, emoncms))
    send_lines(port, b"emontx 1 2 3")
    rows = emoncms.wait_for_rows(3)
    assert values_by_node(rows) == {"emontx": {"1": 1, "2": 2, "3": 3}}


def test_default_bind_is_localhost(gateway_factory, emoncms):
    port = free_port()
    gw = gateway_factory(config(port, emoncms))
    assert f"listening on 127.0.0.1:{port}" in gw.log


def test_legacy_port_nb_listens_on_all_interfaces_and_says_so(gateway_factory, emoncms):
    port = free_port()
    gw = gateway_factory(f"""
    [listeners]
    [[Socket]]
        type = OemGatewaySocketListener
        [[[init_settings]]]
            port_nb = {port}
        [[[runtime_settings]]]
    [buffers]
    """)
    assert f"listening on 0.0.0.0:{port}" in gw.log
    assert gw.log.count("set 'bind = 127.0.0.1'") == 1
    assert gw.output.count(r"WARNING oemgateway: .*:\d+: \[listeners\] \[\[Socket\]\]: bind = 0.0.0.0: "
                           r"any computer") == 1


def test_open_to_the_network_without_allow_or_token_is_warned_at_start_and_reload(gateway_factory, emoncms):
    port = free_port()
    gw = gateway_factory(config(port, emoncms, "bind = 0.0.0.0"))
    send_lines(port, b"3 3\n")
    emoncms.wait_for_rows(1)
    gw.signal(signal.SIGHUP)
    gw.wait_for_log("re-read")
    warnings = [line for line in gw.log.splitlines() if "any computer that can reach this one" in line]
    assert len(warnings) == 2, warnings    # at start, and with the config re-read
    assert "[listeners] [[tcp]]: bind = 0.0.0.0: any computer that can reach this one may send " \
           f"lines to port {port}; set 'bind = 127.0.0.1' to accept local programs only, or " \
           "'allow = 192.168.1.0/24' (your network) or a 'token'" in warnings[0]


@pytest.mark.parametrize("listener, warned", [
    ("bind = 0.0.0.0", True), ("bind = ::", True), ("bind = 0.0.0.0\nallow = 192.168.1.0/24", False),
    ("bind = ::\ntoken = long-enough-token", False), ("bind = 192.168.1.7", False), ("", False),
    ("port_nb = 50020", True), ("port_nb = 50020\nbind = 127.0.0.1", False)])
def test_check_warns_about_listeners_open_to_everyone(tmp_path, listener, warned):
    conf = tmp_path / "c.conf"
    conf.write_text(f"[listeners]\n[[tcp]]\ntype = socket\n{listener}\n")
    result = run_check(conf)
    assert result.returncode == 0, result.stderr
    assert ("any computer that can reach this one" in result.stderr) == warned, result.stderr


def test_check_warns_about_a_repeater_open_to_everyone(tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text("[listeners]\n[[radio]]\ntype = rfm2pi\nrepeater_port = 50021\nrepeater_bind = 0.0.0.0\n")
    result = run_check(conf)
    assert result.returncode == 0, result.stderr
    assert ("[listeners] [[radio]]: repeater_bind = 0.0.0.0: any computer that can reach this one "
            "may send lines to port 50021; set 'repeater_bind = 127.0.0.1' to accept local programs "
            "only\n") in result.stderr


def run_check(conf):
    return subprocess.run([sys.executable, str(DAEMON), "--config-file", str(conf), "--check"],
                          capture_output=True, text=True, timeout=WAIT)


def test_a_port_taken_before_the_gateway_binds_it_fails_the_start_not_the_first_send(gateway_factory, emoncms):
    """Between free_port() and the daemon's bind another program may take the port (a
    connection's local port: bound, not listening). The gateway then runs without that listener;
    the test harness says so at once rather than letting the first send be refused."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(PortNotBound, match=rf"(?s)not running: listener 'tcp'.*cannot listen on 127.0.0.1:{port}"):
            gateway_factory(config(port, emoncms))


def test_port_in_use_is_reported_the_rest_runs_and_it_starts_once_free(gateway_factory, emoncms, tmp_path):
    """A listener that cannot open at start: an ERROR naming it and why, the 'ready' line and
    systemd's status say it is not running; it is tried again and starts once the port is free."""
    notify_path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify, socket.socket() as taken:
        notify.bind(notify_path)
        notify.settimeout(WAIT)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        port = free_port()
        gw = gateway_factory(config(port, emoncms).replace("[buffers]", f"""
    [[busy]]
    type = socket
    port = {busy}
    [buffers]"""), env={"NOTIFY_SOCKET": notify_path}, every_port=False)
        error = gw.wait_for_log(r" ERROR oemgateway: listener 'busy': cannot listen")
        assert f"cannot listen on 127.0.0.1:{busy}: Address already in use (another program, or " \
               "another listener, is using that port); trying again in 1 s" in error
        assert gw.wait_for_log("INFO oemgateway: ready").endswith(
            "ready: 1 listener, 1 buffer; not running: listener 'busy' (see the error above; it is tried "
            "again in the background)")
        status = next_notification(notify, "READY=1")
        assert status.startswith("READY=1\nSTATUS=1 listener, 1 buffer; NOT RUNNING: listener 'busy': "
                                 f"cannot listen on 127.0.0.1:{busy}")
        send_lines(port, b"3 3\n")
        assert emoncms.wait_for_rows(1)[0].node == "3"
        taken.close()
        gw.wait_for_log("listener 'busy': started after all")
        assert next_notification(notify, "STATUS=") == "STATUS=2 listeners, 1 buffer"
    send_lines(busy, b"4 4\n")
    assert emoncms.wait_for_rows(2)[1].node == "4"
    assert gw.output.count("ERROR") == 1    # one error, not one per attempt


def next_notification(notify, prefix: str) -> str:
    """The next datagram systemd would get that starts with ``prefix``."""
    while True:
        message = notify.recv(4096).decode()
        if message.startswith(prefix):
            return message


# -- idle connections and max_clients ---------------------------------------------------------
TOKEN = "flood-test-token-1"
FD_LIMIT = 200


def limit_open_files(folder, limit: int) -> dict:
    """Environment for a daemon that may open at most ``limit`` files (soft and hard limit),
    as a small ``LimitNOFILE=`` would make it: a ``sitecustomize`` sets it as Python starts."""
    (folder / "sitecustomize.py").write_text(
        f"import resource\nresource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit}))\n")
    return {"PYTHONPATH": str(folder)}


def send_if_open(sock, data: bytes) -> None:
    """Send, unless the gateway has closed this connection already."""
    try:
        sock.sendall(data)
    except OSError:
        pass


@pytest.mark.parametrize("listener", ["", f"token = {TOKEN}\nidle_timeout = 600"],
                         ids=["defaults", "token"])
def test_a_good_client_gets_through_idle_and_trickling_connections(gateway_factory, emoncms, listener):
    """300 connections that send nothing and 20 that send a few bytes but never a whole line:
    a client already talking keeps its connection, and a new one still gets its frame in."""
    port = free_port()
    hello = (TOKEN + "\n").encode() if "token" in listener else b""
    gw = gateway_factory(config(port, emoncms, listener))
    talking = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    idle = []
    try:
        talking.sendall(hello + b"1 1\n")
        emoncms.wait_for_rows(1)
        for i in range(320):
            sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
            idle.append(sock)
            if i % 16 == 0:
                send_if_open(sock, b"2 ")        # a trickle: bytes, but never a line end
        for sock in idle[::16]:
            send_if_open(sock, b"2")
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as good:
            good.sendall(hello + b"3 3\n")
            talking.sendall(b"1 2\n")
            rows = emoncms.wait_for_rows(3)
    finally:
        talking.close()
        for sock in idle:
            sock.close()
    assert sorted((r.node, r.value) for r in rows) == [("1", 1), ("1", 2), ("3", 3)]
    # one line for the first connection closed to make room, the rest summed up later
    assert gw.output.count("to make room for a new one") == 1, gw.log
    assert gw.proc.poll() is None


def test_near_the_open_file_limit_clients_make_room_and_the_gateway_keeps_its_files(
        gateway_factory, emoncms, tmp_path):
    """Two listeners whose max_clients the process cannot open (its limit: 200 files), 180
    silent connections on each: both still take a new client's frame, and the spool and the
    buffer never run out of files."""
    ports = free_port(), free_port()
    listeners = "".join(f"[[tcp{i}]]\ntype = socket\nport = {port}\nmax_clients = 1000\n"
                        for i, port in enumerate(ports))
    gw = gateway_factory(listener_config(emoncms, listeners), env=limit_open_files(tmp_path, FD_LIMIT))
    assert gw.output.count(r"max_clients = 1000, but this process may open only %d files" % FD_LIMIT) == 2
    idle = []
    try:
        for port in ports:
            idle += [socket.create_connection(("127.0.0.1", port), timeout=WAIT) for _ in range(180)]
        for node, port in enumerate(ports, 5):
            with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as good:
                good.sendall(b"%d 1\n" % node)
                emoncms.wait_for_rows(node - 4)
    finally:
        for sock in idle:
            sock.close()
    assert gw.output.count("near its limit of open files") >= 1
    assert "Too many open files" not in gw.log


def test_a_connection_that_does_not_send_the_token_in_time_is_closed(gateway_factory, emoncms):
    port = free_port()
    gw = gateway_factory(config(port, emoncms, f"token = {TOKEN}\nidle_timeout = 0.3"))
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as silent:
        silent.sendall(TOKEN[:4].encode())                 # part of the token is not the token
        assert closed_by_server(silent)
    gw.wait_for_log(r"closing 127\.0\.0\.1:\d+: no token within 0\.3 s")


def test_trickled_bytes_without_a_line_end_do_not_keep_a_connection(gateway_factory, emoncms):
    """idle_timeout counts from the last complete line: a byte now and then is not enough."""
    port = free_port()
    gw = gateway_factory(config(port, emoncms, "idle_timeout = 0.5"))
    trickles = [socket.create_connection(("127.0.0.1", port), timeout=WAIT) for _ in range(3)]
    stop = threading.Event()

    def trickle():
        while not stop.wait(0.1):          # the scenario: a byte every 0.1 s on each connection
            for sock in trickles:
                send_if_open(sock, b"9")

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        gw.wait_for_log(r"closing 127\.0\.0\.1:\d+: no complete line for 0\.5 s")
        for sock in trickles:
            assert closed_by_server(sock)
    finally:
        stop.set()
        thread.join()
        for sock in trickles:
            sock.close()
