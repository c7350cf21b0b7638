"""The TCP socket listener, end to end: the daemon runs as a subprocess, frames go to emoncms."""

import socket
import time

from tests.conftest import WAIT, free_port, listener_config, send_lines, values_by_node


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


def test_port_in_use_is_reported_and_the_rest_runs(gateway_factory, emoncms):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        port = free_port()
        gw = gateway_factory(config(port, emoncms).replace("[buffers]", f"""
    [[busy]]
    type = socket
    port = {busy}
    [buffers]"""))
        assert f"cannot listen on 127.0.0.1:{busy}" in gw.log
        assert "is using that port" in gw.log
        send_lines(port, b"3 3\n")
        assert emoncms.wait_for_rows(1)[0].node == "3"
