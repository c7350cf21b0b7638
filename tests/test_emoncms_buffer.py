"""The emoncms buffer against a test server that answers as emoncms does; the daemon is a subprocess."""

import signal
import socket
import time

from tests.conftest import WAIT, free_port, rewrite_config, send_lines, FIXTURES, socket_emoncms_config
from tests.emoncms_server import READ_KEY, WRITE_KEY


def config(port, url, key=WRITE_KEY, extra=""):
    return socket_emoncms_config(port, url, "config_check_interval = 0.2\n    clock = trusted",
                                 buffer="timeout = 1\n    " + extra, apikey=key)


def send_numbered(port, count, node=1, start=0):
    """Send ``count`` frames ``node i`` on one connection; returns the time just before."""
    before = time.time()
    send_lines(port, "".join(f"{node} {i}\n" for i in range(start, start + count)).encode())
    return before


def accepted(gw, frames_total):
    """Wait until the gateway has read everything the test sent (the client closed)."""
    gw.wait_for_log("connection closed by the client", count=frames_total)


def values(rows, node="1"):
    return [int(r.value) for r in rows if r.node == node]


def test_outage_then_back_every_reading_in_order_none_twice(gateway_factory, emoncms):
    port = free_port()
    gw = gateway_factory(config(port, emoncms.url))
    emoncms.set_mode("refuse")
    sent_at = send_numbered(port, 200)
    gw.wait_for_log("delivery failed: cannot connect to")
    sent_before_recovery = time.time()
    emoncms.set_mode("ok")
    rows = emoncms.wait_for_rows(200)
    assert values(rows) == list(range(200))
    # readings keep the time they were received, not the time they were finally sent
    assert all(int(sent_at) <= r.time <= sent_before_recovery for r in rows)
    gw.wait_for_log("delivering again after")
    # the backlog went out in bulk, not one request per reading
    bulks = [p for _, p, _ in emoncms.requests_seen if "bulk" in p]
    assert bulks and len(emoncms.requests_seen) < 100


def test_server_errors_hangs_and_garbage_are_retried(gateway_factory, emoncms):
    port = free_port()
    gw = gateway_factory(config(port, emoncms.url))
    emoncms.fail_next(2, "error500")
    send_numbered(port, 1, start=0)
    assert values(emoncms.wait_for_rows(1)) == [0]
    emoncms.fail_next(2, "garbage")
    send_numbered(port, 1, start=1)
    assert values(emoncms.wait_for_rows(2)) == [0, 1]
    emoncms.fail_next(1, "reset")
    send_numbered(port, 1, start=2)
    assert values(emoncms.wait_for_rows(3)) == [0, 1, 2]
    emoncms.set_mode("hang")
    send_numbered(port, 5, start=3)
    gw.wait_for_log("no answer from .* within 1 s")
    emoncms.set_mode("ok")
    assert values(emoncms.wait_for_rows(8)) == list(range(8))
    assert "emoncms answered 500" in gw.log
    assert "unexpected answer from emoncms: '<html>garbage</html>'" in gw.log


def test_wrong_key_keeps_readings_logs_once_and_a_config_fix_delivers_them(gateway_factory, emoncms):
    port = free_port()
    wrong = "f" * 32
    gw = gateway_factory(config(port, emoncms.url, key=wrong))
    send_numbered(port, 20)
    gw.wait_for_log("refused the API key", count=1)
    assert {r.status for r in emoncms.wait_for_requests(3)} == {401}
    assert gw.log.count("refused the API key") == 1
    rewrite_config(gw.config_path, config(port, emoncms.url))
    gw.wait_for_log(r"new settings applied \(\d+ readings queued, kept\)")
    assert values(emoncms.wait_for_rows(20)) == list(range(20))
    assert wrong not in gw.log and WRITE_KEY not in gw.log


def test_read_only_key_is_not_taken_for_success(gateway_factory, emoncms):
    port = free_port()
    gw = gateway_factory(config(port, emoncms.url, key=READ_KEY))
    send_numbered(port, 3)
    gw.wait_for_log("stored nothing: is the apikey a read-only key")
    assert emoncms.rows == []
    gw.signal(signal.SIGHUP)  # nothing changed: the queue stays and still waits for a good key
    rewrite_config(gw.config_path, config(port, emoncms.url))
    assert values(emoncms.wait_for_rows(3)) == [0, 1, 2]


def test_a_reading_emoncms_refuses_is_dropped_and_does_not_block_the_others(gateway_factory):
    from tests.emoncms_server import FakeEmoncms
    server = FakeEmoncms(max_nodes=3).start()
    try:
        port = free_port()
        gw = gateway_factory(config(port, server.url))
        server.set_mode("refuse")   # let the readings pile up so they go in one bulk batch
        send_lines(port, b"1 1\n2 2\n3 3\n4 4\n1 5\n2 6\n")
        gw.wait_for_log("delivery failed")
        server.set_mode("ok")
        # emoncms stores a refused bulk batch up to the bad row, so the search for it
        # re-sends 1, 2, 3 (an idempotent rewrite): 3 + 3 + the last two
        rows = server.wait_for_rows(8)
        assert [(r.node, r.value) for r in rows][-2:] == [("1", 5), ("2", 6)]
        assert "4" not in {r.node for r in rows}
        gw.wait_for_log(r"dropped a reading the destination refuses \(node 4 .*maximal allowed number")
    finally:
        server.stop()


def test_sighup_applies_a_new_url_and_keeps_the_queue(gateway_factory, emoncms):
    port = free_port()
    dead = f"http://127.0.0.1:{free_port()}"
    gw = gateway_factory(config(port, dead))
    send_numbered(port, 30)
    gw.wait_for_log("delivery failed: cannot connect to")
    gw.config_path.write_text(gw.config_path.read_text().replace(dead, emoncms.url))
    gw.signal(signal.SIGHUP)
    gw.wait_for_log("config .* re-read \\((SIGHUP|the file changed)\\)")
    assert values(emoncms.wait_for_rows(30)) == list(range(30))


def test_config_edit_adds_and_removes_listeners(gateway_factory, emoncms):
    port, port2 = free_port(), free_port()
    gw = gateway_factory(config(port, emoncms.url))
    text = config(port, emoncms.url).replace("[buffers]", f"""
    [[tcp2]]
    type = socket
    port = {port2}
    [buffers]""")
    rewrite_config(gw.config_path, text)
    gw.wait_for_log(f"listening on 127.0.0.1:{port2}")
    send_lines(port2, b"7 7\n")
    assert emoncms.wait_for_rows(1)[0].node == "7"
    rewrite_config(gw.config_path, config(port2, emoncms.url).replace("[[tcp]]", "[[tcp2]]"))
    gw.wait_for_log("listener 'tcp' closed \\(removed from the config\\)")
    try:
        socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()
        raise AssertionError("the removed listener still accepts connections")
    except ConnectionRefusedError:
        pass


def test_invalid_config_edit_is_reported_and_ignored(gateway_factory, emoncms):
    port = free_port()
    gw = gateway_factory(config(port, emoncms.url))
    rewrite_config(gw.config_path, config(port, emoncms.url).replace("retry_max = 0.2", "retry_max = never"))
    gw.wait_for_log("not applied .* the running setup stays")
    gw.wait_for_log(r"\[buffers\] \[\[emoncms\]\] retry_max = 'never'")
    send_numbered(port, 1)
    assert values(emoncms.wait_for_rows(1)) == [0]


def test_sigterm_delivers_what_is_queued_and_exits_0(gateway_factory, emoncms):
    port = free_port()
    gw = gateway_factory(config(port, emoncms.url))
    emoncms.set_mode("hang")
    send_numbered(port, 100)
    accepted(gw, 1)
    gw.signal(signal.SIGTERM)
    emoncms.set_mode("ok")
    assert gw.stop() == 0
    assert values(emoncms.rows) == list(range(100))


def test_sigterm_with_a_dead_server_stops_within_the_shutdown_time(gateway_factory):
    port = free_port()
    dead = f"http://127.0.0.1:{free_port()}"
    gw = gateway_factory(config(port, dead).replace("config_check_interval = 0.2",
                                                    "shutdown_timeout = 0.5"))
    send_numbered(port, 10)
    accepted(gw, 1)
    assert gw.stop() == 0
    assert "10 readings not delivered yet: kept in the spool for the next start" in gw.log


def test_legacy_config_runs_unchanged(gateway_factory, emoncms):
    port = free_port()
    text = (FIXTURES / "legacy-socket-emoncms.conf").read_text()
    text = (text.replace("port_nb = 50011", f"port_nb = {port}")
                .replace("domain = localhost", f"domain = 127.0.0.1:{emoncms.port}")
                .replace("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", WRITE_KEY))
    gw = gateway_factory(text)
    send_lines(port, b"14 15 26\r\n")
    rows = emoncms.wait_for_rows(2)
    assert [(r.node, r.name, r.value) for r in rows] == [("14", "1", 15), ("14", "2", 26)]
    assert all(p.startswith("/emoncms/input/") for _, p, _ in emoncms.requests_seen)
    assert WRITE_KEY not in gw.log


def test_no_key_in_urls_or_logs_even_at_debug_with_failures(gateway_factory, emoncms):
    port = free_port()
    gw = gateway_factory(config(port, emoncms.url))
    emoncms.fail_next(3, "error500")
    send_numbered(port, 3)
    emoncms.wait_for_rows(3)
    gw.stop()
    assert WRITE_KEY not in gw.log
    assert all(WRITE_KEY not in p for _, p, _ in emoncms.requests_seen)


def test_untrusted_clock_lets_emoncms_rebase_times_with_sentat(gateway_factory, emoncms):
    port = free_port()
    gw = gateway_factory(config(port, emoncms.url).replace("clock = trusted", "clock = untrusted"))
    before = int(time.time())
    send_numbered(port, 3)
    rows = emoncms.wait_for_rows(3)
    after = time.time()
    assert [p for _, p, _ in emoncms.requests_seen] == ["/input/bulk"] * len(emoncms.requests_seen)
    # emoncms computes its now - sentat + row time: right to the second it rounds to
    assert all(before <= r.time <= after + 1 for r in rows)
    gw.stop()
