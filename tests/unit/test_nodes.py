"""Node decoding: struct codes, scales, names, message counters, and what a mismatch says."""

import logging
import re
import struct

import pytest
from hypothesis import given, strategies as st

from gateway.frame import Frame, RawFrame
from gateway.nodes import (SIZES, DecodeError, EncodeError, Layout, NodeDecoder, NodeSpec,
                           NodeTable, pack, scaled, unpack)
from tests.support.daemon import FIXTURES, shipped_config
from tests.support.configs import load, problems_of


def raw(node, payload, rssi=None):
    return RawFrame(node, bytes(payload), 1.0, rssi, "radio")


def text(node, *values, names=None):
    return Frame(node, tuple(values), 1.0, names, None, "serial")


def decoder(*specs):
    return NodeDecoder(NodeTable(specs))


# -- struct codes -----------------------------------------------------------------------------
@pytest.mark.parametrize("payload, values", [
    ([1, 0], (1,)), ([255, 255], (-1,)), ([0, 128], (-32768,)), ([255, 127], (32767,)),
    ([12, 0, 34, 1], (12, 290)),
])
def test_default_is_signed_16_bit_little_endian(payload, values):
    assert unpack(bytes(payload)) == values


def test_mixed_datacodes_and_datacode_zero():
    payload = struct.pack("<hHLbf", -5, 24012, 4000000000, -1, 19.5)
    assert unpack(payload, datacodes="hHLbf") == (-5, 24012, 4000000000, -1, 19.5)
    assert unpack(bytes([1, 2, 3]), datacode="0") == (1, 2, 3)


def test_float32_is_rounded_to_the_digits_it_holds_and_nan_is_refused():
    assert unpack(struct.pack("<f", 240.12), datacode="f") == (240.12,)
    with pytest.raises(DecodeError, match="value 2 is nan"):
        unpack(struct.pack("<ff", 1, float("nan")), datacode="f")


@pytest.mark.parametrize("payload, kwargs, message", [
    (22, {"datacodes": "hhhhhhhhhhhL"}, "datacodes need 26 bytes, got 22"),
    (5, {"datacode": "h"}, "datacode h needs a multiple of 2 bytes, got 5"),
    (6, {"datacode": "L"}, "datacode L needs a multiple of 4 bytes, got 6"),
])
def test_byte_count_mismatch_says_what_was_expected_and_what_came(payload, kwargs, message):
    with pytest.raises(DecodeError) as info:
        unpack(bytes(payload), **kwargs)
    assert str(info.value) == message


CODES = st.sampled_from(sorted(SIZES))


def value_for(code):
    if code == "f":
        return st.floats(width=32, allow_nan=False, allow_infinity=False)
    if code == "d":
        return st.floats(allow_nan=False, allow_infinity=False)
    bits = 8 * SIZES[code]
    return st.integers(0, 2 ** bits - 1) if code.isupper() else st.integers(-2 ** (bits - 1), 2 ** (bits - 1) - 1)


@given(st.lists(CODES.flatmap(lambda c: st.tuples(st.just(c), value_for(c))), min_size=1, max_size=12))
def test_decoding_what_was_packed_gives_the_values_back(pairs):
    codes = [c for c, _ in pairs]
    values = [v for _, v in pairs]
    expected = [float(f"{v:.7g}") if c == "f" else v for c, v in pairs]
    assert list(unpack(pack(values, datacodes=codes), datacodes=codes)) == expected


@given(st.binary(max_size=80), st.one_of(st.none(), st.lists(CODES, min_size=1, max_size=10)), CODES)
def test_arbitrary_bytes_decode_or_raise_decode_error(payload, codes, code):
    try:
        values = unpack(payload, datacode=code, datacodes=codes)
    except DecodeError:
        return
    assert len(values) == (len(codes) if codes else len(payload) // SIZES[code])


def test_pack_refuses_what_does_not_fit():
    with pytest.raises(EncodeError, match=r"value 2 \(70000\) does not fit datacode h \(-32768..32767\)"):
        pack([1, 70000])
    with pytest.raises(EncodeError, match="datacodes are for 2 values, got 1"):
        pack([1], datacodes="bb")


def test_scaling_keeps_decimals_exact_and_whole_numbers_integers():
    assert scaled(24012, 0.01) == 240.12
    assert scaled(195, 0.1) == 19.5
    assert scaled(200, 0.1) == 20 and isinstance(scaled(200, 0.1), int)
    assert scaled(7, 1.0) == 7 and isinstance(scaled(7, 1.0), int)
    assert repr(scaled(241.5, 0.1)) == "24.15"      # a decimal sent as text: 24.150000000000002 before
    assert repr(scaled(2.415, 10)) == "24.15" and scaled(2.5, 10) == 25 and isinstance(scaled(2.5, 10), int)


SCALES = ["0.01", "0.1", "0.001", "10", "100", "0.5", "2.5", "0.25", "1.1", "3", "1e-05", "0.0001"]


@given(st.integers(-10 ** 9, 10 ** 9), st.integers(0, 6), st.sampled_from(SCALES))
def test_a_scaled_value_is_the_exact_decimal_product(digits, places, scale_text):
    """Whatever the value (an integer from a radio, a decimal sent as text) and the scale, the
    scaled value is the decimal product, as the number a person would write: no float noise
    in the CSV, the web page or emoncms."""
    import decimal
    value_text = str(decimal.Decimal(digits).scaleb(-places))
    value = int(value_text) if places == 0 else float(value_text)
    exact = decimal.Decimal(value_text) * decimal.Decimal(scale_text)
    result = scaled(value, float(scale_text))
    assert float(result) == float(exact)   # the float nearest the product: printed as the product
    if exact == exact.to_integral_value() and abs(exact) < 2 ** 53:
        assert isinstance(result, int)


# -- the decoder ------------------------------------------------------------------------------
EMONTX = NodeSpec(10, "emontx", Layout(names=("power1", "power2", "vrms"), datacodes=("h", "h", "H"),
                                       scales=(1.0, 1.0, 0.01)))


def test_a_node_section_names_scales_and_renames():
    frame = decoder(EMONTX).decode(raw(10, struct.pack("<hhH", 100, -5, 24012), rssi=-60))
    assert frame.node == "emontx" and frame.values == (100, -5, 240.12)
    assert frame.named_values() == {"power1": 100, "power2": -5, "vrms": 240.12, "rssi": -60}


def test_nodes_without_a_section_keep_the_original_behaviour():
    d = decoder()
    assert d.decode(raw(5, [1, 0, 0, 128])).values == (1, -32768)
    assert d.decode(text(5, 230.5, -1)).values == (230.5, -1)
    assert d.decode(text(5, 1)).names is None


def test_fewer_names_than_values_number_the_rest(caplog):
    spec = NodeSpec(7, rx=Layout(names=("a", "b")))
    frame = decoder(spec).decode(text(7, 1, 2, 3, 4))
    assert frame.names == ("a", "b", "3", "4")
    assert "node 7: [nodes] has 2 names for 4 values" in caplog.text


def test_names_sent_on_the_line_win_over_the_config():
    spec = NodeSpec("emontx4", rx=Layout(names=("x", "y"), scales=(1.0, 0.1)))
    frame = decoder(spec).decode(text("emontx4", 5, 123, names=("MSG", "T1")))
    assert frame.names == ("MSG", "T1") and frame.values == (5, 12.3)


def test_text_frames_for_a_node_with_datacodes_are_bytes_or_explained():
    d = decoder(NodeSpec(21, rx=Layout(datacodes=("h",))))
    assert d.decode(text(21, 1, 1)).values == (257,)
    assert d.decode(text(21, 230.5)) is None
    assert d.snapshot()["21"]["dropped"] == 1


def test_whitening_is_undone_before_decoding():
    spec = NodeSpec(15, rx=Layout(datacode="h"), whitening=True)
    assert decoder(spec).decode(raw(15, [1 ^ 0x55, 0 ^ 0x55])).values == (1,)


def test_message_counter_drops_repeats_and_counts_gaps():
    d = decoder()
    frames = [d.decode(text("tx4", msg, 100, names=("MSG", "P1"))) for msg in (1, 2, 2, 5, 1)]
    assert [f is not None for f in frames] == [True, True, False, True, True]
    stats = d.snapshot()["tx4"]
    assert stats["duplicates"] == 1 and stats["missed"] == 2 and stats["last_msg"] == 1


def test_a_mismatch_is_logged_once_per_node_per_burst(caplog):
    d = decoder(EMONTX)
    caplog.set_level(logging.WARNING, "oemgateway.nodes")
    for _ in range(3):
        assert d.decode(raw(10, [1, 2, 3, 4])) is None
    d.decode(raw(11, [1]))
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == ["node 10: datacodes need 6 bytes, got 4 (frame dropped)",
                        "node 11: datacode h needs a multiple of 2 bytes, got 1: nodes without a "
                        "[nodes] section are read as signed 16-bit values; add [nodes] [[11]] with its "
                        "datacodes (frame dropped)"]
    caplog.clear()
    d.decode(raw(10, struct.pack("<hhH", 1, 2, 3)))   # good again: the burst is over
    d.decode(raw(10, [1]))
    assert [r.getMessage() for r in caplog.records] == [
        "... 2 more like that in the last 60 s (latest: node 10: datacodes need 6 bytes, got 4 (frame dropped))",
        "node 10: datacodes need 6 bytes, got 1 (frame dropped)"]


def test_encode_for_a_node_uses_its_tx_layout():
    spec = NodeSpec(20, tx=Layout(datacodes=("b", "h"), scales=(1.0, 0.1)))
    d = decoder(spec)
    assert d.encode(20, [3, 23.4]) == struct.pack("<bh", 3, 234)
    assert d.encode(21, [100, -2]) == struct.pack("<hh", 100, -2)


# -- the [nodes] section in the config --------------------------------------------------------
def test_emonhub_nodes_section_is_read(tmp_path):
    config = load(tmp_path, """
        [nodes]
        [[8]]
            nodename = emontx3
            [[[rx]]]
                names = power1, power2, vrms, pulse
                datacodes = h, h, h, L
                scales = 1, 1, 0.01, 1
                units = W, W, V, p
                whitening = 1
            [[[tx]]]
                names = hour, minute
                datacode = b
        [[emontx4]]
            scale = 0.1
        """)
    spec = config.nodes.get(8)
    assert spec.nodename == "emontx3" and spec.whitening
    assert spec.rx == Layout(("power1", "power2", "vrms", "pulse"), None, ("h", "h", "h", "L"), 1.0,
                             (1.0, 1.0, 0.01, 1.0), ("W", "W", "V", "p"))
    assert spec.tx.datacode == "b" and config.nodes.get("emontx4").rx.scale == 0.1
    assert [w.split(": ", 1)[1] for w in config.warnings] == [
        "no listeners: nothing will be read (add one under [listeners], e.g. [[socket]] with type = socket)",
        "no buffers: what is read is sent nowhere (add one under [buffers], e.g. [[file]] with type = file)"]
    assert config.masked()["nodes"]["8"]["datacodes"] == ["h", "h", "h", "L"]


def test_node_errors_name_the_file_section_and_key(tmp_path):
    problems = problems_of(tmp_path, """
        [nodes]
        [[10]]
            [[[rx]]]
                datacodes = h, z
        [[11]]
            datacode = hh
            names = a, a
        [[node 12]]
            scale = 2
        [[010]]
        """)
    text = "\n".join(problems)
    assert len(problems) == 4, text
    assert f"{tmp_path / 'gw.conf'}:5: [nodes] [[10]] [[[rx]]] datacodes = h, z" in text
    assert "expected a list of b B h H i I l L q Q f d (little-endian struct codes)" in text
    assert "gw.conf:7: [nodes] [[11]] datacode = 'hh'" in text and "gw.conf:8: [nodes] [[11]] names = a, a" in text
    assert "gw.conf:9: [nodes] [[node 12]]: a node section is named by the node id or name" in text


def test_node_warnings(tmp_path):
    config = load(tmp_path, """
        [nodes]
        [[10]]
            datacode = h
            datacodes = h, h
            names = a, b, c
            colour = red
        """)
    assert sorted(w.split(": ", 1)[1] for w in config.warnings if "[nodes]" in w) == [
        "[nodes] [[10]]: 'colour' is not a node setting and is ignored",
        "[nodes] [[10]]: 3 names for 2 datacodes: the last 1 are unused",
        "[nodes] [[10]]: both datacode and datacodes are set: datacodes is used"]


def test_listener_types_defaults_and_legacy_names(tmp_path):
    config = load(tmp_path, (FIXTURES / "legacy-rfm2pi.conf").read_text())
    legacy = config.listeners["RFM2Pi"]
    assert legacy.type_name == "rfm12pi"
    assert legacy.settings["com_baud"] == 9600 and legacy.settings["com_port"] == "/dev/ttyAMA0"
    # the 2013 names and codes, read as today's: sgroup is group, frequency 4 is 433 MHz
    assert legacy.settings["group"] == 210 and legacy.settings["frequency"] == "433"
    assert "sgroup" not in legacy.settings
    config = load(tmp_path, """
        [listeners]
        [[radio]]
        type = rfm2pi
        [[usb]]
        type = OemGatewaySerialListener
        """)
    assert config.listeners["radio"].settings["com_baud"] == 38400
    assert config.listeners["usb"].type_name == "serial"
    assert config.listeners["usb"].settings["com_baud"] == 9600


def test_listener_settings_that_disagree_are_errors(tmp_path):
    problems = problems_of(tmp_path, """
        [listeners]
        [[radio]]
        type = rfm2pi
        group = 210
        sgroup = 212
        com_port = ftp://x
        [[radio2]]
        type = rfm2pi
        frequency = 434
        [[usb]]
        type = serial
        nodename = my node
        """)
    text = "\n".join(problems)
    assert "[listeners] [[radio2]] frequency = '434'" in text
    assert "gw.conf:6: [listeners] [[radio]] sgroup = 212 and group = 210 disagree: sgroup is the " \
        "original name of group; keep one" in text
    assert "com_port = ftp://x: unknown URL type ftp://" in text
    assert "[listeners] [[usb]]: nodename = my node" in text


def test_shipped_examples_are_valid_when_uncommented(tmp_path):
    """Every commented [[section]] example in oemgateway.conf loads without a problem or warning."""
    lines, in_example = [], False
    for line in shipped_config().splitlines():
        in_example = bool(re.match(r"\s*# \[\[", line)) or (in_example and line.strip() != "")
        lines.append(re.sub(r"^(\s*)# ", r"\1", line, count=1) if in_example else line)
    config = load(tmp_path, "\n".join(lines))
    assert config.warnings == []
    assert {"usb", "radio"} <= set(config.listeners) and config.nodes.get(10).tx.datacodes == ("b", "b", "h")
    assert config.listeners["radio"].settings["frequency"] == "433"
