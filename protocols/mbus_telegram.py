"""M-Bus frames and telegrams (EN 13757-2 link layer, EN 13757-3 application layer), pure.

No I/O: the M-Bus listener writes what the frame builders return and feeds what it reads to a
``FrameParser``; ``decode`` turns a meter's answer into a ``Telegram`` of ``Record``s.

Link layer (the same over a serial M-Bus adapter at 300-9600 baud, 8E1, and over TCP):

* single character ``E5``: the meter's acknowledgement;
* short frame ``10 C A CS 16``: SND_NKE (link reset), REQ_UD2 (request user data);
* long frame ``68 L L 68 C A CI data CS 16``: SND_UD from the master (application reset,
  select data, secondary address select) and RSP_UD, the meter's answer. ``L`` counts C, A,
  CI and data; ``CS`` is the sum of those bytes modulo 256.

Application layer: a RSP_UD with CI 0x72 (or 0x76, 0x78, 0x7A) holds a fixed header (the
meter's id, manufacturer, version, medium, access number, status, signature) and data
records, each a DIF (data field: how the value is coded; function; storage number), DIFEs
(more storage bits, tariff, subunit), a VIF (what the value is, its unit and decimal scale),
VIFEs (extension tables 0xFB and 0xFD, and modifiers), then the value. CI 0x73/0x77 is the old
fixed data structure (two counters). CI 0x70 is the meter reporting an application error.

Values come out in one unit per quantity, the SI-style units of libmbus's "normalized" output:
energy Wh (J, MWh, GJ converted), volume m³, mass kg, power W (J/h converted), volume flow m³/h
(per minute and per second converted), temperatures °C (°F converted), temperature difference K,
pressure bar, durations s. Units are written as Home Assistant and emoncms users see them
(``m³``, ``°C``). Each record also gets a descriptive name that is stable for a meter's telegram
layout: ``energy``, ``volume``, ``power``, ``flow``, ``flow_temp``, ``return_temp``,
``delta_temp``..., with suffixes for what is not the plain present value: ``_max``, ``_min``,
``_error`` (value during error state), ``_tariff1``, ``_sub1`` (subunit), ``_storage1``
(a stored value such as last month's) and modifiers from combinable VIFEs (``_forward``,
``_backward``, ``_per_hour``...). A repeated name gets ``_2``, ``_3``...
"""

import math
import struct
from dataclasses import dataclass, replace
from datetime import date, datetime, time
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

# -- link layer ---------------------------------------------------------------------------------
ACK = 0xE5
SHORT_START = 0x10
LONG_START = 0x68
STOP = 0x16

# C field (master to slave): bit 6 = from master, bit 5 = FCB, bit 4 = FCV, low nibble function
SND_NKE = 0x40
SND_UD = 0x53
REQ_UD2 = 0x5B
REQ_UD1 = 0x5A
FCB = 0x20
RSP_UD = 0x08               # slave to master; 0x10 (DFC) and 0x20 (ACD) may be set too

NETWORK_ADDRESS = 0xFD      # the secondary-addressed (selected) meter
BROADCAST_REPLY = 0xFE      # every meter answers: only with one meter on the bus
BROADCAST = 0xFF            # every meter, no answer

# CI field (master to slave)
CI_APPLICATION_RESET = 0x50
CI_DATA_SEND = 0x51
CI_SELECT_SECONDARY = 0x52
BAUD_RATE_CI = {300: 0xB8, 600: 0xB9, 1200: 0xBA, 2400: 0xBB, 4800: 0xBC, 9600: 0xBD,
                19200: 0xBE, 38400: 0xBF}

MAX_DATA = 252              # L is one byte and counts C, A and CI too
MAX_FRAME = 255 + 6


def reply_timeout(baud: int, data: bool = True) -> float:
    """Seconds to wait for a meter's answer at ``baud``: EN 13757-2 lets a meter take 330 bit
    times + 50 ms to start answering; then its longest answer (an E5, or a 261-byte RSP_UD) at 11
    bits a byte (8E1); with half as much again for USB adapters' latency. 2400 baud: 2.08 s for
    data, 0.29 s for an E5 (emonhub waits 2 s and 0.3 s)."""
    bits = 330 + 11 * (MAX_FRAME if data else 1)
    return round(1.5 * (bits / baud + 0.05), 3)


def checksum(data: bytes) -> int:
    """The M-Bus checksum: the arithmetic sum of the bytes, modulo 256."""
    return sum(data) & 0xFF


def _byte(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
        raise ValueError(f"{what} {value!r} is not a byte (0-255)")
    return value


def short_frame(control: int, address: int) -> bytes:
    """``10 C A CS 16``."""
    c, a = _byte(control, "C field"), _byte(address, "address")
    return bytes((SHORT_START, c, a, (c + a) & 0xFF, STOP))


def long_frame(control: int, address: int, ci: int, data: bytes = b"") -> bytes:
    """``68 L L 68 C A CI data CS 16``; a control frame when ``data`` is empty."""
    if len(data) > MAX_DATA:
        raise ValueError(f"{len(data)} data bytes: a long frame holds at most {MAX_DATA}")
    body = bytes((_byte(control, "C field"), _byte(address, "address"), _byte(ci, "CI field"))) + bytes(data)
    return bytes((LONG_START, len(body), len(body), LONG_START)) + body + bytes((checksum(body), STOP))


def snd_nke(address: int) -> bytes:
    """Link reset: the meter answers E5 and expects FCB = 1 in the next request."""
    return short_frame(SND_NKE, address)


def req_ud2(address: int, fcb: bool) -> bytes:
    """Request user data (class 2). The meter answers a RSP_UD long frame.

    ``fcb`` (frame count bit) must toggle between requests to read the next telegram of a
    meter that answers in several (the last record's DIF is 0x1F); the same ``fcb`` again
    asks for a repeat of the last answer. ``10 5B A`` is FCB = 0, ``10 7B A`` FCB = 1.
    """
    return short_frame(REQ_UD2 | (FCB if fcb else 0), address)


def snd_ud(address: int, ci: int, data: bytes = b"", fcb: bool = False) -> bytes:
    """Send user data; the meter answers E5."""
    return long_frame(SND_UD | (FCB if fcb else 0), address, ci, data)


def application_reset(address: int, subcode: Optional[int] = None, fcb: bool = False) -> bytes:
    """``68 03 03 68 53 A 50 CS 16`` (emonhub's), or with a subcode byte (EN 13757-3 6.1)."""
    return snd_ud(address, CI_APPLICATION_RESET, b"" if subcode is None else bytes((_byte(subcode, "subcode"),)), fcb)


def select_data(address: int, records: bytes, fcb: bool = False) -> bytes:
    """SND_UD with CI 0x51 and data records: selects what the next RSP_UD holds.

    emonhub's Sontex page select is ``select_data(a, bytes((0x01, 0xFF, 0x08, page)))``.
    """
    return snd_ud(address, CI_DATA_SEND, records, fcb)


def set_primary_address(address: int, new_address: int, fcb: bool = False) -> bytes:
    """``68 06 06 68 53 A 51 01 7A new CS 16``: the meter answers E5, then listens on ``new``."""
    if not 0 <= _byte(new_address, "new address") <= 250:
        raise ValueError(f"new address {new_address} is not a primary address (0-250)")
    return select_data(address, bytes((0x01, 0x7A, new_address)), fcb)


def set_baud_rate(address: int, baud: int, fcb: bool = False) -> bytes:
    """``68 03 03 68 53 A B8..BF CS 16``: the meter answers E5 at the old rate, then switches."""
    if baud not in BAUD_RATE_CI:
        raise ValueError(f"{baud} baud is not an M-Bus rate ({', '.join(map(str, BAUD_RATE_CI))})")
    return snd_ud(address, BAUD_RATE_CI[baud], b"", fcb)


def select_secondary(meter_id: str, manufacturer: Optional[str] = None, version: Optional[int] = None,
                     medium: Optional[int] = None, fcb: bool = True) -> bytes:
    """Select one meter by its secondary address; afterwards it answers on address 0xFD.

    ``meter_id`` is the 8-digit id (``"06855817"``); an ``F`` (or ``*``) in a digit is a
    wildcard, as in a secondary address search. Leaving out manufacturer, version or medium
    matches any. ``68 0B 0B 68 73 FD 52 id×4 man×2 ver med CS 16``.
    """
    digits = meter_id.upper().replace("*", "F")
    if len(digits) != 8 or any(d not in "0123456789F" for d in digits):
        raise ValueError(f"meter id {meter_id!r} is not 8 digits (F or * for any digit)")
    id_bytes = bytes(int(digits[i:i + 2], 16) for i in (6, 4, 2, 0))
    man = b"\xff\xff" if manufacturer is None else encode_manufacturer(manufacturer).to_bytes(2, "little")
    ver = 0xFF if version is None else _byte(version, "version")
    med = 0xFF if medium is None else _byte(medium, "medium")
    return long_frame(SND_UD | (FCB if fcb else 0), NETWORK_ADDRESS, CI_SELECT_SECONDARY,
                      id_bytes + man + bytes((ver, med)))


def encode_manufacturer(code: str) -> int:
    """The 2-byte manufacturer id of a 3-letter code (``"KAM"`` -> 0x2C2D)."""
    if len(code) != 3 or not code.isalpha() or not code.isascii():
        raise ValueError(f"manufacturer {code!r} is not a 3-letter code")
    a, b, c = (ord(ch) - 64 for ch in code.upper())
    return (a << 10) | (b << 5) | c


def decode_manufacturer(value: int) -> str:
    """``0x2C2D`` -> ``"KAM"``; letters outside A-Z come out as ``?``."""
    letters = ((value >> 10) & 0x1F, (value >> 5) & 0x1F, value & 0x1F)
    return "".join(chr(64 + n) if 1 <= n <= 26 else "?" for n in letters)


# -- parsing a byte stream ------------------------------------------------------------------------
class FrameError(ValueError):
    """Bytes that started like a frame but are not a valid one.

    ``kind`` is ``checksum`` (a whole frame whose checksum is wrong), ``stop`` (no stop byte
    where the length says the frame ends), ``length`` (the two L bytes differ, or L is too small)
    or ``truncated`` (the answer ended before the frame did).
    """

    def __init__(self, kind: str, message: str, data: bytes = b""):
        super().__init__(message)
        self.kind = kind
        self.data = data


class Ack(NamedTuple):
    """The single character E5."""


@dataclass(frozen=True)
class ShortFrame:
    control: int
    address: int

    @property
    def from_master(self) -> bool:
        """True for a master's frame (C field bit 6): an adapter's echo of a request."""
        return bool(self.control & 0x40)


@dataclass(frozen=True)
class LongFrame:
    """A long (or control, when ``data`` is empty) frame with a good checksum."""

    control: int
    address: int
    ci: int
    data: bytes

    @property
    def from_master(self) -> bool:
        """True for a master's frame (C field bit 6): an adapter's echo of a request."""
        return bool(self.control & 0x40)

    def encode(self) -> bytes:
        return long_frame(self.control, self.address, self.ci, self.data)


Item = Union[Ack, ShortFrame, LongFrame, FrameError]


class FrameParser:
    """Finds E5 characters, short and long frames in a byte stream, across any split.

    ``feed`` returns what the bytes completed, in order: ``Ack``, ``ShortFrame``, ``LongFrame``
    or ``FrameError``; it never raises. Bytes that cannot start a frame are skipped and counted
    as garbage. ``pending`` says how many more bytes the frame in progress needs (0 when none),
    so a reader can wait for exactly those; ``end`` is called when the answer is over (a
    timeout): it reports the frame in progress as truncated and looks for frames in what follows
    its start. A bad checksum is reported as an error and counted, never passed on as a frame,
    unless ``check_checksum`` is False (emonhub's ``validate_checksum = False``, for a meter known
    to send wrong checksums): then the long frame is passed on and still counted as ``checksum``.
    """

    def __init__(self, check_checksum: bool = True):
        self.check_checksum = check_checksum
        self._buffer = bytearray()
        self.counts: Dict[str, int] = {"frames": 0, "acks": 0, "garbage_bytes": 0, "checksum": 0,
                                        "stop": 0, "length": 0, "truncated": 0}

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not yet complete."""
        return len(self._buffer)

    @property
    def pending(self) -> int:
        """How many more bytes the frame in progress needs at least (exactly, once its length
        byte has come); 0 when none is in progress."""
        buf = self._buffer
        if not buf:
            return 0
        if buf[0] == SHORT_START:
            return 5 - len(buf)
        if len(buf) < 4:
            return 4 - len(buf)
        return buf[1] + 6 - len(buf)

    def feed(self, data: bytes) -> List[Item]:
        self._buffer += data
        items: List[Item] = []
        while self._buffer:
            item, used = self._take()
            if not used:
                break
            del self._buffer[:used]
            if item is not None:
                items.append(item)
        return items

    def end(self) -> List[Item]:
        """The answer is over: the frame in progress is reported truncated (once), and what
        came after its start byte is searched again for complete frames."""
        if not self._buffer:
            return []
        items: List[Item] = [self._error("truncated", f"the answer ended {self.pending} bytes before the "
                                         f"frame did ({len(self._buffer)} bytes received)", bytes(self._buffer))]
        while self._buffer:
            del self._buffer[:1]                  # a start byte that began no complete frame
            items.extend(self.feed(b""))
            if self._buffer:
                self.counts["garbage_bytes"] += 1
        return items

    def reset(self) -> None:
        """Forget a frame in progress (before a new request), without counting it."""
        self._buffer.clear()

    def _error(self, kind: str, message: str, data: bytes) -> FrameError:
        self.counts[kind] += 1
        return FrameError(kind, message, data)

    def _take(self) -> Tuple[Optional[Item], int]:
        """The next item at the start of the buffer and the bytes it used; (None, 0): wait."""
        buf = self._buffer
        first = buf[0]
        if first == ACK:
            self.counts["acks"] += 1
            return Ack(), 1
        if first == SHORT_START:
            if len(buf) < 5:
                return None, 0
            if buf[4] != STOP:
                return self._garbage(1)
            if (buf[1] + buf[2]) & 0xFF != buf[3]:
                return self._error("checksum", f"short frame {bytes(buf[:5]).hex(' ')}: checksum "
                                   f"{buf[3]:02X}, expected {(buf[1] + buf[2]) & 0xFF:02X}", bytes(buf[:5])), 5
            self.counts["frames"] += 1
            return ShortFrame(buf[1], buf[2]), 5
        if first == LONG_START:
            if len(buf) < 4:
                return None, 0
            if buf[3] != LONG_START:
                return self._garbage(1)
            if buf[1] != buf[2]:
                return self._error("length", f"long frame header 68 {buf[1]:02X} {buf[2]:02X} 68: "
                                   "the two length bytes differ", bytes(buf[:4])), 1
            length = buf[1]
            if length < 3:
                return self._error("length", f"long frame with L = {length}: too short for C, A "
                                   "and CI", bytes(buf[:4])), 1
            if len(buf) < length + 6:
                return None, 0
            frame = bytes(buf[:length + 6])
            if frame[-1] != STOP:
                return self._error("stop", f"long frame of L = {length}: byte {length + 5} is "
                                   f"{frame[-1]:02X}, not the stop byte 16", frame), 1
            body = frame[4:4 + length]
            if checksum(body) != frame[-2] and not self.check_checksum:
                self.counts["checksum"] += 1
            elif checksum(body) != frame[-2]:
                return self._error("checksum", f"long frame of {len(frame)} bytes from address "
                                   f"{body[1]}: checksum {frame[-2]:02X}, expected {checksum(body):02X}",
                                   frame), len(frame)
            self.counts["frames"] += 1
            return LongFrame(body[0], body[1], body[2], body[3:]), len(frame)
        run = 1
        while run < len(buf) and buf[run] not in (ACK, SHORT_START, LONG_START):
            run += 1
        return self._garbage(run)

    def _garbage(self, count: int) -> Tuple[None, int]:
        self.counts["garbage_bytes"] += count
        return None, count


# -- application layer: the variable data structure -------------------------------------------------
class TelegramError(ValueError):
    """A RSP_UD whose user data cannot be decoded; the message says where and why.

    ``records`` holds the records decoded before the error, for a log line.
    """

    def __init__(self, message: str, records: Tuple["Record", ...] = ()):
        super().__init__(message)
        self.records = records


class ApplicationError(TelegramError):
    """The meter answered with CI 0x70: it reports an application error instead of data."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


APPLICATION_ERRORS = {0: "unspecified error", 1: "unimplemented CI field", 2: "buffer too long, truncated",
                      3: "too many records", 4: "premature end of record", 5: "more than 10 DIFEs",
                      6: "more than 10 VIFEs", 7: "reserved", 8: "application busy", 9: "too many readouts"}

MEDIA = {0x00: "other", 0x01: "oil", 0x02: "electricity", 0x03: "gas", 0x04: "heat (outlet)",
         0x05: "steam", 0x06: "warm water", 0x07: "water", 0x08: "heat cost allocator",
         0x09: "compressed air", 0x0A: "cooling (outlet)", 0x0B: "cooling (inlet)", 0x0C: "heat (inlet)",
         0x0D: "heat and cooling", 0x0E: "bus/system component", 0x0F: "unknown", 0x15: "hot water",
         0x16: "cold water", 0x17: "dual register water", 0x18: "pressure", 0x19: "A/D converter"}

FUNCTIONS = ("instantaneous", "max", "min", "error")

# EN 13757-3 record error codes, sent as a combinable VIFE 0x00-0x1F in a meter's answer
RECORD_ERRORS = {0x01: "too many DIFEs", 0x02: "storage number not implemented",
                 0x03: "unit number not implemented", 0x04: "tariff number not implemented",
                 0x05: "function not implemented", 0x06: "data class not implemented",
                 0x07: "data size not implemented", 0x0B: "too many VIFEs", 0x0C: "illegal VIF group",
                 0x0D: "illegal VIF exponent", 0x0E: "VIF/DIF mismatch", 0x0F: "unimplemented action",
                 0x15: "no data available", 0x16: "data overflow", 0x17: "data underflow",
                 0x18: "data error", 0x1C: "premature end of record"}

MAX_EXTENSIONS = 10          # EN 13757-3 allows at most 10 DIFEs and 10 VIFEs

# The kinds of quantity: what a record is for.
MEASURE = "measure"          # a physical quantity or counter: what a meter is read for
STATE = "state"              # error flags, digital inputs and outputs
IDENTITY = "identity"        # fabrication number, versions, addresses, customer
TIME = "time"                # a date or time point
SETTING = "setting"          # averaging/actuality duration, storage interval, baud rate...
RAW = "raw"                  # manufacturer specific: kept as it came


class Vif(NamedTuple):
    """What a VIF code means: quantity name, unit, and how the raw value becomes the unit."""

    quantity: str
    unit: str
    exponent: int = 0        # raw × 10^exponent ...
    factor: float = 1.0      # ... × factor + offset: unit conversion
    offset: float = 0.0
    kind: str = MEASURE
    signed: bool = True      # binary integers are signed (type B), bit fields and ids are not


_SECONDS = (1, 60, 3600, 86400)
_SECONDS_LONG = (3600, 86400, 2629743.83, 31556926)       # hours, days, months, years
_F_TO_C = 5 / 9


def _decades(table: dict, first: int, count: int, exponent: int, *args, **kwargs) -> None:
    for n in range(count):
        table[first + n] = Vif(args[0], args[1], exponent + n, *args[2:], **kwargs)


def _durations(table: dict, first: int, quantity: str, factors=_SECONDS, kind: str = MEASURE) -> None:
    for n, seconds in enumerate(factors):
        table[first + n] = Vif(quantity, "s", 0, seconds, kind=kind)


def _primary_table() -> Dict[int, Vif]:
    t: Dict[int, Vif] = {}
    _decades(t, 0x00, 8, -3, "energy", "Wh")
    _decades(t, 0x08, 8, 0, "energy", "Wh", 1 / 3600)                     # J
    _decades(t, 0x10, 8, -6, "volume", "m³")
    _decades(t, 0x18, 8, -3, "mass", "kg")
    _durations(t, 0x20, "on_time")
    _durations(t, 0x24, "operating_time")
    _decades(t, 0x28, 8, -3, "power", "W")
    _decades(t, 0x30, 8, 0, "power", "W", 1 / 3600)                       # J/h
    _decades(t, 0x38, 8, -6, "flow", "m³/h")
    _decades(t, 0x40, 8, -7, "flow", "m³/h", 60)                          # m³/min
    _decades(t, 0x48, 8, -9, "flow", "m³/h", 3600)                        # m³/s
    _decades(t, 0x50, 8, -3, "mass_flow", "kg/h")
    _decades(t, 0x58, 4, -3, "flow_temp", "°C")
    _decades(t, 0x5C, 4, -3, "return_temp", "°C")
    _decades(t, 0x60, 4, -3, "delta_temp", "K")
    _decades(t, 0x64, 4, -3, "external_temp", "°C")
    _decades(t, 0x68, 4, -3, "pressure", "bar")
    t[0x6C] = Vif("date", "", kind=TIME)
    t[0x6D] = Vif("datetime", "", kind=TIME)
    t[0x6E] = Vif("hca_units", "")
    _durations(t, 0x70, "averaging_duration", kind=SETTING)
    _durations(t, 0x74, "actuality_duration", kind=SETTING)
    t[0x78] = Vif("fabrication_no", "", kind=IDENTITY, signed=False)
    t[0x79] = Vif("enhanced_id", "", kind=IDENTITY, signed=False)
    t[0x7A] = Vif("bus_address", "", kind=IDENTITY, signed=False)
    t[0x7E] = Vif("any", "", kind=SETTING)
    t[0x7F] = Vif("manufacturer_specific", "", kind=RAW)
    return t


def _fd_table() -> Dict[int, Vif]:
    """Main VIFE extension table (VIF = 0xFD)."""
    t: Dict[int, Vif] = {}
    _decades(t, 0x00, 4, -3, "credit", "")
    _decades(t, 0x04, 4, -3, "debit", "")
    names = {0x08: "access_no", 0x09: "medium", 0x0A: "manufacturer", 0x0B: "parameter_set_id",
             0x0C: "model_version", 0x0D: "hardware_version", 0x0E: "firmware_version",
             0x0F: "software_version", 0x10: "customer_location", 0x11: "customer",
             0x12: "access_code_user", 0x13: "access_code_operator", 0x14: "access_code_system_operator",
             0x15: "access_code_developer", 0x16: "password"}
    for code, name in names.items():
        t[code] = Vif(name, "", kind=IDENTITY, signed=False)
    t[0x17] = Vif("error_flags", "", kind=STATE, signed=False)
    t[0x18] = Vif("error_mask", "", kind=SETTING, signed=False)
    t[0x1A] = Vif("digital_output", "", kind=STATE, signed=False)
    t[0x1B] = Vif("digital_input", "", kind=STATE, signed=False)
    t[0x1C] = Vif("baud_rate", "Bd", kind=SETTING)
    t[0x1D] = Vif("response_delay", "bit times", kind=SETTING)
    t[0x1E] = Vif("retry", "", kind=SETTING)
    t[0x20] = Vif("first_storage_no", "", kind=SETTING)
    t[0x21] = Vif("last_storage_no", "", kind=SETTING)
    t[0x22] = Vif("storage_block_size", "", kind=SETTING)
    _durations(t, 0x24, "storage_interval", _SECONDS + _SECONDS_LONG[2:], kind=SETTING)
    _durations(t, 0x2C, "time_since_readout", kind=SETTING)
    t[0x30] = Vif("tariff_start", "", kind=TIME)
    _durations(t, 0x31, "tariff_duration", _SECONDS[1:], kind=SETTING)
    _durations(t, 0x34, "tariff_period", _SECONDS + _SECONDS_LONG[2:], kind=SETTING)
    t[0x3A] = Vif("dimensionless", "")
    _decades(t, 0x40, 16, -9, "voltage", "V")
    _decades(t, 0x50, 16, -12, "current", "A")
    t[0x60] = Vif("reset_counter", "")
    t[0x61] = Vif("cumulation_counter", "")
    t[0x62] = Vif("control_signal", "", kind=STATE, signed=False)
    t[0x63] = Vif("day_of_week", "", kind=TIME)
    t[0x64] = Vif("week_number", "", kind=TIME)
    t[0x65] = Vif("day_change_time", "", kind=TIME)
    t[0x66] = Vif("parameter_activation_state", "", kind=STATE, signed=False)
    t[0x67] = Vif("special_supplier_info", "", kind=RAW)
    _durations(t, 0x68, "time_since_cumulation", _SECONDS_LONG, kind=SETTING)
    _durations(t, 0x6C, "battery_operating_time", _SECONDS_LONG)
    t[0x70] = Vif("battery_change_date", "", kind=TIME)
    t[0x71] = Vif("rf_level", "dBm")
    t[0x74] = Vif("battery_days_left", "d")
    t[0x75] = Vif("meter_stopped_count", "")
    return t


def _fb_table() -> Dict[int, Vif]:
    """Alternate VIFE extension table (VIF = 0xFB): large units, reactive energy, °F."""
    t: Dict[int, Vif] = {}
    _decades(t, 0x00, 2, 5, "energy", "Wh")                               # 0.1-1 MWh
    _decades(t, 0x02, 2, 3, "reactive_energy", "varh")                    # 1-10 kvarh
    _decades(t, 0x08, 2, 8, "energy", "Wh", 1 / 3600)                     # 0.1-1 GJ
    _decades(t, 0x0C, 4, 5, "energy", "Wh", 4.184 / 3600)                 # 0.1-100 Mcal
    _decades(t, 0x10, 2, 2, "volume", "m³")
    _decades(t, 0x14, 4, 0, "reactive_power", "var")                      # 1 var - 1 kvar
    _decades(t, 0x18, 2, 5, "mass", "kg")                                 # 100-1000 t
    _decades(t, 0x1A, 2, -1, "relative_humidity", "%")
    t[0x21] = Vif("volume", "m³", -1, 0.028316846592)                     # 0.1 ft³
    _decades(t, 0x22, 2, -1, "volume", "m³", 0.003785411784)              # US gallon
    t[0x24] = Vif("flow", "m³/h", -3, 0.003785411784 * 60)                # US gallon/min
    t[0x25] = Vif("flow", "m³/h", 0, 0.003785411784 * 60)
    t[0x26] = Vif("flow", "m³/h", 0, 0.003785411784)                      # US gallon/h
    _decades(t, 0x28, 2, 5, "power", "W")                                 # 0.1-1 MW
    _decades(t, 0x2C, 4, -3, "frequency", "Hz")
    _decades(t, 0x30, 2, 8, "power", "W", 1 / 3600)                       # 0.1-1 GJ/h
    _decades(t, 0x34, 4, 0, "apparent_power", "VA")                       # 1 VA - 1 kVA
    _decades(t, 0x58, 4, -3, "flow_temp", "°C", _F_TO_C, -32 * _F_TO_C)
    _decades(t, 0x5C, 4, -3, "return_temp", "°C", _F_TO_C, -32 * _F_TO_C)
    _decades(t, 0x60, 4, -3, "delta_temp", "K", _F_TO_C)
    _decades(t, 0x64, 4, -3, "external_temp", "°C", _F_TO_C, -32 * _F_TO_C)
    _decades(t, 0x70, 4, -3, "temp_limit", "°C", _F_TO_C, -32 * _F_TO_C, kind=SETTING)
    _decades(t, 0x74, 4, -3, "temp_limit", "°C", kind=SETTING)
    _decades(t, 0x78, 8, -3, "max_power_count", "")
    return t


PRIMARY_VIF = _primary_table()
FD_VIFE = _fd_table()
FB_VIFE = _fb_table()
_UNKNOWN = Vif("unknown", "", kind=RAW)

# Combinable (orthogonal) VIFEs that change what a value means: name suffixes.
_PER = ("per_second", "per_minute", "per_hour", "per_day", "per_week", "per_month", "per_year",
        "per_revolution", "per_input_pulse_0", "per_input_pulse_1", "per_output_pulse_0",
        "per_output_pulse_1", "per_litre", "per_m3", "per_kg", "per_kelvin", "per_kwh", "per_gj",
        "per_kw", "per_kelvin_litre", "per_volt", "per_ampere", "times_second",
        "times_second_per_volt", "times_second_per_ampere")
# modifiers after which the value is a date or time point: E100 uf1b, E110 1f1b, 0x39
_DATE_MODIFIERS = frozenset((0x39, 0x42, 0x43, 0x46, 0x47, 0x4A, 0x4B, 0x4E, 0x4F, 0x6A, 0x6B, 0x6E, 0x6F))
_DATE_QUANTITIES = frozenset(("date", "datetime", "tariff_start", "battery_change_date"))


def _modifier_table() -> Dict[int, str]:
    table = {0x20 + n: name for n, name in enumerate(_PER)}
    table.update({0x39: "start", 0x3A: "uncorrected", 0x3B: "forward", 0x3C: "backward",
                  0x3E: "base_conditions", 0x3F: "obis", 0x40: "lower_limit", 0x48: "upper_limit",
                  0x41: "lower_limit_exceeded", 0x49: "upper_limit_exceeded",
                  0x68: "during_lower_limit", 0x6C: "during_upper_limit", 0x69: "leakage",
                  0x6D: "overflow", 0x7E: "future"})
    for code in (0x42, 0x43, 0x46, 0x47, 0x4A, 0x4B, 0x4E, 0x4F):    # date of a limit exceed
        table[code] = "%s_limit_%s_%s" % ("upper" if code & 8 else "lower", "last" if code & 4 else "first",
                                          "end" if code & 1 else "begin")
    for code in (0x6A, 0x6B, 0x6E, 0x6F):                             # date of (first/last, begin/end)
        table[code] = "%s_%s" % ("last" if code & 4 else "first", "end" if code & 1 else "begin")
    return table


MODIFIERS = _modifier_table()


@dataclass(frozen=True)
class Record:
    """One data record of a telegram.

    ``value`` is a number in ``unit`` (int where the meter sent an integer and no scale made it
    fractional), a ``date``/``datetime``/``time``, a ``str`` (text), ``bytes`` (manufacturer
    data, long binary), or None when the record has no data or ``error`` says why it has no
    value. ``quantity`` is the base name (``energy``); ``name`` adds the suffixes that make it
    unique in its telegram (``energy_tariff1``, ``power_max``). ``dif``, ``vif`` and ``data``
    are the record's raw bytes.
    """

    index: int
    name: str
    quantity: str
    value: Union[int, float, str, bytes, date, datetime, time, None]
    unit: str
    function: str = "instantaneous"
    storage: int = 0
    tariff: int = 0
    subunit: int = 0
    modifiers: Tuple[str, ...] = ()
    kind: str = MEASURE
    error: Optional[str] = None
    dif: bytes = b""
    vif: bytes = b""
    data: bytes = b""

    @property
    def is_number(self) -> bool:
        return isinstance(self.value, (int, float)) and not isinstance(self.value, bool) and self.error is None


@dataclass(frozen=True)
class Telegram:
    """A meter's answer: header fields (None where the CI has no such header) and records.

    ``more_follows``: the last record was DIF 0x1F; ask again (REQ_UD2 with the FCB toggled)
    for the next telegram. ``manufacturer_data``: bytes after DIF 0x0F/0x1F.
    """

    address: int
    ci: int
    records: Tuple[Record, ...]
    id: Optional[int] = None
    manufacturer: Optional[str] = None
    version: Optional[int] = None
    medium: Optional[int] = None
    access_no: Optional[int] = None
    status: int = 0
    signature: int = 0
    more_follows: bool = False
    manufacturer_data: bytes = b""

    @property
    def medium_name(self) -> str:
        return "unknown" if self.medium is None else MEDIA.get(self.medium, f"medium 0x{self.medium:02X}")

    @property
    def status_flags(self) -> Tuple[str, ...]:
        """What the status byte reports, in words; empty when all is well."""
        flags = [("", "application busy", "application error", "abnormal condition")[self.status & 3]]
        flags += [text for bit, text in ((4, "power low"), (8, "permanent error"), (16, "temporary error"))
                  if self.status & bit]
        return tuple(f for f in flags if f)

    def describe(self) -> str:
        """``KAM meter 06855817, version 8, heat (outlet)``."""
        who = f"{self.manufacturer or '?'} meter {self.id:08d}" if self.id is not None else "meter"
        return f"{who}, version {self.version}, {self.medium_name}" if self.version is not None else who


def decode(frame: LongFrame) -> Telegram:
    """The telegram in a RSP_UD long frame; TelegramError (ApplicationError for CI 0x70) if none."""
    ci, data = frame.ci, frame.data
    if ci == 0x70:
        code = data[0] if data else 0
        raise ApplicationError(code, f"the meter at address {frame.address} reports an application "
                                     f"error: {APPLICATION_ERRORS.get(code, 'code %d' % code)}")
    if ci in (0x73, 0x77):
        return _decode_fixed(frame.address, ci, data)
    if ci in (0x72, 0x76):
        if len(data) < 12:
            raise TelegramError(f"CI 0x{ci:02X} telegram of {len(data)} bytes: shorter than its "
                                "12-byte header")
        header, body = data[:12], data[12:]
        if ci == 0x76:     # mode 2: multi-byte fields most significant byte first
            header = header[3::-1] + header[5:3:-1] + header[6:10] + header[:9:-1]
        meter_id = _bcd_number(header[:4])
        return _with_records(Telegram(frame.address, ci, (), id=meter_id if isinstance(meter_id, int) else None,
                                      manufacturer=decode_manufacturer(int.from_bytes(header[4:6], "little")),
                                      version=header[6], medium=header[7], access_no=header[8],
                                      status=header[9], signature=int.from_bytes(header[10:12], "little")),
                             body, ci == 0x76)
    if ci == 0x7A:
        if len(data) < 4:
            raise TelegramError(f"CI 0x7A telegram of {len(data)} bytes: shorter than its 4-byte header")
        return _with_records(Telegram(frame.address, ci, (), access_no=data[0], status=data[1],
                                      signature=int.from_bytes(data[2:4], "little")), data[4:], False)
    if ci == 0x78:
        return _with_records(Telegram(frame.address, ci, ()), data, False)
    raise TelegramError(f"CI 0x{ci:02X} is not a meter's data answer (0x72, 0x76, 0x78, 0x7A, "
                        "0x73, 0x77; 0x70 for an error)")


def merge(telegrams: Sequence[Telegram]) -> Telegram:
    """The telegrams of one multi-telegram answer as one: the first one's header, every record
    (numbered on, names made unique across telegrams), the last one's ``more_follows``."""
    if len(telegrams) == 1:
        return telegrams[0]
    records: List[Record] = []
    names: Dict[str, int] = {}
    for telegram in telegrams:
        for record in telegram.records:
            seen = names[record.name] = names.get(record.name, 0) + 1
            name = record.name if seen == 1 else f"{record.name}_{seen}"
            records.append(replace(record, index=len(records), name=name))
    return replace(telegrams[0], records=tuple(records), more_follows=telegrams[-1].more_follows,
                   manufacturer_data=b"".join(t.manufacturer_data for t in telegrams))


def _with_records(telegram: Telegram, body: bytes, msb_first: bool) -> Telegram:
    records, more, tail = _RecordReader(body, msb_first).read_all()
    return replace(telegram, records=records, more_follows=more, manufacturer_data=tail)


class _RecordReader:
    """Reads the data records of one telegram body."""

    def __init__(self, body: bytes, msb_first: bool):
        self.body = body
        self.pos = 0
        self.msb_first = msb_first
        self.records: List[Record] = []
        self.names: Dict[str, int] = {}

    def fail(self, message: str):
        raise TelegramError(f"record {len(self.records) + 1} (byte {self.pos} of the data): {message}",
                            tuple(self.records))

    def take(self, count: int, what: str) -> bytes:
        if self.pos + count > len(self.body):
            self.fail(f"the telegram ends inside the {what} ({len(self.body) - self.pos} of {count} bytes)")
        chunk = self.body[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def read_all(self) -> Tuple[Tuple[Record, ...], bool, bytes]:
        body = self.body
        while self.pos < len(body):
            start = self.pos
            dif = body[self.pos]
            if dif == 0x2F:                       # idle filler
                self.pos += 1
                continue
            if dif in (0x0F, 0x1F):               # manufacturer data (and more records follow) to the end
                tail = body[self.pos + 1:]
                self.pos = len(body)
                function = "more_records_follow" if dif == 0x1F else "manufacturer_specific"
                self.add(Record(len(self.records), self.unique("manufacturer_data"), "manufacturer_data",
                                tail, "", function,
                                kind=RAW, dif=bytes((dif,)), data=tail))
                return tuple(self.records), dif == 0x1F, tail
            if dif & 0x0F == 0x0F:
                self.fail(f"DIF 0x{dif:02X} is reserved (or a readout request, sent only by a master)")
            self.read_record(start)
        return tuple(self.records), False, b""

    def read_record(self, start: int) -> None:
        dif = self.take(1, "DIF")[0]
        storage, tariff, subunit = (dif >> 6) & 1, 0, 0
        extension = dif
        count = 0
        while extension & 0x80:
            count += 1
            if count > MAX_EXTENSIONS:
                self.fail(f"more than {MAX_EXTENSIONS} DIFEs")
            extension = self.take(1, "DIFE")[0]
            storage |= (extension & 0x0F) << (1 + 4 * (count - 1))
            tariff |= ((extension >> 4) & 3) << (2 * (count - 1))
            subunit |= ((extension >> 6) & 1) << (count - 1)
        dif_bytes = self.body[start:self.pos]
        vif_start = self.pos
        vif, text, extensions = self.read_vif()
        vif_bytes = self.body[vif_start:self.pos]
        meaning, modifiers, exponent, error, date_value = self.meaning(vif, text, extensions)
        raw = self.read_data(dif & 0x0F)
        function = FUNCTIONS[(dif >> 4) & 3]
        value, value_error = self.value(dif & 0x0F, raw, meaning, exponent, date_value)
        if error:                                 # the meter flags the value itself as not valid
            value = None
        kind = TIME if date_value else meaning.kind
        unit = "" if date_value else meaning.unit
        if meaning.quantity == "text_unit":
            unit = text
        name = self.unique(_name(meaning.quantity if meaning.quantity != "text_unit" else _text_name(text),
                                 modifiers, function, tariff, subunit, storage))
        self.add(Record(len(self.records), name, meaning.quantity, value, unit, function, storage, tariff,
                        subunit, modifiers, kind, error or value_error, dif_bytes, vif_bytes, raw))

    def add(self, record: Record) -> None:
        self.records.append(record)

    def unique(self, name: str) -> str:
        seen = self.names.get(name, 0) + 1
        self.names[name] = seen
        return name if seen == 1 else f"{name}_{seen}"

    def read_vif(self) -> Tuple[int, str, List[int]]:
        vif = self.take(1, "VIF")[0]
        text = ""
        if vif & 0x7F == 0x7C:                    # plain-text unit right after the VIF
            length = self.take(1, "plain-text VIF length")[0]
            text = self.take(length, "plain-text VIF")[::-1].decode("latin-1")
        extensions: List[int] = []
        more = vif & 0x80
        while more:
            if len(extensions) >= MAX_EXTENSIONS:
                self.fail(f"more than {MAX_EXTENSIONS} VIFEs")
            code = self.take(1, "VIFE")[0]
            extensions.append(code)
            more = code & 0x80
        if vif in (0xFB, 0xFD) and not extensions:
            self.fail(f"VIF 0x{vif:02X} without its extension byte")
        return vif, text, extensions

    def meaning(self, vif: int, text: str, extensions: List[int]):
        """(Vif, modifiers, extra exponent, error, value is a date) of a VIF and its VIFEs."""
        code = vif & 0x7F
        combinable = list(extensions)
        if vif in (0xFB, 0xFD):
            table = FB_VIFE if vif == 0xFB else FD_VIFE
            meaning = table.get(combinable.pop(0) & 0x7F, _UNKNOWN)
        elif code == 0x7C:
            meaning = Vif("text_unit", text)
        elif code == 0x7F:
            return PRIMARY_VIF[0x7F], (), 0, None, False      # the VIFEs are the manufacturer's
        else:
            meaning = PRIMARY_VIF.get(code, _UNKNOWN)
        modifiers: List[str] = []
        exponent, error, is_date, seconds = 0, None, False, 0
        for n, ext in enumerate(combinable):
            ext &= 0x7F
            if ext == 0x7F:                                   # the rest is manufacturer specific
                modifiers.append("manufacturer")
                break
            if ext == 0x7C:                                   # next one is from a second table
                rest = combinable[n + 1:n + 2]
                modifiers.append("extension_%02x" % (rest[0] & 0x7F) if rest else "extension")
                break
            if ext < 0x20:
                if ext:
                    error = RECORD_ERRORS.get(ext, f"record error 0x{ext:02X}")
            elif 0x70 <= ext <= 0x77:
                exponent += ext - 0x76                         # multiplicative correction 10^(nnn-6)
            elif ext == 0x7D:
                exponent += 3
            elif 0x78 <= ext <= 0x7B:
                modifiers.append("additive_correction")
            elif 0x50 <= ext <= 0x67:
                modifiers.append(_duration_modifier(ext))
                seconds = _SECONDS[ext & 3]
            else:
                modifiers.append(MODIFIERS.get(ext, "vife_%02x" % ext))
                is_date = is_date or ext in _DATE_MODIFIERS
        if seconds and not is_date:          # the value is a duration, in the VIFE's time unit
            meaning = meaning._replace(unit="s", exponent=0, factor=seconds, offset=0.0)
        return meaning, tuple(modifiers), exponent, error, is_date

    def read_data(self, field: int) -> bytes:
        if field == 0x0D:
            lvar = self.take(1, "variable length byte")[0]
            return bytes((lvar,)) + self.take(_variable_length(lvar, self), "variable-length data")
        return self.take(_FIELD_SIZES[field], "data")

    def value(self, field: int, raw: bytes, meaning: Vif, exponent: int, is_date: bool):
        """(value, error) of a record's data."""
        data = raw[::-1] if self.msb_first and field not in (0x0D,) else raw
        if field in (0x00, 0x08):
            return None, None
        if (is_date or meaning.quantity in _DATE_QUANTITIES) and field in (0x02, 0x03, 0x04, 0x06):
            return _time_point(data)
        if field == 0x0D:
            return _variable(raw[0], raw[1:], meaning)
        if field == 0x05:
            number = struct.unpack("<f", data)[0]
            if not math.isfinite(number):
                return None, f"the meter sent {number} (not a number)"
        elif field in (0x09, 0x0A, 0x0B, 0x0C, 0x0E):
            number = _bcd_number(data)
            if isinstance(number, str):
                return None, number
        else:
            number = int.from_bytes(data, "little", signed=meaning.signed)
        return _scale(number, meaning, exponent), None


_FIELD_SIZES = {0x01: 1, 0x02: 2, 0x03: 3, 0x04: 4, 0x05: 4, 0x06: 6, 0x07: 8, 0x09: 1, 0x0A: 2, 0x0B: 3,
                0x0C: 4, 0x0E: 6, 0x00: 0, 0x08: 0}


def _variable_length(lvar: int, reader: "_RecordReader") -> int:
    if lvar <= 0xBF:
        return lvar                       # text
    if 0xC0 <= lvar <= 0xC9 or 0xD0 <= lvar <= 0xD9:
        return lvar & 0x0F                # BCD, positive / negative
    if 0xE0 <= lvar <= 0xEF:
        return lvar - 0xE0                # binary number
    if 0xF0 <= lvar <= 0xF4:
        return 4 * (lvar - 0xEC)          # binary, 16-32 bytes
    if lvar == 0xF5:
        return 48
    if lvar == 0xF6:
        return 64
    reader.fail(f"variable-length code LVAR 0x{lvar:02X} is reserved")
    return 0


def _variable(lvar: int, data: bytes, meaning: Vif):
    if lvar <= 0xBF:             # text, last character first; meters pad it with spaces
        return data[::-1].decode("latin-1").strip(), None
    if lvar >= 0xC0 and lvar <= 0xD9:
        number = _bcd_number(data)
        if isinstance(number, str):
            return None, number
        return _scale(-number if lvar >= 0xD0 else number, meaning, 0), None
    if len(data) <= 8:
        return int.from_bytes(data, "little", signed=False), None
    return data[::-1], None          # a long binary number: its bytes most significant first


def _scale(number, meaning: Vif, extra_exponent: int):
    exponent = meaning.exponent + extra_exponent
    if isinstance(number, int) and exponent >= 0:
        value = number * 10 ** exponent
    elif exponent >= 0:
        value = number * float(10 ** exponent)
    else:
        value = number / 10 ** -exponent
    if meaning.factor != 1:
        value = value * meaning.factor
    if meaning.offset:
        value = value + meaning.offset
    return value


def _bcd_number(data: bytes):
    """The integer of BCD digits (least significant byte first); a high nibble F in the last
    byte makes it negative. A str saying why for other non-decimal digits."""
    digits = data.hex()                    # two characters a byte, high nibble first
    text = "".join(digits[i:i + 2] for i in range(len(digits) - 2, -1, -2))
    sign = 1
    if text[:1] == "f":
        sign, text = -1, text[1:]
    if not text.isdigit():
        return f"{data[::-1].hex(' ').upper()} is not a BCD number"
    return sign * int(text or "0")


def _time_point(data: bytes):
    """(value, error) of a date/time record: type G (2 bytes), J (3), F (4) or I (6)."""
    b = data
    try:
        if not any(b) or all(x == 0xFF for x in b):
            return None, "no date or time (the meter sent %s)" % ("zeros" if not any(b) else "FF bytes")
        if len(b) == 2:                                  # type G: date
            return date(_year(b[0] >> 5 | (b[1] & 0xF0) >> 1), b[1] & 0x0F, b[0] & 0x1F), None
        if len(b) == 3:                                  # type J: time of day
            return time(b[2] & 0x1F, b[1] & 0x3F, b[0] & 0x3F), None
        if len(b) == 4:                                  # type F: date and time
            if b[0] & 0x80:
                return None, "the meter marks the time as invalid"
            return datetime(_year(b[2] >> 5 | (b[3] & 0xF0) >> 1), b[3] & 0x0F, b[2] & 0x1F,
                            b[1] & 0x1F, b[0] & 0x3F), None
        if len(b) == 6:                                  # type I: date and time with seconds
            if b[1] & 0x80:
                return None, "the meter marks the time as invalid"
            return datetime(_year(b[3] >> 5 | (b[4] & 0xF0) >> 1), b[4] & 0x0F, b[3] & 0x1F,
                            b[2] & 0x1F, b[1] & 0x3F, b[0] & 0x3F), None
    except ValueError as error:
        return None, f"not a valid date or time ({data[::-1].hex(' ').upper()}: {error})"
    return None, f"{len(b)} bytes are not a date or time type"


def _year(value: int) -> int:
    """A 7-bit year as meters send it: 0-80 are 2000-2080, 81-127 are 1981-2027 (as libmbus)."""
    return 2000 + value if value <= 80 else 1900 + value


def _duration_modifier(ext: int) -> str:
    if ext >= 0x60:                                      # E110 0fnn: duration of (first / last)
        return "%s_duration" % ("last" if ext & 4 else "first")
    return "%s_limit_%s_duration" % ("upper" if ext & 8 else "lower", "last" if ext & 4 else "first")


def _text_name(text: str) -> str:
    cleaned = "".join(ch if ch.isalnum() else "_" for ch in text).strip("_")
    while "__" in cleaned:
        cleaned = cleaned.replace("__", "_")
    return cleaned or "text_unit"


def _name(quantity: str, modifiers: Tuple[str, ...], function: str, tariff: int, subunit: int,
          storage: int) -> str:
    parts = [quantity, *modifiers]
    if function != "instantaneous":
        parts.append(function)
    if tariff:
        parts.append(f"tariff{tariff}")
    if subunit:
        parts.append(f"sub{subunit}")
    if storage:
        parts.append(f"storage{storage}")
    return "_".join(parts)


# -- the fixed data structure (CI 0x73 / 0x77) ------------------------------------------------------
def _fixed_units() -> Dict[int, Tuple[str, str, int, float]]:
    """Unit codes of the fixed data structure: (quantity, unit, exponent, factor)."""
    units: Dict[int, Tuple[str, str, int, float]] = {}
    for n, (quantity, unit, exponent, factor) in enumerate((
            ("energy", "Wh", 0, 1), ("energy", "Wh", 3, 1), ("energy", "Wh", 6, 1),       # Wh kWh MWh
            ("energy", "Wh", 3, 1 / 3600), ("energy", "Wh", 6, 1 / 3600), ("energy", "Wh", 9, 1 / 3600),
            ("power", "W", 0, 1), ("power", "W", 3, 1), ("power", "W", 6, 1),
            ("power", "W", 3, 1 / 3600), ("power", "W", 6, 1 / 3600), ("power", "W", 9, 1 / 3600),
            ("volume", "m³", -6, 1), ("volume", "m³", -3, 1), ("volume", "m³", 0, 1),
            ("flow", "m³/h", -6, 1), ("flow", "m³/h", -3, 1), ("flow", "m³/h", 0, 1))):
        for decade in range(3):                 # each unit comes as ×1, ×10, ×100
            units[0x02 + 3 * n + decade] = (quantity, unit, exponent + decade, factor)
    units[0x38] = ("temperature", "°C", -3, 1)
    units[0x39] = ("hca_units", "", 0, 1)
    return units


FIXED_UNITS = _fixed_units()


def _decode_fixed(address: int, ci: int, data: bytes) -> Telegram:
    if len(data) != 16:
        raise TelegramError(f"fixed data structure of {len(data)} bytes, not 16")
    if ci == 0x77:
        data = data[3::-1] + data[4:6] + data[6:8] + data[11:7:-1] + data[:11:-1]
    status = data[5]
    media_units = data[6:8]
    medium = (media_units[1] >> 6) << 2 | media_units[0] >> 6
    records = []
    for n, (unit_code, counter) in enumerate(((media_units[0] & 0x3F, data[8:12]),
                                              (media_units[1] & 0x3F, data[12:16]))):
        number = int.from_bytes(counter, "little", signed=True) if status & 0x80 else _bcd_number(counter)
        historic = unit_code == 0x3E or bool(status & 0x40)
        if unit_code == 0x3E and n == 1:          # "same but historic": counter 1's unit
            unit_code = media_units[0] & 0x3F
        quantity, unit, exponent, factor = FIXED_UNITS.get(unit_code, ("counter", "", 0, 1.0))
        if isinstance(number, str):
            value, error = None, number
        else:
            value, error = _scale(number, Vif(quantity, unit, exponent, factor), 0), None
        records.append(Record(n, f"{quantity}_storage1" if historic else quantity, quantity, value, unit,
                              storage=int(historic), error=error, data=bytes(counter)))
    if records[0].name == records[1].name:
        records[1] = replace(records[1], name=records[1].name + "_2")
    meter_id = _bcd_number(data[:4])
    return Telegram(address, ci, tuple(records), id=meter_id if isinstance(meter_id, int) else None,
                    medium=medium, access_no=data[4], status=status & 0x1F)
