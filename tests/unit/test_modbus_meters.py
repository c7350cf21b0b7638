"""Modbus meter presets and meter sections: ``meter = sdm120`` gives named inputs with units, and
emonhub's meter sections (emonHP default, docs' examples) map onto the same registers."""

import pytest
from configobj import ConfigObj

from protocols.modbus_meters import PRESETS, meter_settings, preset
from protocols.modbus_registers import MapError, Register, encode_raw, read_requests


def section(text: str):
    """The meter subsections of a ``[[[[meters]]]]`` block as configobj reads emonhub.conf."""
    return ConfigObj(text.splitlines())["meters"]


EMONHP = """
[meters]
    [[electric]]
        address = 1
        registers = 12, 72
        names = Power, Energy
        precision = 1, 3
"""

EMONHUB_SDM120_DOCS = """
[meters]
    [[sdm120]]
        address = 1
        registers = 0,6,12,18,30,70,72,74,76
        names = V,I,P,VA,PF,FR,EI,EE,RI
        precision = 2,3,1,1,3,3,3,3,3
"""

EMONHUB_SAMSUNG = """
[meters]
    [[ashp]]
        device_type = samsung
        address = 1
        registers = 75,74,72,65,66,68,52,59,58,2,79,87,5,89
        names = dhw_temp,dhw_target,dhw_status,return_temp,flow_temp,flow_target,heating_status,indoor_temp,indoor_target, defrost_status,away_status,flow_rate,outdoor_temp,3_way_valve
        scales = 0.1,0.1,1,0.1,0.1,0.1,1,0.1,0.1,1,1,0.1,0.1,1
        precision = 2,2,1,2,2,2,1,2,2,1,1,2,2,1
"""


# -- presets --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, count, requests", [
    ("sdm120", 9, 2), ("sdm230", 9, 2), ("sdm630", 20, 3), ("rayleigh_ri_d35_100", 7, 1),
    ("rayleigh_ri_d150", 10, 3), ("eaton_epbmeter1", 4, 2), ("voltaris_vdt45m", 11, 2), ("zpmeter_223f", 11, 1),
    ("samsung_mim_b19n", 14, 2), ("sontex_modbus", 7, 3),
])
def test_presets_register_counts_and_requests(name, count, requests):
    meter = preset(name)
    assert len(meter.registers) == count and len({r.name for r in meter.registers}) == count
    assert len(meter.register_map().requests()) == requests
    assert all(r.count <= meter.max_count for r in meter.register_map().requests())


def test_sdm120_names_units_and_precision_as_emonhub_users_know_them():
    meter = preset("SDM120")
    assert [(r.name, r.address, r.unit, r.precision) for r in meter.registers] == [
        ("V", 0, "V", 2), ("I", 6, "A", 3), ("P", 12, "W", 1), ("VA", 18, "VA", 1), ("PF", 30, "", 3),
        ("FR", 70, "Hz", 3), ("EI", 72, "kWh", 3), ("EE", 74, "kWh", 3), ("RI", 76, "kvarh", 3)]
    assert {(r.function, r.datatype, r.order) for r in meter.registers} == {(4, "float32", "ABCD")}
    assert (meter.baud, meter.parity, meter.address, meter.max_count) == (9600, "none", 1, 80)


def test_sdm630_reads_per_phase_energies_at_the_datasheet_addresses():
    meter = preset("sdm630")
    by_name = {r.name: r for r in meter.registers}
    assert [by_name[n].address for n in ("EI1", "EI2", "EI3", "EE1", "EE2", "EE3")] == [346, 348, 350, 352, 354, 356]
    assert by_name["P_total"].address == 52 and by_name["EI_total"].unit == "kWh"
    assert [(r.address, r.count) for r in meter.register_map().requests()] == [(0, 18), (52, 24), (346, 12)]


def test_presets_with_other_orders_parity_addresses_and_writes():
    assert {r.order for r in preset("rayleigh_ri_d150").registers} == {"CDAB"}
    assert preset("rayleigh_ri_d150").parity == "even"
    assert {(r.function, r.datatype) for r in preset("zpmeter_223f").registers} == {(3, "int16")}
    assert preset("zpmeter_223f").address == 7 and preset("sontex_modbus").address == 80
    assert preset("samsung").writes == ((7005, (0x42E9, 0x8204, 0x4067, 0x42F1, 0x8238, 0x4087)),)
    assert next(r for r in preset("rayleigh_ri_d35_100").registers if r.name == "P").scale == 1000


def test_a_preset_read_gives_named_values_with_units():
    values = {"V": 231.2, "I": 1.5, "P": 346.8, "VA": 350.0, "PF": 0.99, "FR": 50.0, "EI": 1234.5678, "EE": 0.0,
              "RI": 12.0}
    memory = [0] * 80
    for register in preset("sdm120").registers:
        memory[register.address:register.address + 2] = encode_raw(values[register.name], "float32")
    results = read_requests(preset("sdm120").register_map().requests(),
                            lambda function, address, count: memory[address:address + count])
    got = {r.register.name: (r.value, r.register.unit) for r in results}
    assert got["V"] == (231.2, "V") and got["EI"] == (1234.568, "kWh") and got["PF"] == (0.99, "")
    assert all(r.error is None for r in results)


# -- meter sections -------------------------------------------------------------------------------------------
def test_the_emonhp_default_meter_section():
    meter = meter_settings("electric", section(EMONHP)["electric"])
    assert meter.address == 1 and meter.preset is None and meter.warnings == ()
    assert meter.register_map.registers == (Register("Power", 12, 4, "float32", "ABCD", 1, 0, 1, ""),
                                            Register("Energy", 72, 4, "float32", "ABCD", 1, 0, 3, ""))
    assert [(r.address, r.count) for r in meter.register_map.requests()] == [(12, 2), (72, 2)]


def test_emonhubs_documented_sdm120_section_is_the_preset():
    meter = meter_settings("sdm120", section(EMONHUB_SDM120_DOCS)["sdm120"])
    ours = [(r.name, r.address, r.function, r.datatype, r.precision) for r in preset("sdm120").registers]
    assert [(r.name, r.address, r.function, r.datatype, r.precision) for r in meter.register_map.registers] == ours


def test_emonhubs_samsung_section_with_an_int_bus():
    meter = meter_settings("ashp", section(EMONHUB_SAMSUNG)["ashp"], datatype="int")
    registers = {r.name: r for r in meter.register_map.registers}
    assert registers["outdoor_temp"] == Register("outdoor_temp", 5, 3, "int16", "ABCD", 0.1, 0, 2, "")
    assert registers["outdoor_temp"].decode([0xFFE7]) == -2.5
    assert meter.register_map.writes == preset("samsung_mim_b19n").writes


def test_a_preset_with_only_some_inputs_an_override_and_an_extra_register():
    meter = meter_settings("heatpump", {"meter": "sdm120", "address": "2", "inputs": ["P", "EI", "total"],
                                        "registers": ["12", "342"], "names": ["P", "total"], "units": ["kW", "kWh"],
                                        "scales": ["0.001"]})
    assert meter.address == 2 and meter.preset is preset("sdm120")
    assert [(r.name, r.address, r.unit, r.scale) for r in meter.register_map.registers] == [
        ("P", 12, "kW", 0.001), ("EI", 72, "kWh", 1), ("total", 342, "kWh", 1)]
    assert meter.register_map.max_count == 80


def test_a_preset_word_order_override_and_default_addresses():
    meter = meter_settings("m", {"meter": "voltaris_vdt45m", "byteorder": "CDAB"})
    assert {r.order for r in meter.register_map.registers} == {"CDAB"}
    assert meter_settings("heat", {"meter": "sontex_modbus"}).address == 80
    assert meter_settings("heat", {"meter": "zpmeter_223f", "address": "9"}).address == 9


def test_a_datasheet_number_warning_reaches_the_meter_settings():
    meter = meter_settings("m", {"registers": "30073"})
    assert meter.warnings and "register_numbering = datasheet" in meter.warnings[0]


@pytest.mark.parametrize("settings, message", [
    ({"meter": "sdm12"}, "meters: m: meter: unknown meter preset 'sdm12' (known: eaton_epbmeter1, rayleigh_ri_d150"),
    ({"meter": "sdm12"}, "; did you mean sdm120?"),
    ({"meter": "sdm120", "address": "0"}, "meters: m: address: '0' is not a Modbus device address (1-247)"),
    ({"meter": "sdm120", "address": "248"}, "address: '248' is not a Modbus device address"),
    ({"address": "1"}, "registers: no registers and no meter preset"),
    ({"meter": "sdm120", "inputs": "P, Ei"}, "inputs: 'Ei' is not in the register map (known: V, I, P"),
    ({"meter": "sdm120", "inputs": "P, Ei"}, "did you mean EI?"),
    ({"meter": "sdm120", "adress": "1"}, "unknown key 'adress'; did you mean address?"),
    ({"registers": "1", "device_type": "daikin"}, "device_type: 'daikin' is not samsung"),
    ({"registers": "1, 2", "datatypes": "int, int, float"}, "meters: m: datatypes: 3 entries for 2 registers"),
    ({"meter": "sdm120", "max_count": "200"}, "max_count: '200' is not a number of registers per request (1-125)"),
])
def test_meter_section_errors_name_the_meter_and_key(settings, message):
    with pytest.raises(MapError) as caught:
        meter_settings("m", settings)
    assert message in str(caught.value)


def test_every_preset_has_a_title_and_units_for_what_it_measures():
    for meter in PRESETS.values():
        assert meter.title
        assert all(r.unit or r.name in ("PF", "PF_total", "16unknown", "runtime", "Error") or "status" in r.name
                   or r.name in ("away_status", "3_way_valve", "FlowRate", "Power", "EnergyTotal")
                   for r in meter.registers), meter.name
