"""M-Bus meter presets, input names and units, and the exchanges of one read (link reset, page
select, multi-telegram answers, lost answers) against a simulated meter answering real telegrams."""

from pathlib import Path

import pytest

from protocols import mbus_meters as meters
from protocols import mbus_telegram as mbus
from protocols.mbus_meters import MeterRead, PresetError, Reading, preset, readings
from protocols.mbus_telegram import FrameParser, LongFrame
from tests.support.mbus_meter import SimulatedMeter, load_hex, telegram_frame

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mbus"

# Records of a Qalcosonic E3 heat/cooling meter (wmbusmeters issue #297, see fixtures/mbus/README.md)
# behind a wired header with that telegram's id, manufacturer (AXI), version and medium.
QALCOSONIC_HEADER = bytes.fromhex("13640103") + (0x0709).to_bytes(2, "little") + bytes((0x0B, 0x0D, 0x78, 0, 0, 0))
QALCOSONIC_RECORDS = bytes.fromhex(
    "046D030FB726 346D00000101 34FD1700000000 04207E1BCF01 04247E1BCF01 04863B00000000 04863CEC000000"
    "0413644A0800 042BCAF1FFFF 043BE2020000 0259B002 025D5704 026159FE 0C7813640103 84086D3B17BF25"
    "8408863B00000000 8408863C28000000".replace(" ", ""))


def telegram(name: str) -> mbus.Telegram:
    return mbus.decode(FrameParser().feed(load_hex(FIXTURES / f"{name}.hex"))[0])


def qalcosonic() -> mbus.Telegram:
    return mbus.decode(LongFrame(0x08, 1, 0x72, QALCOSONIC_HEADER + QALCOSONIC_RECORDS))


def values(got):
    return {r.name: (r.value, r.unit) for r in got}


# -- presets -----------------------------------------------------------------------------------------
def test_every_preset_and_emonhub_type_resolves():
    for name in meters.EMONHUB_TYPES:
        assert preset(name)
    for meter in meters.PRESETS.values():
        for alias in (meter.name, *meter.aliases):
            assert preset(alias.upper()) is meter
        for step in meter.steps:
            for pick in step.picks or ():
                meters.convert(1, {"kWh": "Wh", "h": "s"}.get(pick.unit, pick.unit), pick.unit)   # units convert


def test_an_unknown_preset_names_the_known_ones_and_the_closest():
    with pytest.raises(PresetError) as caught:
        preset("kamstrup_multical_40")
    message = str(caught.value)
    assert "unknown M-Bus meter preset 'kamstrup_multical_40'" in message
    assert "sontex531" in message and message.endswith("did you mean kamstrup_multical_403?")


HEAT = ("energy", "volume", "flow_temp", "return_temp", "delta_temp", "power", "flow")


@pytest.mark.parametrize("source, meter, expected, missing", [
    ("kamstrup_multical_601", "kamstrup_multical_601",
     dict(energy=37351, volume=561.08, flow_temp=101.69, return_temp=46.16, delta_temp=55.53, power=34700,
          flow=0.543, on_time=985), ["error_time"]),
    ("kamstrup_multical_302", "kamstrup403",
     dict(energy=3392, volume=348.12, flow_temp=54.02, return_temp=46.72, delta_temp=7.3, power=18000,
          flow=2.151, on_time=393, error_time=2), []),
    ("landis+gyr_ultraheat_t230", "landis_gyr_ultraheat_t230",
     dict(energy=0, volume=0, flow_temp=19.5, return_temp=19.7, delta_temp=-0.2, power=0, flow=0), []),
    ("allmess_cf50", "allmess_cf50",
     dict(energy=0, volume=0.3, flow_temp=128.8, return_temp=51.6, delta_temp=77.23, power=0, flow=0), []),
    ("itron_integral_mk_maxx", "itron_integral_mk_maxx",
     dict(energy=0, volume=0.02, flow_temp=21.2, return_temp=21.1, delta_temp=0.07, flow=0), ["power"]),
    ("sontex_supercal_531_telegram1", "heat_meter",
     dict(energy=0, volume=0, flow_temp=0, return_temp=0, power=0, flow=0), ["delta_temp"]),
])
def test_heat_meter_presets_on_real_telegrams(source, meter, expected, missing):
    got, absent = readings(telegram(source), preset(meter).steps[0].picks)
    assert {name: value for name, (value, unit) in values(got).items()} == pytest.approx(expected)
    assert absent == missing
    units = {r.name: r.unit for r in got}
    assert units["energy"] == "kWh" and units["flow_temp"] == "°C" and units["flow"] == "m³/h"
    assert units.get("on_time", "h") == "h" and units["volume"] == "m³"


def test_qalcosonic_heat_and_cooling_energy_and_negative_power():
    got, absent = readings(qalcosonic(), preset("qalcosonic_e3").steps[0].picks)
    assert absent == []
    v = values(got)
    assert v["energy"] == (0, "kWh") and v["cooling_energy"] == (236, "kWh")
    assert v["power"] == (-3638, "W") and v["delta_temp"] == (-4.23, "K")
    assert v["flow"] == (0.738, "m³/h") and v["volume"] == (543.332, "m³")


def test_standard_reports_every_present_measurement_in_kwh():
    got, absent = readings(telegram("kamstrup_multical_601"))
    assert absent == []
    assert [r.name for r in got] == ["energy", "volume", "on_time", "flow_temp", "return_temp", "delta_temp",
                                     "power", "flow", "energy_tariff1", "energy_tariff2", "volume_sub1",
                                     "volume_sub2", "energy_sub3"]
    assert got[0] == Reading("energy", 37351, "kWh") and got[2] == Reading("on_time", 3546000, "s")


def test_standard_reports_states_but_not_identities_times_or_settings():
    got, _ = readings(telegram("ELV-Elvaco-CMa10"))
    assert [r.name for r in got] == ["digital_input", "RH", "external_temp"]


def test_emonhub_names_for_an_emonhub_config():
    t = telegram("kamstrup_multical_601")
    assert meters.emonhub_names(t)[:12] == ["FabNo", "Energy", "Volume", "Ontime Hours", "FlowT", "ReturnT",
                                            "DeltaT", "Power", "Power_Max", "FlowRate", "FlowRate_Max", "Energy2"]
    got, _ = readings(t, naming="emonhub")
    v = values(got)
    assert v["Energy"] == (37351, "kWh") and v["Ontime Hours"] == (985, "h") and v["Energy2"] == (0, "kWh")
    assert v["heat_calc"][0] == pytest.approx(4150 * (101.69 - 46.16) * 0.543 * 1000 / 3600)
    q, _ = readings(qalcosonic(), preset("qalcosonic_e3").steps[0].picks, naming="emonhub")
    assert [r.name for r in q][:2] == ["Energy", "Cooling"]


# What emonhub 2.7.19 publishes for this telegram with ``type = standard`` (its float values
# written as the meter's decimals): every record it decodes, stored values and _Max included,
# dates as the integer of their data bytes, then heat_calc. The manufacturer data is not one.
KAMSTRUP_601_EMONHUB = [
    ("FabNo", 6855817, ""), ("Energy", 37351, "kWh"), ("Volume", 561.08, "m³"), ("Ontime Hours", 985, "h"),
    ("FlowT", 101.69, "°C"), ("ReturnT", 46.16, "°C"), ("DeltaT", 55.53, "K"), ("Power", 34700, "W"),
    ("Power_Max", 44800, "W"), ("FlowRate", 0.543, "m³/h"), ("FlowRate_Max", 0.628, "m³/h"),
    ("Energy2", 0, "kWh"), ("Energy3", 0, "kWh"), ("Volume2", 0, "m³"), ("Volume3", 0, "m³"),
    ("Energy4", 0, "kWh"), ("DateTime", 291843866, ""), ("Energy5", 33361, "kWh"), ("Volume4", 500.98, "m³"),
    ("Power_Max2", 55000, "W"), ("FlowRate_Max2", 1.027, "m³/h"), ("Energy6", 0, "kWh"), ("Energy7", 0, "kWh"),
    ("Volume5", 0, "m³"), ("Volume6", 0, "m³"), ("Energy8", 0, "kWh"), ("Record27", 7263, "")]


def test_standard_with_emonhub_names_reports_every_record_emonhub_does():
    got, absent = readings(telegram("kamstrup_multical_601"), naming="emonhub")
    assert absent == []
    assert [tuple(r) for r in got[:-1]] == KAMSTRUP_601_EMONHUB
    assert got[-1].name == "heat_calc" and len(got) == 28


def test_a_preset_with_emonhub_names_still_reports_only_its_picks():
    got, _ = readings(telegram("kamstrup_multical_601"), preset("kamstrup403").steps[0].picks, naming="emonhub")
    assert [r.name for r in got] == ["Energy", "Volume", "FlowT", "ReturnT", "DeltaT", "Power", "FlowRate",
                                     "Ontime Hours", "heat_calc"]


def test_conversions():
    assert meters.convert(37351000, "Wh", "kWh") == 37351
    assert meters.convert(7200, "s", "h") == 2
    assert meters.convert(0.5, "m³/h", "l/min") == pytest.approx(8.3333333)
    with pytest.raises(ValueError, match="cannot convert W to kWh"):
        meters.convert(1, "W", "kWh")


# -- reads: what is sent, what comes back ----------------------------------------------------------------
def run(read: MeterRead, meter: SimulatedMeter):
    """Drive ``read`` against ``meter``, as the listener will over a serial port; the frames sent."""
    sent = []
    exchange = read.next()
    while exchange is not None:
        sent.append(exchange.frame)
        items = FrameParser().feed(meter.answer(exchange.frame))
        read.answer(items[0] if items else None)
        exchange = read.next()
    return sent


def test_one_telegram_read():
    meter = SimulatedMeter(1, [load_hex(FIXTURES / "kamstrup_multical_601.hex")])
    read = MeterRead(preset("kamstrup_multical"), 1)
    sent = run(read, meter)
    assert sent == [mbus.snd_nke(1), mbus.req_ud2(1, fcb=True)]
    assert read.errors == [] and read.missing == ["error_time"] and not read.silent
    assert values(read.readings)["energy"] == (37351, "kWh")


def multi_telegram_meter():
    first = load_hex(FIXTURES / "svm_f22_telegram1.hex")
    second = load_hex(FIXTURES / "svm_f22_telegram2.hex")
    last = telegram_frame(1, first[7:19], b"\x04\x06\x10\x00\x00\x00")      # the same meter; ends without 0x1F
    return SimulatedMeter(1, [first, second, last])


def test_a_multi_telegram_meter_is_read_to_its_last_telegram():
    meter = multi_telegram_meter()
    read = MeterRead(preset("standard"), 1)
    sent = run(read, meter)
    assert sent == [mbus.snd_nke(1), mbus.req_ud2(1, True), mbus.req_ud2(1, False), mbus.req_ud2(1, True)]
    assert read.errors == [] and len(read.telegrams) == 3
    names = [r.name for r in read.readings]
    assert "energy" in names and "energy_2" in names and len(names) == len(set(names))
    assert values(read.readings)["energy_2"] == (16, "kWh")


def test_a_lost_answer_is_asked_for_again_with_the_same_fcb():
    clean = MeterRead(preset("standard"), 1)
    run(clean, multi_telegram_meter())
    meter = multi_telegram_meter()
    read = MeterRead(preset("standard"), 1)
    sent = []
    exchange = read.next()
    while exchange is not None:                # lose the second telegram's first answer
        sent.append(exchange.frame)
        meter.drop = 1 if len(sent) == 3 else 0
        items = FrameParser().feed(meter.answer(exchange.frame))
        read.answer(items[0] if items else None)
        exchange = read.next()
    assert sent[2] == sent[3] == mbus.req_ud2(1, False)
    assert read.readings == clean.readings and read.errors == []


def test_a_garbled_answer_is_asked_for_again():
    good = load_hex(FIXTURES / "kamstrup_multical_601.hex")
    read = MeterRead(preset("heat_meter"), 1)
    assert read.next().frame == mbus.snd_nke(1)
    read.answer(mbus.Ack())
    assert read.next().frame == mbus.req_ud2(1, True)
    bad = bytearray(good)
    bad[50] ^= 0xFF
    read.answer(FrameParser().feed(bytes(bad))[0])           # a FrameError: bad checksum
    assert read.next().frame == mbus.req_ud2(1, True)
    read.answer(FrameParser().feed(good)[0])
    assert read.next() is None and read.done
    assert values(read.readings)["power"] == (34700, "W")


def test_a_silent_meter_costs_three_link_resets_and_nothing_more():
    meter = SimulatedMeter(1, [load_hex(FIXTURES / "kamstrup_multical_601.hex")])
    meter.silent = True
    read = MeterRead(preset("kamstrup_multical"), 1)
    sent = run(read, meter)
    assert sent == [mbus.snd_nke(1)] * 3
    assert read.silent and read.readings == []
    assert read.errors == ["address 1: no answer to SND_NKE after 3 tries"]


def test_a_meter_on_another_address_does_not_answer():
    meter = SimulatedMeter(2, [load_hex(FIXTURES / "kamstrup_multical_601.hex")])
    read = MeterRead(preset("standard"), 1, retries=0)
    assert run(read, meter) == [mbus.snd_nke(1)] and read.silent


def test_sontex_531_pages_are_selected_before_each_request():
    page1 = load_hex(FIXTURES / "sontex_supercal_531_telegram1.hex")
    page3 = telegram_frame(1, page1[7:19], bytes.fromhex("025A2803 025E2002 0261500A 052B00007A44 053E0000803F"))
    meter = SimulatedMeter(1, [], pages={1: [page1], 3: [page3]})
    read = MeterRead(preset("sontex531"), 1)
    sent = run(read, meter)
    assert sent == [mbus.snd_nke(1), mbus.select_data(1, b"\x01\xff\x08\x01", fcb=True), mbus.req_ud2(1, False),
                    mbus.select_data(1, b"\x01\xff\x08\x03", fcb=True), mbus.req_ud2(1, False)]
    assert read.errors == [] and read.missing == []
    assert values(read.readings) == {"energy": (0, "kWh"), "volume": (0, "m³"), "flow_temp": (80.8, "°C"),
                                     "return_temp": (54.4, "°C"), "delta_temp": (26.4, "K"),
                                     "power": (1000, "W"), "flow": (1, "m³/h")}


def test_sdm120_mbus_asks_for_instantaneous_values_with_its_own_request():
    header = bytes.fromhex("78563412") + bytes((0x24, 0x40, 0x01, 0x02, 0x01, 0, 0, 0))
    energy = telegram_frame(1, header, bytes.fromhex("0405E8030000"))          # 100.0 kWh in 0.1 kWh
    instant = telegram_frame(1, header, bytes.fromhex("02FD477C5B 04FD5988130000 052B0000C843"))
    meter = SimulatedMeter(1, [energy], data_answers={0xB1: instant})
    read = MeterRead(preset("sdm120"), 1, naming="emonhub")
    sent = run(read, meter)
    assert sent[2] == bytes((0x68, 3, 3, 0x68, 0x53, 1, 0xB1, (0x53 + 1 + 0xB1) % 256, 0x16))   # emonhub's frame
    assert values(read.readings) == {"Energy": (100, "kWh"), "Voltage": (234.2, "V"), "Current": (5, "A"),
                                     "Power": (400, "W")}


def test_telegrams_from_two_meters_on_one_address_are_refused():
    first = load_hex(FIXTURES / "svm_f22_telegram1.hex")
    other = telegram_frame(1, bytes.fromhex("11111111") + first[11:19], b"\x04\x06\x10\x00\x00\x00")
    read = MeterRead(preset("standard"), 1)
    run(read, SimulatedMeter(1, [first, other]))
    assert read.errors == ["address 1: telegram 2 is from meter 11111111, the first from 01006089: "
                           "two meters on one address?"]
    assert values(read.readings)["energy"][0] > 0          # the first telegram still counts


def test_more_telegrams_than_allowed_stop_the_read():
    first = load_hex(FIXTURES / "svm_f22_telegram1.hex")
    read = MeterRead(preset("standard"), 1, max_telegrams=4)
    sent = run(read, SimulatedMeter(1, [first]))          # every answer says "more follows"
    assert len(sent) == 1 + 4 and "more than 4 telegrams" in read.errors[0]


def test_an_application_error_is_reported_and_the_read_goes_on():
    busy = load_hex(FIXTURES / "error" / "application_busy.hex")
    read = MeterRead(preset("standard"), 1)
    run(read, SimulatedMeter(1, [busy]))
    assert read.errors == ["address 1: the meter at address 1 reports an application error: application busy"]
    assert read.done and read.readings == []


def test_without_link_reset_the_first_request_is_emonhubs():
    read = MeterRead(preset("standard"), 1, link_reset=False)
    assert read.next().frame == bytes((0x10, 0x5B, 0x01, 0x5C, 0x16))


def test_answer_without_a_pending_exchange_is_a_programming_error():
    with pytest.raises(RuntimeError):
        MeterRead(preset("standard"), 1).answer(None)


# -- a meter's settings ----------------------------------------------------------------------------------
def test_emonhubs_meter_section_keeps_emonhub_names():
    settings = meters.meter_settings("heatmeter", {"address": "1", "type": "standard"})   # emonhp default
    assert (settings.address, settings.meter.name, settings.naming) == (1, "standard", "emonhub")
    assert meters.meter_settings("heat", {"meter": "kamstrup_multical_403"}).naming == "descriptive"
    assert meters.meter_settings("heat", {"type": "kamstrup403", "naming": "descriptive"}).naming == "descriptive"


@pytest.mark.parametrize("settings, message", [
    ({"address": "251"}, "meters: m: address '251' is not an M-Bus primary address"),
    ({"address": "x"}, "address 'x' is not"),
    ({"meter": "sontex", "type": "standard"}, "give either meter or type, not both"),
    ({"type": "kamstrup"}, "meters: m: type: unknown M-Bus meter preset 'kamstrup'"),
    ({"naming": "fancy"}, "naming 'fancy' is not descriptive or emonhub"),
    ({"adress": "1"}, "unknown key 'adress'"),
])
def test_meter_setting_errors_name_the_key(settings, message):
    with pytest.raises(PresetError, match=message.replace("(", r"\(")):
        meters.meter_settings("m", settings)
