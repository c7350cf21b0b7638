"""Home Assistant discovery through the MQTT buffer: the daemon as a subprocess, a real Mosquitto,
and a simulated Home Assistant (tests/home_assistant.py) that checks every config against the
documented schema and reads states the way Home Assistant does."""

import json

import pytest

from tests.support.configs import socket_buffer_config
from tests.support.daemon import free_port, rewrite_config, send_lines
from tests.support.home_assistant import SimulatedHomeAssistant
from tests.support.mosquitto import Broker, Subscriber, TcpProxy, retained

NODES = """
    [nodes]
    [[10]]
    nodename = emontx
    names = power1, E1, vrms, temp, humidity, pulse, dT
    units = W, Wh, V, C, %, p, K
    [[emonTx4_17]]
    names = MSG, Vrms, P1, P2, P3, P4, P5, P6, E1, E2, E3, E4, E5, E6, T1, T2, T3, pulse
    [[meter]]
    names = EI, FR, VA
    units = kwh, Hz, VA
"""
EMONTX4_LINE = b"emonTx4_17 12 240.1 100 0 0 0 0 0 5000 0 0 0 0 0 21.5 300 300 4\n"


def config(port, broker_port, extra="", nodes=NODES):
    settings = {"host": "127.0.0.1", "port": broker_port, "retry_max": 0.2, "timeout": 5,
                "ha_discovery": True, "ha_gateway_id": "pi1"}
    return socket_buffer_config(port, "mqtt", "mqtt", settings, f"{extra}\n    {nodes}")


def assert_retained(broker, ha):
    """What a Home Assistant starting now would be given: exactly the configs last sent, and
    nothing for the deleted ones."""
    late = Subscriber(broker.port, ["homeassistant/+/+/config"])
    late.sync()
    late.close()
    given = {m.topic: m.payload for m in late.messages if m.retain}
    assert given == {t: p for t, p in ha.latest_configs().items() if p}


@pytest.fixture
def broker(tmp_path):
    with Broker(tmp_path / "broker") as running:
        yield running


@pytest.fixture
def ha(broker):
    simulated = SimulatedHomeAssistant(broker.port)
    yield simulated
    simulated.close()


def test_home_assistant_finds_every_node_and_input_with_the_classes_of_its_unit(gateway_factory, broker, ha):
    port = free_port()
    gw = gateway_factory(config(port, broker.port))
    send_lines(port, b"10 230 5000 241.2 21.5 55 17 3.5\n" + EMONTX4_LINE + b"meter 1234.5 50.01 12\n5 1 2\n")
    ha.wait(lambda: len(ha.entities) >= 1 + 7 + 18 + 3 + 2 and ha.find("5", "2") is not None
            and ha.find("5", "2").states, "every input with a state")
    assert ha.problems == []
    classes = {name: (e.config.get("device_class"), e.config.get("state_class"),
                      e.config.get("unit_of_measurement"))
               for name, e in ((n, ha.find(node, n)) for node, n in [
                   ("emontx", "power1"), ("emontx", "E1"), ("emontx", "vrms"), ("emontx", "temp"),
                   ("emontx", "humidity"), ("emontx", "pulse"), ("emontx", "dT"),
                   ("meter", "EI"), ("meter", "FR"), ("meter", "VA"), ("5", "1")])}
    assert classes == {
        "power1": ("power", "measurement", "W"),          # [nodes] units
        "E1": ("energy", "total_increasing", "Wh"),       # the Energy dashboard takes it
        "vrms": ("voltage", "measurement", "V"),
        "temp": ("temperature", "measurement", "°C"),     # emonhub's C
        "humidity": ("humidity", "measurement", "%"),
        "pulse": (None, "total_increasing", None),        # pulses: a count, no class
        "dT": (None, None, "K"),                          # a difference: no class rather than a wrong one
        "EI": ("energy", "total_increasing", "kWh"),
        "FR": ("frequency", "measurement", "Hz"),
        "VA": ("apparent_power", "measurement", "VA"),
        "1": (None, None, None),                          # no unit known: no class
    }
    # units from the built-in template the node is named after
    p1, t1 = ha.find("emonTx4_17", "P1"), ha.find("emonTx4_17", "T1")
    assert (p1.config["device_class"], p1.config["unit_of_measurement"]) == ("power", "W")
    assert (t1.config["device_class"], t1.config["unit_of_measurement"]) == ("temperature", "°C")
    assert p1.device["model"] == "emonTx4" and p1.device["via_device"] == "oemgw_pi1"
    assert ha.find("emonTx4_17", "MSG").config["entity_category"] == "diagnostic"
    # states as Home Assistant reads them: the values sent
    ha.wait(lambda: all(ha.find(n, i) and ha.find(n, i).states for n, i in
                        [("emontx", "power1"), ("emonTx4_17", "E1"), ("meter", "EI")]), "states")
    assert ha.find("emontx", "power1").states == [230.0]
    assert ha.find("emontx", "temp").state == 21.5
    assert ha.find("emonTx4_17", "E1").state == 5000.0
    assert ha.find("meter", "EI").state == 1234.5
    # one device per node, linked to the gateway's own device; all available while it runs
    devices = {e.device["identifiers"][0] for e in ha.entities.values()}
    assert devices == {"oemgw_pi1", "oemgw_pi1_emontx", "oemgw_pi1_emonTx4_17", "oemgw_pi1_meter",
                       "oemgw_pi1_5"}
    assert all(ha.available(e) for e in ha.entities.values())
    assert ha.entity("oemgw_pi1_status").state == "online"
    # the configs stay on the broker for a Home Assistant that starts later
    assert_retained(broker, ha)
    gw.stop()
    ha.wait(lambda: not ha.available(ha.find("emontx", "power1")), "unavailable after the stop")


def test_home_assistant_restarting_gets_every_config_and_the_latest_states_again(gateway_factory, broker, ha):
    port = free_port()
    gw = gateway_factory(config(port, broker.port))
    send_lines(port, b"10 230 5000 241.2 21.5 55 17 3.5\n10 231 5001 241.3 21.6 56 18 3.6\n")
    ha.wait(lambda: ha.find("emontx", "power1") and ha.find("emontx", "power1").state == 231.0, "231 W")
    configs_before, states_before = len(ha.configs), list(ha.find("emontx", "power1").states)
    ha.birth()   # no reading comes: the configs must come anyway
    ha.wait(lambda: len(ha.configs) >= configs_before + 2, "the configs again")
    gw.wait_for_log("Home Assistant is online: sending its")
    ha.wait(lambda: ha.find("emontx", "power1").states == states_before + [231.0], "the latest state again")
    assert ha.problems == []
    gw.stop()


def test_a_node_removed_from_the_config_is_removed_from_home_assistant(gateway_factory, broker, ha):
    port = free_port()
    gw = gateway_factory(config(port, broker.port))
    send_lines(port, b"10 230 5000 241.2 21.5 55 17 3.5\nmeter 1234.5 50.01 12\n")
    ha.wait(lambda: ha.find("meter", "EI") and ha.find("emontx", "E1"), "both nodes")
    rewrite_config(gw.config_path, config(port, broker.port, nodes=NODES.split("[[meter]]")[0]))
    gw.wait_for_log("config .* re-read")
    send_lines(port, b"10 231 5001 241.2 21.5 55 17 3.5\n")
    ha.wait(lambda: ha.find("meter", "EI") is None, "the meter's entities gone")
    gw.wait_for_log(r"node\(s\) meter left \[nodes\]")
    assert ha.find("emontx", "E1") is not None
    assert retained(broker.port, "homeassistant/device/oemgw_pi1_meter/config") is None   # no ghost
    assert_retained(broker, ha)
    assert ha.problems == []
    gw.stop()


def test_a_node_removed_from_the_config_while_the_gateway_was_stopped_is_removed_at_its_start(
        gateway_factory, broker, ha):
    port = free_port()
    gw = gateway_factory(config(port, broker.port))
    send_lines(port, b"10 230 5000 241.2 21.5 55 17 3.5\nmeter 1234.5 50.01 12\n")
    ha.wait(lambda: ha.find("meter", "EI") and ha.find("emontx", "E1"), "both nodes")
    gw.stop()
    ha.wait(lambda: not ha.available(ha.find("meter", "EI")), "unavailable after the stop")
    again = gateway_factory(config(port, broker.port, nodes=NODES.split("[[meter]]")[0]), name="edited.conf")
    # the first reading opens the connection; the broker's manifest of the nodes announced
    # before says what went (the meter sends nothing: it is no longer there)
    send_lines(port, b"10 231 5001 241.2 21.5 55 17 3.5\n")
    ha.wait(lambda: ha.find("meter", "EI") is None, "the meter's entities gone")
    again.wait_for_log(r"node\(s\) meter left \[nodes\]")
    assert ha.find("emontx", "E1") is not None
    assert retained(broker.port, "homeassistant/device/oemgw_pi1_meter/config") is None
    assert_retained(broker, ha)
    assert ha.problems == []
    again.stop()


def test_after_an_outage_home_assistant_gets_the_latest_value_and_emoncms_topics_every_reading(
        gateway_factory, broker, ha):
    proxy = TcpProxy(broker.port)
    subscriber = Subscriber(broker.port, ["emon/#"])
    port = free_port()
    gw = gateway_factory(config(port, proxy.port, "batch_size = 20", nodes="""
    [nodes]
    [[10]]
    nodename = emontx
    names = power1, E1
    units = W, Wh
    """))
    send_lines(port, b"10 0 1000\n")
    ha.wait(lambda: ha.find("emontx", "E1") and ha.find("emontx", "E1").states == [1000.0], "reading 0")
    proxy.refuse()
    proxy.cut()
    send_lines(port, "".join(f"10 {i} {1000 + i}\n" for i in range(1, 200)).encode())
    gw.wait_for_log("delivery failed")
    proxy.allow()
    subscriber.wait(lambda m: any(x.topic == "emon/emontx" and json.loads(x.payload)["power1"] == 199
                                  for x in m), "reading 199 on the JSON topic")
    subscriber.sync()
    # the JSON topic (emoncms, InfluxDB via Telegraf): every reading, with its time
    values = [json.loads(m.payload)["power1"] for m in subscriber.messages if m.topic == "emon/emontx"]
    assert set(values) == set(range(200))
    # Home Assistant: the latest value once, not 199 values stamped "now"
    ha.wait(lambda: ha.find("emontx", "E1").state == 1199.0, "the latest value")
    assert ha.find("emontx", "E1").states == [1000.0, 1199.0]
    assert ha.find("emontx", "power1").states == [0.0, 199.0]
    subscriber.sync()   # Home Assistant has the latest state: so has the broker for this subscriber
    assert [m.payload for m in subscriber.messages if m.topic == "emon/emontx/E1"] == ["1000", "1199"]
    assert ha.problems == []
    gw.stop()
