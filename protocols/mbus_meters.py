"""M-Bus meters: what to ask a meter, and which named inputs its telegrams give. Pure, no I/O.

A meter in the config names a preset (``meter = kamstrup_multical``) or emonhub's ``type``
(``type = kamstrup403``), and an address. ``MeterRead`` turns the preset into the frames to
send, one at a time, and takes the answers: it resets the link (SND_NKE), selects a page where
the preset needs one, requests the data (REQ_UD2) and follows multi-telegram answers by
toggling the FCB, retrying a lost answer with the same FCB. ``readings`` turns telegrams into
inputs: ``(name, value, unit)``.

Units of the inputs: energy in **kWh** (what emonhub reports and what emoncms users' feeds and
kWh/day graphs expect), volume m³, power W, flow m³/h, temperatures °C, temperature
difference K; durations in s, or h where a preset says so.

Two naming styles:

* ``descriptive`` (the default with ``meter =``): the record names of
  ``protocols.mbus_telegram`` (``energy``, ``flow_temp``, ``power_max``...) or a preset's names;
* ``emonhub`` (the default with ``type =``, so an emonhub.conf keeps its emoncms inputs):
  emonhub's names (``Energy``, ``FlowT``, ``ReturnT``, ``Power_Max``, ``Energy2`` for a
  second energy record, ``Ontime Hours`` with its space...) and its ``heat_calc``. With the
  ``standard`` preset it also reports what emonhub's ``standard`` does: every record emonhub
  decodes (stored values, ``_Max`` values, the fabrication number, dates as emonhub's integer),
  where ``descriptive`` reports the present measurements only.
"""

import difflib
from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

from protocols.mbus_telegram import (MEASURE, STATE, Ack, FrameError, LongFrame, Record, Telegram,
                                     TelegramError, decode, merge, req_ud2, snd_nke, snd_ud)


class PresetError(ValueError):
    """A meter setting that is not valid; the message names the key and says what was expected."""


class Reading(NamedTuple):
    name: str
    value: Union[int, float]
    unit: str


# -- output units -------------------------------------------------------------------------------
# (record unit, input unit) -> (multiply, divide); divisions by powers of ten keep decimals exact.
CONVERSIONS = {("Wh", "kWh"): (1, 1000), ("Wh", "MWh"): (1, 1000000), ("s", "h"): (1, 3600),
               ("s", "min"): (1, 60), ("s", "d"): (1, 86400), ("m³", "l"): (1000, 1),
               ("m³/h", "l/h"): (1000, 1), ("m³/h", "l/min"): (1000, 60)}
DEFAULT_UNITS = {"Wh": "kWh"}        # record unit -> input unit when nothing else is asked


def convert(value: Union[int, float], unit: str, to_unit: str) -> Union[int, float]:
    """``value`` in ``unit`` expressed in ``to_unit``; ValueError for a pair not in CONVERSIONS."""
    if unit == to_unit:
        return value
    if (unit, to_unit) not in CONVERSIONS:
        raise ValueError(f"cannot convert {unit or 'a unitless value'} to {to_unit}")
    multiply, divide = CONVERSIONS[unit, to_unit]
    return value * multiply / divide


# -- presets --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pick:
    """One input a preset reports: the first record of ``quantity`` with these attributes."""

    name: str
    quantity: str
    unit: str = ""                     # "" = the record's unit, Wh reported as kWh
    function: str = "instantaneous"
    storage: int = 0
    tariff: int = 0
    subunit: int = 0
    modifiers: Tuple[str, ...] = ()

    def matches(self, record: Record) -> bool:
        return (record.quantity == self.quantity and record.function == self.function
                and record.storage == self.storage and record.tariff == self.tariff
                and record.subunit == self.subunit and record.modifiers == self.modifiers
                and record.is_number)


@dataclass(frozen=True)
class Step:
    """One request of a read and what to report from its answer.

    ``prepare``: (CI, data) of a SND_UD sent first and acknowledged with E5, e.g. a page select.
    ``request_ci``: ask with a SND_UD of this CI that the meter answers with data, instead of
    REQ_UD2 (the M-Bus SDM120's 0xB1). ``picks`` None reports the standard set: every number
    that is a present (instantaneous, storage 0) measurement or state. ``follow``: read the next
    telegram while one ends with DIF 0x1F; off where pages are selected instead.
    """

    picks: Optional[Tuple[Pick, ...]] = None
    prepare: Optional[Tuple[int, bytes]] = None
    request_ci: Optional[int] = None
    follow: bool = True


@dataclass(frozen=True)
class MeterPreset:
    name: str
    title: str
    steps: Tuple[Step, ...]
    aliases: Tuple[str, ...] = ()
    note: str = ""


def _heat(*extra: Pick) -> Tuple[Pick, ...]:
    """What a heat meter is read for, plus ``extra``."""
    return (Pick("energy", "energy", "kWh"), Pick("volume", "volume", "m³"),
            Pick("flow_temp", "flow_temp", "°C"), Pick("return_temp", "return_temp", "°C"),
            Pick("delta_temp", "delta_temp", "K"), Pick("power", "power", "W"),
            Pick("flow", "flow", "m³/h")) + extra


def _sontex_page(page: int) -> Tuple[int, bytes]:
    """emonhub's Sontex page select: SND_UD, CI 0x51, one manufacturer-specific record."""
    return 0x51, bytes((0x01, 0xFF, 0x08, page))


PRESETS: Dict[str, MeterPreset] = {p.name: p for p in (
    MeterPreset("standard", "any M-Bus meter: every present measurement by its descriptive name",
                (Step(),)),
    MeterPreset("heat_meter", "any EN 1434 heat meter: energy, volume, temperatures, power, flow",
                (Step(_heat()),),
                aliases=("sharky_775", "sontex_789", "sontex_supercal_5", "landis_gyr_ultraheat_t230",
                         "itron_integral_mk_maxx", "allmess_cf50"),
                note="The Sontex 789 and Supercal 5 may need an application reset first (emonhub's "
                     "docs); the Sontex 789 often answers on address 0."),
    MeterPreset("kamstrup_multical", "Kamstrup Multical 302/402/403/602/603 (and 601)",
                (Step(_heat(Pick("on_time", "on_time", "h"),
                            Pick("error_time", "on_time", "h", function="error"))),),
                aliases=("kamstrup403", "kamstrup_multical_302", "kamstrup_multical_402",
                         "kamstrup_multical_403", "kamstrup_multical_601", "kamstrup_multical_602",
                         "kamstrup_multical_603")),
    MeterPreset("sontex_supercal_531", "Sontex Supercal 531: energy from page 1, the rest from page 3",
                (Step((Pick("energy", "energy", "kWh"), Pick("volume", "volume", "m³")), prepare=_sontex_page(1),
                      follow=False),
                 Step((Pick("flow_temp", "flow_temp", "°C"), Pick("return_temp", "return_temp", "°C"),
                       Pick("delta_temp", "delta_temp", "K"), Pick("power", "power", "W"),
                       Pick("flow", "flow", "m³/h")), prepare=_sontex_page(3), follow=False)),
                aliases=("sontex531", "sontex_531")),
    MeterPreset("qalcosonic_e3", "Axioma Qalcosonic E3 heat and cooling meter",
                (Step((Pick("energy", "energy", "kWh", modifiers=("forward",)),
                       Pick("cooling_energy", "energy", "kWh", modifiers=("backward",)),
                       Pick("volume", "volume", "m³"), Pick("flow_temp", "flow_temp", "°C"),
                       Pick("return_temp", "return_temp", "°C"), Pick("delta_temp", "delta_temp", "K"),
                       Pick("power", "power", "W"), Pick("flow", "flow", "m³/h"),
                       Pick("on_time", "on_time", "h"))),),
                note="Power and the temperature difference are negative while it cools."),
    MeterPreset("eastron_sdm120_mbus", "Eastron SDM120 with M-Bus (the Modbus version reads more reliably)",
                (Step((Pick("energy", "energy", "kWh"),)),
                 Step((Pick("voltage", "voltage", "V"), Pick("current", "current", "A"),
                       Pick("power", "power", "W")), request_ci=0xB1)),
                aliases=("sdm120",)),
)}

EMONHUB_TYPES = ("standard", "kamstrup403", "qalcosonic_e3", "sontex531", "sdm120")
_BY_NAME: Dict[str, MeterPreset] = {alias: p for p in PRESETS.values() for alias in (p.name, *p.aliases)}


def preset(name: str, key: str = "meter") -> MeterPreset:
    """The preset called ``name`` (or one of its aliases); PresetError naming close matches."""
    found = _BY_NAME.get(name.strip().lower())
    if found is None:
        close = difflib.get_close_matches(name.lower(), list(_BY_NAME), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise PresetError(f"{key}: unknown M-Bus meter preset {name!r} (known: {', '.join(sorted(_BY_NAME))}){hint}")
    return found


# -- inputs from telegrams --------------------------------------------------------------------------
def standard_records(telegram: Telegram) -> List[Record]:
    """The records the standard set reports: present measurements and states that are numbers."""
    return [r for r in telegram.records
            if r.kind in (MEASURE, STATE) and r.function == "instantaneous" and r.storage == 0 and r.is_number]


def readings(telegram: Telegram, picks: Optional[Sequence[Pick]] = None,
             naming: str = "descriptive") -> Tuple[List[Reading], List[str]]:
    """The inputs of one telegram and the names of picks it does not hold.

    ``picks`` None: the standard set. ``naming``: ``descriptive`` or ``emonhub``.
    """
    emonhub = emonhub_names(telegram) if naming == "emonhub" else None
    chosen: List[Tuple[str, Record, str]] = []
    missing: List[str] = []
    if picks is None and emonhub is not None:
        return _emonhub_standard(telegram, emonhub), []
    if picks is None:
        chosen = [(r.name, r, DEFAULT_UNITS.get(r.unit, r.unit)) for r in standard_records(telegram)]
    else:
        used = set()
        for pick in picks:
            record = next((r for r in telegram.records if r.index not in used and pick.matches(r)), None)
            if record is None:
                missing.append(pick.name)
                continue
            used.add(record.index)
            chosen.append((pick.name, record, pick.unit or DEFAULT_UNITS.get(record.unit, record.unit)))
    out = []
    for name, record, unit in chosen:
        if emonhub is not None:
            name, unit = emonhub[record.index], _emonhub_unit(record, unit)
        out.append(Reading(name, convert(record.value, record.unit, unit), unit))
    if emonhub is not None:
        out += _heat_calc(out)
    return out, missing


# emonhub's record names, by quantity (and modifiers) and, for on time, by VIF
_EMONHUB_BASE = {"energy": "Energy", "volume": "Volume", "operating_time": "OperatingTime", "power": "Power",
                 "flow": "FlowRate", "flow_temp": "FlowT", "return_temp": "ReturnT", "delta_temp": "DeltaT",
                 "external_temp": "ExternalT", "datetime": "DateTime", "fabrication_no": "FabNo",
                 "manufacturer_specific": "ManSpec", "voltage": "Voltage", "current": "Current"}
_EMONHUB_FUNCTION = {"instantaneous": "", "max": "_Max", "min": "_Min", "error": "_error"}


def _emonhub_base(record: Record) -> Optional[str]:
    if record.quantity == "on_time":
        return {0x20: "Ontime", 0x22: "Ontime Hours"}.get(record.vif[0] & 0x7F) if record.vif else None
    if record.quantity == "energy" and "backward" in record.modifiers:
        return "Cooling"
    if record.quantity == "dimensionless":
        return "Frequency"          # emonhub reads the SDM120's frequency from this VIFE
    return _EMONHUB_BASE.get(record.quantity)


def emonhub_names(telegram: Telegram) -> List[str]:
    """emonhub's input name of every record, by index: its quantity name, ``_Max``/``_Min``/
    ``_error``, and a count from the second of a name on (``Energy2``); ``Record<n>`` where
    emonhub knows no name."""
    names, seen = [], {}
    for number, record in enumerate(telegram.records, 1):
        base = _emonhub_base(record)
        if base is None:
            names.append(f"Record{number}")
            continue
        name = base + _EMONHUB_FUNCTION.get(record.function, "")
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name}{seen[name]}")
    return names


def _emonhub_unit(record: Record, unit: str) -> str:
    if record.quantity == "on_time" and record.vif and record.vif[0] & 0x7F == 0x22:
        return "h"                  # emonhub reports the meter's hours as they come
    return unit


# DIF data fields emonhub decodes (integers, the 32-bit real, BCD): it reads no other record
_EMONHUB_DATA_FIELDS = frozenset((1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 14))


def _emonhub_value(record: Record) -> Optional[Union[int, float]]:
    """The value emonhub reports for ``record``, None for a record it does not report.

    A number is reported as ours (the meter's decimals); a date or time as emonhub reads any
    integer field: the little-endian integer of its data bytes (signed for 2 and 4 bytes).
    """
    if not record.dif or record.dif[0] & 0x0F not in _EMONHUB_DATA_FIELDS:
        return None
    if record.is_number:
        return record.value
    if len(record.data) in (1, 3):
        return int.from_bytes(record.data, "little")
    if len(record.data) in (2, 4):
        return int.from_bytes(record.data, "little", signed=True)
    return None


def _emonhub_standard(telegram: Telegram, names: List[str]) -> List[Reading]:
    """emonhub's ``type = standard``: every record it decodes, stored and ``_Max`` values
    included, by its record name, then ``heat_calc``."""
    out = []
    for record in telegram.records:
        value = _emonhub_value(record)
        if value is None:
            continue
        if record.is_number:
            unit = _emonhub_unit(record, DEFAULT_UNITS.get(record.unit, record.unit))
            value = convert(value, record.unit, unit)
        else:
            unit = ""
        out.append(Reading(names[record.index], value, unit))
    return out + _heat_calc(out)


def _heat_calc(out: List[Reading]) -> List[Reading]:
    """emonhub's ``heat_calc``: 4150 J/(kg K) × (FlowT - ReturnT) × FlowRate, in W."""
    values = {r.name: r.value for r in out}
    if not {"FlowT", "ReturnT", "FlowRate"} <= values.keys():
        return []
    return [Reading("heat_calc", 4150 * (values["FlowT"] - values["ReturnT"]) * values["FlowRate"] * 1000 / 3600,
                    "W")]


# -- one read of one meter --------------------------------------------------------------------------
class Exchange(NamedTuple):
    """A frame to send and what answers it: ``ack`` (E5) or ``data`` (a RSP_UD long frame)."""

    frame: bytes
    expect: str
    what: str


Answer = Union[Ack, LongFrame, FrameError, None]     # None: no answer before the timeout


@dataclass
class MeterRead:
    """One read of one meter: the exchanges to make, one at a time, and what they gave.

    ::

        read = MeterRead(preset("kamstrup_multical"), address=1)
        exchange = read.next()
        while exchange is not None:
            port.write(exchange.frame)
            read.answer(<Ack, LongFrame, FrameError, or None on timeout>)
            exchange = read.next()
        read.readings, read.missing, read.errors

    Pass ``answer`` the first item the FrameParser gives that is not ``from_master`` (an
    adapter's echo of the request), or None when ``reply_timeout`` passes without one.
    A lost or garbled answer is asked for again with the same FCB, up to ``retries`` more
    times. A link reset the meter does not acknowledge ends the read: the meter is silent.
    A telegram ending in DIF 0x1F is followed by the next (FCB toggled), up to
    ``max_telegrams``; all of them must come from the same meter id.
    """

    meter: MeterPreset
    address: int
    naming: str = "descriptive"
    retries: int = 2
    max_telegrams: int = 16
    link_reset: bool = True
    telegrams: List[Tuple[int, Telegram]] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)
    readings: List[Reading] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)

    def __post_init__(self):
        self._fcb = False                      # emonhub's 0x5B without a link reset; 1 after SND_NKE
        self._stage = "reset" if self.link_reset else "prepare"
        self._step = 0
        self._tries = 0
        self._step_telegrams: List[Telegram] = []
        self.done = False
        self._current: Optional[Exchange] = None

    @property
    def silent(self) -> bool:
        """True when the meter did not acknowledge the link reset: nothing else was tried."""
        return self._stage == "silent"

    def next(self) -> Optional[Exchange]:
        """The next frame to send, or None when the read is over."""
        while not self.done:
            if self._current is None:
                self._current = self._make()
                if self._current is None:
                    continue
            return self._current
        return None

    def _make(self) -> Optional[Exchange]:
        if self._stage == "reset":
            return Exchange(snd_nke(self.address), "ack", "SND_NKE")
        if self._step >= len(self.meter.steps):
            self.done = True
            return None
        step = self.meter.steps[self._step]
        if self._stage == "prepare":
            if step.prepare is None:
                self._stage = "request"
                return None
            ci, data = step.prepare
            return Exchange(snd_ud(self.address, ci, data, self._fcb), "ack", f"SND_UD CI 0x{ci:02X} {data.hex(' ')}")
        if step.request_ci is not None and not self._step_telegrams:
            return Exchange(snd_ud(self.address, step.request_ci, b"", self._fcb), "data",
                            f"SND_UD CI 0x{step.request_ci:02X}")
        return Exchange(req_ud2(self.address, self._fcb), "data", f"REQ_UD2 (FCB {int(self._fcb)})")

    def answer(self, reply: Answer) -> None:
        """What came back for the exchange ``next`` returned."""
        exchange = self._current
        if exchange is None:
            raise RuntimeError("answer() without a pending exchange")
        if exchange.expect == "ack" and isinstance(reply, Ack):
            reset = self._stage == "reset"
            self._success()
            if reset:
                self._fcb = True                     # what a meter expects after SND_NKE
            self._stage = "prepare" if reset else "request"
            return
        if exchange.expect == "data" and isinstance(reply, LongFrame):
            self._take_data(reply)
            return
        self._tries += 1
        if self._tries <= self.retries:
            return                                   # the same frame again, same FCB
        problem = ("no answer" if reply is None else f"a bad frame ({reply})" if isinstance(reply, FrameError)
                   else "an unexpected answer")
        self.errors.append(f"address {self.address}: {problem} to {exchange.what} after {self.retries + 1} tries")
        self._tries = 0
        self._current = None
        if self._stage == "reset":
            self._stage, self.done = "silent", True
        elif self._step_telegrams:
            self._finish_step()                      # report what the first telegrams gave
        else:
            self._next_step()

    def _success(self) -> None:
        self._fcb = not self._fcb
        self._tries = 0
        self._current = None

    def _take_data(self, frame: LongFrame) -> None:
        self._success()
        try:
            telegram = decode(frame)
        except TelegramError as error:
            self.errors.append(f"address {self.address}: {error}")
            self._finish_step()
            return
        first = self._step_telegrams[0] if self._step_telegrams else None
        if first is not None and telegram.id is not None and first.id is not None and telegram.id != first.id:
            self.errors.append(f"address {self.address}: telegram {len(self._step_telegrams) + 1} is from meter "
                               f"{telegram.id:08d}, the first from {first.id:08d}: two meters on one address?")
            self._finish_step()
            return
        self._step_telegrams.append(telegram)
        self.telegrams.append((self._step, telegram))
        if telegram.more_follows and self.meter.steps[self._step].follow:
            if len(self._step_telegrams) < self.max_telegrams:
                return                               # REQ_UD2 again, FCB toggled
            self.errors.append(f"address {self.address}: the meter has more than {self.max_telegrams} "
                               "telegrams; the rest is not read")
        self._finish_step()

    def _finish_step(self) -> None:
        if self._step_telegrams:
            got, missing = readings(merge(self._step_telegrams), self.meter.steps[self._step].picks, self.naming)
            self.readings.extend(got)
            self.missing.extend(missing)
        self._next_step()

    def _next_step(self) -> None:
        self._step += 1
        self._stage = "prepare"
        self._step_telegrams = []


# -- settings of one meter ------------------------------------------------------------------------
@dataclass(frozen=True)
class MeterSettings:
    name: str
    address: int
    meter: MeterPreset
    naming: str


def meter_settings(name: str, settings: Dict[str, object]) -> MeterSettings:
    """One ``[[[[meters]]]]`` subsection: ``address`` and ``meter`` (or emonhub's ``type``).

    ``naming = descriptive | emonhub`` overrides the style; it defaults to emonhub's when the
    meter is given by emonhub's ``type`` key.
    """
    where = f"meters: {name}:"
    address_text = str(settings.get("address", 1)).strip()
    if not address_text.isdigit() or not (0 <= int(address_text) <= 250 or int(address_text) == 254):
        raise PresetError(f"{where} address {address_text!r} is not an M-Bus primary address (0-250, or 254 "
                          "for the only meter on the bus)")
    if "meter" in settings and "type" in settings:
        raise PresetError(f"{where} give either meter or type, not both")
    key = "meter" if "meter" in settings else "type"
    chosen = preset(str(settings.get(key, "standard")), f"{where} {key}")
    naming = str(settings.get("naming", "emonhub" if key == "type" else "descriptive")).strip().lower()
    if naming not in ("descriptive", "emonhub"):
        raise PresetError(f"{where} naming {naming!r} is not descriptive or emonhub")
    unknown = sorted(set(settings) - {"address", "meter", "type", "naming"})
    if unknown:
        raise PresetError(f"{where} unknown key {unknown[0]!r} (known: address, meter, type, naming)")
    return MeterSettings(name, int(address_text), chosen, naming)
