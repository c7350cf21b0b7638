"""The webhook buffer against a fake receiver that validates the JSON it is sent."""

import re
import time

import pytest

from tests.support.configs import socket_buffer_config
from tests.support.daemon import free_port, rewrite_config, send_lines
from tests.support.webhook_server import TOKEN, FakeWebhook

NODES = """
[nodes]
[[10]]
nodename = emontx
names = power1, vrms
"""


def config(port, url, nodes="", token=TOKEN, **settings):
    keys = dict(url=url, headers=f'"Authorization: Bearer {token}", "X-Site: home"',
                retry_max=0.2, timeout=2)
    keys.update(settings)
    return socket_buffer_config(port, "hook", "webhook", keys, nodes)


@pytest.fixture
def hook():
    with FakeWebhook() as server:
        yield server


def accepted(gw):
    gw.wait_for_log("connection closed by the client")


def test_readings_go_as_json_arrays_with_node_time_and_values(gateway_factory, hook):
    port = free_port()
    gw = gateway_factory(config(port, hook.hook_url, NODES))
    before = time.time()
    send_lines(port, b"10 230 241.5\n")
    [first] = hook.wait_for_readings(1)
    hook.set_mode(503)                    # a backlog goes out as one array, after a probe
    send_lines(port, b"5 1 -2\n5 3 4\n5 5 6\n")
    gw.wait_for_log("delivery failed: the webhook answered 503")
    hook.set_mode(None)
    readings = hook.wait_for_readings(4)
    after = time.time()
    assert (first.node, first.values) == ("emontx", {"power1": 230, "vrms": 241.5})
    assert [(r.node, r.values) for r in readings[1:]] == [(5, {"1": 1, "2": -2}), (5, {"1": 3, "2": 4}),
                                                          (5, {"1": 5, "2": 6})]
    assert hook.batches == [1, 1, 2]
    assert all(before - 0.001 <= r.time <= after for r in readings)
    request = hook.requests[0]
    assert request.headers["x-site"] == "home" and request.headers["content-type"] == "application/json"
    gw.stop()
    assert TOKEN not in gw.log


def test_a_site_name_goes_with_every_reading(gateway_factory, hook):
    port = free_port()
    gw = gateway_factory(config(port, hook.hook_url, NODES, site="school-12"))
    send_lines(port, b"10 230 241.5\n5 1 2\n")
    assert [(r.site, r.node) for r in hook.wait_for_readings(2)] == [("school-12", "emontx"), ("school-12", 5)]
    gw.stop()


def test_a_reading_the_receiver_refuses_is_dropped_counted_and_the_rest_delivered(gateway_factory):
    with FakeWebhook(refuse_value=666) as hook:
        port = free_port()
        gw = gateway_factory(config(port, hook.hook_url))
        hook.set_mode(503)
        send_lines(port, b"1 1\n1 666\n1 3\n1 4\n")
        accepted(gw)
        gw.wait_for_log("delivery failed")
        hook.set_mode(None)
        hook.wait_until(lambda: [r.values["1"] for r in hook.readings] == [1, 3, 4], "readings 1, 3, 4")
        gw.wait_for_log(r"dropped a reading the destination refuses \(node 1 .*the webhook answered "
                        r"422 Unprocessable Entity: value 666 of node 1 is not plausible")
        assert gw.stop() == 0
        assert "accepted 4 = delivered 3 + queued 0 + dropped 1 (rejected 1)" in gw.log


def test_timeouts_rate_limits_server_errors_and_resets_are_retried_in_order(gateway_factory, hook):
    port = free_port()
    gw = gateway_factory(config(port, hook.hook_url, retry_max=1))
    hook.fail_next(1, 408)
    hook.fail_next(1, 429, [("Retry-After", "1")])
    hook.fail_next(1, 502)
    hook.fail_next(1, "reset")
    send_lines(port, b"1 0\n1 1\n1 2\n")
    hook.wait_until(lambda: len(hook.readings) >= 3, "3 readings")
    assert [r.values["1"] for r in hook.readings] == [0, 1, 2]
    statuses = [r.status for r in hook.requests]
    assert statuses[:4] == [408, 429, 502, None] and set(statuses[4:]) == {200}
    assert hook.requests[2].at - hook.requests[1].answered_at >= 1.0   # Retry-After honoured
    gw.stop()


@pytest.mark.parametrize("problem", ["wrong token", "wrong path"])
def test_refusals_that_are_not_about_a_reading_keep_everything(problem, gateway_factory, hook):
    port = free_port()
    if problem == "wrong token":
        text, answer = config(port, hook.hook_url, token="not-the-token"), "401 Unauthorized"
    else:
        text, answer = config(port, hook.url + "/hoook"), "404 Not Found"
    gw = gateway_factory(text)
    send_lines(port, b"1 1\n1 2\n")
    gw.wait_for_log(rf"ERROR .*the webhook answered {answer}: .*check the url and credentials; "
                    r"keeping every reading")
    hook.wait_for_requests(3)
    assert len(re.findall(answer, gw.log)) == 1
    rewrite_config(gw.config_path, config(port, hook.hook_url))
    assert [r.values["1"] for r in hook.wait_for_readings(2)] == [1, 2]
    gw.stop()
    assert "not-the-token" not in gw.log


def test_a_redirect_is_reported_not_followed(gateway_factory, hook):
    port = free_port()
    gw = gateway_factory(config(port, hook.hook_url))
    hook.set_mode(301, [("Location", "https://example.org/hook")])
    send_lines(port, b"1 1\n")
    gw.wait_for_log(r"ERROR .*the webhook answered 301 Moved Permanently: redirected to "
                    r"https://example.org/hook \(set url to the final address\)")
    hook.set_mode(None)
    assert hook.wait_for_readings(1)[0].values == {"1": 1}
    gw.stop()


def test_credential_headers_are_secrets_other_headers_are_not(tmp_path):
    from buffers import BUFFERS
    from gateway.config import ConfigLoader
    from listeners import LISTENERS

    path = tmp_path / "gw.conf"
    path.write_text(config(free_port(), "http://127.0.0.1:1/hook").replace(
        '"X-Site: home"', '"X-Site: home", "X-Api-Key: k3y-0f-the-s1te"'))
    plugin = ConfigLoader(LISTENERS, BUFFERS).load(str(path)).buffers["hook"]
    secrets = plugin.secrets()
    for secret in (f"Authorization: Bearer {TOKEN}", f"Bearer {TOKEN}", TOKEN, "k3y-0f-the-s1te"):
        assert secret in secrets
    assert "home" not in secrets        # not a credential: "/home/pi" stays readable in the log


def test_header_values_are_masked_in_the_settings_shown(gateway_factory, hook):
    gw = gateway_factory(config(free_port(), hook.hook_url), extra_args=("--show-settings",),
                         wait_ready=False)
    assert gw.proc.wait() == 0
    gw.stop()
    assert '"headers": "***"' in gw.log and TOKEN not in gw.log
