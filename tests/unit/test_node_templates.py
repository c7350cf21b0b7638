"""Built-in node templates: emonhub's available.conf, its matching rule, and decoding with them."""

import functools
import struct

import pytest
from configobj import ConfigObj

from gateway.frame import RawFrame
from gateway.node_templates import TEMPLATES, TemplateMatcher, by_name, match, templates_of_size
from gateway.nodes import SIZES, NodeDecoder, NodeTable
from tests.support.daemon import FIXTURES

# emonhub v2.7.19 conf/available.conf, verbatim (openenergymonitor/emonhub 6f00c99).
AVAILABLE = FIXTURES / "emonhub-available.conf"


@functools.lru_cache(maxsize=None)
def available():
    return ConfigObj(str(AVAILABLE), file_error=True)["available"]


def as_list(value):
    return value if isinstance(value, list) else [value]


# -- the data is emonhub's file ----------------------------------------------------------------
def test_the_templates_are_emonhubs_file_in_its_order():
    sections = available()
    assert [t.name for t in TEMPLATES] == list(sections)
    for template in TEMPLATES:
        rx = sections[template.name]["rx"]
        assert template.names == tuple(n.strip() for n in rx["names"]), template.name
        assert template.datacodes == tuple(c.strip() for c in rx["datacodes"]), template.name
        assert template.scales == tuple(float(s) for s in rx["scales"]), template.name
        assert template.units == tuple(u.strip() for u in rx["units"]), template.name
        assert template.whitening == (rx.get("whitening") == "1"), template.name
        # "nodeids = 27" (no comma) is one id, 27, as the file means it
        ids = as_list(sections[template.name]["nodeids"])
        assert template.nodeids == tuple(int(i) for i in ids if str(i).strip()), template.name


BYTES = {"emonpi": 24, "emonpiCM": 40, "emontxshield": 10, "emontx3_discreet": 26,
         "emontx3_3phase": 26, "emontx3_cm": 40, "emontx3_cm_rf69n": 40, "emonth1": 8,
         "emonth2": 12, "emonTx4": 52, "emonTx4_3phase": 50, "emon_DB_6CT_1phase": 46,
         "EmonTx4DB_rf1": 52, "EmonTx4DB_rf2": 52, "emonTx6_temp_pulse": 32, "emonTx6_3phase": 46}


def test_byte_counts_come_from_the_datacodes():
    assert {t.name: t.size for t in TEMPLATES} == BYTES
    for template in TEMPLATES:
        assert template.size == struct.calcsize("<" + "".join(template.datacodes))
        assert template.size == sum(SIZES[c] for c in template.datacodes)
    assert [t.name for t in templates_of_size(52)] == ["emonTx4", "EmonTx4DB_rf1", "EmonTx4DB_rf2"]


# -- every template decodes a packet of its size ------------------------------------------------
def packet(template, raws):
    return struct.pack("<" + "".join(template.datacodes), *raws)


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.name)
def test_each_template_decodes_a_packet_of_its_size_to_its_names_and_scales(template):
    node = template.nodeids[0]
    raws = [100 + 7 * i for i in range(len(template.datacodes))]
    payload = packet(template, raws)
    if template.whitening:
        payload = bytes(b ^ 0x55 for b in payload)
    frame = NodeDecoder(NodeTable([template.spec(node)])).decode(RawFrame(node, payload, 1.0, -60, "rf"))
    assert frame is not None
    assert frame.node == f"{template.name}_{node}"
    assert frame.names == template.names
    scales = list(template.scales) + [1.0] * (len(raws) - len(template.scales))
    assert frame.values == pytest.approx([raw * scale for raw, scale in zip(raws, scales)])
    assert template.spec(node).rx.units == template.units


def test_an_emontx4_packet_reads_as_emonhub_publishes_it():
    emontx4 = by_name("emonTx4")
    raws = [1523, 24012, 1234, -56, 0, 0, 0, 0, 5678, -12, 0, 0, 0, 0, 2150, 30000, 30000, 17]
    frame = NodeDecoder(NodeTable([emontx4.spec(17)])).decode(
        RawFrame(17, packet(emontx4, raws), 1.0, -42, "rf"))
    assert frame.named_values() == {
        "MSG": 1523, "Vrms": 240.12, "P1": 1234, "P2": -56, "P3": 0, "P4": 0, "P5": 0, "P6": 0,
        "E1": 5678, "E2": -12, "E3": 0, "E4": 0, "E5": 0, "E6": 0, "T1": 21.5, "T2": 300,
        "T3": 300, "pulse": 17, "rssi": -42}
    assert dict(zip(emontx4.names, emontx4.units))["T1"] == "C"


def test_templates_with_fewer_scales_than_values_scale_the_rest_by_one():
    db = by_name("emon_DB_6CT_1phase")          # 13 scales for 15 values, as in emonhub's file
    assert len(db.scales) == 13 and len(db.names) == 15
    raws = [9, 23456, 1, 2, 3, 4, 5, 6, 10, 20, 30, 40, 50, 60, 777]
    frame = NodeDecoder(NodeTable([db.spec(27)])).decode(RawFrame(27, packet(db, raws), 1.0, None, "rf"))
    assert frame.values[1] == 234.56 and frame.values[-2:] == (60, 777)


def test_the_repeated_t7_of_the_emontx6_template_ends_as_emonhubs_one_t7():
    tx6 = by_name("emonTx6_temp_pulse")
    raws = [5, 2100, 2200, 2300, 2400, 2500, 2600, 2700, 2800, 1, 2, 3]
    frame = NodeDecoder(NodeTable([tx6.spec(18)])).decode(RawFrame(18, packet(tx6, raws), 1.0, None, "rf"))
    named = frame.named_values()
    assert named["T7"] == 28 and "T8" not in named and named["pulse3"] == 3


def test_the_emontx3_cm_template_undoes_its_whitening():
    cm = by_name("emontx3_cm")
    raws = [77, 23000, 10, 20, 30, 40, 1, 2, 3, 4, 1900, 30000, 30000, 0]
    whitened = bytes(b ^ 0x55 for b in packet(cm, raws))
    frame = NodeDecoder(NodeTable([match(15, 40).spec])).decode(RawFrame(15, whitened, 1.0, None, "rf"))
    assert frame.node == "emontx3_cm_15" and frame.values[:2] == (77, 230) and frame.values[10] == 19


# -- the matching rule --------------------------------------------------------------------------
@pytest.mark.parametrize("node, size, name, guessed", [
    (17, 52, "emonTx4", False), (18, 52, "emonTx4", False), (28, 52, "EmonTx4DB_rf1", False),
    (29, 52, "EmonTx4DB_rf2", False), (30, 52, "emonTx4", True),
    (17, 46, "emonTx6_3phase", False), (27, 46, "emon_DB_6CT_1phase", False),
    (28, 46, "emon_DB_6CT_1phase", True), (19, 46, "emon_DB_6CT_1phase", True),
    (5, 40, "emonpiCM", False), (15, 40, "emontx3_cm", False), (16, 40, "emontx3_cm", False),
    (30, 40, "emonpiCM", True),
    (8, 26, "emontx3_discreet", False), (12, 26, "emontx3_3phase", False),
    (20, 26, "emontx3_discreet", True),
    (27, 50, "emonTx4_3phase", False), (3, 50, "emonTx4_3phase", False),
    (19, 8, "emonth1", False), (40, 8, "emonth1", False), (23, 12, "emonth2", False),
    (5, 24, "emonpi", False), (6, 10, "emontxshield", False), (18, 32, "emonTx6_temp_pulse", False),
])
def test_size_first_then_node_id_then_file_order(node, size, name, guessed):
    found = match(node, size)
    assert found.template.name == name
    assert found.guessed is guessed
    assert found.spec.nodename == f"{name}_{node}"


def test_a_guess_names_the_other_templates_that_fit():
    found = match(19, 46)
    assert [t.name for t in found.alternatives] == ["emonTx6_3phase"]
    assert "emonTx6_3phase also fits" in found.describe()
    assert "[nodes] [[19]]" in found.describe()
    assert match(17, 46).alternatives == () and "also fit" not in match(17, 46).describe()
    assert [t.name for t in match(30, 40).alternatives] == ["emontx3_cm", "emontx3_cm_rf69n"]


def test_sizes_no_template_has_and_named_nodes_are_not_matched():
    assert match(17, 51) is None and match(17, 0) is None
    assert match("emontx4", 52) is None and match(True, 52) is None


@functools.lru_cache(maxsize=None)
def emonhub_templates():
    """emonhub's autoconf view of the file: ids read with int() over the value (so the string
    "27" gives 2 and 7), byte counts summed from the datacodes."""
    return [(name, sum(SIZES[c.strip()] for c in section["rx"]["datacodes"]),
             list(map(int, section["nodeids"]))) for name, section in available().items()]


def emonhub_match(node, size):
    """emonhub's rule, from its description: the first size match listing the node, else the
    first size match."""
    fitting = [(name, ids) for name, length, ids in emonhub_templates() if length == size]
    for name, ids in fitting:
        if node in ids:
            return name
    return fitting[0][0] if fitting else None


def test_every_node_and_size_gets_the_template_emonhub_gives_it():
    ours = {(node, size): getattr(match(node, size), "template", None)
            for node in range(256) for size in range(67)}
    differences = [key for key, template in ours.items()
                   if (template.name if template else None) != emonhub_match(*key)]
    assert differences == []


# -- remembering matches ------------------------------------------------------------------------
def test_a_node_keeps_its_first_template_and_a_new_match_is_announced_once():
    announced = []
    matcher = TemplateMatcher(announce=announced.append)
    assert matcher.spec_for(17, 52).nodename == "emonTx4_17"
    assert matcher.spec_for(17, 52).nodename == "emonTx4_17"
    assert matcher.spec_for(17, 46).nodename == "emonTx4_17"   # not renamed by another size
    assert [m.template.name for m in announced] == ["emonTx4"]
    assert matcher.describe() == {"17": {"template": "emonTx4", "nodename": "emonTx4_17",
                                         "guessed": False}}
    matcher.forget([17])
    assert matcher.spec_for(17, 46).nodename == "emonTx6_3phase_17"


def test_a_packet_of_another_size_from_a_matched_node_is_dropped_by_the_decoder():
    matcher = TemplateMatcher()
    spec = matcher.spec_for(17, 52)
    decoder = NodeDecoder(NodeTable([spec]))
    assert decoder.decode(RawFrame(17, bytes(46), 1.0, None, "rf")) is None
    assert decoder.snapshot()["17"]["dropped"] == 1


def test_unmatched_sizes_are_not_looked_up_again_and_named_nodes_never():
    matcher = TemplateMatcher()
    assert matcher.spec_for(40, 7) is None and matcher.spec_for(40, 7) is None
    assert matcher.spec_for(40, 8).nodename == "emonth1_40"
    assert matcher.spec_for("emonpi2", 52) is None
    assert matcher.matches().keys() == {40}


def test_by_name_names_the_choices_when_unknown():
    assert by_name("emonth2").size == 12
    with pytest.raises(KeyError, match="emonTx4, emonTx4_3phase"):
        by_name("emontx4")
