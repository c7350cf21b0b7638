"""The MQTT buffer against a real Mosquitto broker (tests/support/mosquitto.py); the daemon is a subprocess.

What a subscriber reads is what counts: each topic format, every reading after the broker is
killed or the network cut mid-stream, the status topic and its Last Will, TLS and passwords.
Radio commands published to the TX topic reach a fake RF12demo board.
"""

import json
import signal
import time

import pytest

from tests.support.configs import socket_buffer_config
from tests.support.daemon import free_port, rewrite_config, send_lines
from tests.support.fakeboard import FakeBoard
from tests.support.mosquitto import Broker, Certificates, Subscriber, TcpProxy, retained

STATUS = "emon/gateway/status"
USERS = {"emonpi": "emonpimqtt2016"}


def config(port, broker_port, extra="", host="127.0.0.1", nodes=""):
    settings = {"host": host, "port": broker_port, "retry_max": 0.2, "timeout": 5}
    return socket_buffer_config(port, "mqtt", "mqtt", settings, f"{extra}\n    {nodes}")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return Certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def broker(tmp_path):
    with Broker(tmp_path / "broker") as running:
        yield running


def readings(messages, topic="emon/1"):
    """The first value of each JSON reading on ``topic``, in arrival order."""
    return [json.loads(m.payload)["1"] for m in messages if m.topic == topic]


def statuses(messages):
    return [m.payload for m in messages if m.topic == STATUS]


def assert_in_order_with_replays_only(values, count, max_replayed):
    """Every reading 0..count-1 arrived; a new one never skipped ahead of an older one (anything
    seen twice is a replay of what came before), and at most ``max_replayed`` were repeats."""
    next_new = 0
    for value in values:
        assert value <= next_new, f"{value} arrived before {next_new}: out of order ({values})"
        if value == next_new:
            next_new += 1
    assert next_new == count, f"only 0..{next_new - 1} of {count} arrived"
    assert len(values) - count <= max_replayed, f"{len(values) - count} duplicates"


def test_each_topic_format_as_a_subscriber_reads_it(gateway_factory, broker):
    subscriber = Subscriber(broker.port)
    port = free_port()
    gw = gateway_factory(config(port, broker.port, "formats = json, nodevar, csv", nodes="""
    [nodes]
    [[10]]
    nodename = emontx
    names = power1, power2
    """))
    before = time.time()
    send_lines(port, b"10 230 -12.5\n5 1 2\n")
    messages = subscriber.wait(lambda m: len(m) >= 9, "9 messages")
    after = time.time()
    by_topic = {m.topic: m.payload for m in messages}
    emontx = json.loads(by_topic.pop("emon/emontx"))
    node5 = json.loads(by_topic.pop("emon/5"))
    assert by_topic == {
        STATUS: "online",
        "emon/emontx/power1": "230", "emon/emontx/power2": "-12.5",   # one message per value
        "emonhub/rx/10/values": "230,-12.5",                          # CSV by node id
        "emon/5/1": "1", "emon/5/2": "2", "emonhub/rx/5/values": "1,2",
    }
    assert {k: v for k, v in emontx.items() if k != "time"} == {"power1": 230, "power2": -12.5}
    assert node5.keys() == {"1", "2", "time"} and (node5["1"], node5["2"]) == (1, 2)
    # the JSON format carries the time each reading was received
    assert before - 0.001 <= emontx["time"] <= after and before - 0.001 <= node5["time"] <= after
    # a reading's messages arrive together, in the order of the formats
    topics = [m.topic for m in messages if m.topic != STATUS]
    assert topics[:4] == ["emon/emontx", "emon/emontx/power1", "emon/emontx/power2", "emonhub/rx/10/values"]
    assert not any(m.retain for m in messages if m.topic != STATUS)
    gw.stop()


@pytest.mark.parametrize("failure", ["network cut", "broker killed"])
def test_qos1_nothing_is_lost_when_the_path_fails_with_messages_in_flight(failure, gateway_factory, broker):
    """The PUBACKs after the first two (the status and reading 0) are lost on the way, so the
    failure hits a full window of messages the broker has but the gateway does not know it
    has; more readings come while the path is down."""
    proxy = TcpProxy(broker.port)
    subscriber = Subscriber(broker.port, ["emon/#"])
    port = free_port()
    gw = gateway_factory(config(port, proxy.port, "max_inflight = 20\nbatch_size = 100"))
    proxy.lose_pubacks_after(2)
    send_lines(port, b"1 0\n")
    subscriber.wait(lambda m: readings(m) == [0], "reading 0")
    send_lines(port, "".join(f"1 {i}\n" for i in range(1, 300)).encode())
    subscriber.wait(lambda m: len(readings(m)) >= 21, "a window of readings not acknowledged")
    if failure == "network cut":
        proxy.cut()
        send_lines(port, "".join(f"1 {i}\n" for i in range(300, 350)).encode())
    else:
        proxy.refuse()   # the gateway comes back only once the subscriber has
        broker.stop(signal.SIGKILL)
        proxy.cut()
        send_lines(port, "".join(f"1 {i}\n" for i in range(300, 350)).encode())
        gw.wait_for_log("delivery failed: (lost the connection|cannot connect to)")
        broker.start()
        subscriber.subscribed(2)
        proxy.allow()
    messages = subscriber.wait(lambda m: 349 in readings(m), "reading 349")
    assert_in_order_with_replays_only(readings(messages), 350, max_replayed=100)
    gw.wait_for_log("lost the connection to mqtt://127.0.0.1:%d" % proxy.port)
    gw.wait_for_log("delivering again after")
    assert gw.stop() == 0
    assert "accepted 350 = delivered 350 + queued 0 + dropped 0" in gw.log
    proxy.close()


def test_status_is_online_while_running_and_offline_after_a_stop_or_a_kill(gateway_factory, broker):
    subscriber = Subscriber(broker.port, [STATUS])
    port = free_port()
    text = config(port, broker.port)
    gw = gateway_factory(text)
    send_lines(port, b"1 1\n")                      # the first reading opens the connection
    subscriber.wait(lambda m: statuses(m) == ["online"], "online")
    assert retained(broker.port, STATUS) == (STATUS, "online", True)
    assert gw.stop() == 0                            # a clean stop says so itself
    subscriber.wait(lambda m: statuses(m) == ["online", "offline"], "offline")
    assert retained(broker.port, STATUS) == (STATUS, "offline", True)

    gw = gateway_factory(text)
    send_lines(port, b"1 2\n")
    subscriber.wait(lambda m: statuses(m)[2:] == ["online"], "online again")
    gw.kill()                                        # kill -9: the broker sends the Last Will
    subscriber.wait(lambda m: statuses(m)[2:] == ["online", "offline"], "the last will")
    assert retained(broker.port, STATUS) == (STATUS, "offline", True)


def test_wrong_password_keeps_readings_logs_once_and_a_fixed_config_delivers(gateway_factory, tmp_path):
    with Broker(tmp_path / "broker", users=USERS) as broker:
        subscriber = Subscriber(broker.port, ["emon/#"], "emonpi", USERS["emonpi"])
        port = free_port()
        gw = gateway_factory(config(port, broker.port, "username = emonpi\npassword = not-the-password"))
        send_lines(port, b"1 0\n1 1\n1 2\n")
        gw.wait_for_log(r"ERROR .*refused the connection: not authorised \(check username and "
                        r"password\).* keeping every reading and retrying every 2.4 s")
        broker.wait_for_log("not authorised", count=2)     # it kept trying, slowly, quietly
        assert gw.log.count("refused the connection") == 1
        rewrite_config(gw.config_path, config(port, broker.port,
                                              f"username = emonpi\npassword = {USERS['emonpi']}"))
        messages = subscriber.wait(lambda m: len(readings(m)) == 3, "3 readings")
        assert readings(messages) == [0, 1, 2]
        gw.stop()
    assert "not-the-password" not in gw.log and USERS["emonpi"] not in gw.log


def test_tls_with_a_private_ca_a_client_certificate_and_a_password(gateway_factory, tmp_path, certs):
    with Broker(tmp_path / "broker", users=USERS, tls=certs, require_certificate=True) as broker:
        subscriber = Subscriber(broker.port, ["emon/#"], "emonpi", USERS["emonpi"], tls=certs)
        port = free_port()
        tls = (f"tls = true\nusername = emonpi\npassword = {USERS['emonpi']}\n"
               f"certfile = {certs.client_crt}\nkeyfile = {certs.client_key}\n")
        gw = gateway_factory(config(port, broker.port, tls + f"ca_file = {certs.other_ca_crt}",
                                    host="localhost"))
        send_lines(port, b"1 0\n1 1\n")
        gw.wait_for_log(rf"ERROR .*TLS certificate of mqtts://localhost:{broker.port} not trusted")
        rewrite_config(gw.config_path, config(port, broker.port, tls + f"ca_file = {certs.ca_crt}",
                                              host="localhost"))
        messages = subscriber.wait(lambda m: len(readings(m)) == 2, "2 readings")
        assert readings(messages) == [0, 1]
        gw.wait_for_log(rf"connected to mqtts://localhost:{broker.port}")
        # not checking the certificate works too, and says what it costs
        rewrite_config(gw.config_path, config(port, broker.port, tls + "verify_tls = false",
                                              host="localhost"))
        gw.wait_for_log(r"WARNING .*verify_tls = False: the broker's certificate is not checked")
        send_lines(port, b"1 2\n")
        subscriber.wait(lambda m: readings(m)[-1:] == [2], "reading 2")
        gw.stop()


def test_tx_topic_values_go_to_the_radio_board(gateway_factory, broker, tmp_path):
    subscriber = Subscriber(broker.port, [STATUS])
    # A retained command would be re-sent at every connection: it is ignored.
    subscriber.publish("emonhub/tx/20/values", "9,9", retain=True)
    with FakeBoard(tmp_path / "ttyAMA0") as board:
        gw = gateway_factory(f"""
        [gateway]
        loglevel = DEBUG
        clock = trusted
        [listeners]
        [[radio]]
        type = rfm2pi
        com_port = {board.port.link}
        [buffers]
        [[mqtt]]
        type = mqtt
        host = 127.0.0.1
        port = {broker.port}
        retry_max = 0.2
        [nodes]
        [[20]]
        nodename = relay
        [[[tx]]]
        datacodes = b, h
        """)
        gw.wait_for_log(r"listener 'radio': board ")   # it answered: a packet now is whole
        board.packet(10, bytes([1, 0]))   # a reading: the connection opens, TX is subscribed
        subscriber.wait(lambda m: statuses(m) == ["online"], "online")
        subscriber.publish("emonhub/tx/20/values", "1,300")
        board.wait_for_command("20,1,44,1,s")
        subscriber.publish("emonhub/tx/relay/values", "2, -1")        # by its [nodes] name
        board.wait_for_command("20,2,255,255,s")
        subscriber.publish("emonhub/tx/20/values", "x,1")
        subscriber.publish("emonhub/tx/20/values", "1,2,3")           # too many for b, h
        subscriber.publish("emonhub/tx/20/values", "3 3")
        board.wait_for_command("20,3,3,0,s")
        assert [c for c in board.commands if c.startswith("20,")] == [
            "20,1,44,1,s", "20,2,255,255,s", "20,3,3,0,s"]
        gw.wait_for_log(r"WARNING .*ignored a retained message on emonhub/tx/20/values")
        gw.wait_for_log(r"WARNING .*ignored a message on emonhub/tx/20/values: value 'x' is not a number")
        gw.wait_for_log(r"WARNING .*values 1,2,3 for node 20 not sent: datacodes are for 2 values, got 3")
        gw.stop()


def test_settings_are_checked_with_messages_that_name_the_key(tmp_path):
    from buffers import BUFFERS
    from gateway.config import ConfigError, ConfigLoader
    from listeners import LISTENERS

    path = tmp_path / "gw.conf"
    path.write_text("[buffers]\n[[mqtt]]\ntype = mqtt\nformats = json, xml\ntx_topic = emonhub/tx\n"
                    "base_topic = emon/+\nkeyfile = k.pem\nqos = 2\n")
    with pytest.raises(ConfigError) as error:
        ConfigLoader(LISTENERS, BUFFERS).load(str(path))
    text = "\n".join(error.value.problems)
    assert "qos = '2': the value \"2\" is too big" in text
    path.write_text(path.read_text().replace("qos = 2\n", ""))
    with pytest.raises(ConfigError) as error:
        ConfigLoader(LISTENERS, BUFFERS).load(str(path))
    text = "\n".join(error.value.problems)
    for expected in ("formats = json, xml: expected one or more of json, nodevar, csv",
                     "tx_topic = 'emonhub/tx': expected a topic with one level {node}",
                     "base_topic = 'emon/+': expected a topic without wildcards",
                     "certfile/keyfile need tls = True"):
        assert expected in text
    path.write_text("[buffers]\n[[mqtt]]\ntype = mqtt\nhost = broker.example\npassword = secret\n"
                    "tls = false\nqos = 0\n")
    config = ConfigLoader(LISTENERS, BUFFERS).load(str(path))
    warnings = "\n".join(config.warnings)
    assert "the password travels in clear to broker.example" in warnings
    assert "qos = 0: readings count as delivered once written" in warnings
    assert config.masked()["buffers"]["mqtt"]["password"] == "***"


def test_without_mosquitto_the_tests_fail_under_ci_and_say_why_elsewhere(monkeypatch):
    import tests.support.mosquitto as mosquitto

    monkeypatch.setattr(mosquitto, "find_program", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set, so they must run"):
        mosquitto.mosquitto_binary()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match=r"mosquitto is not installed \(apt-get install"):
        mosquitto.mosquitto_binary()
