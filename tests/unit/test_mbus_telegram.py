"""M-Bus frames and telegrams: the frames a master sends, finding frames in a noisy byte stream,
and decoding every public test telegram as libmbus's normalized decode says."""

import math
import re
import xml.etree.ElementTree as ET
from datetime import date, datetime, time
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from protocols import mbus_telegram as mbus
from protocols.mbus_telegram import Ack, FrameError, FrameParser, LongFrame, ShortFrame
from tests.support.mbus_meter import load_hex

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mbus"
TELEGRAMS = sorted(p.stem for p in FIXTURES.glob("*.hex") if (FIXTURES / f"{p.stem}.norm.xml").exists())
FIXED = ("manual_frame2", "sen_pollusonic_2")           # the old fixed data structure, CI 0x73
VARIABLE = [name for name in TELEGRAMS if name not in FIXED]


def cs(data) -> int:
    return sum(data) % 256


def frame_of(name: str) -> LongFrame:
    items = FrameParser().feed(load_hex(FIXTURES / f"{name}.hex"))
    assert len(items) == 1 and isinstance(items[0], LongFrame), items
    return items[0]


# -- frames the master sends ----------------------------------------------------------------------
@pytest.mark.parametrize("built, expected", [
    (mbus.snd_nke(1), [0x10, 0x40, 0x01, 0x41, 0x16]),
    (mbus.req_ud2(1, fcb=False), [0x10, 0x5B, 0x01, 0x5C, 0x16]),          # emonhub's request
    (mbus.req_ud2(254, fcb=True), [0x10, 0x7B, 0xFE, (0x7B + 0xFE) % 256, 0x16]),
    (mbus.application_reset(5), [0x68, 3, 3, 0x68, 0x53, 5, 0x50, cs([0x53, 5, 0x50]), 0x16]),
    (mbus.application_reset(5, subcode=0x10), [0x68, 4, 4, 0x68, 0x53, 5, 0x50, 0x10, cs([0x53, 5, 0x50, 0x10]), 0x16]),
    (mbus.select_data(1, bytes((0x01, 0xFF, 0x08, 3))),                     # emonhub's Sontex page select
     [0x68, 7, 7, 0x68, 0x53, 1, 0x51, 0x01, 0xFF, 0x08, 3, cs([0x53, 1, 0x51, 1, 0xFF, 8, 3]), 0x16]),
    (mbus.set_primary_address(1, 100), [0x68, 6, 6, 0x68, 0x53, 1, 0x51, 0x01, 0x7A, 100,
                                         cs([0x53, 1, 0x51, 1, 0x7A, 100]), 0x16]),
    (mbus.set_baud_rate(1, 4800), [0x68, 3, 3, 0x68, 0x53, 1, 0xBC, cs([0x53, 1, 0xBC]), 0x16]),
    (mbus.select_secondary("12345678"), [0x68, 0x0B, 0x0B, 0x68, 0x73, 0xFD, 0x52, 0x78, 0x56, 0x34, 0x12,
                                         0xFF, 0xFF, 0xFF, 0xFF,
                                         cs([0x73, 0xFD, 0x52, 0x78, 0x56, 0x34, 0x12, 0xFF, 0xFF, 0xFF, 0xFF]), 0x16]),
])
def test_frames_a_master_sends(built, expected):
    assert list(built) == expected


def test_secondary_select_with_wildcards_manufacturer_version_medium():
    frame = mbus.select_secondary("0685**17", manufacturer="KAM", version=8, medium=4)
    assert frame[7:15] == bytes((0x17, 0xFF, 0x85, 0x06, 0x2D, 0x2C, 0x08, 0x04))
    assert mbus.decode_manufacturer(mbus.encode_manufacturer("KAM")) == "KAM"


@pytest.mark.parametrize("call", [
    lambda: mbus.req_ud2(256, True), lambda: mbus.snd_nke(-1), lambda: mbus.set_baud_rate(1, 1234),
    lambda: mbus.set_primary_address(1, 251), lambda: mbus.select_secondary("1234567"),
    lambda: mbus.select_secondary("1234567X"), lambda: mbus.long_frame(0x53, 1, 0x51, bytes(253)),
    lambda: mbus.encode_manufacturer("K4M"),
])
def test_frame_builders_refuse_what_is_not_a_frame(call):
    with pytest.raises(ValueError):
        call()


def test_every_built_frame_parses_back():
    frames = [mbus.snd_nke(3), mbus.req_ud2(3, True), mbus.select_data(3, b"\x01\xff\x08\x01"),
              mbus.long_frame(0x08, 3, 0x72, bytes(range(252)))]
    items = FrameParser().feed(bytes((mbus.ACK,)) + b"".join(frames))
    assert items == [Ack(), ShortFrame(0x40, 3), ShortFrame(0x7B, 3), LongFrame(0x53, 3, 0x51, b"\x01\xff\x08\x01"),
                     LongFrame(0x08, 3, 0x72, bytes(range(252)))]


def test_reply_timeouts_follow_the_baud_rate():
    assert mbus.reply_timeout(2400) == pytest.approx(2.08, abs=0.01)
    assert mbus.reply_timeout(2400, data=False) == pytest.approx(0.29, abs=0.01)
    assert mbus.reply_timeout(9600) < mbus.reply_timeout(2400) < mbus.reply_timeout(300)


# -- finding frames in a byte stream ----------------------------------------------------------------
@pytest.mark.parametrize("name", TELEGRAMS[::7])
def test_a_frame_split_anywhere_is_found_once(name):
    raw = load_hex(FIXTURES / f"{name}.hex")
    for cut in range(1, len(raw)):
        parser = FrameParser()
        assert parser.feed(raw[:cut]) == []
        assert parser.pending == (len(raw) - cut if cut >= 4 else 4 - cut)    # the header first
        assert parser.feed(raw[cut:]) == [frame_of(name)]


def test_frames_and_acks_among_garbage():
    kamstrup = load_hex(FIXTURES / "kamstrup_multical_601.hex")
    stream = b"\x00\xff\x42" + kamstrup + b"\x7f" + bytes((mbus.ACK,)) + b"\x01\x02" + kamstrup + b"\xaa"
    parser = FrameParser()
    items = parser.feed(stream)
    assert items == [frame_of("kamstrup_multical_601"), Ack(), frame_of("kamstrup_multical_601")]
    assert parser.counts["garbage_bytes"] == 7 and parser.counts["frames"] == 2


def test_bad_checksum_is_an_error_counted_and_the_next_frame_still_found():
    good = load_hex(FIXTURES / "landis+gyr_ultraheat_t230.hex")
    bad = bytearray(good)
    bad[40] ^= 0x01                                   # one bit flipped on the line
    parser = FrameParser()
    items = parser.feed(bytes(bad) + good)
    assert isinstance(items[0], FrameError) and items[0].kind == "checksum"
    assert "checksum" in str(items[0]) and "expected" in str(items[0])
    assert items[1:] == [frame_of("landis+gyr_ultraheat_t230")]
    assert parser.counts["checksum"] == 1 and parser.counts["frames"] == 1
    short = FrameParser()
    assert short.feed(b"\x10\x5b\x01\x00\x16")[0].kind == "checksum"


def test_checksums_can_be_ignored_for_a_meter_that_gets_them_wrong_but_are_still_counted():
    bad = bytearray(load_hex(FIXTURES / "kamstrup_multical_601.hex"))
    bad[-2] ^= 0xFF                                   # the checksum byte itself is wrong
    parser = FrameParser(check_checksum=False)
    assert parser.feed(bytes(bad)) == [frame_of("kamstrup_multical_601")]
    assert parser.counts["checksum"] == 1 and parser.counts["frames"] == 1


def test_an_adapters_echo_of_the_request_is_told_from_the_answer():
    items = FrameParser().feed(mbus.req_ud2(1, True) + load_hex(FIXTURES / "kamstrup_multical_601.hex"))
    assert [item.from_master for item in items] == [True, False]
    assert FrameParser().feed(mbus.select_data(1, b"\x01\x7a\x05"))[0].from_master


def test_length_bytes_that_differ_and_a_missing_stop_byte():
    kamstrup = load_hex(FIXTURES / "kamstrup_multical_601.hex")
    wrong_l = bytearray(kamstrup)
    wrong_l[2] -= 1
    parser = FrameParser()
    items = parser.feed(bytes(wrong_l) + kamstrup)
    assert items[0].kind == "length" and "differ" in str(items[0])
    assert items[-1] == frame_of("kamstrup_multical_601")        # resynchronised on the next one
    no_stop = bytearray(kamstrup)
    no_stop[-1] = 0x17
    parser = FrameParser()
    items = parser.feed(bytes(no_stop) + kamstrup)
    assert items[0].kind == "stop" and items[-1] == frame_of("kamstrup_multical_601")
    assert parser.counts["stop"] == 1
    assert FrameParser().feed(b"\x68\x02\x02\x68\x53\x01\x53\x16")[0].kind == "length"   # L < 3


def test_a_truncated_answer_is_reported_when_it_ends():
    kamstrup = load_hex(FIXTURES / "kamstrup_multical_601.hex")
    parser = FrameParser()
    assert parser.feed(kamstrup[:100]) == []
    assert parser.pending == len(kamstrup) - 100
    ended = parser.end()
    assert len(ended) == 1 and ended[0].kind == "truncated" and "153 bytes before" in str(ended[0])
    assert parser.buffered == 0 and parser.counts["truncated"] == 1


def test_a_fake_header_in_garbage_does_not_hide_the_frame_behind_it():
    sontex = load_hex(FIXTURES / "sontex_supercal_531_telegram1.hex")
    parser = FrameParser()
    items = parser.feed(b"\x68\xf0\xf0\x68" + sontex)     # looks like a 246-byte frame's start
    assert items == [] and parser.pending > 0
    assert frame_of("sontex_supercal_531_telegram1") in parser.end()


def test_reset_forgets_a_frame_in_progress():
    parser = FrameParser()
    parser.feed(b"\x68\x10\x10\x68\x08")
    parser.reset()
    assert parser.buffered == 0 and parser.pending == 0 and parser.counts["truncated"] == 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=12))
def test_random_bytes_never_raise_and_the_buffer_stays_bounded(chunks):
    parser = FrameParser()
    for chunk in chunks:
        for item in parser.feed(chunk):
            assert isinstance(item, (Ack, ShortFrame, LongFrame, FrameError))
        assert parser.buffered <= mbus.MAX_FRAME
        assert (parser.buffered == 0) == (parser.pending == 0)     # held bytes are always awaited
    parser.end()
    assert parser.buffered == 0


_NOT_A_START = st.binary(max_size=200).map(lambda b: bytes(x for x in b if x not in (0x10, 0x68, mbus.ACK)))


@settings(max_examples=200, deadline=None)
@given(_NOT_A_START, _NOT_A_START, st.sampled_from(TELEGRAMS), st.integers(1, 40))
def test_a_frame_in_random_garbage_is_always_found(before, after, name, chunk):
    stream = before + load_hex(FIXTURES / f"{name}.hex") + after
    parser = FrameParser()
    items = []
    for start in range(0, len(stream), chunk):
        items += parser.feed(stream[start:start + chunk])
    items += parser.end()
    assert items == [frame_of(name)]


# -- telegrams against libmbus's normalized decode --------------------------------------------------
LIBMBUS_QUANTITY = {
    "Energy": "energy", "Volume": "volume", "Mass": "mass", "On time": "on_time", "Operating time": "operating_time",
    "Power": "power", "Volume flow": "flow", "Mass flow": "mass_flow", "Flow temperature": "flow_temp",
    "Return temperature": "return_temp", "Temperature difference": "delta_temp",
    "External temperature": "external_temp", "Pressure": "pressure", "Time point (date)": "date",
    "Time point (date & time)": "datetime", "H.C.A.": "hca_units", "Averaging Duration": "averaging_duration",
    "Actuality Duration": "actuality_duration", "Fabrication No": "fabrication_no",
    "(Enhanced) Identification": "enhanced_id", "Bus Address": "bus_address",
    "Manufacturer specific": "manufacturer_specific", "Voltage": "voltage", "Current": "current",
    "Error flags": "error_flags", "Digital Input": "digital_input", "Digital Output": "digital_output",
    "Dimensionless": "dimensionless", "Software version": "software_version", "Firmware version": "firmware_version",
    "Customer location": "customer_location", "Medium": "medium", "Model / Version": "model_version",
    "Parameter set identification": "parameter_set_id", "Reset counter": "reset_counter",
    "Special supplier information": "special_supplier_info", "Reserved": "unknown"}
# libmbus unit -> (our unit, factor from libmbus's value to ours)
LIBMBUS_UNIT = {"Wh": ("Wh", 1), "J": ("Wh", 1 / 3600), "m^3": ("m³", 1), "m^3/h": ("m³/h", 1),
                "m^3/min": ("m³/h", 60), "m^3/s": ("m³/h", 3600), "W": ("W", 1), "J/h": ("W", 1 / 3600),
                "°C": ("°C", 1), "K": ("K", 1), "s": ("s", 1), "V": ("V", 1), "A": ("A", 1), "kg": ("kg", 1),
                "bar": ("bar", 1), "": ("", 1), "-": ("", 1), "Units for H.C.A.": ("", 1), "Reserved": ("", 1)}
LIBMBUS_FUNCTION = {"Instantaneous value": "instantaneous", "Maximum value": "max", "Minimum value": "min",
                    "Value during error state": "error", "Manufacturer specific": "manufacturer_specific",
                    "More records follow": "more_records_follow"}

# Where our decode differs from libmbus's on purpose, by (telegram, record index): why.
NO_DATE = "all-zero date: libmbus prints 2000-00-00, we give no value and say the meter sent no date"
NOT_BCD = "hex digits in a BCD field (a meter's error filler): libmbus computes a number, we report an error"
DIFFERENCES = {
    ("ACW_Itron-BM-plus-m", 2): NO_DATE, ("itron_bm_+m", 2): NO_DATE,
    ("siemens_water", 3): NO_DATE, ("siemens_wfh21", 3): NO_DATE,
    ("REL-Relay-Padpuls2", 1): "the time's invalid bit is set: libmbus prints 1900-01-00, we give no value",
    ("ELS_Elster-F96-Plus", 4): NOT_BCD, ("ELS_Elster-F96-Plus", 5): NOT_BCD,
    ("abb_f95", 2): NOT_BCD, ("abb_f95", 3): NOT_BCD,
    ("landis+gyr_ultraheat_t230", 19): "VIFE 0x6F makes the value the date of the maximum (all zero here); "
                                       "libmbus ignores the VIFE and prints the number",
    ("landis+gyr_ultraheat_t230", 20): "as record 19",
    ("landis+gyr_ultraheat_t230", 21): "VIFE 0x6F: the date of the maximum flow temperature, 2011-08-26 20:50; "
                                       "libmbus prints the date's bytes as 41065374.6 °C",
    ("landis+gyr_ultraheat_t230", 22): "as record 21: 2011-08-09 11:43",
    ("sen_pollutherm", 2): "VIF 0x7B without its extension byte: libmbus leaves it empty, we keep the number",
    ("SEN_Pollustat", 12): "VIFE 0x50: the duration of the first lower-limit exceedance of the flow, 11582321 s; "
                           "libmbus ignores the VIFE and prints it as a flow of 11582321 m³/h",
    ("SEN_Pollustat", 13): "VIFE 0x58: as record 12 for the upper limit, 756 s",
}


def libmbus_records(name: str):
    text = (FIXTURES / f"{name}.norm.xml").read_bytes().decode("utf-8")      # declared ISO-8859-1, is UTF-8
    return ET.fromstring(re.sub(r"<\?xml[^>]*\?>", "", text)).findall("DataRecord")


def compare(record: mbus.Record, expected: ET.Element) -> list:
    """The ways ``record`` differs from libmbus's normalized ``DataRecord``."""
    problems = []
    text = (expected.findtext("Value") or "").strip()
    unit = expected.findtext("Unit") or ""
    quantity = expected.findtext("Quantity")
    function = LIBMBUS_FUNCTION.get(expected.findtext("Function"), record.function)
    if record.function != function:
        problems.append(f"function {record.function} != {function}")
    for tag, ours in (("StorageNumber", record.storage), ("Tariff", record.tariff), ("Device", record.subunit)):
        if expected.findtext(tag) is not None and int(expected.findtext(tag)) != ours:
            problems.append(f"{tag} {ours} != {expected.findtext(tag)}")
    if quantity in LIBMBUS_QUANTITY and LIBMBUS_QUANTITY[quantity] != record.quantity:
        problems.append(f"quantity {record.quantity} != {quantity}")
    if unit == "-" and quantity not in LIBMBUS_QUANTITY:          # a plain-text VIF: its text is the unit
        expected_unit, factor = quantity, 1
    else:
        expected_unit, factor = LIBMBUS_UNIT[unit]
    if record.unit != expected_unit:
        problems.append(f"unit {record.unit!r} != {expected_unit!r}")
    value = record.value
    if isinstance(value, (date, time)):
        if value.isoformat() != text.rstrip("Z"):
            problems.append(f"{value.isoformat()} != {text}")
    elif isinstance(value, bytes):
        if value.hex(" ").upper() != text:
            problems.append(f"{value.hex(' ')} != {text}")
    elif isinstance(value, str):
        if value != text:
            problems.append(f"{value!r} != {text!r}")
    elif value is None:
        if text:
            problems.append(f"no value ({record.error}) != {text}")
    elif not text:
        problems.append(f"{value!r} != no value")
    elif not math.isclose(value, float(text) * factor, rel_tol=1e-9, abs_tol=1e-6):
        problems.append(f"{value!r} != {text} × {factor}")
    return problems


@pytest.mark.parametrize("name", VARIABLE)
def test_every_public_telegram_decodes_as_libmbus_normalizes_it(name):
    telegram = mbus.decode(frame_of(name))
    expected = libmbus_records(name)
    assert len(telegram.records) == len(expected)
    problems = {}
    for record, element in zip(telegram.records, expected):
        found = compare(record, element)
        if (name, record.index) in DIFFERENCES:
            assert found, f"record {record.index} now agrees with libmbus: drop it from DIFFERENCES"
        elif found:
            problems[record.index] = found
    assert problems == {}
    names = [r.name for r in telegram.records]
    assert len(set(names)) == len(names)


def test_all_telegrams_and_records_are_checked():
    decoded = [mbus.decode(frame_of(n)) for n in TELEGRAMS]
    assert len(decoded) == 76 and sum(len(t.records) for t in decoded) == 942


def test_kamstrup_multical_601_header_records_and_names():
    telegram = mbus.decode(frame_of("kamstrup_multical_601"))
    assert (telegram.id, telegram.manufacturer, telegram.version, telegram.medium_name, telegram.access_no) == \
        (6855817, "KAM", 8, "heat (outlet)", 4)
    assert telegram.describe() == "KAM meter 06855817, version 8, heat (outlet)"
    by_name = {r.name: r for r in telegram.records}
    assert by_name["energy"].value == 37351000 and by_name["energy"].unit == "Wh"
    assert by_name["volume"].value == 561.08 and by_name["volume"].unit == "m³"
    assert by_name["on_time"].value == 985 * 3600 and by_name["on_time"].unit == "s"
    assert (by_name["flow_temp"].value, by_name["return_temp"].value, by_name["delta_temp"].value) == (101.69, 46.16, 55.53)
    assert (by_name["power"].value, by_name["power_max"].value) == (34700, 44800)
    assert (by_name["flow"].value, by_name["flow"].unit) == (0.543, "m³/h")
    assert by_name["energy_tariff1"].tariff == 1 and by_name["volume_sub2"].subunit == 2
    assert by_name["energy_storage1"].value == 33361000 and by_name["energy_storage1"].storage == 1
    assert by_name["datetime"].value == datetime(2011, 1, 5, 15, 26)
    assert by_name["date_storage1"].value == date(2010, 12, 31)
    assert by_name["manufacturer_data"].kind == mbus.RAW and len(by_name["manufacturer_data"].value) == 57
    assert not telegram.more_follows and telegram.status_flags == ()


def test_energy_in_joules_comes_in_wh_and_more_records_follow():
    telegram = mbus.decode(frame_of("sontex_supercal_531_telegram1"))
    energy = telegram.records[0]
    assert (energy.quantity, energy.unit, energy.vif) == ("energy", "Wh", b"\x0e")      # VIF 0x0E: MJ
    assert telegram.more_follows and telegram.records[-1].function == "more_records_follow"
    assert telegram.status == 0x30 and telegram.status_flags == ("temporary error",)


def test_signed_values_bcd_sign_and_float_records():
    t230 = mbus.decode(frame_of("landis+gyr_ultraheat_t230"))
    assert next(r for r in t230.records if r.name == "delta_temp").value == -0.2         # BCD with F sign nibble
    edc = mbus.decode(frame_of("EDC"))
    assert next(r for r in edc.records if r.name == "flow_temp").value == pytest.approx(21.536703, abs=1e-6)
    assert [r.name for r in edc.records[:2]] == ["energy_forward", "energy_backward"]   # VIFE 0x3B / 0x3C


def test_plain_text_units_and_correction_factors():
    elvaco = mbus.decode(frame_of("ELV-Elvaco-CMa10"))
    humidity = elvaco.records[1]
    assert (humidity.name, humidity.unit, humidity.value) == ("RH", "%RH", 54.1)    # VIFE 0x74: × 10^-2
    assert elvaco.records[2].name == "RH_min" and elvaco.records[3].name == "RH_max"


def test_fixed_data_structure():
    pollusonic = mbus.decode(frame_of("sen_pollusonic_2"))
    assert pollusonic.id == 90919293 and pollusonic.medium_name == "heat (outlet)"
    assert [(r.name, r.value, r.unit) for r in pollusonic.records] == [("energy", 6531000, "Wh"), ("volume", 0.069, "m³")]
    manual = mbus.decode(frame_of("manual_frame2"))
    assert manual.medium_name == "water"
    assert [(r.name, r.value) for r in manual.records] == [("volume", 0.001), ("volume_storage1", 0.135)]


@pytest.mark.parametrize("name, code, text", [
    ("application_busy", 8, "application busy"), ("buffer_too_long", 2, "buffer too long"),
    ("error", 0, "unspecified error"), ("unspecified_error", 0, "unspecified error"),
    ("premature_end_of_record", 4, "premature end of record"), ("too_many_difes", 5, "more than 10 DIFEs"),
    ("too_many_vifes", 6, "more than 10 VIFEs"), ("too_many_readouts", 9, "too many readouts"),
    ("too_many_records", 3, "too many records"), ("unimplemented_ci", 1, "unimplemented CI field"),
])
def test_application_errors(name, code, text):
    frame = FrameParser().feed(load_hex(FIXTURES / "error" / f"{name}.hex"))[0]
    with pytest.raises(mbus.ApplicationError) as caught:
        mbus.decode(frame)
    assert caught.value.code == code and text in str(caught.value)


@pytest.mark.parametrize("name, message", [
    ("premature_end_of_data1", "record 3 (byte 13 of the data): the telegram ends inside the data"),
    ("premature_end_of_data2", "ends inside the data (2 of 3 bytes)"),
    ("premature_end_of_dif1", "ends inside the DIFE"), ("premature_end_of_dif2", "ends inside the DIFE"),
    ("premature_end_of_vif1", "ends inside the VIF"), ("premature_end_of_var_vif1", "ends inside the plain-text VIF"),
    ("too_long_var_vif", "ends inside the plain-text VIF (6 of 243 bytes)"), ("too_many_dife", "more than 10 DIFEs"),
    ("too_many_vife", "more than 10 VIFEs"), ("too_short_header", "shorter than its 12-byte header"),
])
def test_broken_record_structures_are_clear_errors_with_what_was_decoded(name, message):
    frame = FrameParser().feed(load_hex(FIXTURES / "error" / f"{name}.hex"))[0]
    with pytest.raises(mbus.TelegramError) as caught:
        mbus.decode(frame)
    assert message in str(caught.value)
    if "record 3" in str(caught.value):
        assert [r.name for r in caught.value.records] == ["volume", "flow_max_storage5"]


@pytest.mark.parametrize("records, problem", [
    (b"\x3f", "DIF 0x3F is reserved"),
    (b"\x04\x7b", "ends inside the data"),
    (b"\x04\xfd", "ends inside the VIFE"),
    (b"\x0d\x13\xf8", "LVAR 0xF8 is reserved"),
])
def test_other_broken_records(records, problem):
    with pytest.raises(mbus.TelegramError, match=problem):
        mbus.decode(LongFrame(0x08, 1, 0x72, bytes(12) + records))


def test_other_ci_fields():
    with pytest.raises(mbus.TelegramError, match="CI 0x51 is not a meter's data answer"):
        mbus.decode(LongFrame(0x53, 1, 0x51, b""))
    short_header = mbus.decode(LongFrame(0x08, 1, 0x7A, bytes((7, 0, 0, 0)) + b"\x02\x5a\x10\x01"))
    assert short_header.id is None and short_header.access_no == 7
    assert [(r.name, r.value) for r in short_header.records] == [("flow_temp", 27.2)]
    no_header = mbus.decode(LongFrame(0x08, 1, 0x78, b"\x01\xfd\x1b\x05"))
    assert [(r.name, r.value, r.kind) for r in no_header.records] == [("digital_input", 5, mbus.STATE)]


@pytest.mark.parametrize("records, name, value, unit", [
    (b"\x01\xfb\x01\x07", "energy", 7_000_000, "Wh"),                     # FB 0x01: MWh
    (b"\x02\xfb\x09\x02\x00", "energy", pytest.approx(2e9 / 3600), "Wh"),  # FB 0x09: GJ
    (b"\x02\xfd\x47\x40\x5b", "voltage", 233.6, "V"),                       # FD 0x47: 10 mV
    (b"\x02\xfd\x59\x39\x30", "current", 12.345, "A"),                      # FD 0x59: mA
    (b"\x02\xfb\x2e\xf4\x01", "frequency", 50.0, "Hz"),                    # FB 0x2E: 0.1 Hz
    (b"\x02\x45\xe8\x03", "flow", pytest.approx(1000e-2 * 60), "m³/h"),     # VIF 0x45: 10 l/min
    (b"\x01\xfb\x5b\x68", "flow_temp", pytest.approx(40.0), "°C"),          # FB 0x5B: °F
    (b"\x05\x2e\x00\x00\xc0\x7f", "power", None, "W"),                      # a NaN float
    (b"\x02\xab\x22\x0a\x00", "power_per_hour", 10, "W"),                   # combinable "per hour"
    (b"\x01\xac\x15\x01", "power", None, "W"),                              # VIFE 0x15: no data available
    (b"\x02\xd9\x59\x05\x00", "flow_temp_upper_limit_first_duration", 5 * 60, "s"),
    (b"\x02\xd9\x56\x05\x00", "flow_temp_lower_limit_last_duration", 5 * 3600, "s"),
    (b"\x0d\x78\x04DCBA", "fabrication_no", "ABCD", ""),                   # variable-length text
    (b"\x0d\x78\xc2\x21\x43", "fabrication_no", 4321, ""),                 # variable-length BCD
])
def test_extension_tables_and_modifiers(records, name, value, unit):
    record = mbus.decode(LongFrame(0x08, 1, 0x72, bytes(12) + records)).records[0]
    assert (record.name, record.value, record.unit) == (name, value, unit)
    if value is None:
        assert record.error


def test_mode_2_telegrams_are_msb_first():
    lsb = mbus.decode(frame_of("kamstrup_multical_601"))
    data = frame_of("kamstrup_multical_601").data
    header = data[3::-1] + data[5:3:-1] + data[6:10] + data[11:9:-1]
    msb = mbus.decode(LongFrame(0x08, 1, 0x76, header + bytes((0x04, 0x06)) + data[20:24][::-1]))
    assert (msb.id, msb.manufacturer) == (lsb.id, lsb.manufacturer)
    assert msb.records[0].value == 37351000


def test_merge_multi_telegram_records():
    first = mbus.decode(frame_of("svm_f22_telegram1"))
    second = mbus.decode(FrameParser().feed(load_hex(FIXTURES / "svm_f22_telegram2.hex"))[0])
    assert first.more_follows and second.more_follows and first.id == second.id == 1006089
    merged = mbus.merge([first, second])
    assert len(merged.records) == len(first.records) + 1 and merged.id == first.id
    assert merged.records[-1].name == "manufacturer_data_2" and merged.records[-1].index == len(first.records)
