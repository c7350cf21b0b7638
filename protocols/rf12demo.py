"""The serial protocol of the RF12demo firmware family (RFM12Pi, RFM69Pi, emonPi, JeeLink).

Pure functions, no I/O: ``parse_line`` classifies one line the board printed, and the command
helpers build or check what is written to it. Both firmware generations are understood:

* the 9600-baud RFM12Pi firmware of the original gateway: `` 10 12 0 34 1`` (no ``OK``);
* RF12demo.12+/RFM69Pi/emonPi (38400 baud): ``OK 10 12 0 34 1 (-60)``, with ``(rssi)`` on
  RFM69 boards, `` ? ...`` for packets with a bad CRC, ``> 210g`` echoes, ``-> 3 b``
  confirmations, and a banner with the board's settings: ``[RF12demo.14] O i15 g210 @ 433 MHz q1``.

Commands are RF12demo's: arguments first, one lower-case letter last (``210g``, ``12,34,s``).
"""

import re
import time
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple, Union

HEADER_MASKS = {"rf12": 0x1F, "rf69": 0x3F}   # node id bits of the header byte per radio format
BANDS = {433: 4, 868: 8, 915: 9}              # MHz -> the band digit of the ``b`` command
MAX_PAYLOAD = 66                              # bytes in one RF12 packet
CONFIG_GAP = 1.0    # s after a command that rewrites the board's EEPROM and restarts its radio
SEND_GAP = 0.1      # s after a radio transmission: a second ``s`` too soon replaces the first
QUICK_GAP = 0.2     # s after other commands (``v`` prints a banner, ``l`` toggles the LED)

_CONFIG = re.compile(r"(?:\[(?P<firmware>[^\]]*)\]\s*)?(?:(?P<letter>\S{1,3})\s+)?i(?P<id>\d{1,3})\*?"
                     r"\s+g(?P<group>\d{1,3})\s+@\s+(?P<band>\d{3})\s*MHz(?P<rest>.*)", re.ASCII)
_FLAG = re.compile(r"(?<!\S)([cqx])(\d{1,4})(?!\S)", re.ASCII)
_RSSI = re.compile(r"\((-?\d{1,3})\)", re.ASCII)
_GROUP = re.compile(r"G(\d{1,3})", re.ASCII)
_KEYVALUE = re.compile(r"[\w.-]+:\S*(?:,[\w.-]+:\S*)*", re.ASCII)
_COMMAND = re.compile(r"((?:\d{1,5},)*)(\d{0,5})([a-z])", re.ASCII)
_DIGITS = re.compile(r"\d{1,5}", re.ASCII)
_BYTES = re.compile(r"\d{1,5}(?: \d{1,5})*", re.ASCII)

CONFIG_LETTERS = "ibgqcxo"     # rewrite the EEPROM config
SEND_LETTERS = "sat"           # transmit (s: no ack, a: with ack, t: test packet)
OTHER_LETTERS = "vlp"          # version, LED, emonPi calibration


# -- what the board prints ----------------------------------------------------------------
@dataclass(frozen=True)
class Packet:
    """A packet received with a good CRC: ``node`` is the header masked to the node id."""

    header: int
    node: int
    payload: bytes
    rssi: Optional[int] = None
    group: Optional[int] = None


@dataclass(frozen=True)
class BoardReport:
    """The board's settings as its banner or config dump states them."""

    firmware: Optional[str]
    node_id: int
    group: int
    band: int              # MHz
    quiet: bool = False
    collect: bool = False
    hex_mode: int = 0

    def command_values(self) -> Dict[str, int]:
        """The settings as the values of their commands: ``{"i": 15, "b": 4, "g": 210, ...}``."""
        values = {"i": self.node_id, "g": self.group, "q": int(self.quiet), "x": self.hex_mode}
        if self.band in BANDS:
            values["b"] = BANDS[self.band]
        return values

    def describe(self) -> str:
        flags = ", quiet" if self.quiet else ""
        flags += ", collect mode" if self.collect else ""
        flags += f", hex output {self.hex_mode}" if self.hex_mode else ""
        firmware = f"{self.firmware}: " if self.firmware else ""
        return f"{firmware}node {self.node_id}, group {self.group}, {self.band} MHz{flags}"


@dataclass(frozen=True)
class Notice:
    """A line that is not data: ``kind`` is bad crc, echo, sent, banner or text."""

    kind: str
    text: str


@dataclass(frozen=True)
class Malformed:
    """A line that should have been a packet but is not; ``reason`` says why."""

    reason: str


Line = Union[Packet, BoardReport, Notice, Malformed]


def parse_line(line: str, mask: int = HEADER_MASKS["rf12"]) -> Line:
    """Classify one line the board printed. Never raises."""
    text = line.strip()
    if text.startswith("?"):
        return Notice("bad crc", text)
    if text.startswith("->"):
        return Notice("sent", text)
    if text.startswith(">"):
        return Notice("echo", text)
    config = _CONFIG.fullmatch(text)
    if config is not None:
        return _report(config)
    if text.startswith(("[", "|")):
        return Notice("banner", text)
    tokens = text.split()
    if not tokens:
        return Notice("text", text)
    if tokens[0].startswith("OK"):
        if tokens[0] != "OK":
            return Malformed("the board prints packets in hex (OKX): send it 0x, or set it back "
                             "to decimal output" if tokens[0].upper().startswith("OKX")
                             else f"{tokens[0][:20]!r} is not OK")
        return _packet(tokens[1:], mask)
    if all(_DIGITS.fullmatch(t) for t in tokens):
        return _packet(tokens, mask)    # the 9600-baud firmware: no OK
    if _KEYVALUE.fullmatch(text) or text.startswith("{"):
        return Malformed("names and values, as an emonTx4 or emonPi2 sends them: read this port "
                         "with type = serial")
    return Notice("text", text)


def _packet(tokens, mask: int) -> Line:
    group = rssi = None
    if tokens and _GROUP.fullmatch(tokens[0]):
        group = int(tokens[0][1:])
        tokens = tokens[1:]
    if tokens and _RSSI.fullmatch(tokens[-1]):
        rssi = int(tokens[-1][1:-1]) or None   # (-0): not measured
        tokens = tokens[:-1]
    if not tokens:
        return Malformed("a packet line without a node id")
    numbers = [int(t) for t in tokens] if _BYTES.fullmatch(" ".join(tokens)) else None
    if numbers is None or max(numbers) > 255:
        bad = next(t for t in tokens if not _DIGITS.fullmatch(t) or int(t) > 255)
        return Malformed(f"{bad[:20]!r} is not a byte value" if not _DIGITS.fullmatch(bad)
                         else f"{bad} is not a byte value (0-255)")
    if len(numbers) > MAX_PAYLOAD + 1:
        return Malformed(f"{len(numbers) - 1} bytes: more than a radio packet holds ({MAX_PAYLOAD})")
    return Packet(numbers[0], numbers[0] & mask, bytes(numbers[1:]), rssi, group)


def _report(match) -> BoardReport:
    flags = {letter: int(value) for letter, value in _FLAG.findall(match.group("rest"))}
    return BoardReport(match.group("firmware"), int(match.group("id")), int(match.group("group")),
                       int(match.group("band")), quiet=bool(flags.get("q")),
                       collect=bool(flags.get("c")), hex_mode=flags.get("x", 0))


# -- what is written to the board ---------------------------------------------------------
class CommandError(ValueError):
    """Not a command this gateway passes to the board; the message says why."""


def band_of(frequency: str) -> int:
    """The ``b`` command's digit for ``frequency`` given as the original 4/8/9 or as 433/868/915."""
    value = int(frequency)
    return BANDS.get(value, value)


def check_command(text: str) -> Tuple[str, float]:
    """``(command, gap)`` for an RF12demo command line; CommandError if it is not one.

    Only RF12demo's syntax passes: numbers and commas, then one known lower-case letter;
    every number before the last is a byte (0-255), and so is the last, but for ``o``
    (a frequency offset, 96-3903). ``gap`` is the pause the board needs afterwards.
    """
    match = _COMMAND.fullmatch(text.strip())
    if match is None:
        raise CommandError("not an RF12demo command (numbers and commas, then one lower-case letter)")
    stack = [int(n) for n in match.group(1).split(",") if n]
    value, letter = match.group(2), match.group(3)
    if letter not in CONFIG_LETTERS + SEND_LETTERS + OTHER_LETTERS:
        raise CommandError(f"'{letter}' is not an RF12demo command")
    for number in stack:
        if number > 255:
            raise CommandError(f"{number} is not a byte (0-255)")
    high = 3903 if letter == "o" else 255
    if value and int(value) > high:
        raise CommandError(f"{value}{letter}: {value} is out of range (0-{high})")
    if len(stack) > MAX_PAYLOAD:
        raise CommandError(f"{len(stack)} bytes: more than a radio packet holds ({MAX_PAYLOAD})")
    gap = CONFIG_GAP if letter in CONFIG_LETTERS else SEND_GAP if letter in SEND_LETTERS else QUICK_GAP
    return match.group(0), gap


def send_command(payload: Sequence[int], dest: int = 0) -> str:
    """``12,34,s`` (broadcast) or ``12,34,10s`` (to node 10); CommandError for bad bytes."""
    if not 1 <= len(payload) <= MAX_PAYLOAD:
        raise CommandError(f"a radio packet holds 1 to {MAX_PAYLOAD} bytes, not {len(payload)}")
    for byte in payload:
        if not isinstance(byte, int) or isinstance(byte, bool) or not 0 <= byte <= 255:
            raise CommandError(f"{byte!r} is not a byte (0-255)")
    if not isinstance(dest, int) or not 0 <= dest <= 31:
        raise CommandError(f"destination {dest!r} is not a node id (0-31, 0 = broadcast)")
    return ",".join(str(b) for b in payload) + "," + (str(dest) if dest else "") + "s"


def time_command(now: Optional[time.struct_time] = None) -> str:
    """The emonGLCD time broadcast ``00,HH,MM,00,s`` of the original gateway (local time)."""
    now = now or time.localtime()
    return "00,%02d,%02d,00,s" % (now.tm_hour, now.tm_min)
