"""The InfluxDB buffer against a fake InfluxDB that parses line protocol as the real one does."""

import base64
import re
import time

import pytest

from buffers.influxdb import point
from gateway.frame import Frame
from tests.support.configs import socket_buffer_config
from tests.support.daemon import free_port, rewrite_config, send_lines
from tests.support.influxdb_server import (BUCKET, DATABASE, ORG, PASSWORD, TOKEN, USER, FakeInfluxDB,
                                   parse_line)

NODES = """
[nodes]
[[10]]
nodename = emontx
names = power1, vrms
[[7]]
names = power1
"""


def config(port, url, nodes="", **settings):
    keys = dict(url=url, org=ORG, bucket=BUCKET, token=TOKEN, retry_max=0.2, timeout=2)
    keys.update(settings)
    return socket_buffer_config(port, "influx", "influxdb", keys, nodes)


@pytest.fixture
def influx():
    with FakeInfluxDB() as server:
        yield server


def accepted(gw, connections=1):
    gw.wait_for_log("connection closed by the client", count=connections)


def test_v2_points_have_the_node_name_float_fields_and_the_time_received(gateway_factory, influx):
    port = free_port()
    gw = gateway_factory(config(port, influx.url, NODES, measurement='"energy use, house=1"'))
    before = int(time.time())
    send_lines(port, b"10 230 241.5\n5 1 -2\n")
    points = influx.wait_for_points(2)
    after = time.time()
    assert [(p.measurement, p.tag, p.field) for p in points] == [
        ("energy use, house=1", {"node": "emontx"}, {"power1": 230.0, "vrms": 241.5}),
        ("energy use, house=1", {"node": "5"}, {"1": 1.0, "2": -2.0}),
    ]
    assert all(isinstance(v, float) for p in points for v in p.field.values())   # never an int/float conflict
    assert all(before <= p.time <= after and p.time == int(p.time) for p in points)
    request = influx.requests[0]
    assert (request.path, request.query) == ("/api/v2/write", {"org": ORG, "bucket": BUCKET, "precision": "s"})
    assert request.headers["authorization"] == "Token " + TOKEN
    assert request.headers["content-type"] == "text/plain; charset=utf-8"
    gw.stop()
    assert TOKEN not in gw.log and all(TOKEN not in r.raw_target for r in influx.requests)


@pytest.mark.parametrize("name", ["a b", "c,d", "e=f", "g\\h", "end\\", "\\,", 'quo"te', "ünï"])
def test_names_with_special_characters_survive_the_line_protocol(name):
    frame = Frame(name.replace("=", "") or "n", (1, 2.5), 1712345678.9, (name, "x" + name), -70, "test")
    parsed = parse_line(point("m " + name, frame), precision="s")
    assert parsed.measurement == "m " + name
    assert parsed.tag == {"node": name.replace("=", "")}
    assert parsed.field == {name: 1.0, "x" + name: 2.5, "rssi": -70.0}
    assert parsed.time == 1712345678


@pytest.mark.parametrize("api", ["v2", "v1"])
def test_a_point_influxdb_refuses_is_dropped_counted_and_does_not_block_the_rest(api, gateway_factory, influx):
    """power1 was stored as a string before: node 7's reading is a field type conflict."""
    influx.seed_field("emon", "power1", "string")
    port = free_port()
    settings = dict(api=api)
    if api == "v1":
        settings.update(database=DATABASE, username=USER, password=PASSWORD)
    gw = gateway_factory(config(port, influx.url, NODES, **settings))
    influx.set_mode(503)               # the readings pile up and go as one batch
    send_lines(port, b"5 1\n7 2\n5 3\n")
    accepted(gw)
    gw.wait_for_log("delivery failed: InfluxDB answered 503")
    influx.set_mode(None)
    gw.wait_for_log(r"dropped a reading the destination refuses \(node 7 .*InfluxDB answered "
                    + (r"422 .*" if api == "v2" else r"400 .*")
                    + 'partial write: field type conflict: input field "power1"')
    influx.wait_until(lambda: {p.field["1"] for p in influx.points if p.tag["node"] == "5"} == {1.0, 3.0},
                      "both readings of node 5")
    assert gw.stop() == 0
    assert all(p.tag["node"] != "7" for p in influx.points)
    assert "accepted 3 = delivered 2 + queued 0 + dropped 1 (rejected 1)" in gw.log


def test_429_and_server_errors_are_retried_honouring_retry_after(gateway_factory, influx):
    port = free_port()
    gw = gateway_factory(config(port, influx.url, retry_max=1))
    influx.fail_next(1, 429, [("Retry-After", "1")], b'{"code":"too many requests","message":"slow down"}')
    influx.fail_next(1, 500)
    influx.fail_next(1, "reset")
    send_lines(port, b"1 1\n")
    influx.wait_for_points(1)
    statuses = [r.status for r in influx.requests]
    assert statuses == [429, 500, None, 204]
    # the second request came no sooner than the 429 asked
    assert influx.requests[1].at - influx.requests[0].answered_at >= 1.0
    gw.wait_for_log("delivery failed: InfluxDB answered 429 Too Many Requests: slow down")
    gw.stop()


@pytest.mark.parametrize("setting, wrong, answer", [
    ("token", "not-the-token", r"InfluxDB answered 401 Unauthorized: unauthorized access"),
    ("bucket", "nope", r'InfluxDB answered 404 Not Found: bucket "nope" not found'),
])
def test_refused_credentials_or_names_keep_every_reading_until_the_config_is_fixed(
        setting, wrong, answer, gateway_factory, influx):
    port = free_port()
    gw = gateway_factory(config(port, influx.url, **{setting: wrong}))
    send_lines(port, b"1 1\n1 2\n")
    gw.wait_for_log(r"ERROR .*" + answer + r" for http://127.0.0.1:\d+/api/v2/write: check the url "
                    r"and credentials; keeping every reading and retrying every 2.4 s")
    influx.wait_for_requests(2)        # retried, quietly
    assert len(re.findall(answer, gw.log)) == 1
    rewrite_config(gw.config_path, config(port, influx.url))
    points = influx.wait_for_points(2)
    assert [p.field["1"] for p in points] == [1.0, 2.0]
    gw.stop()
    assert "not-the-token" not in gw.log


def test_v1_writes_with_basic_auth_never_with_credentials_in_the_url(gateway_factory, influx):
    port = free_port()
    gw = gateway_factory(config(port, influx.url, api="v1", database=DATABASE, username=USER,
                                password=PASSWORD, retention_policy="autogen"))
    send_lines(port, b"3 4.5\n")
    [p] = influx.wait_for_points(1)
    assert (p.measurement, p.tag, p.field) == ("emon", {"node": "3"}, {"1": 4.5})
    request = influx.requests[0]
    assert (request.path, request.query) == ("/write", {"db": DATABASE, "rp": "autogen", "precision": "s"})
    assert request.headers["authorization"] == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    gw.stop()
    assert PASSWORD not in request.raw_target and PASSWORD not in gw.log


def test_batches_too_large_for_the_server_are_sent_in_smaller_ones(gateway_factory):
    with FakeInfluxDB(max_body=400) as influx:
        port = free_port()
        gw = gateway_factory(config(port, influx.url))
        influx.set_mode(503)
        send_lines(port, "".join(f"2 {i} 100 200\n" for i in range(40)).encode())
        accepted(gw)
        gw.wait_for_log("delivery failed")
        influx.set_mode(None)
        influx.wait_until(lambda: len(influx.points) >= 40, "40 points")
        assert [p.field["1"] for p in influx.points] == [float(i) for i in range(40)]
        assert 413 in [r.status for r in influx.requests]
        gw.wait_for_log(r"request too large; sending \d+ readings at a time")
        gw.stop()


def test_settings_missing_make_it_inactive_and_say_why(gateway_factory, influx):
    port = free_port()
    gw = gateway_factory(config(port, influx.url, token="''"))
    gw.wait_for_log(r"buffer 'influx': inactive: token not set \(api = v2 needs org, bucket and token\)")
    gw.stop()
