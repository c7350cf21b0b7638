"""Modbus meter presets and a meter's settings: ``meter = sdm120, address = 1`` gives named inputs.

Every preset is a plain table below: the register map emonhub's docs ship for the meter (names
as emonhub users know them, so their emoncms inputs keep their names), with units, and the
serial settings the meter comes with. Addresses are 0-based request addresses (datasheet
register number - 30001). A meter section may add registers to a preset or replace one (a
listed register with a preset register's name replaces it), or keep only some of its inputs
(``inputs = P, EI``).
"""

from dataclasses import dataclass, replace
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from protocols.modbus_registers import (DEFAULT_MAX_GAP, MAX_COUNT, MapError, Register, RegisterMap, closest,
                                        only, parse_limits, parse_order, parse_registers, with_overrides,
                                        as_list, parse_datatype)


@dataclass(frozen=True)
class MeterPreset:
    name: str
    title: str
    registers: Tuple[Register, ...]
    baud: int = 9600
    parity: str = "none"
    address: int = 1                                     # the meter's factory Modbus address
    max_count: int = MAX_COUNT
    writes: Tuple[Tuple[int, Tuple[int, ...]], ...] = ()
    aliases: Tuple[str, ...] = ()
    note: str = ""

    def register_map(self) -> RegisterMap:
        return RegisterMap(self.registers, self.max_count, DEFAULT_MAX_GAP, self.writes)


def _table(rows: Sequence[tuple], function: int = 4, datatype: str = "float32", order: str = "ABCD") -> Tuple[Register, ...]:
    """Registers from rows of (address, name, unit[, scale[, precision]])."""
    out = []
    for address, name, unit, *rest in rows:
        scale = rest[0] if rest else 1
        precision = rest[1] if len(rest) > 1 else None
        out.append(Register(name, address, function, datatype, order, scale, 0, precision, unit))
    return tuple(out)


# Eastron SDM120 / SDM230: emonhub's map (docs/emonhub-interfacers.md), with its precision
_SDM120 = _table((
    (0, "V", "V", 1, 2), (6, "I", "A", 1, 3), (12, "P", "W", 1, 1), (18, "VA", "VA", 1, 1),
    (30, "PF", "", 1, 3), (70, "FR", "Hz", 1, 3), (72, "EI", "kWh", 1, 3), (74, "EE", "kWh", 1, 3),
    (76, "RI", "kvarh", 1, 3)))

# Eastron SDM630 / SDM72D: emonhub's names; the per-phase energies at the datasheet's addresses
# (30347-30357), where emonhub's docs give demand registers (90-94) and odd ones (68, 99)
_SDM630 = _table((
    (0, "V1", "V", 1, 2), (2, "V2", "V", 1, 2), (4, "V3", "V", 1, 2),
    (6, "I1", "A", 1, 3), (8, "I2", "A", 1, 3), (10, "I3", "A", 1, 3),
    (12, "P1", "W", 1, 1), (14, "P2", "W", 1, 1), (16, "P3", "W", 1, 1),
    (52, "P_total", "W", 1, 1), (62, "PF_total", "", 1, 3), (70, "FR", "Hz", 1, 3),
    (72, "EI_total", "kWh", 1, 3), (74, "EE_total", "kWh", 1, 3),
    (346, "EI1", "kWh", 1, 3), (348, "EI2", "kWh", 1, 3), (350, "EI3", "kWh", 1, 3),
    (352, "EE1", "kWh", 1, 3), (354, "EE2", "kWh", 1, 3), (356, "EE3", "kWh", 1, 3)))

PRESETS: Dict[str, MeterPreset] = {p.name: p for p in (
    MeterPreset("sdm120", "Eastron SDM120-Modbus (single phase, 45 A)", _SDM120, max_count=80),
    MeterPreset("sdm230", "Eastron SDM230-Modbus (single phase, 100 A)", _SDM120, max_count=80),
    MeterPreset("sdm630", "Eastron SDM630-Modbus (three phase)", _SDM630, max_count=80,
                aliases=("sdm72d",)),
    MeterPreset("rayleigh_ri_d35_100", "Rayleigh RI-D35-100 (single phase)", _table((
        (3, "EI", "kWh"), (5, "EE", "kWh"), (15, "P", "W", 1000), (19, "VA", "kVA"), (23, "I", "A"),
        (21, "V", "V"), (27, "FR", "Hz"))),
        note="Power comes in kW and is scaled to W, as in emonhub; VA is left in the meter's unit."),
    MeterPreset("rayleigh_ri_d150", "Rayleigh RI-D150 (three phase)", _table((
        (0, "V1", "V"), (2, "V2", "V"), (4, "V3", "V"), (16, "I1", "A"), (18, "I2", "A"), (20, "I3", "A"),
        (42, "Total_Power", "W", 1000), (88, "Import_kWh", "kWh"), (90, "Export_kWh", "kWh"), (54, "PF", "")),
        order="CDAB"), parity="even"),
    MeterPreset("eaton_epbmeter1", "Eaton EPBMETER1", _table((
        (1, "V1", "V"), (3, "V2", "V"), (5, "V3", "V"), (97, "total_energy_imported", "kWh")))),
    MeterPreset("voltaris_vdt45m", "Voltaris VDT45M (three phase)", _table((
        (0, "V1", "V"), (2, "V2", "V"), (4, "V3", "V"), (6, "I1", "A"), (8, "I2", "A"), (10, "I3", "A"),
        (52, "P_tot", "W"), (62, "PF", ""), (70, "Freq", "Hz"), (72, "Import_kWh", "kWh"),
        (74, "Export_kWh", "kWh")))),
    MeterPreset("zpmeter_223f", "ZPmeter 223F ultrasonic heat meter", _table((
        (1, "Energy", "kWh", 0.01), (3, "CoolEnergy", "kWh", 0.01), (5, "FlowT", "°C", 0.01),
        (7, "ReturnT", "°C", 0.01), (9, "dT", "K", 0.01), (11, "Volume", "m³", 0.01),
        (13, "FlowRate", "m³/h", 0.0001), (15, "Power", "W", 10), (16, "16unknown", ""),
        (17, "runtime", ""), (21, "Error", "")), function=3, datatype="int16"),
        address=7, note="As emonhub reads it: one signed 16-bit register per value, so energy, volume "
                        "and flow rate wrap at 327.67 (their true width is not documented)."),
    MeterPreset("samsung_mim_b19n", "Samsung heat pump with the MIM-B19N Modbus interface", _table((
        (75, "dhw_temp", "°C", 0.1), (74, "dhw_target", "°C", 0.1), (72, "dhw_status", ""),
        (65, "return_temp", "°C", 0.1), (66, "flow_temp", "°C", 0.1), (68, "flow_target", "°C", 0.1),
        (52, "heating_status", ""), (59, "indoor_temp", "°C", 0.1), (58, "indoor_target", "°C", 0.1),
        (2, "defrost_status", ""), (79, "away_status", ""), (87, "flow_rate", "l/min", 0.1),
        (5, "outdoor_temp", "°C", 0.1), (89, "3_way_valve", "")), function=3, datatype="int16"),
        parity="even", writes=((7005, (0x42E9, 0x8204, 0x4067, 0x42F1, 0x8238, 0x4087)),),
        aliases=("samsung",),
        note="Before each read the gateway writes emonhub's address map to register 7005 (flow rate, "
             "outdoor temperature, 3-way valve, compressor, immersion heater)."),
    MeterPreset("sontex_modbus", "Sontex heat meter with the EIA-485 Modbus module", _table((
        (724, "ReturnTemp", "°C"), (722, "FlowTemp", "°C"), (712, "FlowRate", ""), (732, "TempDelta", "K"),
        (702, "Power", ""), (102, "EnergyTotal", ""), (302, "Volume", "m³")), order="CDAB"),
        parity="even", address=80,
        note="Flow rate, power and energy come in the units the meter is configured for."),
)}

_BY_NAME: Dict[str, MeterPreset] = {alias: p for p in PRESETS.values() for alias in (p.name, *p.aliases)}


def preset(name: str, key: str = "meter") -> MeterPreset:
    """The preset called ``name``; MapError listing the known ones and the closest."""
    found = _BY_NAME.get(name.strip().lower())
    if found is None:
        raise MapError(f"{key}: unknown meter preset {name!r} (known: {', '.join(sorted(_BY_NAME))})"
                       f"{closest(name.strip().lower(), _BY_NAME)}")
    return found


@dataclass(frozen=True)
class MeterSettings:
    """One meter on a bus: its Modbus address, what to read, and warnings for the log."""

    name: str
    address: int
    register_map: RegisterMap
    preset: Optional[MeterPreset] = None
    warnings: Tuple[str, ...] = ()


METER_KEYS = ("address", "meter", "inputs", "registers", "names", "units", "scales", "offsets", "precision",
              "datatypes", "functioncodes", "byteorder", "datatype", "register_numbering", "max_gap",
              "max_count", "device_type")


def meter_settings(name: str, settings: Mapping[str, object], datatype: str = "float32") -> MeterSettings:
    """A ``[[[[meters]]]]`` subsection as emonhub writes it, or with ``meter = <preset>``.

    ``address``: the Modbus device address (1-247; default the preset's, else 1).
    ``meter``: a preset; ``inputs`` keeps only the named ones; listed ``registers`` add to it or
    replace a preset register of the same name. ``device_type = samsung`` (emonhub's) is the
    Samsung preset's register writes. ``datatype`` is the bus default (emonhub's init setting).
    Every MapError message starts with ``meters: <name>:`` and names the key.
    """
    where = f"meters: {name}: "
    try:
        return _meter_settings(name, settings, datatype)
    except MapError as error:
        raise MapError(where + str(error)) from None


def _meter_settings(name: str, settings: Mapping[str, object], datatype: str) -> MeterSettings:
    unknown = [k for k in settings if k not in METER_KEYS]
    if unknown:
        raise MapError(f"unknown key {unknown[0]!r}{closest(unknown[0], METER_KEYS)} (known: {', '.join(METER_KEYS)})")
    chosen = preset(str(settings["meter"])) if "meter" in settings else None
    default_address = chosen.address if chosen else 1
    address_text = str(settings.get("address", default_address)).strip()
    if not address_text.isdigit() or not 1 <= int(address_text) <= 247:
        raise MapError(f"address: {address_text!r} is not a Modbus device address (1-247)")
    datatype = parse_datatype(str(settings.get("datatype", datatype)), "datatype")
    registers: List[Register] = list(chosen.registers) if chosen else []
    warnings: List[str] = []
    if "registers" in settings:
        listed, warnings = parse_registers(settings, datatype, "ABCD")
        registers = with_overrides(registers, listed)
    elif not chosen:
        raise MapError("registers: no registers and no meter preset (give meter = sdm120, say, or registers = ...)")
    elif "byteorder" in settings:            # a preset's word order, overridden for all its registers
        order = parse_order(settings["byteorder"])
        registers = [replace(r, order=order) for r in registers]
    if "inputs" in settings:
        registers = only(registers, as_list(settings["inputs"]))
    max_gap, max_count = parse_limits(settings, DEFAULT_MAX_GAP, chosen.max_count if chosen else MAX_COUNT)
    writes = chosen.writes if chosen else ()
    device_type = str(settings.get("device_type", "")).strip().lower()
    if device_type:
        if device_type != "samsung":
            raise MapError(f"device_type: {device_type!r} is not samsung (the only one emonhub knows)")
        writes = PRESETS["samsung_mim_b19n"].writes
    return MeterSettings(name, int(address_text), RegisterMap(tuple(registers), max_count, max_gap, writes),
                         chosen, tuple(warnings))
