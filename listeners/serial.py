"""Generic serial listener: a device that writes one reading per line to a serial port.

Three line formats (``format``; ``auto`` tells them apart line by line):

* ``nodeid_values``: ``10 230.5 -12`` -- parsed exactly as the socket listener parses it;
* ``keyvalue``: ``MSG:123,Vrms:240.12,P1:100`` -- emonTx4 / emonPi2 on USB or UART (115200 baud);
* ``json``: ``{"MSG":123,"Vrms":240.12}`` -- one JSON object per line;
* ``oem``: what emonhub's OEM interfacer reads: key:value and JSON lines, and radio packets a
  board relays as RF12demo prints them (``OK 17 11 5 ... (-42)``: node, payload bytes, RSSI),
  decoded per ``[nodes]`` as an rfm2pi board's are.

A line of names and values has no node id: the node is the listener's ``nodename`` (by default
the section's name). The names become the inputs' names.
"""

import json
import math
import re
import time
from typing import List, Tuple

from gateway.frame import NAME_MAX, Frame, FrameError, RawFrame, input_name_problem, parse_node, parse_number
from listeners.serialport import SerialPortListener
from protocols import rf12demo

_RF12_LINE = re.compile(r"OK\s+\d|\?\s+\d")


def parse_keyvalue_line(line: str) -> Tuple[Tuple[str, ...], tuple]:
    """``MSG:1,Vrms:240.1`` -> ``(("MSG", "Vrms"), (1, 240.1))``; raises FrameError."""
    names, values = [], []
    for pair in line.split(","):
        name, colon, text = pair.partition(":")
        name = name.strip()
        if not colon:
            raise FrameError(f"'{pair.strip()[:40]}' is not name:value")
        if input_name_problem(name):
            raise FrameError(input_name_problem(name))
        names.append(name)
        values.append(parse_number(text.strip()))
    return _checked(names, values)


def parse_json_line(line: str) -> Tuple[Tuple[str, ...], tuple]:
    """``{"P1": 100, "T1": 19.5}`` -> names and values; raises FrameError."""
    def refuse_constant(name):
        raise FrameError(f"value {name} is not a number")

    try:
        obj = json.loads(line, parse_constant=refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise FrameError(f"not JSON ({str(exc)[:60]})") from None
    if not isinstance(obj, dict):
        raise FrameError("the JSON is not an object of name: number")
    names, values = [], []
    for name, value in obj.items():
        if input_name_problem(name):
            raise FrameError(input_name_problem(name))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (isinstance(value, float) and not math.isfinite(value)):
            raise FrameError(f"{name}: {str(value)[:40]!r} is not a number")
        names.append(name)
        values.append(value)
    return _checked(names, values)


def _checked(names: List[str], values: list):
    if not names:
        raise FrameError("no values")
    if len(set(names)) != len(names):
        raise FrameError("an input name appears twice")
    return tuple(names), tuple(values)


class SerialListener(SerialPortListener):
    SPEC = """
    format = option('auto', 'nodeid_values', 'keyvalue', 'json', 'oem', default='auto')
    nodename = string(default=None)
    """
    SAMPLE = """
    # A device writing one reading per line to a serial port (USB adapter, UART).
    [[...]]
    com_port = /dev/ttyUSB0
    # 9600 for the original gateway's devices; 115200 for an emonTx4 or emonPi2.
    com_baud = 9600
    # nodeid_values:  10 230.5 -12          (as the socket listener reads them)
    # keyvalue:       MSG:123,Vrms:240.12,P1:100   (emonTx4, emonPi2)
    # json:           {"MSG": 123, "Vrms": 240.12}
    # auto:           any of these, line by line
    # oem:            keyvalue and json, and radio packets relayed as OK 17 11 5 ... (-42)
    #                 (emonhub's OEM interfacer)
    format = auto
    # The node of keyvalue and json lines, which carry none (default: this section's name).
    # nodename = emontx4
    idle_timeout
    max_line
    """
    LIVE_SETTINGS = SerialPortListener.LIVE_SETTINGS | {"format", "nodename"}
    BAUD_HINT = " (emonTx4 and emonPi2 send at 115200; the original gateway's devices at 9600)"

    @classmethod
    def check_settings(cls, settings: dict) -> List[str]:
        problems = super().check_settings(settings)
        if settings.get("nodename") is not None:
            try:
                parse_node(settings["nodename"])
            except FrameError as exc:
                problems.append(f"nodename = {settings['nodename']}: {exc}")
        return problems

    @property
    def node(self):
        """The node of lines that carry names instead of a node id."""
        name = self.settings["nodename"]
        if name is not None:
            return parse_node(name)
        try:
            return parse_node(self.name)
        except FrameError:
            return re.sub(r"[^A-Za-z0-9_-]", "_", self.name)[:NAME_MAX] or "serial"

    def handle_text(self, text: str) -> None:
        fmt = self.settings["format"]
        if fmt == "oem":
            if _RF12_LINE.match(text):
                self._relayed_packet(text)
                return
            fmt = "auto"
        if fmt == "auto":
            fmt = "json" if text.startswith("{") else "keyvalue" if ":" in text else "nodeid_values"
        if fmt == "nodeid_values":
            if _RF12_LINE.match(text):   # "OK 10 12 0" would pass for node "OK"
                self.reject("not a frame", text)   # reject() says what it looks like
            else:
                super().handle_text(text)
            return
        try:
            names, values = parse_json_line(text) if fmt == "json" else parse_keyvalue_line(text)
        except FrameError as exc:
            self.reject(str(exc), text)
            return
        self.emit(Frame(self.node, values, time.time(), names, None, self.name))

    def _relayed_packet(self, text: str) -> None:
        """An ``OK`` line: a radio packet the board relays (``format = oem``)."""
        item = rf12demo.parse_line(text, rf12demo.HEADER_MASKS["rf69"])
        if not isinstance(item, rf12demo.Packet):
            self.reject(getattr(item, "reason", "a radio packet with a bad CRC"), text)
        elif item.payload:
            self.emit(RawFrame(item.node, item.payload, time.time(), item.rssi, self.name))

    def reject(self, reason: str, sample) -> None:
        if isinstance(sample, str) and _RF12_LINE.match(sample) and self.settings["format"] != "oem":
            reason += "; this looks like an RFM2Pi board's output: use type = rfm2pi"
        super().reject(reason, sample)
