"""The emoncms buffer against a test server that answers as emoncms does; the daemon is a subprocess."""

import collections
import json
import re
import signal
import socket
import time
import urllib.request

import pytest

from buffers.base import AuthError, RejectedError, TooLargeError, TransientError
from buffers.emoncms import EmoncmsBuffer
from gateway.frame import Frame

from tests.support.configs import socket_emoncms_config
from tests.support.daemon import WAIT, free_port, rewrite_config, send_lines, FIXTURES
from tests.support.emoncms_server import READ_KEY, WRITE_KEY, FakeEmoncms


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
    from tests.support.emoncms_server import FakeEmoncms
    server = FakeEmoncms(max_nodes=3).start()
    try:
        port = free_port()
        gw = gateway_factory(config(port, server.url))
        server.set_mode("refuse")   # let the readings pile up so they go in one bulk batch
        send_lines(port, b"1 1\n2 2\n3 3\n4 4\n1 5\n2 6\n")
        gw.wait_for_log("delivery failed")
        server.set_mode("ok")
        # emoncms stored the rows in front of node 4's: they are not sent again
        rows = server.wait_for_rows(5)
        assert [(r.node, r.value) for r in rows] == [("1", 1), ("2", 2), ("3", 3), ("1", 5), ("2", 6)]
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


def accounting_line(gw) -> str:
    return gw.wait_for_log(r"emoncms.*: accepted \d+ = ").split(": ", 2)[-1]


def status_of(port) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=WAIT) as reply:
        return json.load(reply)


def status_once_delivered(port, delivered: int) -> dict:
    """/status once the emoncms buffer has counted ``delivered`` readings: emoncms stores the
    rows before its answer reaches the gateway, which counts them (and the readings refused in
    the same batch) then."""
    deadline = time.monotonic() + WAIT
    while True:
        status = status_of(port)
        if status["buffers"]["emoncms"]["delivered"] >= delivered or time.monotonic() > deadline:
            return status


def test_a_refused_node_costs_one_request_rows_in_front_are_never_sent_again(gateway_factory):
    """emoncms refuses a 33rd node inside a bulk upload after storing (and processing) the rows
    in front of it (research §7). Those rows count as delivered and are not sent again (the
    Accumulator sees each reading once); the node's readings are dropped as rejected, counted
    per node, and the node is remembered, so its later readings cost no more refused requests."""
    server = FakeEmoncms(max_nodes=3).start()
    try:
        port, status_port = free_port(), free_port()
        gw = gateway_factory(config(port, server.url, extra="batch_size = 50").replace(
            "clock = trusted", f"clock = trusted\n    status_port = {status_port}"))
        server.add_accumulator("1", "1")
        server.set_mode("refuse")
        rounds = 50
        lines = "".join(f"1 1 {i}\n2 {i}\n3 {i}\n4 {i}\n5 {i}\n" for i in range(rounds))
        send_lines(port, lines.encode() + b"2 -1\n")   # the last: once stored, all is settled
        accepted(gw, 1)
        server.set_mode("ok")
        rows = server.wait_until(lambda rows: rows and rows[-1].value == -1, what="the last reading")
        status = status_once_delivered(status_port, 3 * rounds + 1)["buffers"]["emoncms"]
        gw.stop()
        stored = collections.Counter((r.node, r.name, r.value) for r in rows
                                     if (r.node, r.name) != ("1", "1"))   # the rest are numbered
        assert server.accumulated("1", "1") == rounds
        assert [key for key, count in stored.items() if count > 1] == []
        assert {r.node for r in rows} == {"1", "2", "3"}
        assert accounting_line(gw) == (f"accepted {5 * rounds + 1} = delivered {3 * rounds + 1} + queued 0 + "
                                       f"dropped {2 * rounds} (rejected {2 * rounds})")
        assert status["rejected_by_node"] == {"4": rounds, "5": rounds}
        assert re.search(r"node 4 .*Reached the maximal allowed number of different NodeIds", gw.log)
        bulks = [p for _, p, _ in server.requests_seen if p.endswith("/input/bulk")]
        # 151 readings to deliver: 4 full batches, plus one refused request per refused node
        assert len(bulks) <= 4 + 2 + 1
    finally:
        server.stop()


def test_readings_that_can_never_be_sent_are_counted_once_whatever_the_attempts(gateway_factory, emoncms):
    port = free_port()
    gw = gateway_factory(config(port, emoncms.url))
    emoncms.set_mode("error500")
    send_lines(port, b"1 1\n1 1e300\n1 2\n1 3\n1 1e300\n1 4\n1 5\n1 6\n1 1e300\n1 7\n1 8\n")
    accepted(gw, 1)
    emoncms.wait_for_requests(5)
    emoncms.set_mode("ok")
    assert values(emoncms.wait_for_rows(8)) == [1, 2, 3, 4, 5, 6, 7, 8]
    gw.stop()
    assert accounting_line(gw) == "accepted 11 = delivered 8 + queued 0 + dropped 3 (rejected 3)"


FAKE_UNSYNCHRONISED_KERNEL = """
# The kernel's answer faked at its narrowest boundary: libc's adjtimex() says TIME_ERROR (5),
# "the clock is not synchronised"; everything else of libc is the real one.
import ctypes

_real_cdll = ctypes.CDLL


class _Libc:
    def __init__(self, lib):
        self._lib = lib

    def adjtimex(self, timex):
        return 5

    def __getattr__(self, name):
        return getattr(self._lib, name)


def _cdll(name, *args, **kwargs):
    lib = _real_cdll(name, *args, **kwargs)
    return _Libc(lib) if name and "libc" in str(name) else lib


ctypes.CDLL = _cdll
"""


def test_clock_auto_on_an_unsynchronised_machine_rebases_from_the_very_first_reading(gateway_factory, emoncms,
                                                                                     tmp_path):
    """clock = auto asks the kernel before the first reading is stamped or sent: on a machine
    whose clock is not synchronised even the first reading goes out for emoncms to place by
    its own clock (bulk with sentat), never with the gateway's own time."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(FAKE_UNSYNCHRONISED_KERNEL)
    port = free_port()
    gw = gateway_factory(config(port, emoncms.url).replace("clock = trusted", "clock = auto"),
                         env={"PYTHONPATH": str(shim)})
    send_numbered(port, 1)
    emoncms.wait_for_rows(1)
    assert [p for _, p, _ in emoncms.requests_seen] == ["/input/bulk"]
    assert "the system clock is not synchronised" in gw.log


# -- what emoncms' answers mean, the plugin against the test server (research §3, §7) ----------

def plugin(url, key=WRITE_KEY):
    """The emoncms buffer in this process, to call send() on directly (no spool, no thread)."""
    settings = {"active": True, "max_items": 0, "batch_size": 500, "retry_max": 5, "timeout": 5,
                "verify_tls": True, "ca_file": "", "url": url, "apikey": key, "protocol": None,
                "domain": None, "path": None}
    return EmoncmsBuffer("emoncms", settings)


def readings(*specs):
    return [Frame(node, tuple(values), 1_700_000_000.0 + i, None, None, "t")
            for i, (node, *values) in enumerate(specs)]


def test_an_out_of_range_crash_names_the_row_by_emoncms_rule(emoncms):
    """200 + "Fatal error ... Out of range value for column 'value'": the rows in front were
    stored, the first row beyond a MySQL FLOAT is the refused one."""
    with pytest.raises(RejectedError) as refusal:
        plugin(emoncms.url).send(readings((1, 1), (2, 3.4028234663852886e38), (3, 1e39), (4, 1)))
    assert refusal.value.delivered == 2 and not refusal.value.node_refused
    assert "Out of range value for column 'value'" in str(refusal.value)
    assert [r.node for r in emoncms.rows] == ["1", "2"]


def test_the_node_limit_names_the_row_and_the_node():
    with FakeEmoncms(max_nodes=2) as server:
        with pytest.raises(RejectedError) as refusal:
            plugin(server.url).send(readings((1, 1), (2, 1), (1, 2), ("emontx3", 1), (2, 2)))
        assert (refusal.value.delivered, refusal.value.node_refused) == (3, True)
        assert "Node 'emontx3' was ignored" in str(refusal.value)
        with pytest.raises(RejectedError) as refusal:
            plugin(server.url).send(readings(("emontx3", 5)))   # input/post says the same
        assert (refusal.value.delivered, refusal.value.node_refused) == (0, True)


def test_a_database_down_page_is_server_trouble_not_a_refusal(emoncms):
    emoncms.set_mode("db_down")
    for batch in (readings((1, 1)), readings((1, 1), (1, 2))):
        with pytest.raises(TransientError, match="Access denied"):
            plugin(emoncms.url).send(batch)


def test_a_read_only_key_keeps_everything(emoncms):
    with pytest.raises(AuthError, match="read-only"):
        plugin(emoncms.url, READ_KEY).send(readings((1, 1), (1, 2)))


def test_a_body_php_dropped_means_smaller_batches_never_a_dropped_reading():
    """A body over post_max_size never reaches emoncms: for a bulk it reads as "json string
    supplied is not valid"; nothing was stored. One reading alone is not too large: retried."""
    with FakeEmoncms(post_max_size=2000) as server:
        with pytest.raises(TooLargeError):
            plugin(server.url).send(readings(*[(1, i, i) for i in range(200)]))
        with pytest.raises(TransientError, match="did not receive"):
            plugin(server.url).send(readings((1, *range(200))))
        plugin(server.url).send(readings(*[(1, i) for i in range(10)]))
        assert len(server.rows) == 10


def test_a_url_too_long_keeps_everything(emoncms):
    """414 from Apache: the request line is too long; once a batch is one reading, smaller
    batches cannot help: the url is wrong, as for a 404."""
    long_url = emoncms.url + "/" + "x" * 8200
    with pytest.raises(TooLargeError):
        plugin(long_url).send(readings((1, 1), (1, 2)))
    with pytest.raises(AuthError, match="414"):
        plugin(long_url).send(readings((1, 1)))
    assert emoncms.rows == []


def test_readings_emoncms_cannot_store_are_found_before_sending(emoncms):
    buffer = plugin(emoncms.url)
    assert buffer.check(readings((1, 1e39))[0]) and buffer.check(readings((1, float("nan")))[0])
    assert buffer.check(readings((1, 3.4028234663852886e38))[0]) is None
    assert buffer.check(Frame(1, (1,), 2.0 ** 31, None, None, "t"))   # beyond input.time (INT)


@pytest.mark.parametrize("compress", ["never", "always"])
def test_bulk_bodies_plain_or_compressed_store_every_value_exactly(emoncms, compress):
    """A bulk body goes as a form (only the characters a form gives a meaning escaped: the
    ``+`` of ``1e+20``) or zlib-compressed (``cb=1``); emoncms stores the same rows either way."""
    buffer = plugin(emoncms.url)
    buffer.settings["compress"] = compress
    buffer.configure()
    batch = readings((1, 1e20, -2.5, 0), ("emontx4_17", 3.25e-7, 7), (1, 12, 1e+15 + 0.5))
    buffer.send(batch + [Frame("named", (1.5, -1e21), 1_700_000_010.0, ("a.b", "c-d_e"), -70, "t")])
    stored = [(r.node, r.name, r.value) for r in emoncms.rows]
    assert stored == [("1", "1", 1e20), ("1", "2", -2.5), ("1", "3", 0),
                      ("emontx4_17", "1", 3.25e-7), ("emontx4_17", "2", 7),
                      ("1", "1", 12), ("1", "2", 1e+15 + 0.5),
                      ("named", "a.b", 1.5), ("named", "c-d_e", -1e21), ("named", "rssi", -70)]
    assert [p for _, p, _ in emoncms.requests_seen] == ["/input/bulk"]


def test_compression_is_automatic_for_a_remote_emoncms_only():
    assert plugin("http://localhost/emoncms").compress_from is None
    assert plugin("http://127.0.0.1:8080/emoncms").compress_from is None
    assert plugin("https://emoncms.org").compress_from == 1400
