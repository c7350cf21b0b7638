"""Home Assistant discovery: the unit table, the payloads, their count, and the schema check."""

import json

import pytest

from protocols.ha_discovery import (Discovery, DiscoveryConfig, classify, normalise_unit, slug,
                                  validate, validate_all)
from gateway.frame import Frame
from gateway.node_templates import by_name


def frame(node, values, names, t=1000.0, rssi=None):
    return Frame(node, tuple(values), t, tuple(names), rssi, "test")


def config(**kwargs):
    return DiscoveryConfig(gateway_id=kwargs.pop("gateway_id", "pi1"), **kwargs)


def payloads(messages):
    return {topic: json.loads(payload) if payload else "" for topic, payload in messages}


# -- units ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, unit, device_class, state_class, ha_unit", [
    ("P1", "W", "power", "measurement", "W"),
    ("E1", "Wh", "energy", "total_increasing", "Wh"),
    ("EI", "kWh", "energy", "total_increasing", "kWh"),
    ("EI", "kwh", "energy", "total_increasing", "kWh"),
    ("Vrms", "V", "voltage", "measurement", "V"),
    ("I1", "A", "current", "measurement", "A"),
    ("FR", "Hz", "frequency", "measurement", "Hz"),
    ("T1", "C", "temperature", "measurement", "°C"),
    ("T1", "°C", "temperature", "measurement", "°C"),
    ("T1", "degC", "temperature", "measurement", "°C"),
    ("humidity", "%", "humidity", "measurement", "%"),
    ("battery", "%", "battery", "measurement", "%"),
    ("battery", "V", "voltage", "measurement", "V"),
    ("rssi", None, "signal_strength", "measurement", "dBm"),
    ("Volume", "m3", "volume", "total_increasing", "m³"),
    ("Volume", "m³", "volume", "total_increasing", "m³"),
    ("FlowRate", "m3/h", "volume_flow_rate", "measurement", "m³/h"),
    ("VA", "va", "apparent_power", "measurement", "VA"),
    ("Ontime", "h", "duration", "measurement", "h"),
    ("pulse", "p", None, "total_increasing", None),
    ("dT", "K", None, None, "K"),                  # a difference: not a temperature
    ("PF", "%", None, None, "%"),                   # a percentage of what? no class
    ("MSG", "n", None, "total_increasing", None),
    ("x", "furlongs", None, None, "furlongs"),      # unknown: no class, the unit as written
    ("x", None, None, None, None),
    ("E", "kvarh", None, None, "kvarh"),            # newer HA only: no class rather than a refusal
    ("P", "mW", None, None, "mW"),                  # m and M are not guessed
    ("P", "MW", None, None, "MW"),
])
def test_the_unit_decides_the_classes(name, unit, device_class, state_class, ha_unit):
    cls = classify(name, unit)
    assert (cls.device_class, cls.state_class, cls.unit) == (device_class, state_class, ha_unit)


def test_units_users_write_are_normalised_and_unknown_ones_kept():
    assert [normalise_unit(u) for u in ("C", " c ", "kwh", "KWH", "w", "m3", "M3/H", "lpm", "Hz")] == \
        ["°C", "°C", "kWh", "kWh", "W", "m³", "m³/h", "L/min", "Hz"]
    assert normalise_unit("") is None and normalise_unit(None) is None
    assert normalise_unit("mV") == "mV" and normalise_unit("MV") == "MV" and normalise_unit("K") == "K"


def test_message_counters_and_rssi_are_diagnostics():
    assert classify("MSG", "n").diagnostic and not classify("MSG", "n").enabled
    assert classify("rssi", None).diagnostic and classify("rssi", None).enabled
    assert not classify("P1", "W").diagnostic


def test_every_classified_unit_passes_the_schema():
    from protocols.ha_discovery import UNIT_CLASSES
    d = Discovery(config())
    names = [f"i{n}" for n in range(len(UNIT_CLASSES))]
    messages = d.observe(frame("node", [1] * len(names), names),
                         units=dict(zip(names, UNIT_CLASSES)))
    assert validate_all(messages) == []


# -- payloads ---------------------------------------------------------------------------------
EMONTX4 = by_name("emonTx4")


def emontx4_frame(t=1000.0, rssi=-60):
    return frame("emonTx4_17", [1, 240.1, 100, 0, 0, 0, 0, 0, 5000, 0, 0, 0, 0, 0, 21.5, 300, 300, 0],
                 EMONTX4.names, t, rssi)


def test_a_node_is_one_device_linked_to_the_gateway_with_a_sensor_per_input():
    d = Discovery(config())
    messages = d.observe(emontx4_frame(), units=dict(zip(EMONTX4.names, EMONTX4.units)),
                         model="emonTx4", manufacturer="OpenEnergyMonitor")
    assert validate_all(messages) == []
    sent = payloads(messages)
    assert list(sent) == ["homeassistant/device/oemgw_pi1/config",
                          "homeassistant/device/oemgw_pi1_emonTx4_17/config"]
    gateway = sent["homeassistant/device/oemgw_pi1/config"]
    assert gateway["components"]["status"]["state_topic"] == "emon/gateway/status"
    node = sent["homeassistant/device/oemgw_pi1_emonTx4_17/config"]
    assert node["device"] == {"identifiers": ["oemgw_pi1_emonTx4_17"], "name": "emonTx4_17",
                              "via_device": "oemgw_pi1", "manufacturer": "OpenEnergyMonitor",
                              "model": "emonTx4"}
    assert node["availability"] == [{"topic": "emon/gateway/status", "payload_available": "online",
                                     "payload_not_available": "offline"}]
    assert node["components"]["E1"] == {
        "platform": "sensor", "unique_id": "oemgw_pi1_emonTx4_17_E1", "name": "E1",
        "state_topic": "emon/emonTx4_17/E1", "device_class": "energy",
        "state_class": "total_increasing", "unit_of_measurement": "Wh",
        "suggested_display_precision": 0}
    assert node["components"]["T1"]["unit_of_measurement"] == "°C"
    assert node["components"]["rssi"]["entity_category"] == "diagnostic"
    assert len(node["components"]) == len(EMONTX4.names) + 1
    assert d.observe(emontx4_frame(1010)) == []           # nothing new: nothing sent


def test_state_topics_are_the_mqtt_buffers_nodevar_topics():
    from buffers.mqtt import MqttBuffer
    d = Discovery(config(base_topic="site7/emon/"))
    reading = frame("emonth2_23", [20.5, 3.1], ["temperature", "external temperature"])
    node = payloads(d.observe(reading))["homeassistant/device/oemgw_pi1_emonth2_23/config"]
    buffer = MqttBuffer.__new__(MqttBuffer)   # only its topic formatting is used
    buffer._formats, buffer._base, buffer._ha = ["nodevar"], "site7/emon", None
    buffer.settings = {"retain": False}
    published = {topic for topic, _, _ in buffer._messages(reading)}
    assert {c["state_topic"] for c in node["components"].values()} == published
    assert "value_template" not in node["components"]["temperature"]


def test_names_outside_the_id_alphabet_get_stable_distinct_ids():
    assert slug("P1") == "P1"
    assert slug("external temperature") != slug("external_temperature")
    assert slug("external temperature").startswith("external_temperature_")
    assert slug("external temperature") == slug("external temperature")
    d = Discovery(config())
    messages = d.observe(frame("emonth1_19", [1, 2], ["external temperature", "external_temperature"]))
    assert validate_all(messages) == []


def test_the_entity_style_sends_one_message_per_input():
    d = Discovery(config(style="entity"))
    messages = d.observe(frame("tx", [1, 2], ["P1", "E1"]), units={"P1": "W", "E1": "Wh"})
    assert validate_all(messages) == []
    sent = payloads(messages)
    assert list(sent) == ["homeassistant/binary_sensor/oemgw_pi1_status/config",
                          "homeassistant/sensor/oemgw_pi1_tx_P1/config",
                          "homeassistant/sensor/oemgw_pi1_tx_E1/config"]
    e1 = sent["homeassistant/sensor/oemgw_pi1_tx_E1/config"]
    assert e1["device"]["via_device"] == "oemgw_pi1" and "platform" not in e1
    assert e1["device_class"] == "energy"


def test_radio_nodes_get_expire_after_once_their_interval_is_known():
    d = Discovery(config())
    topic = "homeassistant/device/oemgw_pi1_emonTx4_17/config"
    sent = [d.observe(emontx4_frame(1000 + 10 * i + (0.3 if i % 2 else 0))) for i in range(8)]
    assert [len(s) for s in sent] == [2, 0, 0, 1, 0, 0, 0, 0]      # learnt after 4 frames
    node = payloads(sent[3])[topic]
    assert {c["expire_after"] for c in node["components"].values()} == {52}   # 5 x 10.3 s
    assert validate_all([m for s in sent for m in s]) == []
    # a node that is not a radio node, or whose interval is configured
    wired = Discovery(config())
    assert all("expire_after" not in c for m in
               [wired.observe(frame("pi2", [1], ["P1"], t)) for t in (0, 10, 20, 30, 40)]
               for _, p in m for c in json.loads(p)["components"].values())
    fixed = Discovery(config())
    node = payloads(fixed.observe(frame("sdm", [1], ["P"]), interval=60))
    assert node["homeassistant/device/oemgw_pi1_sdm/config"]["components"]["P"]["expire_after"] == 300


def test_a_new_input_republishes_the_node():
    d = Discovery(config())
    d.observe(frame("tx", [1], ["P1"]))
    sent = payloads(d.observe(frame("tx", [1, 2], ["P1", "P2"])))
    assert list(sent["homeassistant/device/oemgw_pi1_tx/config"]["components"]) == ["P1", "P2"]


def test_units_changed_in_the_config_republish_the_node_with_its_new_classes():
    d = Discovery(config())
    d.observe(frame("tx", [1], ["P1"]))
    assert d.observe(frame("tx", [1], ["P1"]), units={"P1": "W"}) == []   # known: not reread
    d.reclassify(["tx"])
    sent = payloads(d.observe(frame("tx", [1], ["P1"]), units={"P1": "W"}))
    assert sent["homeassistant/device/oemgw_pi1_tx/config"]["components"]["P1"]["device_class"] == "power"
    d.reclassify()
    assert d.observe(frame("tx", [1], ["P1"]), units={"P1": "W"}) == []   # the same: nothing


def test_home_assistant_coming_online_gets_everything_again():
    d = Discovery(config())
    first = d.observe(frame("a", [1], ["P1"])) + d.observe(frame("b", [1], ["P1"]))
    again = d.republish()
    assert sorted(again) == sorted(first)


def test_removing_a_node_publishes_empty_retained_configs():
    d = Discovery(config())
    d.observe(frame("a", [1], ["P1"]))
    assert d.remove("a") == [("homeassistant/device/oemgw_pi1_a/config", "")]
    assert d.nodes() == [] and validate_all(d.remove("a")) == []
    entity = Discovery(config(style="entity"))
    entity.observe(frame("a", [1, 2], ["P1", "P2"]))
    assert entity.remove("a") == [("homeassistant/sensor/oemgw_pi1_a_P1/config", ""),
                                  ("homeassistant/sensor/oemgw_pi1_a_P2/config", "")]


def test_retained_configs_are_recognised_as_this_gateways():
    d = Discovery(config())
    assert d.owner_of("homeassistant/device/oemgw_pi1_emonTx4_17/config") == "emonTx4_17"
    assert d.owner_of("homeassistant/device/oemgw_pi1/config") == ""
    assert d.owner_of("homeassistant/device/oemgw_pi10_x/config") is None
    assert d.owner_of("homeassistant/sensor/other/config") is None


def test_a_bad_gateway_id_or_style_is_refused():
    with pytest.raises(ValueError, match="gateway id"):
        DiscoveryConfig(gateway_id="my pi")
    with pytest.raises(ValueError, match="style"):
        DiscoveryConfig(gateway_id="pi", style="both")


# -- a site of 50 nodes with 10 inputs --------------------------------------------------------
UNITS = ["W", "W", "W", "Wh", "Wh", "Wh", "V", "C", "%", "p"]
NAMES = ["P1", "P2", "P3", "E1", "E2", "E3", "Vrms", "T1", "humidity", "pulse"]


@pytest.mark.parametrize("style, first, per_node_after", [("device", 51, 2), ("entity", 501, 12)])
def test_a_site_of_50_nodes_with_10_inputs(style, first, per_node_after):
    d = Discovery(config(style=style))
    units = dict(zip(NAMES, UNITS))
    first_sight = []
    for node in range(50):
        first_sight += d.observe(frame(f"node{node}", range(10), NAMES, 1000.0), units=units)
    assert len(first_sight) == first
    assert validate_all(first_sight) == []
    # the same nodes again, no radio: nothing to say
    assert [m for node in range(50) for m in d.observe(frame(f"node{node}", range(10), NAMES, 1010.0),
                                                       units=units)] == []
    # as radio nodes: the rssi sensor appears (device: the node's config again; entity: the one
    # new sensor), then each node's config once more when its interval is learnt
    later = []
    for t in range(1, 6):
        for node in range(50):
            later += d.observe(frame(f"node{node}", range(10), NAMES, 2000.0 + 10 * t, rssi=-70))
    assert validate_all(first_sight + later) == []
    assert len(later) == 50 * per_node_after
    assert len(d.republish()) == 1 + 50 * (1 if style == "device" else 11)


# -- the validator ----------------------------------------------------------------------------
GOOD = {"name": "E1", "unique_id": "u1", "state_topic": "emon/tx/E1", "device_class": "energy",
        "state_class": "total_increasing", "unit_of_measurement": "Wh",
        "device": {"identifiers": ["d1"], "name": "tx"}, "origin": {"name": "OEM Gateway"}}
TOPIC = "homeassistant/sensor/u1/config"


def problems(change=None, remove=(), topic=TOPIC):
    payload = dict(GOOD, **(change or {}))
    for key in remove:
        payload.pop(key)
    return validate(topic, json.dumps(payload))


def test_a_good_payload_passes_and_an_empty_one_deletes():
    assert problems() == []
    assert validate(TOPIC, "") == []


@pytest.mark.parametrize("change, remove, expected", [
    ({"state_class": "measurement"}, (), "state_class measurement is not allowed for device_class energy"),
    ({"unit_of_measurement": "W"}, (), "unit 'W' is not allowed for device_class energy"),
    ({"device_class": "power", "state_class": "measurement"}, (), "unit 'Wh' is not allowed for device_class power"),
    ({"device_class": "temperature", "unit_of_measurement": "C", "state_class": "measurement"}, (),
     "unit 'C' is not allowed for device_class temperature"),
    ({"device_class": "gas", "unit_of_measurement": "L"}, (), "unit 'L' is not allowed for device_class gas"),
    ({"device_class": "signal_strength", "unit_of_measurement": "dBm", "state_class": "total"}, (),
     "state_class total is not allowed"),
    ({"device_class": "watts"}, (), "'watts' is not a sensor device class"),
    ({"state_class": "increasing"}, (), "'increasing' is not a state class"),
    ({}, ("state_topic",), "'state_topic' is required"),
    ({}, ("unique_id",), "'unique_id' is required"),
    ({"state_topic": "emon/+/E1"}, (), "wildcard"),
    ({"entity_category": "config"}, (), "can only be 'diagnostic'"),
    ({"expire_after": 0}, (), "expire_after must be a positive"),
    ({"expire_after": "60"}, (), "expire_after must be a positive"),
    ({"availability_topic": "s", "availability": [{"topic": "s"}]}, (), "are exclusive"),
    ({"availability": [{"payload_available": "online"}]}, (), "needs a 'topic'"),
    ({"unit_of_measurment": "Wh"}, (), "'unit_of_measurment' is not a sensor option"),
    ({"device": {"name": "tx"}}, (), "needs 'identifiers' or 'connections'"),
    ({"device": {"identifiers": ["d1"], "modle": "x"}}, (), "'modle' is not a device option"),
    ({"origin": {"sw_version": "1"}}, (), "origin 'name' is required"),
    ({"uniq_id": "u2"}, (), "'uniq_id' and 'unique_id' both given"),
    ({"suggested_display_precision": -1}, (), "suggested_display_precision"),
])
def test_the_validator_catches(change, remove, expected):
    found = problems(change, remove)
    assert any(expected in p for p in found), found


def test_the_validator_reads_abbreviations():
    short = {"uniq_id": "u1", "stat_t": "emon/tx/E1", "dev_cla": "energy", "stat_cla": "measurement",
             "unit_of_meas": "Wh", "dev": {"ids": ["d1"], "mf": "OEM"}, "o": {"name": "x", "sw": "1"}}
    assert any("state_class measurement is not allowed" in p
               for p in validate(TOPIC, json.dumps(short)))
    short["stat_cla"] = "total_increasing"
    assert validate(TOPIC, json.dumps(short)) == []


@pytest.mark.parametrize("topic, expected", [
    ("homeassistant/sensor/u 1/config", "outside [a-zA-Z0-9_-]"),
    ("homeassistant/sensor/u1", "not <prefix>/<component>"),
    ("homeassistant/light/u1/config", "not published by this gateway"),
])
def test_the_validator_checks_the_topic(topic, expected):
    assert any(expected in p for p in validate(topic, json.dumps(GOOD)))


def test_device_discovery_needs_origin_platforms_and_unique_ids():
    topic = "homeassistant/device/d1/config"
    good = {"device": {"identifiers": ["d1"]}, "origin": {"name": "x"},
            "components": {"a": {"p": "sensor", "unique_id": "a", "state_topic": "t/a"}}}
    assert validate(topic, json.dumps(good)) == []
    no_origin = dict(good)
    del no_origin["origin"]
    assert any("'origin' is required" in p for p in validate(topic, json.dumps(no_origin)))
    bad = dict(good, components={"a": {"unique_id": "a", "state_topic": "t/a"},
                                 "b": {"p": "sensor", "state_topic": "t/b"}})
    found = validate(topic, json.dumps(bad))
    assert any("'platform' must be sensor" in p for p in found)
    assert any("every component needs a 'unique_id'" in p for p in found)
    shared = dict(good, state_topic="t/shared", components={"a": {"p": "sensor", "unique_id": "a"}})
    assert validate(topic, json.dumps(shared)) == []


def test_the_whole_set_has_unique_ids_and_known_via_devices():
    one = ("homeassistant/sensor/u1/config", json.dumps(GOOD))
    two = ("homeassistant/sensor/u2/config", json.dumps(dict(GOOD, device={"identifiers": ["d2"],
                                                                          "via_device": "gw"})))
    found = validate_all([one, two])
    assert any("unique_id 'u1' is also used" in p for p in found)
    assert any("via_device 'gw' is not a published device" in p for p in found)
