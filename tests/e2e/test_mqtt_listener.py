"""The MQTT listener against a real Mosquitto: the daemon reads topics, and its MQTT buffer
publishes what it made of them under ``out/`` on the same broker, where a subscriber reads it."""

import json
import textwrap
import time

import pytest

from buffers import BUFFERS
from gateway.config import ConfigError, ConfigLoader
from listeners import LISTENERS
from tests.support.mosquitto import Broker, Subscriber

TOPICS = '"emon/#", emonhub/rx/+/values, "shellies/#", zigbee2mqtt/+, tele/+/SENSOR'
NODE_MAP = ('"shellies/plug-1/relay/0/power = plug1", "zigbee2mqtt/+ = {2}", '
            '"tele/+/SENSOR = {2}"')


def config(broker_port, extra=""):
    return f"""
    [gateway]
    loglevel = DEBUG
    clock = trusted
    [listeners]
    [[in]]
    type = mqtt
    host = 127.0.0.1
    port = {broker_port}
    topics = {TOPICS}
    node_map = {NODE_MAP}
    {extra}
    [buffers]
    [[out]]
    type = mqtt
    host = 127.0.0.1
    port = {broker_port}
    base_topic = out
    tx_topic =
    retry_max = 0.2
    """


@pytest.fixture
def broker(tmp_path):
    with Broker(tmp_path / "broker") as running:
        yield running


def readings(subscriber, count):
    """``count`` JSON readings published under out/ (the status aside), as (node, values)."""
    messages = subscriber.wait(lambda m: len([x for x in m if x.topic.count("/") == 1]) >= count,
                               f"{count} readings")
    return [(m.topic.split("/", 1)[1], json.loads(m.payload)) for m in messages if m.topic.count("/") == 1]


def test_each_topic_form_becomes_a_reading_and_bad_messages_are_counted(gateway_factory, broker):
    out = Subscriber(broker.port, ["out/+"])
    gw = gateway_factory(config(broker.port))
    gw.wait_for_log("listener 'in': subscribed to 5 topics")
    source = Subscriber(broker.port, ["nothing"])
    source.publish("emonhub/rx/10/values", "230,-12.5,241.2")                 # emonhub CSV
    sent_at = int(time.time()) - 3600
    source.publish("emon/emontx", '{"power1":230,"vrms":241.2,"time":%d}' % sent_at)   # our/emonhub JSON
    source.publish("emon/emonth/temperature", "21.5")                        # nodevar
    source.publish("shellies/plug-1/relay/0/power", "57.3")                  # mapped, plain number
    source.publish("zigbee2mqtt/fridge", '{"power":80,"energy":1.25,"state":"ON","linkquality":96}')
    source.publish("tele/tasmota1/SENSOR", '{"Time":"2024-01-01T00:00:00","ENERGY":{"Power":5,"Total":1.5}}')
    for garbage in ["not a number", "[1, 2]", '{"state": "ON"}', "\xff", '{"time": "yesterday", "p": 1}']:
        source.publish("emon/bad", garbage)
    source.publish("emonhub/rx/11/values", "1,x,3")
    source.publish("somewhere/else", "1")   # subscribed by no rule: not here at all
    source.publish("emon/last", '{"p": 1}')
    got = dict(readings(out, 7))
    assert {k: {n: v for n, v in vals.items() if n != "time"} for k, vals in got.items()} == {
        "10": {"1": 230, "2": -12.5, "3": 241.2},
        "emontx": {"power1": 230, "vrms": 241.2},
        "emonth": {"temperature": 21.5},
        "plug1": {"power": 57.3},
        "fridge": {"power": 80, "energy": 1.25, "linkquality": 96},
        "tasmota1": {"ENERGY_Power": 5, "ENERGY_Total": 1.5},
        "last": {"p": 1},
    }
    assert got["emontx"]["time"] == sent_at             # the sender's time is kept
    gw.wait_for_log(r"dropped bad input \(emon/bad: expected a JSON object")
    assert gw.proc.poll() is None
    assert gw.stop() == 0
    # six bad messages: the first logged, the others counted in one line (the last one named)
    gw.wait_for_log(r"\.\.\. 5 more like that .*latest: .*emonhub/rx/11/values: expected comma-separated numbers")


def test_messages_published_while_the_gateway_is_down_are_read_when_it_is_back(gateway_factory, broker):
    out = Subscriber(broker.port, ["out/+"])
    source = Subscriber(broker.port, ["nothing"])
    gw = gateway_factory(config(broker.port))
    gw.wait_for_log("listener 'in': subscribed to")
    source.publish("emon/meter", '{"n": 0}')
    readings(out, 1)
    gw.stop()
    for i in range(1, 101):       # QoS 1, kept by the broker for the gateway's session
        source.publish("emon/meter", json.dumps({"n": i}))
    gw2 = gateway_factory(config(broker.port), name="again.conf")
    gw2.wait_for_log("session resumed")
    values = [v["n"] for node, v in readings(out, 101)]
    assert values == list(range(101))
    gw2.stop()


def test_retained_messages_are_old_readings_and_ignored_unless_asked(gateway_factory, broker):
    source = Subscriber(broker.port, ["nothing"])
    source.publish("emon/old", '{"p": 1}', retain=True)
    out = Subscriber(broker.port, ["out/+"])
    gw = gateway_factory(config(broker.port))
    gw.wait_for_log("ignored a retained message on emon/old")
    source.publish("emon/new", '{"p": 2}')
    assert readings(out, 1) == [("new", {"p": 2, "time": readings(out, 1)[0][1]["time"]})]
    gw.stop()


@pytest.mark.parametrize("setting, message", [
    ('topics = "emon/#/x"', "topics: 'emon/#/x' is not a valid topic filter"),
    ("topics = emon/#", "topics: 'emon/' ends with '/': a # starts a comment here, write \"emon/#\""),
    ("node_map = shellies/plug", "node_map: 'shellies/plug': expected 'topic = node'"),
    ('node_map = "a/+ = {3}"', "node_map: 'a/+ = {3}': {3} is not a level of the topic"),
    ("certfile = /x.pem", "certfile/keyfile need tls = True"),
])
def test_settings_are_checked_with_messages_that_name_the_key(tmp_path, setting, message):
    path = tmp_path / "oemgateway.conf"
    path.write_text(textwrap.dedent(f"""
    [listeners]
    [[in]]
    type = mqtt
    {setting}
    """))
    with pytest.raises(ConfigError) as raised:
        ConfigLoader(LISTENERS, BUFFERS).load(str(path))
    assert message in str(raised.value) and "[listeners] [[in]]" in str(raised.value)
