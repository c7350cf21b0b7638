"""OEM boards for the tests: what each firmware prints, and how it answers commands.

Each class answers one command line with the lines its firmware prints, from the print code of
the firmware sources (avrdb_firmware ``*_config.ino``, emon32-fw ``src/configuration.c``,
emonpi ``emonPi_CM_config.ino``, emonpi ``rf.ino``), including their quirks: the avrdb ``f``
is not kept in EEPROM, ``b49`` exists only in emon_DB_6CT, an emonPi2 refuses ``w`` and ``t``,
emonPiCM answers nothing but ``l``, the RF12demo-type emonPi prints its help for any unknown
letter. ``eeprom`` holds what ``s`` saved, so a test sees whether the EEPROM was written.
"""

import re
from typing import List


def f2(value: float) -> str:
    """A float as Arduino's ``Serial.print(double)`` and emon32's ``utilFtoa`` print it."""
    return f"{value:.2f}"


class AvrdbBoard:
    """emonTx4/5 or emonPi2 running emon_CM_6CT(_temperature), emon_DB_6CT or emon_DB_12CT."""

    def __init__(self, firmware="emon_CM_6CT_temperature", version="1.7.0", hardware="emonTx4",
                 listing_format="current", **settings):
        self.firmware, self.version, self.hardware = firmware, version, hardware
        self.listing_format = listing_format
        cm = firmware.startswith("emon_CM")
        self.channels = 12 if firmware.startswith("emon_DB_12CT") else 6
        self.s = {"band": "433.92", "group": 210, "node": 27 if not cm else 17,
                  "rf_on": hardware != "emonPi2", "power": 25, "vcal": 101.3,
                  "assumed_v": 240.0, "period": 9.8, "pulse": True, "pulse_period": 100,
                  "temp": hardware != "emonPi2", "json": False,
                  "ical": [100.0, 50.0, 50.0] + [20.0] * (self.channels - 3),
                  "ilead": [3.2] * self.channels}
        self.s.update(settings)
        self.line_freq = 50          # RAM only: ``f`` never reaches EEPROM
        self.eeprom = self._copy()
        self.saves = 0
        self.temperature_sensors = 1

    def _copy(self):
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self.s.items()}

    # -- printing -------------------------------------------------------------------------
    def band_text(self) -> str:
        band = self.s["band"]
        if self.firmware.startswith("emon_DB_6CT"):    # a ternary with a double: "433.00"
            return {"433": "433.00", "433.92": "433.92", "868": "868.00", "915": "915.00"}[band]
        return {"433": "433", "868": "868", "915": "915"}.get(band, "0")

    def version_lines(self) -> List[str]:
        suffix = "_temperature" if self.firmware == "emon_CM_6CT_temperature" else ""
        name = self.firmware[:-len(suffix)] if suffix else self.firmware
        # ``firmware_version`` ends "\n\r": the next line starts with a CR
        return [f"firmware = {name}{suffix}", f"version = {self.version}",
                f"\rhardware = {self.hardware}", "voltage = 1phase"]

    def radio_line(self) -> str:
        if not self.s["rf_on"]:
            return "RF = off"
        return (f"RF = on, rfBand = {self.band_text()} MHz, rfGroup = {self.s['group']}, "
                f"rfNode = {self.s['node']}, rfPower = {self.s['power']}, rfFormat = LowPowerLabs")

    def pulse_line(self) -> str:
        if not self.s["pulse"]:
            return "pulse = off"
        return f"pulse = 3, pulsePeriod = {self.s['pulse_period']}ms"

    def calibration_lines(self) -> List[str]:
        if self.listing_format == "first":   # avrdb_firmware 3032080, 2024-05-06
            lines = ["Settings:", f"Band {self.band_text()} MHz, Group {self.s['group']}, "
                     f"Node {self.s['node']}, {self.s['power'] - 18} dBm", "Calibration:",
                     f"vCal = {f2(self.s['vcal'])}", f"assumedV = {f2(self.s['assumed_v'])}"]
            for ch in range(self.channels):
                lines += [f"iCal{ch + 1} = {f2(self.s['ical'][ch])}",
                          f"iLead{ch + 1} = {f2(self.s['ilead'][ch])}"]
            return lines + [f"datalog = {f2(self.s['period'])}", f"pulses = {int(self.s['pulse'])}",
                            f"pulse period = {self.s['pulse_period']}",
                            "RF on" if self.s["rf_on"] else "RF off",
                            f"temp_enable = {int(self.s['temp'])}",
                            "JSON Format on" if self.s["json"] else "JSON Format Off"]
        lines = [f"vCal = {f2(self.s['vcal'])}"]
        if self.firmware.startswith("emon_CM"):
            lines.append(f"assumedV = {f2(self.s['assumed_v'])}")
        lines += [f"iCal{ch + 1} = {f2(self.s['ical'][ch])}, iLead{ch + 1} = {f2(self.s['ilead'][ch])}"
                  for ch in range(self.channels)]
        return lines + [self.pulse_line(), self.radio_line(), f"datalog = {f2(self.s['period'])}",
                        "json = on" if self.s["json"] else "json = off"]

    def boot(self) -> List[str]:
        self.s = self._copy_from(self.eeprom)
        self.line_freq = 50
        lines = self.version_lines()
        if self.hardware == "emonPi2":
            lines.append("Starting emonPi2 OLED")
        return lines + ["Loaded EEPROM config"] + self.calibration_lines() + \
            ["vrefa = 1.0240", "AC present - Real Power calc enabled"]

    @staticmethod
    def _copy_from(saved):
        return {k: (list(v) if isinstance(v, list) else v) for k, v in saved.items()}

    def data_line(self, msg: int = 1) -> str:
        return (f"MSG:{msg},Vrms:240.12,P1:1234,P2:0,P3:0,P4:0,P5:0,P6:0,E1:5678,E2:0,E3:0,"
                f"E4:0,E5:0,E6:0,T1:21.50,T2:300.00,T3:300.00,pulse:0")

    # -- commands (handle_conf) -----------------------------------------------------------
    def answer(self, command: str) -> List[str]:
        text = command.rstrip("\r\n")
        if not text:
            return []
        letter, arg, n = text[0], text[1:], len(text)
        cm = self.firmware.startswith("emon_CM")
        db6 = self.firmware.startswith("emon_DB_6CT")
        s = self.s
        if letter == "b" and (n == 2 or (db6 and n == 3)):
            band = {"4": "433", "49": "433.92", "8": "868", "9": "915"}.get(arg)
            if band is None:
                return ["rfBand = 0 MHz"]
            s["band"] = band
            return [f"rfBand = {self.band_text()} MHz"]
        if letter == "j" and n == 2:
            s["json"] = arg == "1"
            return ["json = on" if s["json"] else "json = off"]
        if letter == "d":
            s["period"] = float(arg)
            return [f"datalog = {f2(s['period'])}"]
        if letter == "a" and cm:
            s["assumed_v"] = float(arg)
            return [f"assumedVrms = {f2(s['assumed_v'])}"]
        if letter == "f" and n == 3:
            self.line_freq = int(float(arg))
            return [f"freq = {self.line_freq}"]
        if letter == "g":
            s["group"] = int(arg)
            return [f"rfGroup = {s['group']}"]
        if letter == "k":
            parts = arg.split()
            channel = int(parts[0])
            if channel == 0:
                s["vcal"] = float(parts[1])
                return [f"vCal = {f2(s['vcal'])}"]
            s["ical"][channel - 1] = float(parts[1])
            s["ilead"][channel - 1] = float(parts[2]) if len(parts) > 2 else 0.0
            return [f"iCal{channel} = {f2(s['ical'][channel - 1])}, "
                    f"iLead{channel} = {f2(s['ilead'][channel - 1])}"]
        if letter == "l" and n == 1:
            return self.version_lines() + self.calibration_lines()
        if letter == "m":
            parts = arg.split()
            s["pulse"] = parts[0] == "1"
            s["pulse_period"] = int(parts[1]) if len(parts) > 1 else 12345   # k2 uninitialised
            return [self.pulse_line()]
        if letter in "in":
            s["node"] = max(1, min(63, int(arg)))
            return [f"rfNode = {s['node']}"]
        if letter == "p":
            s["power"] = int(arg) & 0x1F
            return [f"rfPower = {s['power']}"]
        if letter == "s" and n == 1:
            self.eeprom = self._copy()
            self.saves += 1
            return ["Saving...", "22 00 " + "FF " * 8, "", "Done. New config saved to EEPROM"]
        if letter == "t" and cm:
            if self.hardware == "emonPi2":
                return ["Temperature sensing is handled by the Pi on the emonPi2"]
            if n == 2:
                s["temp"] = arg == "1"
                if s["temp"] and not self.temperature_sensors:
                    return ["No temperature sensors detected, disabling temperature",
                            "temp_enable = 0"]
                return [f"temp_enable = {int(s['temp'])}"]
            return []
        if letter == "w":
            if self.hardware == "emonPi2":
                return ["Radio is handled by the Pi on the emonPi2"]
            if n == 2:
                s["rf_on"] = arg == "1"
                return [self.radio_line()]
            return []
        if letter == "v" and n == 1:
            return self.version_lines()
        return []


class Emon32Board:
    """emonTx6 / emonPi3 running emon32-fw."""

    def __init__(self, **settings):
        self.s = {"band": 3, "group": 210, "node": 17, "rf_on": True, "power": 25, "period": 9.8,
                  "json": False, "assumed_v": 240, "mains": 50,
                  "v": [[100.0, 0.0, True], [100.0, 0.0, False], [100.0, 0.0, False]],
                  "ct": [[100.0, 3.2, i < 6, 1, 1] for i in range(12)],
                  "opa": [[True, "r", False, 100], [False, "o", True, 0], [False, "a", False, 0]]}
        self.s.update(settings)
        self.unsaved = False
        self.saves = 0
        self.resets = 0

    def _band(self) -> str:
        return {0: "868", 1: "915", 2: "433.00", 3: "433.92"}[self.s["band"]]

    def kv_listing(self) -> List[str]:
        s = self.s
        lines = ["hardware = emonPi3", "hardware_rev = 3", "version = 1.4.2",
                 "commit = 3638275", "bootloader = uart", f"assumedV = {s['assumed_v']}"]
        lines += [f"vCal{i + 1} = {f2(v[0])}, vLead{i + 1} = {f2(v[1])}, "
                  f"vActive{i + 1} = {'on' if v[2] else 'off'}" for i, v in enumerate(s["v"])]
        lines += [self.ct_line(i) for i in range(12)]
        lines += [self.opa_line(i) for i in range(3)]
        lines.append(f"RF = {'on' if s['rf_on'] else 'off'}, rfBand = {self._band()} MHz, "
                     f"rfGroup = {s['group']}, rfNode = {s['node']}, rfPower = {s['power']}, "
                     f"rfFormat = LowPowerLabs")
        lines += [f"datalog = {f2(s['period'])}", f"json = {'on' if s['json'] else 'off'}"]
        return lines + [self.saved_line(), ""]

    def hr_listing(self) -> List[str]:
        s = self.s
        return ["", "", "==== Settings ====", "", f"Mains frequency (Hz):      {s['mains']}",
                f"Data log time (s):         {f2(s['period'])}", "Data transmission:         RFM69, "
                f"{self._band()} MHz @ {s['power'] - 18}dBm", f"  - Data group:            {s['group']}",
                f"  - Node ID:               {s['node']}", "Data format:               Key:Value",
                "", f"Assumed RMS voltage: {s['assumed_v']} V", "",
                "Accumulators (can be updated by command 'u') [3]:", "  E1 = 1234 Wh", "",
                self.saved_line(), ""]

    def saved_line(self) -> str:
        return ("There are unsaved changes. Command \"s\" to save." if self.unsaved
                else "All settings saved.")

    def ct_line(self, i: int) -> str:
        cal, lead, active, v1, v2 = self.s["ct"][i]
        n = i + 1
        return (f"iCal{n} = {f2(cal)}, iLead{n} = {f2(lead)}, iActive{n} = {'on' if active else 'off'}, "
                f"v1Chan{n} = {v1}, v2Chan{n} = {v2}")

    def opa_line(self, i: int) -> str:
        active, func, pullup, period = self.s["opa"][i]
        on = "on" if active else "off"
        if func == "o":
            return f"opa{i + 1} active = {on}, onewire"
        if func == "a":
            return f"opa{i + 1} active = {on}, analog"
        edge = {"r": "rising", "f": "falling", "b": "both"}[func]
        return (f"opa{i + 1} active = {on}, pulse = {edge}, pullUp = {'on' if pullup else 'off'}, "
                f"pulsePeriod = {period}")

    def data_line(self) -> str:
        return "MSG:5,V1:240.10,P1:100,E1:1234,T1:21.50,pulse1:0"

    def _changed(self, lines: List[str]) -> List[str]:
        self.unsaved = True
        return lines

    def answer(self, command: str) -> List[str]:
        text = command.rstrip("\r\n")
        if not text:
            return []
        letter, arg, s = text[0], text[1:], self.s
        error = lambda msg: [f"> Error: {msg}"]
        if letter == "l":
            return self.hr_listing() if arg == "h" else self.kv_listing()
        if letter == "g":
            value = int(arg)
            if value > 255:
                return error("Group ID out of range (valid: 0-255).")
            s["group"] = value
            return self._changed([f"rfGroup = {value}"])
        if letter == "n":
            value = int(arg)
            if not 1 <= value <= 60:
                return error("Node ID out of range (valid: 1-60).")
            s["node"] = value
            return self._changed([f"rfNode = {value}"])
        if letter == "p":
            s["power"] = int(arg)
            return self._changed([f"rfPower = {s['power']}"])
        if letter == "w":
            s["rf_on"] = arg == "1"
            return self._changed([f"RF = {'on' if s['rf_on'] else 'off'}"])
        if letter == "x":
            if s["band"] not in (2, 3):
                return error("RF 433 only applies to 433 MHz band.")
            s["band"] = 2 if arg == "1" else 3
            return self._changed([f"rfBand = {self._band()} MHz"])
        if letter == "d":
            value = float(arg)
            if not 0.5 <= value <= 600:
                return error("Datalog out of range (valid: 0.5-600).")
            s["period"] = value
            return self._changed([f"datalog = {f2(value)}"])
        if letter == "j":
            s["json"] = arg == "1"
            return self._changed([f"json = {'on' if s['json'] else 'off'}"])
        if letter == "a":
            s["assumed_v"] = int(arg)
            return self._changed([f"assumedV = {s['assumed_v']}"])
        if letter == "f":
            s["mains"] = int(arg)
            return self._changed([f"> Mains frequency set to: {s['mains']}"])
        if letter == "k":
            parts = arg.split()
            if len(parts) < 4:
                return error("Missing required parameters.")
            ch, active, cal, phase = int(parts[0]), parts[1] == "1", float(parts[2]), float(parts[3])
            if ch <= 3:
                if not 25 < cal < 150:
                    return error("vCal out of range (valid: 25-150).")
                s["v"][ch - 1] = [cal, phase, active]
                return self._changed([f"vCal{ch} = {f2(cal)}, vLead{ch} = {f2(phase)}, "
                                      f"vActive{ch} = {'on' if active else 'off'}"])
            if len(parts) < 5:
                return error("CT requires voltage channel reference.")
            if not 10 <= cal <= 200:
                return error("iCal out of range (valid: 10-200).")
            v1 = int(parts[4])
            v2 = int(parts[5]) if len(parts) > 5 else v1
            s["ct"][ch - 4] = [cal, phase, active, v1, v2]
            return self._changed([self.ct_line(ch - 4)])
        if letter == "m":
            parts = arg.split()
            i = int(parts[0]) - 1
            opa = s["opa"][i]
            opa[0] = parts[1] == "1"
            if len(parts) > 2:
                opa[1] = parts[2]
                opa[2] = len(parts) > 3 and parts[3] == "1"
                opa[3] = int(parts[4]) if len(parts) > 4 else 0
            return self._changed([self.opa_line(i)])
        if letter == "s":
            if not self.unsaved:
                return ["> No changes to save."]
            self.unsaved = False
            self.saves += 1
            return ["> Saving configuration to NVM... Done!"]
        return []


class EmonPiCMBoard:
    """An emonPi (v1) running emonPiCM: answers ``l`` with one terse line, nothing else."""

    def __init__(self, **settings):
        self.s = {"rf": 1, "band": "4", "power": 25, "group": 210, "node": 5, "assumed_v": 240.0,
                  "acfreq": 50.0, "vcal": 268.97, "ical": [90.9, 90.9], "ilead": [4.2, 4.2],
                  "period": 9.8, "pulse": 1, "pulse_period": 100, "temp": 0}
        self.s.update(settings)
        self.saves = 0

    def terse(self) -> str:
        s = self.s
        return (f"Settings: r{s['rf']} b{s['band']} p{s['power']} g{s['group']} i{s['node']} "
                f"a{f2(s['assumed_v'])} ac1 f{f2(s['acfreq'])} k0 {f2(s['vcal'])} 0.00 "
                f"k1 {f2(s['ical'][0])} {f2(s['ilead'][0])} k2 {f2(s['ical'][1])} {f2(s['ilead'][1])} "
                f"d{f2(s['period'])} m{s['pulse']} {s['pulse_period']} 0 100 t{s['temp']} 0")

    def answer(self, command: str) -> List[str]:
        text = command.rstrip("\r\n")
        if not text or text[0].isdigit():     # locked out for 2 s: ignored
            return []
        letter, arg, s = text[0], text[1:].strip(), self.s
        numbers = [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", arg)]
        if letter == "l":
            return [self.terse()]
        if letter == "s":
            self.saves += 1
            return ["22 00 FF FF", "", "|Config saved", "|"]
        if letter == "g":
            s["group"] = int(numbers[0])
        elif letter in "ni":
            s["node"] = int(numbers[0])
        elif letter == "b":
            s["band"] = str(int(numbers[0]))
        elif letter == "p":
            s["power"] = int(numbers[0])
        elif letter == "d":
            s["period"] = numbers[0]
        elif letter == "a":
            s["assumed_v"] = numbers[0]
        elif letter == "f":
            s["acfreq"] = numbers[0]
        elif letter == "k":
            channel = int(numbers[0])
            if channel == 0:
                s["vcal"] = numbers[1]
            elif channel in (1, 2):
                s["ical"][channel - 1], s["ilead"][channel - 1] = numbers[1], numbers[2]
        elif letter == "m":
            s["pulse"] = int(numbers[0])
            if len(numbers) > 1:
                s["pulse_period"] = int(numbers[1])
        elif letter == "t":
            s["temp"] = int(numbers[1]) if len(numbers) > 1 else s["temp"]
        return []


class RF12demoEmonPi:
    """An emonPi (v1) running its RF12demo-based firmware: value first, ``[emonPi.2.90]``."""

    HELP = ["", "Available commands:", "  <nn> i     - set node IDs (standard node ids are 1..30)",
            "  <n> b      - set MHz band (4 = 433, 8 = 868, 9 = 915)",
            "  <nnn> g    - set network group (RFM12 only allows 212, 0 = any)"]

    def __init__(self, node=5, group=210, band=433):
        self.node, self.group, self.band = node, group, band

    def config_line(self) -> str:
        return f" {chr(64 + self.node)} i{self.node} g{self.group} @ {self.band} MHz q0 USA 0 "

    def answer(self, command: str) -> List[str]:
        match = re.fullmatch(r"(\d*)([a-z])", command.strip())
        if match is None:
            return []
        value, letter = int(match.group(1) or 0), match.group(2)
        if letter == "i" and value:
            self.node = value
        elif letter == "b" and value in (4, 8, 9):
            self.band = {4: 433, 8: 868, 9: 915}[value]
        elif letter == "g":
            self.group = value
        elif letter == "v":
            return ["[emonPi.2.90]" + self.config_line()]
        elif letter not in "pq":
            return self.HELP + [self.config_line()]
        return [self.config_line()]


class SilentBoard:
    """A board that answers nothing (or only echoes, with ``echo``)."""

    def __init__(self, echo: bool = False):
        self.echo = echo

    def answer(self, command: str) -> List[str]:
        return [command] if self.echo else []
