"""The serial protocol of OpenEnergyMonitor's current board firmware: settings in, answers out.

Pure, no I/O: ``parse_line`` classifies a line the board printed, ``wanted_settings`` reads the
settings a config asks for, ``Configurator`` holds the conversation that brings the board to
them (the listener writes the commands it returns and feeds it the lines that come back), and
``tx_command`` builds a radio transmission. Four firmware families are understood, each found
from its answer to ``l`` (list the settings):

=========  ===========================================  ===================================
dialect    boards, firmware                             found by
=========  ===========================================  ===================================
avrdb      emonTx4, emonTx5, emonPi2: emon_CM_6CT        ``firmware = emon_CM_6CT...`` /
           (``_temperature``), emon_DB_6CT, emon_DB_12CT  ``iCal1 = ...`` lines
emon32     emonTx6, emonPi3                              ``hardware_rev = ``, ``vCal1 = ...,
                                                         vLead1 = ...``
emonpicm   emonPi (v1) with the emonPiCM firmware        ``Settings: r1 b4 p25 g210 ...``
rf12demo   emonPi and RFM69Pi with RF12demo-type         its ``i5 g210 @ 433 MHz`` line; else
           firmware: value first (``210g``)              emonhub's ``4v`` test (below)
=========  ===========================================  ===================================

The first three take a letter and then the value (``g210``); the last takes the value first
(``210g``), stores each change at once, and has only the radio settings. When ``l`` brings
nothing recognisable, emonhub's test decides: ``4v`` is sent; firmware that answers with
anything but ``4v`` takes value-first commands; the others are silent (emonPiCM then ignores
commands for 2 s), and are left alone, as their commands are not known.

What the conversation does (``Configurator``):

1. ``l``: the board lists its settings (emon32 also ``lh`` when the line frequency is asked
   for, the only place it shows it).
2. For each configured setting, in a fixed order (radio on/off first, as the listing shows the
   radio settings only while the radio is on): nothing if the board has it already; else its
   command, one at a time, each waiting for the board's answer (the AVR boards read a few
   characters per main-loop pass: commands sent together overflow their buffer). An
   unsupported setting (``temperature`` on an emonPi2, 433.92 MHz on emon_CM_6CT, ...) is
   reported, not sent.
3. ``l`` again: what the board has now, setting by setting (emonPiCM does not answer commands;
   this is how its changes are seen).
4. ``s`` (save to EEPROM/flash) only when a setting the board listed before was changed and is
   listed with the new value now. Settings the board does not list (the avrdb line frequency,
   which it keeps in RAM only, and its ``temperature``) are sent at every conversation and
   never cause a save by themselves: a board's EEPROM is not rewritten for nothing. Run the
   conversation again when the board restarts (``Report.marker == "boot"``).

Values are compared at the two decimals the firmware prints. Setting names are emonhub's
runtimesettings for its OEM interfacer (``group``, ``baseid``, ``frequency``, ``period``,
``vcal``, ``ical1``...) plus the ones it never sent; see ``SETTINGS``.
"""

import math
import re
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from protocols import rf12demo

LIST_WAIT = 3.0      # s for the settings listing after ``l``
COMMAND_WAIT = 2.0   # s for the answer to a command (an AVR board reads ~40 characters/s)
PROBE_WAIT = 1.0     # s for an answer to ``4v`` (emonhub's wait)
SAVE_WAIT = 3.0      # s for the answer to ``s``
MAX_TX_BYTES = 60    # payload bytes of a ``T`` transmission (emonPiCM's limit)

BANDS = ("433", "433.92", "868", "915")
_NUM = r"-?\d+(?:\.\d+)?"

SETTINGS: Dict[str, str] = {
    "radio": "radio on or off (w); names: radio, rf",
    "band": "radio band, MHz: 433, 433.92, 868, 915 (or 4, 49, 8, 9); names: frequency, band",
    "group": "radio network group 0-255 (g); name: group",
    "node": "the board's radio node id 1-60 (n); names: baseid, nodeid, node",
    "power": "radio power 0-31 (p; 25 = +7 dBm); names: rfpower, power",
    "period": "seconds between readings (d); names: period, datalog",
    "acfreq": "line frequency 50 or 60 Hz (f); names: acfreq, linefreq",
    "assumed_v": "Vrms assumed when no AC is seen (a); names: assumedvrms, assumed_v, vrms",
    "vcal": "voltage calibration, or [calibration, phase] (k0; emon32 k1..k3); names: vcal "
            "(= vcal1), vcal2, vcal3 (emon32)",
    "ical1..ical12": "CT n calibration, or [calibration, phase lead] (k<n>); without a phase "
                     "the board's own is kept",
    "pulse": "pulse input on or off, and its minimum period in ms (m1); names: pulse, "
             "pulse_period, m1 (= the period, pulses on)",
    "temperature": "temperature sensing on or off (t); names: temperature, t0",
    "json": "JSON output on or off (j); name: json",
}
"""The settings a board can be given, for the config documentation."""

ORDER = (("radio", "band", "group", "node", "power", "period", "acfreq", "assumed_v")
         + tuple(f"vcal{n}" for n in range(1, 4)) + tuple(f"ical{n}" for n in range(1, 13))
         + ("pulse", "temperature", "json"))
_CAL = frozenset(ORDER[8:23])
_ALIASES = {"rf": "radio", "frequency": "band", "baseid": "node", "nodeid": "node",
            "rfpower": "power", "datalog": "period", "linefreq": "acfreq",
            "assumedvrms": "assumed_v", "vrms": "assumed_v", "vcal": "vcal1", "t0": "temperature"}

Value = Union[int, float, bool, str, tuple]


# -- the settings a config asks for ---------------------------------------------------------
def wanted_settings(config: Mapping[str, object]) -> Tuple[Dict[str, Value], List[str]]:
    """The board settings in a listener's config: ``(settings, problems)``.

    Keys not about the board are ignored; each problem names its key and what was expected.
    Values may be configobj strings or lists (``ical1 = 100, 3.2``).
    """
    wanted: Dict[str, Value] = {}
    problems: List[str] = []
    pulse_on, pulse_period = None, None
    for raw_key, raw in config.items():
        key = _ALIASES.get(raw_key.lower(), raw_key.lower())
        if raw is None:
            continue
        if key not in ORDER and key not in ("pulse_period", "m1"):
            if re.fullmatch(r"[iv]cal\d+", key):
                problems.append(f"{raw_key}: no such input (ical1-ical12, vcal1-vcal3)")
            continue
        try:
            if key == "pulse":
                pulse_on = _bool(raw)
            elif key == "pulse_period":
                pulse_period = _int(raw, 0, 65535)
            elif key == "m1":
                pulse_on, pulse_period = True, _int(raw, 0, 65535)
            else:
                wanted[key] = _parse_setting(key, raw)
        except ValueError as exc:
            problems.append(f"{raw_key} = {_text(raw)}: {exc}")
    if pulse_on is not None or pulse_period is not None:
        wanted["pulse"] = (pulse_on, pulse_period)
    return wanted, problems


def _parse_setting(key: str, raw) -> Value:
    if key in ("radio", "temperature", "json"):
        return _bool(raw)
    if key == "band":
        return _band(raw)
    if key == "group":
        return _int(raw, 0, 255)
    if key == "node":
        return _int(raw, 1, 60)
    if key == "power":
        return _int(raw, 0, 31)
    if key == "period":
        return _float(raw, 0.1, 3600)
    if key == "acfreq":
        value = _int(raw, 50, 60)
        if value not in (50, 60):
            raise ValueError("expected 50 or 60")
        return value
    if key == "assumed_v":
        return _float(raw, 1, 1000)
    items = raw if isinstance(raw, (list, tuple)) else [raw]
    if len(items) not in (1, 2):
        raise ValueError("expected a calibration, or a calibration and a phase")
    cal = _float(items[0], 0.001, 100000)
    return (cal, _float(items[1], -360, 360) if len(items) == 2 else None)


def _text(raw) -> str:
    return ", ".join(map(str, raw)) if isinstance(raw, (list, tuple)) else str(raw)


def _single(raw) -> str:
    if isinstance(raw, (list, tuple)):
        if len(raw) != 1:
            raise ValueError("expected one value")
        raw = raw[0]
    return str(raw).strip()


def _bool(raw) -> bool:
    text = _single(raw).lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected on or off (1 or 0)")


def _int(raw, low: int, high: int) -> int:
    try:
        value = int(_single(raw))
    except ValueError:
        raise ValueError(f"expected a whole number {low}-{high}") from None
    if not low <= value <= high:
        raise ValueError(f"expected a whole number {low}-{high}")
    return value


def _float(raw, low: float, high: float) -> float:
    try:
        value = float(_single(raw))
    except ValueError:
        raise ValueError("expected a number") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"expected a number {low:g}-{high:g}")
    return value


def _band(raw) -> str:
    text = _single(raw)
    codes = {"4": "433", "43": "433", "433": "433", "433.0": "433", "433.00": "433",
             "49": "433.92", "433.92": "433.92", "8": "868", "868": "868", "9": "915", "915": "915"}
    if text not in codes:
        raise ValueError("expected 433, 433.92, 868 or 915 (or 4, 49, 8, 9)")
    return codes[text]


# -- what the board prints ------------------------------------------------------------------
@dataclass(frozen=True)
class Data:
    """A reading (key:value, JSON, or a relayed ``OK`` packet): the listener decodes it."""

    kind: str


@dataclass(frozen=True)
class Calibration:
    """The second line ``c1`` makes the avrdb firmware print: ``,I1:0.512,...,pf1:0.9876``."""

    values: Dict[str, float]


@dataclass(frozen=True)
class Report:
    """Settings or facts the board stated (a listing line, or the echo of a command).

    ``values``: settings by name (see ``ORDER``); ``info``: firmware, version, hardware...;
    ``marker``: ``end`` (the last line of a listing), ``last`` (the last line of an avrdb
    listing, which emon32 prints before its end), ``boot`` (the board has just started),
    ``saved`` (the answer to ``s``), or None.
    """

    values: Dict[str, Value] = field(default_factory=dict)
    info: Dict[str, str] = field(default_factory=dict)
    marker: Optional[str] = None
    dialect: Optional[str] = None
    details: Dict[str, tuple] = field(default_factory=dict)


@dataclass(frozen=True)
class Refusal:
    """The board refused a command, in its words."""

    text: str


@dataclass(frozen=True)
class Text:
    """Any other line (help text, banners, notes): kept for the report."""

    text: str


@dataclass(frozen=True)
class Ignored:
    reason: str


Line = Union[Data, Calibration, Report, Refusal, Text, Ignored]

_KEYVALUE = re.compile(r"[\w-]+:[^,\s]+(?:,[\w-]+:[^,\s]*)*", re.ASCII)
_CALIBRATION = re.compile(r",(?:[\w-]+:-?[\d.]+,?)+", re.ASCII)


def _on(word: str) -> bool:
    return word.lower() in ("on", "1")


def _band_text(text: str) -> Optional[str]:
    number = float(text)
    for band in BANDS:
        if abs(number - float(band)) < 0.005:
            return band
    return None      # "0 MHz": a band the firmware cannot name


def _values(**values) -> Report:
    return Report(values={k: v for k, v in values.items() if v is not None})


def _rf_line(m) -> Report:
    values = {"radio": _on(m["on"]), "band": _band_text(m["band"]), "group": int(m["group"]),
              "node": int(m["node"]), "power": int(m["power"])}
    return Report(values={k: v for k, v in values.items() if v is not None},
                  info={"rf_format": m["format"].strip()})


def _ct_line(m) -> Report:
    n = int(m["n"])
    if m["active"] is None:
        return Report(values={f"ical{n}": (float(m["cal"]), float(m["lead"]))})
    return Report(values={f"ical{n}": (float(m["cal"]), float(m["lead"]))}, dialect="emon32",
                  details={f"ct{n}": (_on(m["active"]), int(m["v1"]), int(m["v2"]))})


def _opa_line(m) -> Report:
    n, active = int(m["n"]), _on(m["active"])
    if m["kind"] in ("onewire", "analog"):
        detail = (active, m["kind"][0], None, None)
        values = {"pulse": (False, None)} if n == 1 else {}
    else:
        edge = {"rising": "r", "falling": "f", "both": "b"}[m["edge"]]
        detail = (active, edge, _on(m["pullup"]), int(m["period"]))
        values = {"pulse": (active, int(m["period"]))} if n == 1 else {}
    return Report(values=values, dialect="emon32", details={f"opa{n}": detail})


def _terse(m) -> Report:
    """emonPiCM's ``Settings: r1 b4 p25 g210 i5 a240.00 ac1 f50.00 k0 268.97 0.00 ...``."""
    tokens = m["rest"].split()
    values: Dict[str, Value] = {}
    i = 0
    try:
        while i < len(tokens):
            token = tokens[i]
            letter, arg = token[0], token[1:]
            if token.startswith("ac"):
                pass
            elif letter == "r":
                values["radio"] = arg != "0"
            elif letter == "b":
                values["band"] = {"4": "433", "8": "868", "9": "915"}.get(arg)
            elif letter == "p":
                values["power"] = int(arg)
            elif letter == "g":
                values["group"] = int(arg)
            elif letter == "i":
                values["node"] = int(arg)
            elif letter == "a":
                values["assumed_v"] = float(arg)
            elif letter == "f":
                values["acfreq"] = int(float(arg))
            elif letter == "d":
                values["period"] = float(arg)
            elif letter == "k":
                cal, lead = float(tokens[i + 1]), float(tokens[i + 2])
                values["vcal1" if arg == "0" else f"ical{arg}"] = (cal, None if arg == "0" else lead)
                i += 2
            elif letter == "m":
                values["pulse"] = (arg == "1", int(tokens[i + 1]))
                i += 3                                 # pulse 2's flag and period follow
            elif letter == "t":
                values["temperature"] = arg == "1"
                i += 1                                 # the count of sensors found
            i += 1
    except (ValueError, IndexError):
        pass
    return Report(values={k: v for k, v in values.items() if v is not None}, marker="end",
                  dialect="emonpicm")


_PATTERNS: Sequence[Tuple["re.Pattern", object]] = tuple((re.compile(p, re.ASCII), f) for p, f in (
    # facts (avrdb: firmware/version/hardware/voltage; emon32: hardware/hardware_rev/version/...)
    (r"firmware = (?P<v>emon_\S+)",
     lambda m: Report(info={"firmware": m["v"]}, dialect="avrdb")),
    (r"(?P<k>version|hardware|voltage|commit|bootloader) = (?P<v>\S.*)",
     lambda m: Report(info={m["k"]: m["v"].strip()})),
    (r"hardware_rev = (?P<v>\d+)",
     lambda m: Report(info={"hardware_rev": m["v"]}, dialect="emon32")),
    (r"(?:Loaded|No) EEPROM config", lambda m: Report(marker="boot")),
    # calibration
    (rf"vCal = (?P<v>{_NUM})", lambda m: Report(values={"vcal1": (float(m["v"]), None)})),
    (rf"vCal(?P<n>[1-3]) = (?P<cal>{_NUM}), vLead\d = (?P<lead>{_NUM}), vActive\d = (?:on|off)",
     lambda m: Report(values={f"vcal{m['n']}": (float(m["cal"]), float(m["lead"]))},
                      dialect="emon32")),
    (rf"iCal(?P<n>\d+) = (?P<cal>{_NUM}), iLead(?P=n) = (?P<lead>{_NUM})"
     rf"(?:, iActive(?P=n) = (?P<active>on|off), v1Chan(?P=n) = (?P<v1>\d+), "
     rf"v2Chan(?P=n) = (?P<v2>\d+))?", _ct_line),
    (rf"iCal(?P<n>\d+) = (?P<cal>{_NUM})",             # the first avrdb firmware: two lines
     lambda m: Report(details={f"ical{m['n']}": (float(m["cal"]),)})),
    (rf"iLead(?P<n>\d+) = (?P<lead>{_NUM})",
     lambda m: Report(details={f"ilead{m['n']}": (float(m["lead"]),)})),
    (rf"assumedV(?:rms)? = (?P<v>{_NUM})", lambda m: _values(assumed_v=float(m["v"]))),
    # pulses
    (r"pulse = off", lambda m: _values(pulse=(False, None))),
    (r"pulse = \d+, pulsePeriod = (?P<p>\d+)ms", lambda m: _values(pulse=(True, int(m["p"])))),
    (r"pulses = (?P<v>[01])", lambda m: Report(details={"pulses": (m["v"] == "1",)})),
    (r"pulse period = (?P<p>\d+)", lambda m: Report(details={"pulse_period": (int(m["p"]),)})),
    (r"opa(?P<n>\d) active = (?P<active>on|off), (?:(?P<kind>onewire|analog)|pulse = "
     r"(?P<edge>rising|falling|both), pullUp = (?P<pullup>on|off), pulsePeriod = (?P<period>\d+))",
     _opa_line),
    # radio
    (r"RF = (?P<on>on|off), rfBand = (?P<band>[\d.]+) MHz, rfGroup = (?P<group>\d+), "
     r"rfNode = (?P<node>\d+), rfPower = (?P<power>\d+), rfFormat = (?P<format>.+)", _rf_line),
    (r"RF = (?P<on>on|off)", lambda m: _values(radio=_on(m["on"]))),
    (r"RF (?P<on>on|off)", lambda m: _values(radio=_on(m["on"]))),
    (r"Band (?P<band>\d+) MHz, Group (?P<group>\d+), Node (?P<node>\d+), (?P<dbm>-?\d+) dBm",
     lambda m: _values(band=_band_text(m["band"]), group=int(m["group"]), node=int(m["node"]),
                       power=int(m["dbm"]) + 18)),
    (r"rfBand = (?P<band>[\d.]+) MHz", lambda m: _values(band=_band_text(m["band"]))),
    (r"rfGroup = (?P<v>\d+)", lambda m: _values(group=int(m["v"]))),
    (r"rfNode = (?P<v>\d+)", lambda m: _values(node=int(m["v"]))),
    (r"rfPower = (?P<v>\d+)", lambda m: _values(power=int(m["v"]))),
    # the rest
    (rf"datalog = (?P<v>{_NUM})", lambda m: _values(period=float(m["v"]))),
    (rf"freq = (?P<v>{_NUM})", lambda m: _values(acfreq=int(float(m["v"])))),
    (r"> Mains frequency set to: (?P<v>\d+)", lambda m: _values(acfreq=int(m["v"]))),
    (r"Mains frequency \(Hz\):\s+(?P<v>\d+)", lambda m: _values(acfreq=int(m["v"]))),
    (r"temp_enable = (?P<v>[01])", lambda m: _values(temperature=m["v"] == "1")),
    (r"json = (?P<v>on|off)", lambda m: Report(values={"json": _on(m["v"])}, marker="last")),
    (r"JSON Format (?P<v>on|Off|off)", lambda m: Report(values={"json": _on(m["v"])}, marker="end")),
    (r"(?:All settings saved\.|There are unsaved changes\..*)",
     lambda m: Report(marker="end", dialect="emon32")),
    (r"Settings: (?P<rest>r\d.*)", _terse),
    (r"(?:Done\. New config saved to EEPROM|> Saving configuration to NVM\.\.\. Done!|"
     r"> No changes to save\.|\|?Config saved)", lambda m: Report(marker="saved")),
    # refusals
    (r"> Error: (?P<v>.*)", lambda m: Refusal(m["v"].strip())),
    (r"(?P<v>(?:Radio|Temperature sensing) is handled by the Pi on the emonPi2)",
     lambda m: Refusal(m["v"])),
    (r"(?P<v>Tx Data invalid.*)", lambda m: Refusal(m["v"])),
))


def parse_line(line: str) -> Line:
    """Classify one line the board printed. Never raises."""
    if line.startswith("\x01"):
        return Ignored("SOH")
    text = line.strip()
    if not text:
        return Ignored("empty")
    if text[0] == "{":
        return Data("json")
    if text[0] == "[":                       # no OEM firmware prints JSON arrays
        return _old_config(text) or Text(text)
    if text.startswith("OK"):
        return Data("packet")
    if text.startswith(","):
        if _CALIBRATION.fullmatch(text):
            pairs = (item.split(":", 1) for item in text.split(",") if item)
            return Calibration({name: float(value) for name, value in pairs})
        return Text(text)
    for pattern, build in _PATTERNS:
        match = pattern.fullmatch(text)
        if match is not None:
            return build(match)
    if _KEYVALUE.fullmatch(text):
        return Data("keyvalue")
    return _old_config(text) or Text(text)


def _old_config(text: str) -> Optional[Report]:
    """RF12demo-type firmware's settings line, ``[emonPi.2.90] E i5 g210 @ 433 MHz q0``."""
    old = rf12demo.parse_line(text)
    if not isinstance(old, rf12demo.BoardReport):
        return None
    values = {"node": old.node_id, "group": old.group}
    if str(old.band) in BANDS:
        values["band"] = str(old.band)
    return Report(values=values, info={"firmware": old.firmware or ""}, marker="end",
                  dialect="rf12demo")


# -- the board as it says it is -------------------------------------------------------------
@dataclass
class Board:
    """What the board has told about itself so far."""

    dialect: Optional[str] = None
    info: Dict[str, str] = field(default_factory=dict)
    values: Dict[str, Value] = field(default_factory=dict)
    details: Dict[str, tuple] = field(default_factory=dict)
    guessed: bool = False    # dialect inferred from calibration lines, not stated

    def update(self, report: Report) -> None:
        if report.dialect and (self.dialect is None or self.guessed):
            self.dialect, self.guessed = report.dialect, False
        self.info.update({k: v for k, v in report.info.items() if v})
        self.values.update(report.values)
        self.details.update(report.details)
        self._merge_split_lines(report)
        if self.dialect is None and any(k.startswith(("vcal", "ical")) for k in
                                        list(report.values) + list(report.details)):
            self.dialect, self.guessed = "avrdb", True   # the first avrdb listing: no firmware line

    def _merge_split_lines(self, report: Report) -> None:
        """The first avrdb firmware lists iCal1/iLead1 and pulses/pulse period on two lines."""
        for key in report.details:
            if key.startswith(("ical", "ilead")):
                n = key[4:] if key.startswith("ical") else key[5:]
                cal, lead = self.details.get(f"ical{n}"), self.details.get(f"ilead{n}")
                if cal and lead:
                    self.values[f"ical{n}"] = (cal[0], lead[0])
            elif key in ("pulses", "pulse_period") and "pulses" in self.details:
                period = self.details.get("pulse_period", (None,))[0]
                self.values["pulse"] = (self.details["pulses"][0], period)

    @property
    def firmware(self) -> str:
        return self.info.get("firmware", "")

    def describe(self) -> str:
        parts = [self.firmware or self.dialect or "unknown firmware"]
        if self.info.get("version"):
            parts.append(f"v{self.info['version']}")
        if self.info.get("hardware"):
            parts.append(f"on {self.info['hardware']}")
        return " ".join(parts)


# -- what each firmware takes ---------------------------------------------------------------
class Unsupported(str):
    """Why a setting is not sent to this firmware."""


def _num(value: float) -> str:
    """A number as a command argument: ``101.3``, ``9.8``, ``100``."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text if text not in ("-0", "") else "0"


def _phase(n: int, wanted: tuple, board: Board, default: float) -> float:
    if wanted[1] is not None:
        return wanted[1]
    have = board.values.get(f"ical{n}")
    return have[1] if have and have[1] is not None else default


class Dialect:
    """One firmware family: the command for each setting, and how it saves.

    ``numbers`` and ``switches`` map the settings that are one letter and a value (``g210``,
    ``j1``) to their letter; ``special()`` builds the others.
    """

    name = ""
    save: Optional[str] = "s"
    verifies = True          # it lists its settings with ``l``
    persistent = frozenset(ORDER)
    can_transmit = False
    numbers = {"group": "g", "node": "n", "power": "p", "period": "d", "acfreq": "f"}
    switches: Dict[str, str] = {}

    def command(self, setting: str, value: Value, board: Board) -> Union[str, Unsupported]:
        """The command line that gives the board ``setting`` = ``value``, or why there is none."""
        if setting in self.numbers:
            return f"{self.numbers[setting]}{_num(value)}"
        if setting in self.switches:
            return f"{self.switches[setting]}{int(value)}"
        return self.special(setting, value, board)

    def special(self, setting: str, value: Value, board: Board) -> Union[str, Unsupported]:
        return Unsupported(f"{self.name} has no {setting} setting")

    def listings(self, wanted: Mapping[str, Value]) -> List[str]:
        return ["l"]


class Avrdb(Dialect):
    """emonTx4/5 and emonPi2 (avrdb_firmware): ``g210``, ``k1 100 3.2``, ``m1 100``..."""

    name = "avrdb"
    persistent = frozenset(ORDER) - {"acfreq"}      # ``f`` is not stored in EEPROM
    switches = {"json": "j"}

    def special(self, setting, value, board):
        firmware, hardware = board.firmware, board.info.get("hardware", "")
        cm = not firmware.startswith("emon_DB")
        channels = 12 if firmware.startswith("emon_DB_12CT") else 6
        if setting == "band":
            if value == "433.92" and not firmware.startswith("emon_DB_6CT"):
                return Unsupported(f"{firmware or 'this firmware'} has no 433.92 MHz band "
                                   f"command (emon_DB_6CT v2.2 and later have b49)")
            return "b" + {"433": "4", "433.92": "49", "868": "8", "915": "9"}[value]
        if setting in ("radio", "temperature") and hardware == "emonPi2":
            return Unsupported(f"the emonPi2's {setting} is handled by the Pi")
        if setting == "radio":
            return f"w{int(value)}"
        if setting in ("assumed_v", "temperature") and not cm:
            return Unsupported(f"{firmware} has no {setting} setting")
        if setting == "assumed_v":
            return f"a{_num(value)}"
        if setting == "temperature":
            return f"t{int(value)}"
        if setting == "vcal1":
            return f"k0 {_num(value[0])}"
        if setting in ("vcal2", "vcal3"):
            return Unsupported("one voltage calibration (vcal) on this firmware")
        if setting.startswith("ical"):
            n = int(setting[4:])
            if n > channels:
                return Unsupported(f"{firmware or 'this firmware'} has {channels} CT inputs")
            return f"k{n} {_num(value[0])} {_num(_phase(n, value, board, 3.2))}"
        if setting == "pulse":
            on, period = _pulse(value, board)
            return f"m{int(on)} {period}"
        return super().special(setting, value, board)


def _pulse(value: tuple, board: Board) -> Tuple[bool, int]:
    """The whole pulse setting: what is configured, the board's for the rest (the firmware
    sets the period with every ``m`` command)."""
    have_on, have_period = board.values.get("pulse", (None, None))
    on = value[0] if value[0] is not None else bool(have_on)
    period = value[1] if value[1] is not None else have_period if have_period is not None else 100
    return on, period


class Emon32(Dialect):
    """emonTx6 and emonPi3 (emon32): ``k4 1 100 3.2 1 1`` for CT1, ``x0`` for 433.92 MHz..."""

    name = "emon32"
    switches = {"radio": "w", "json": "j"}

    def listings(self, wanted):
        return ["l", "lh"] if "acfreq" in wanted else ["l"]   # only ``lh`` shows the line frequency

    def special(self, setting, value, board):
        if setting == "band":
            have = board.values.get("band")
            if value in ("433", "433.92") and have in ("433", "433.92", None):
                return "x1" if value == "433" else "x0"
            return Unsupported(f"this board's radio is {have} MHz: only 433 and 433.92 MHz "
                               f"can be switched")
        if setting == "assumed_v":
            return f"a{int(round(value))}"
        if setting.startswith("vcal"):
            n = int(setting[4:])
            have = board.values.get(setting)
            phase = value[1] if value[1] is not None else have[1] if have else 0.0
            return f"k{n} 1 {_num(value[0])} {_num(phase)}"
        if setting.startswith("ical"):
            n = int(setting[4:])
            _, v1, v2 = board.details.get(f"ct{n}", (True, 1, 1))
            return f"k{n + 3} 1 {_num(value[0])} {_num(_phase(n, value, board, 0.0))} {v1} {v2}"
        if setting == "pulse":
            active, func, pullup, period = board.details.get("opa1", (False, "r", False, 100))
            if func not in ("r", "f", "b"):
                return Unsupported("input OPA1 is set up for " +
                                   ("OneWire" if func == "o" else "analog") +
                                   ": set it up as a pulse input on the board first")
            on, period = _pulse(value, board)
            return f"m1 {int(on)} {func} {int(bool(pullup))} {period}"
        if setting == "temperature":
            return Unsupported("emon32 finds temperature sensors on its OneWire inputs itself")
        return super().special(setting, value, board)


class EmonPiCM(Dialect):
    """The emonPi's emonPiCM firmware: like avrdb, silent; CT1-2 only; ``t0 1``."""

    name = "emonpicm"
    can_transmit = True
    numbers = dict(Dialect.numbers, assumed_v="a")

    def special(self, setting, value, board):
        if setting == "band":
            if value == "433.92":
                return Unsupported("emonPiCM has no 433.92 MHz band")
            return "b" + {"433": "4", "868": "8", "915": "9"}[value]
        if setting == "vcal1":
            return f"k0 {_num(value[0])}"
        if setting.startswith("ical") and int(setting[4:]) <= 2:
            n = int(setting[4:])
            return f"k{n} {_num(value[0])} {_num(_phase(n, value, board, 4.2))}"
        if setting == "pulse":
            on, period = _pulse(value, board)
            return f"m{int(on)} {period}"
        if setting == "temperature":
            return f"t0 {int(value)}"
        return super().special(setting, value, board)


class RF12Demo(Dialect):
    """RF12demo-type firmware: value first (``210g``); stores each change itself."""

    name = "rf12demo"
    save = None
    verifies = False
    numbers = {}

    def special(self, setting, value, board):
        if setting == "group":
            return f"{value}g"
        if setting == "node":
            return f"{value}i"
        if setting == "band" and value != "433.92":
            return f"{rf12demo.BANDS[int(value)]}b"
        return Unsupported(f"firmware that takes value-first commands has no {setting} setting")


DIALECTS: Dict[str, Dialect] = {d.name: d for d in (Avrdb(), Emon32(), EmonPiCM(), RF12Demo())}


def same(setting: str, wanted: Value, have: Optional[Value]) -> bool:
    """True if the board's ``have`` is the configured ``wanted`` (at the printed 2 decimals)."""
    if have is None:
        return False
    if setting in _CAL:
        return _close(wanted[0], have[0]) and (wanted[1] is None or
                                               (have[1] is not None and _close(wanted[1], have[1])))
    if setting == "pulse":
        on = wanted[0] if wanted[0] is not None else have[0]
        return ((wanted[0] is None or wanted[0] == have[0]) and
                (wanted[1] is None or not on or have[1] == wanted[1]))
    if isinstance(wanted, float) or isinstance(have, float):
        return _close(float(wanted), float(have))
    return wanted == have


def _close(a: float, b: float) -> bool:
    return abs(a - b) < 0.005 + 1e-6 * abs(a)


# -- the conversation -----------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """A command to write (``command`` + newline), and how long to wait for its answer before
    calling ``Configurator.timed_out()``."""

    command: str
    wait: float


@dataclass
class Outcome:
    """One setting: what was wanted, what the board had before and has now, what it said."""

    setting: str
    wanted: Value
    before: Optional[Value] = None
    after: Optional[Value] = None
    command: Optional[str] = None
    answer: List[str] = field(default_factory=list)   # the board's reply to the command
    notes: List[str] = field(default_factory=list)    # other lines printed meanwhile
    result: str = "pending"   # already, set, refused, not applied, sent, no answer, unsupported
    reason: str = ""

    def describe(self) -> str:
        text = f"{self.setting}: {_show(self.before)} -> {_show(self.wanted)}"
        if self.result == "already":
            return f"{self.setting}: {_show(self.wanted)} already"
        if self.result == "unsupported":
            return f"{self.setting}: not sent: {self.reason}"
        said = self.answer or self.notes
        said = f" (board: {' / '.join(said)})" if said else ""
        return f"{text}: {self.result}, sent {self.command}{said}"


def _show(value) -> str:
    if value is None:
        return "?"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return " ".join(_show(v) for v in value if v is not None) or "?"
    return _num(value) if isinstance(value, float) else str(value)


class Configurator:
    """One conversation with a board: list, set what differs, check, save if needed.

    Drive it with ``start()``, then ``feed()`` every line the board prints (as ``parse_line``
    classified it; readings are ignored here) and ``timed_out()`` when a Step's wait ran out
    without the conversation moving on. Each returns the next Step to write, or None (keep
    waiting, or finished: see ``done``). ``report()`` says what happened, setting by setting.
    """

    def __init__(self, wanted: Mapping[str, Value]):
        self.wanted = {k: wanted[k] for k in ORDER if k in wanted}
        self.board = Board()
        self.outcomes: Dict[str, Outcome] = {}
        self.recognised: Optional[bool] = None
        self.saved: Optional[bool] = None       # None: no save was needed
        self.done = False
        self._phase = "idle"
        self._listings: List[str] = []
        self._extra_listed = False
        self._current: Optional[Outcome] = None

    @property
    def dialect(self) -> Optional[Dialect]:
        return DIALECTS.get(self.board.dialect) if self.board.dialect else None

    # -- driving ------------------------------------------------------------------------
    def start(self) -> Step:
        self._phase, self._listings = "list", ["l"]
        return self._list_next()

    def feed(self, item: Line) -> Optional[Step]:
        if isinstance(item, (Data, Ignored, Calibration)) or self.done:
            return None
        handler = {"list": self._on_listing, "verify": self._on_listing, "probe": self._on_probe,
                   "command": self._on_answer, "save": self._on_save}.get(self._phase)
        return handler(item) if handler else None

    def timed_out(self) -> Optional[Step]:
        if self.done:
            return None
        if self._phase in ("list", "verify"):
            return self._listed()
        if self._phase == "probe":       # silent: letter-first firmware we do not know
            return self._finish(recognised=False)
        if self._phase == "command":
            self._current.result = "no answer"
            return self._next_command()
        if self._phase == "save":
            self.saved = False
            return self._finish()
        return None

    # -- phases -------------------------------------------------------------------------
    def _list_next(self) -> Step:
        return Step(self._listings.pop(0), LIST_WAIT)

    def _on_listing(self, item: Line) -> Optional[Step]:
        if not isinstance(item, Report):
            return None
        self.board.update(item)
        ends = item.marker == "end" or (item.marker == "last" and self.board.dialect != "emon32")
        if not ends:
            return None
        if self._listings:
            return self._list_next()
        return self._listed()

    def _listed(self) -> Optional[Step]:
        dialect = self.dialect
        if self._phase == "verify":
            return self._verified()
        if dialect is None:
            self._phase = "probe"
            return Step("4v", PROBE_WAIT)
        self.recognised = True
        extra = [c for c in dialect.listings(self.wanted) if c != "l"]
        if extra and not self._extra_listed:
            self._extra_listed = True
            self._listings = extra
            return self._list_next()
        self._phase = "command"
        return self._next_command()

    def _on_probe(self, item: Line) -> Optional[Step]:
        if isinstance(item, Text) and item.text == "4v":
            return self._finish(recognised=False)      # an echo: letter-first, unknown
        self.board.dialect = "rf12demo"                # anything else: value-first firmware
        if isinstance(item, Report):
            self.board.update(item)
        self.recognised = True
        self._phase = "command"
        return self._next_command()

    def _next_command(self) -> Optional[Step]:
        dialect = self.dialect
        for setting, value in self.wanted.items():
            if setting in self.outcomes:
                continue
            have = self.board.values.get(setting)
            outcome = self.outcomes[setting] = Outcome(setting, value, before=have)
            if same(setting, value, have):
                outcome.result, outcome.after = "already", have
                continue
            command = dialect.command(setting, value, self.board)
            if isinstance(command, Unsupported):
                outcome.result, outcome.reason = "unsupported", str(command)
                continue
            outcome.command = command
            self._current = outcome
            return Step(command, COMMAND_WAIT)
        self._current = None
        if any(o.command for o in self.outcomes.values()) and dialect.verifies:
            self._phase, self._listings = "verify", dialect.listings(self.wanted)
            return self._list_next()
        return self._verified()

    def _on_answer(self, item: Line) -> Optional[Step]:
        """A line after a command: a statement of the setting answers it; a refusal too."""
        current = self._current
        text = item.text if isinstance(item, (Text, Refusal)) else None
        if isinstance(item, Report):
            self.board.update(item)
            if current.setting not in item.values:
                if item.values and len(current.notes) < 5:
                    current.notes.append(_show_report(item))
                return None
            current.answer.append(_show_report(item))
            current.result = "answered"
            return self._next_command()
        if isinstance(item, Refusal):
            current.answer.append(text)
            current.result = "refused"
            return self._next_command()
        if text and len(current.notes) < 5:
            current.notes.append(text)
        return None

    def _verified(self) -> Optional[Step]:
        dialect = self.dialect
        changed = False
        for outcome in self.outcomes.values():
            if outcome.command is None:
                continue
            outcome.after = self.board.values.get(outcome.setting)
            if outcome.result != "refused":
                if outcome.after is None:
                    outcome.result = "sent" if outcome.answer or outcome.notes else "no answer"
                else:
                    outcome.result = "set" if same(outcome.setting, outcome.wanted, outcome.after) \
                        else "not applied"
            if (outcome.result == "set" and outcome.before is not None
                    and outcome.setting in dialect.persistent):
                changed = True
        if changed and dialect.save:
            self._phase = "save"
            return Step(dialect.save, SAVE_WAIT)
        return self._finish()

    def _on_save(self, item: Line) -> Optional[Step]:
        if isinstance(item, Report) and item.marker == "saved":
            self.saved = True
            return self._finish()
        return None

    def _finish(self, recognised: Optional[bool] = None) -> None:
        if recognised is not None:
            self.recognised = recognised
        self._phase, self.done = "done", True
        return None

    # -- the result ---------------------------------------------------------------------
    def report(self) -> List[str]:
        """What happened, for the log: the board, then one line per setting, then the save."""
        if self.recognised is False:
            return [f"the board's firmware was not recognised (no known answer to l or 4v): "
                    f"{', '.join(self.wanted) or 'no settings'} not sent"]
        lines = [f"board: {self.board.describe()}"]
        lines += [o.describe() for o in self.outcomes.values()]
        if self.saved is True:
            lines.append("saved to the board's EEPROM")
        elif self.saved is False:
            lines.append("the board did not confirm saving (s)")
        return lines

    @property
    def changed(self) -> List[str]:
        return [o.setting for o in self.outcomes.values() if o.result == "set"]

    @property
    def problems(self) -> List[Outcome]:
        return [o for o in self.outcomes.values()
                if o.result in ("refused", "not applied", "no answer", "unsupported")]


def _show_report(report: Report) -> str:
    if report.values:
        return ", ".join(f"{k} {_show(v)}" for k, v in report.values.items())
    return ", ".join(f"{k} {v}" for k, v in report.info.items()) or (report.marker or "")


# -- transmitting ---------------------------------------------------------------------------
class CommandError(ValueError):
    """Not something the board can transmit; the message says why."""


def tx_command(dest: int, payload: Sequence[int]) -> str:
    """``T<dest>,<byte>,<byte>...``: radio bytes for node ``dest`` (0: all), as emonhub writes
    them to the emonPiCM firmware."""
    if isinstance(dest, bool) or not isinstance(dest, int) or not 0 <= dest <= 255:
        raise CommandError(f"destination {dest!r} is not a node id (0-255, 0 = broadcast)")
    if not 1 <= len(payload) <= MAX_TX_BYTES:
        raise CommandError(f"a transmission holds 1 to {MAX_TX_BYTES} bytes, not {len(payload)}")
    for byte in payload:
        if isinstance(byte, bool) or not isinstance(byte, int) or not 0 <= byte <= 255:
            raise CommandError(f"{byte!r} is not a byte (0-255)")
    return "T" + ",".join(str(b) for b in (dest, *payload))

