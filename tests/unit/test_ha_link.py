"""What the MQTT buffer tells Home Assistant beyond the discovery builder: units from [nodes],
templates and device presets; latest-only states after a backlog; removals; site tags."""

import json

import pytest

from protocols.ha_discovery import DiscoveryConfig, classify, validate_all
from buffers.ha_link import HomeAssistantLink, configured_nodes, input_units
from buffers.influxdb import point
from gateway.frame import Frame
from gateway.nodes import NodeTable
from gateway.units import UnitBook
from protocols import mbus_meters, modbus_meters

TABLE, _, _ = NodeTable.from_config({
    "10": {"nodename": "emontx", "names": ["power1", "E1"], "units": ["W", "Wh"]},
    "emonTx4_17": {"names": ["P1", "E1"]},
    "11": {"names": ["a"], "units": ["V"]},
})


def frame(node, values, names, t=1000.0):
    return Frame(node, tuple(values), t, tuple(names), None, "test")


def test_units_come_from_nodes_templates_and_what_a_listener_declares():
    book = UnitBook()
    book.declare("meter", {"EI": "kWh", "FR": "Hz", "PF": ""})
    assert input_units(TABLE, "emontx") == {"power1": "W", "E1": "Wh"}   # the frame carries the nodename
    assert input_units(TABLE, 11) == {"a": "V"}
    assert input_units(TABLE, "emonTx4_17")["P1"] == "W"                 # the emonTx4 template
    assert input_units(TABLE, "emonTx4_17")["T1"] == "C"
    assert input_units(TABLE, "meter", book) == {"EI": "kWh", "FR": "Hz"}
    assert input_units(TABLE, "nobody", book) == {}
    assert configured_nodes(TABLE) == {"emontx", "emonTx4_17", 11}


@pytest.mark.parametrize("preset", [*modbus_meters.PRESETS.values()], ids=lambda p: p.name)
def test_every_modbus_preset_unit_gives_a_valid_class_or_none(preset):
    for register in preset.registers:
        cls = classify(register.name, register.unit)
        assert cls.device_class is None or cls.unit == classify("x", cls.unit).unit
    book = UnitBook()
    book.declare("meter", {r.name: r.unit for r in preset.registers})
    link = HomeAssistantLink(DiscoveryConfig("pi1"), lambda node: input_units(None, node, book))
    names = [r.name for r in preset.registers]
    assert validate_all((t, p) for t, p, _ in link.before(frame("meter", range(len(names)), names))) == []


def _picks(preset):
    return [pick for step in preset.steps for pick in step.picks or ()]


# (the "standard" preset picks nothing: it reads every record, each with its telegram's unit)
@pytest.mark.parametrize("preset", [p for p in mbus_meters.PRESETS.values() if _picks(p)],
                         ids=lambda p: p.name)
def test_every_mbus_preset_unit_gives_a_valid_class_or_none(preset):
    picks = _picks(preset)
    link = HomeAssistantLink(DiscoveryConfig("pi1"), lambda node: {p.name: p.unit for p in picks})
    names = [p.name for p in picks]
    messages = link.before(frame("heat", range(len(names)), names))
    assert validate_all((t, p) for t, p, _ in messages) == []
    components = json.loads(messages[-1][1])["components"]
    assert components["energy"]["device_class"] == "energy"


def test_a_backlog_gives_home_assistant_the_latest_value_of_each_input_once():
    link = HomeAssistantLink(DiscoveryConfig("pi1", base_topic="s1/emon"), lambda node: {})
    first = [frame("tx", [i, 100 + i], ["P", "E"], 1000.0 + i) for i in range(3)]
    assert link.states(first, caught_up=False) == []                       # more queued behind
    later = [frame("tx", [7], ["P"], 2000.0), frame("th", [20.5], ["T"], 2000.0)]
    assert link.states(later, caught_up=True) == [("s1/emon/tx/E", "102", True), ("s1/emon/tx/P", "7", True),
                                                  ("s1/emon/th/T", "20.5", True)]
    assert link.held_back == 5            # P 0, 1, 2 and E 100, 101: superseded, never sent
    assert link.states([frame("tx", [8], ["P"])], caught_up=True) == [("s1/emon/tx/P", "8", True)]
    again = link.everything()             # Home Assistant restarted: configs (none seen) and states
    assert ("s1/emon/tx/P", "8", True) in again and ("s1/emon/th/T", "20.5", True) in again


def test_removing_a_node_sends_empty_retained_configs_and_forgets_its_states():
    link = HomeAssistantLink(DiscoveryConfig("pi1"), lambda node: {})
    link.before(frame("tx", [1], ["P"]))
    link.states([frame("tx", [1], ["P"])], caught_up=True)
    assert link.removed(["tx"]) == [("homeassistant/device/oemgw_pi1_tx/config", "", True)]
    assert not any(topic.startswith("emon/tx") for topic, _, _ in link.everything())


def test_influxdb_points_carry_the_site_as_a_tag():
    reading = Frame("emontx", (230,), 1712345678.0, ("power1",), None, "t")
    assert point("emon", reading, "site-a") == "emon,node=emontx,site=site-a power1=230 1712345678"
    assert point("emon", reading) == "emon,node=emontx power1=230 1712345678"


def test_the_manifest_an_earlier_run_left_says_which_nodes_left_the_config():
    link = HomeAssistantLink(DiscoveryConfig("pi1"), lambda node: {})
    assert link.manifest(["emontx", 11]) == ("emon/gateway/ha_nodes", '["11", "emontx"]', True)
    messages, gone = link.reconcile('["11", "emontx", "meter"]', ["emontx", 11])
    assert gone == ["meter"]
    assert messages == [("homeassistant/device/oemgw_pi1_meter/config", "", True),
                        ("emon/gateway/ha_nodes", '["11", "emontx"]', True)]
    assert link.reconcile('["11", "emontx"]', ["emontx", 11]) == ([], [])   # its own, coming back
    for garbage in ("", "not json", '{"a": 1}'):                             # none, or not ours
        assert link.reconcile(garbage, ["emontx"]) == ([("emon/gateway/ha_nodes", '["emontx"]', True)], [])
