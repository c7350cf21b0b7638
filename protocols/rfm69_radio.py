"""The RFM69 radio (Semtech SX1231) on a Raspberry Pi's SPI bus: a blocking driver.

Every emonBase, emonPi2/3 and emonHP carries an RFM69CW on the Pi's SPI bus. This module drives
it directly, in either packet format OpenEnergyMonitor hardware uses:

* ``lpl``: LowPowerLab's format, as the emonTx4/5/6, emonTH2 and emonPi2/3 firmware send it (and
  emonhub's ``EmonHubRFM69LPLInterfacer`` reads it): 55,555 bit/s, network id in the second sync
  byte, AES on with OEM's fixed key, ``[length, target, sender, CTL, payload...]``, an ACK back
  to every packet that asks for one.
* ``jeelib``: JeeLib's native RFM69 format (emonhub's ``EmonHubRF69Interfacer``): 49,261 bit/s,
  whitening, ``[length, parity|dest, flags|source, payload...]`` with the group's parity bits.

It talks to the hardware through two narrow boundaries, so either can be replaced in tests:

* SPI: an object with the ``spidev.SpiDev`` subset used here (``open``, ``max_speed_hz``,
  ``mode``, ``no_cs``, ``xfer2``, ``close``). A register is read as ``[addr & 0x7F, 0]`` and
  written as ``[addr | 0x80, value]``; the FIFO is read and written in bursts.
* GPIO (``RadioLines``): the libgpiod v2 Python API (``gpiod.request_lines``, ``LineSettings``,
  ``wait_edge_events``, ``read_edge_events``, ``set_value``, ``release``) for the reset line, a
  chip select driven by hand, and the DIO0 interrupt line (rising edge = PayloadReady in RX).

Pins are GPIO line offsets, which on a Raspberry Pi are BCM numbers. emonhub's settings give
physical header pins (it calls ``GPIO.setmode(GPIO.BOARD)``): ``Pins.from_header`` converts
them, so ``interruptPin = 22`` / ``selPin = 16`` / ``resetPin = 24`` mean the same wires here.

Receiving blocks on the DIO0 edge (``wait_edge_events`` with a timeout). When edge events are
not available (gpiod missing, no permission, a kernel without them, the line taken) the driver
falls back to reading RegIrqFlags2 every ``POLL_INTERVAL`` seconds and says why in
``edge_problem``. Every wait for the chip has a deadline: a radio that stops answering raises
``RadioNotResponding`` instead of hanging. Packets that are not good (a wrong length, a CRC
error, another group's parity) come back as ``BadPacket`` values and are counted; they never
raise. ``transmit`` may be called from another thread: one lock serialises every exchange
with the chip, and it is not held while waiting for a packet.

Facts: Semtech SX1231 datasheet (register map, section 6), LowPowerLab RFM69 and
openenergymonitor/rpi-rfm69 (register values, LPL packet), JeeLabs ``rf69.h`` (native format).
"""

import errno
import logging
import select
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Callable, Deque, Dict, List, Optional, Tuple, Union

from protocols.gpio_pins import bcm_of_header_pin, find_header_chip, gpio_hint, import_gpiod

log = logging.getLogger("oemgateway.rfm69")

# -- registers (SX1231 datasheet, section 6) ----------------------------------------------------
REG_FIFO = 0x00
REG_OPMODE = 0x01
REG_DATAMODUL = 0x02
REG_BITRATEMSB = 0x03
REG_BITRATELSB = 0x04
REG_FDEVMSB = 0x05
REG_FDEVLSB = 0x06
REG_FRFMSB = 0x07
REG_FRFMID = 0x08
REG_FRFLSB = 0x09
REG_AFCCTRL = 0x0B
REG_VERSION = 0x10
REG_PALEVEL = 0x11
REG_OCP = 0x13
REG_RXBW = 0x19
REG_AFCFEI = 0x1E
REG_RSSIVALUE = 0x24
REG_DIOMAPPING1 = 0x25
REG_DIOMAPPING2 = 0x26
REG_IRQFLAGS1 = 0x27
REG_IRQFLAGS2 = 0x28
REG_RSSITHRESH = 0x29
REG_PREAMBLELSB = 0x2D
REG_SYNCCONFIG = 0x2E
REG_SYNCVALUE1 = 0x2F
REG_SYNCVALUE2 = 0x30
REG_PACKETCONFIG1 = 0x37
REG_PAYLOADLENGTH = 0x38
REG_FIFOTHRESH = 0x3C
REG_PACKETCONFIG2 = 0x3D
REG_AESKEY1 = 0x3E
REG_TESTDAGC = 0x6F
REG_TESTAFC = 0x71

MODE_SLEEP = 0x00        # RegOpMode bits 4:2, sequencer on, listen off
MODE_STANDBY = 0x04
MODE_FS = 0x08
MODE_TX = 0x0C
MODE_RX = 0x10
MODE_NAMES = {MODE_SLEEP: "sleep", MODE_STANDBY: "standby", MODE_FS: "synthesiser",
              MODE_TX: "transmit", MODE_RX: "receive"}

IRQ1_MODEREADY = 0x80
IRQ2_FIFONOTEMPTY = 0x40
IRQ2_FIFOOVERRUN = 0x10  # writing 1 clears the FIFO
IRQ2_PACKETSENT = 0x08
IRQ2_PAYLOADREADY = 0x04
IRQ2_CRCOK = 0x02

DIO0_PACKETSENT = 0x00   # RegDioMapping1 in TX: DIO0 = PacketSent
DIO0_PAYLOADREADY = 0x40  # in RX: DIO0 = PayloadReady
PACKET1_CRCAUTOCLEAR_OFF = 0x08
PACKET2_AES_ON = 0x01
VERSION_SX1231 = 0x24    # RegVersion of the SX1231 / RFM69

FXOSC = 32_000_000
FSTEP = FXOSC / 2 ** 19  # 61.03515625 Hz per Frf step
FIFO_SIZE = 66           # bytes; also the largest length byte accepted (RegPayloadLength)
SX1231_BANDS_MHZ = ((290, 340), (424, 510), (862, 1020))

# emonhub's freqBand codes (rpi-rfm69) -> RegFrf. 43 is OEM's "legacy 433": 433.00 MHz.
BANDS: Dict[int, int] = {
    31: 0x4EC000,   # 315.00 MHz
    43: 0x6C4000,   # 433.00 MHz, firmware before emonTx4 v1.7.0 / DB v2.2.0
    49: 0x6C7AE1,   # 433.92 MHz, OEM firmware's default since then
    86: 0xD90000,   # 868.00 MHz
    91: 0xE4C000,   # 915.00 MHz
}
DEFAULT_LPL_KEY = b"89txbe4p8aik5kt3"   # OEM's fixed AES key, in every emonTx4/5/6 and emonPi2/3

# -- timing ---------------------------------------------------------------------------------------
RESET_PULSE = 0.001      # s the reset line is held high (the datasheet asks for 100 us)
RESET_WAIT = 0.01        # s before the chip is used after reset (the datasheet asks for 5 ms)
PRESENCE_TIMEOUT = 0.1   # s the 0xAA/0x55 write-and-read-back check may take
MODE_TIMEOUT = 0.5       # s a mode change may take before the radio counts as not answering
TX_TIMEOUT = 1.0         # s for PacketSent; a 66-byte packet lasts about 11 ms on air
CSMA_LIMIT_DBM = -90     # a channel louder than this is busy: wait before transmitting
CSMA_TIMEOUT = 1.0       # s to wait for a busy channel to clear, then send anyway (as LowPowerLab)
EDGE_RECHECK = 1.0       # s: even with edge events, RegIrqFlags2 is read at least this often
POLL_INTERVAL = 0.02
"""Seconds between reads of RegIrqFlags2 when DIO0 edge events are not available.

The chip holds one packet until it is read, and a LowPowerLab node that asked for an ACK waits
about 30 ms for it before sending again: 20 ms answers most packets in time at 50 SPI reads a
second. (emonhub's fallback calls its handler from a loop of about 10 Hz.)"""
_SPIN = 0.0005           # s between register reads while the chip finishes something

Result = Union["Packet", "BadPacket"]


# -- errors ---------------------------------------------------------------------------------------
class RadioError(Exception):
    """The radio cannot be used; the message says what failed and what to check."""


class RadioNotFound(RadioError):
    """Nothing answers like an RFM69 on the SPI bus."""


class RadioNotResponding(RadioError):
    """The radio stopped answering: a mode change or a transmission never completed."""


# -- frequencies and pins ------------------------------------------------------------------------
def frf_for(frequency: float) -> int:
    """The RegFrf value for emonhub's band code (43, 49, 86, 91, 31) or a frequency in MHz.

    Raises ValueError for anything else, or a frequency outside the SX1231's bands.
    """
    if isinstance(frequency, bool) or not isinstance(frequency, (int, float)):
        raise ValueError(f"frequency {frequency!r} is not a number")
    if frequency in BANDS:
        return BANDS[int(frequency)]
    if not any(low <= frequency <= high for low, high in SX1231_BANDS_MHZ):
        raise ValueError(f"frequency {frequency} is neither a band code ({', '.join(map(str, BANDS))}) "
                         f"nor a frequency in MHz the RFM69 can tune (290-340, 424-510, 862-1020)")
    return round(frequency * 1_000_000 / FSTEP)


@dataclass(frozen=True)
class Pins:
    """The radio's GPIO lines as line offsets of the header's gpiochip (BCM numbers on a Pi).

    ``irq``: DIO0; ``cs``: a chip select driven by hand (None: the SPI device's own chip
    select); ``reset``: the radio's reset input (None: not wired).
    """

    irq: Optional[int] = 25
    cs: Optional[int] = 7
    reset: Optional[int] = None

    def __post_init__(self):
        used = [p for p in (self.irq, self.cs, self.reset) if p is not None]
        if any(isinstance(p, bool) or not isinstance(p, int) or p < 0 for p in used):
            raise ValueError(f"GPIO line offsets must be whole numbers >= 0: {self}")
        if len(set(used)) != len(used):
            raise ValueError(f"two radio pins share one GPIO line: {self}")

    @classmethod
    def from_header(cls, irq: Optional[int], cs: Optional[int], reset: Optional[int]) -> "Pins":
        """Pins given as physical header pin numbers, as emonhub's ``interruptPin``, ``selPin``
        and ``resetPin`` are."""
        convert = (lambda p: None if p is None else bcm_of_header_pin(p))
        return cls(convert(irq), convert(cs), convert(reset))


# As OEM's boards wire the radio (emonhub: interruptPin 22, selPin 26 or 16, resetPin 24).
BOARD_PINS: Dict[str, Pins] = {
    "emonbase": Pins(irq=25, cs=7, reset=None),    # header 22, 26, -
    "emonpi2": Pins(irq=25, cs=23, reset=8),       # header 22, 16, 24
    "emonpi3": Pins(irq=25, cs=23, reset=8),
    "emonhp": Pins(irq=25, cs=23, reset=8),
}


# -- settings -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RadioSettings:
    """How the radio is set up. ``lpl()`` and ``jeelib()`` give each format's defaults.

    format        ``lpl`` or ``jeelib``
    node_id       this receiver's id: LPL 1-254 (OEM bases use 5), JeeLib 1-63 (63 hears all)
    network       LPL network id / JeeLib group, 1-255 (OEM: 210); the second sync byte
    frequency     emonhub band code (43 = 433.00 MHz, 49 = 433.92 MHz, 86, 91, 31) or MHz
    aes_key       16 bytes, or None for no encryption (LPL: OEM's key)
    promiscuous   also deliver packets addressed to other nodes (never ACKed)
    auto_ack      answer LPL packets that ask for an ACK (CTL 0x40) and are addressed to us
    tx_power_dbm  -18 to +13 (RFM69CW, PA0); LPL +4 (rpi-rfm69's 70 %), JeeLib +7
    crc_errors    keep packets with a CRC error so they are counted (RegPacketConfig1
                  CrcAutoClearOff); off, the chip drops them silently, as emonhub's setup does
    spi_bus, spi_device, spi_speed_hz, pins, gpio_chip   where the radio is ("auto": the
                  gpiochip labelled as the Pi's header, else /dev/gpiochip0)
    """

    format: str = "lpl"
    node_id: int = 5
    network: int = 210
    frequency: float = 43
    aes_key: Optional[bytes] = field(default=DEFAULT_LPL_KEY, repr=False)
    promiscuous: bool = False
    auto_ack: bool = True
    tx_power_dbm: int = 4
    crc_errors: bool = False
    spi_bus: int = 0
    spi_device: int = 0
    spi_speed_hz: int = 4_000_000
    pins: Pins = BOARD_PINS["emonbase"]
    gpio_chip: str = "auto"

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"format {self.format!r} is not one of {', '.join(FORMATS)}")
        high = FORMATS[self.format].max_node_id
        _check_int("node_id", self.node_id, 1, high)
        _check_int("network", self.network, 1, 255)    # a sync byte of 0x00 is not allowed
        _check_int("tx_power_dbm", self.tx_power_dbm, -18, 13)
        _check_int("spi_speed_hz", self.spi_speed_hz, 1, 10_000_000)
        _check_int("spi_bus", self.spi_bus, 0, 255)
        _check_int("spi_device", self.spi_device, 0, 255)
        frf_for(self.frequency)
        key = self.aes_key
        if isinstance(key, str):
            key = key.encode("utf-8")
            object.__setattr__(self, "aes_key", key)
        if key is not None and (not isinstance(key, bytes) or len(key) != 16):
            raise ValueError("aes_key must be 16 characters (or none, for no encryption)")

    @classmethod
    def lpl(cls, **settings) -> "RadioSettings":
        """LowPowerLab format with OEM's defaults: node 5, network 210, AES key, +4 dBm."""
        return cls(format="lpl", **settings)

    @classmethod
    def jeelib(cls, **settings) -> "RadioSettings":
        """JeeLib native format with emonhub's defaults: 434.00 MHz, no AES, +7 dBm, emonPi2 pins."""
        defaults = dict(format="jeelib", frequency=434, aes_key=None, tx_power_dbm=7,
                        pins=BOARD_PINS["emonpi2"])
        defaults.update(settings)
        return cls(**defaults)


def _check_int(name: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} = {value!r} is out of range ({low}-{high})")


# -- packets --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Packet:
    """A good packet: what the listener turns into ``RawFrame(sender, payload, time, rssi, ...)``.

    ``target`` is this node, a broadcast id, or (promiscuous) another node; ``flags`` is the LPL
    CTL byte, or the top two bits of the JeeLib source byte; ``ack_requested`` says the sender
    asked this node for an ACK, ``acked`` that one was sent back.
    """

    sender: int
    target: int
    payload: bytes
    rssi: int
    flags: int = 0
    ack_requested: bool = False
    acked: bool = False


BAD_LENGTH = "length"
BAD_CRC = "crc"
WRONG_NETWORK = "network"


@dataclass(frozen=True)
class BadPacket:
    """A packet that is not delivered: ``reason`` is BAD_LENGTH, BAD_CRC or WRONG_NETWORK,
    ``detail`` says what was wrong, ``data`` holds the bytes read from the FIFO."""

    reason: str
    detail: str
    data: bytes
    rssi: Optional[int] = None


@dataclass(frozen=True)
class _Skipped:
    """A good packet that is not for the listener: for another node, or an ACK."""

    why: str
    sender: int


def rssi_dbm(register: int) -> int:
    """Signal strength in dBm from RegRssiValue (-value/2, rounded down, as emonhub has it)."""
    return -register >> 1


class PacketFormat:
    """What the two formats share: a length byte, then ``header`` bytes, then the payload."""

    header = 0
    header_names = ""

    def __init__(self, settings: RadioSettings):
        self.settings = settings

    def length_problem(self, data: bytes, rssi: int) -> Optional[BadPacket]:
        """A BadPacket if the length byte cannot be right for this format, else None."""
        if not data or data[0] < self.header:
            return BadPacket(BAD_LENGTH, f"length byte {data[0] if data else 'missing'}: shorter than "
                             f"the {self.header_names}", bytes(data), rssi)
        if data[0] > FIFO_SIZE:
            return BadPacket(BAD_LENGTH, f"length byte {data[0]}: more than the {FIFO_SIZE}-byte FIFO "
                             "holds", bytes(data), rssi)
        if len(data) < data[0] + 1:
            return BadPacket(BAD_LENGTH, f"length byte {data[0]} but only {len(data) - 1} bytes",
                             bytes(data), rssi)
        return None


class LowPowerLab(PacketFormat):
    """``[length, target, sender, CTL, payload...]``; length = 3 + payload bytes."""

    name = "lpl"
    header = 3
    header_names = "LowPowerLab header (target, sender, CTL)"
    max_node_id = 254
    broadcast = 255            # the OEM fork's broadcast id; upstream LowPowerLab now uses 0
    max_payload = 61           # LowPowerLab's limit: the frame fits the FIFO with AES on
    CTL_ACK = 0x80             # this packet is an ACK
    CTL_ACK_REQUEST = 0x40     # the sender wants an ACK

    def registers(self) -> List[Tuple[int, int]]:
        """The configuration rpi-rfm69 writes (emonhub's RFM69 LPL interfacer), in order."""
        settings = self.settings
        frf = frf_for(settings.frequency)
        packet1 = 0x90 | (PACKET1_CRCAUTOCLEAR_OFF if settings.crc_errors else 0)
        return [
            (REG_OPMODE, MODE_STANDBY),
            (REG_DATAMODUL, 0x00),            # packet mode, FSK, no shaping
            (REG_BITRATEMSB, 0x02), (REG_BITRATELSB, 0x40),    # 32 MHz / 0x240 = 55,555 bit/s
            (REG_FDEVMSB, 0x03), (REG_FDEVLSB, 0x33),          # 50 kHz
            (REG_FRFMSB, frf >> 16), (REG_FRFMID, (frf >> 8) & 0xFF), (REG_FRFLSB, frf & 0xFF),
            (REG_RXBW, 0x42),                 # DccFreq 010, 125 kHz
            (REG_DIOMAPPING1, DIO0_PAYLOADREADY),
            (REG_RSSITHRESH, 220),            # -110 dBm
            (REG_SYNCCONFIG, 0x88),           # sync on, 2 bytes, no errors tolerated
            (REG_SYNCVALUE1, 0x2D),
            (REG_SYNCVALUE2, settings.network),
            (REG_PACKETCONFIG1, packet1),     # variable length, CRC on, no address filter
            (REG_PAYLOADLENGTH, FIFO_SIZE),
            (REG_FIFOTHRESH, 0x8F),           # TX starts when the FIFO is not empty
            (REG_PACKETCONFIG2, 0x12 | (PACKET2_AES_ON if settings.aes_key else 0)),
            (REG_TESTDAGC, 0x30),             # improved DAGC, AfcLowBetaOn 0
            (REG_OCP, 0x1A),                  # over-current protection on (not a high-power module)
            (REG_PALEVEL, 0x80 | (settings.tx_power_dbm + 18)),   # PA0: Pout = -18 + level
        ]

    def parse(self, data: bytes, rssi: int) -> Union[Packet, BadPacket, _Skipped]:
        """A packet from the bytes read from the FIFO (length byte first). Never raises."""
        settings = self.settings
        bad = self.length_problem(data, rssi)
        if bad is not None:
            return bad
        target, sender, ctl = data[1], data[2], data[3]
        mine = target == settings.node_id
        if not (mine or target in (self.broadcast, 0) or settings.promiscuous):
            return _Skipped(f"addressed to node {target}", sender)
        if ctl & self.CTL_ACK:
            return _Skipped("an ACK", sender)
        return Packet(sender, target, bytes(data[4:data[0] + 1]), rssi, ctl,
                      ack_requested=bool(ctl & self.CTL_ACK_REQUEST) and mine)

    def frame(self, target: int, payload: bytes, request_ack: bool = False) -> bytes:
        """The FIFO bytes that send ``payload`` to ``target``; ValueError if they cannot."""
        _check_int("target", target, 0, 255)
        _check_payload(payload, self.max_payload)
        ctl = self.CTL_ACK_REQUEST if request_ack else 0
        return bytes([len(payload) + 3, target, self.settings.node_id, ctl]) + bytes(payload)

    def ack(self, packet: Packet) -> bytes:
        """The ACK for ``packet``: no payload, CTL 0x80, back to its sender."""
        return bytes([3, packet.sender, self.settings.node_id, self.CTL_ACK])


class JeeLibNative(PacketFormat):
    """``[length, parity|dest, flags|source, payload...]``; length = 2 + payload bytes.

    The top two bits of the dest byte are the group's parity, so a packet of another group is
    told apart even when its sync bytes matched; dest 0 is a broadcast.
    """

    name = "jeelib"
    header = 2
    header_names = "JeeLib header (dest, source)"
    max_node_id = 63
    broadcast = 0
    max_payload = 62
    CATCH_ALL = 63             # a receiver with this id hears every node

    @staticmethod
    def parity(group: int) -> int:
        """b7 = group b7^b5^b3^b1, b6 = group b6^b4^b2^b0 (JeeLabs rf69)."""
        bits = group ^ (group << 4)
        return (bits ^ (bits << 2)) & 0xC0

    def __init__(self, settings: RadioSettings):
        super().__init__(settings)
        self.group_parity = self.parity(settings.network)

    def registers(self) -> List[Tuple[int, int]]:
        """The configuration of emonhub's RF69 interfacer (JeeLabs rf69.h), in order."""
        settings = self.settings
        frf = frf_for(settings.frequency)
        packet1 = 0xD0 | (PACKET1_CRCAUTOCLEAR_OFF if settings.crc_errors else 0)
        return [
            (REG_OPMODE, MODE_STANDBY),
            (REG_DATAMODUL, 0x00),
            (REG_BITRATEMSB, 0x02), (REG_BITRATELSB, 0x8A),    # 32 MHz / 650 = 49,261 bit/s
            (REG_FDEVMSB, 0x05), (REG_FDEVLSB, 0xC3),          # 90 kHz
            (REG_FRFMSB, frf >> 16), (REG_FRFMID, (frf >> 8) & 0xFF), (REG_FRFLSB, frf & 0xFF),
            (REG_AFCCTRL, 0x20),              # AFC low-beta on
            (REG_PALEVEL, 0x80 | (settings.tx_power_dbm + 18)),
            (REG_RXBW, 0x42),
            (REG_AFCFEI, 0x2C),               # AFC auto-clear, AFC auto on
            (REG_DIOMAPPING1, DIO0_PAYLOADREADY),
            (REG_DIOMAPPING2, 0x07),          # clock output off
            (REG_RSSITHRESH, 0xA0),           # -80 dBm
            (REG_PREAMBLELSB, 0x05),
            (REG_SYNCCONFIG, 0x88),
            (REG_SYNCVALUE1, 0x2D),
            (REG_SYNCVALUE2, settings.network),   # the group
            (REG_PACKETCONFIG1, packet1),     # variable length, whitening, CRC on, no filter
            (REG_PAYLOADLENGTH, FIFO_SIZE),
            (REG_FIFOTHRESH, 0x8F),
            (REG_PACKETCONFIG2, 0x12 | (PACKET2_AES_ON if settings.aes_key else 0)),
            (REG_TESTDAGC, 0x20),
            (REG_TESTAFC, 0x02),
        ]

    def parse(self, data: bytes, rssi: int) -> Union[Packet, BadPacket, _Skipped]:
        """A packet from the bytes read from the FIFO (length byte first). Never raises."""
        settings = self.settings
        bad = self.length_problem(data, rssi)
        if bad is not None:
            return bad
        dest, source = data[1], data[2]
        parity = self.group_parity
        if dest & 0xC0 != parity:
            return BadPacket(WRONG_NETWORK, f"group parity bits 0x{dest & 0xC0:02X}, group "
                             f"{settings.network} has 0x{parity:02X}", bytes(data), rssi)
        target = dest & 0x3F
        if not (target in (settings.node_id, self.broadcast) or settings.node_id == self.CATCH_ALL
                or settings.promiscuous):
            return _Skipped(f"addressed to node {target}", source & 0x3F)
        return Packet(source & 0x3F, target, bytes(data[3:data[0] + 1]), rssi, source & 0xC0)

    def frame(self, target: int, payload: bytes, request_ack: bool = False) -> bytes:
        """The FIFO bytes that send ``payload`` to ``target`` (0: all); ValueError if they cannot."""
        _check_int("target", target, 0, 63)
        _check_payload(payload, self.max_payload)
        if request_ack:
            raise ValueError("JeeLib native packets carry no ACK request")
        return bytes([len(payload) + 2, target | self.group_parity, self.settings.node_id]) + bytes(payload)

    def ack(self, packet: Packet) -> bytes:
        raise ValueError("JeeLib native packets are not acknowledged")


def _check_payload(payload, limit: int) -> None:
    if not isinstance(payload, (bytes, bytearray)) or not 1 <= len(payload) <= limit:
        raise ValueError(f"a packet carries 1 to {limit} bytes, not {payload!r:.40}")


FORMATS = {"lpl": LowPowerLab, "jeelib": JeeLibNative}


def message_counter(payload: bytes) -> Optional[int]:
    """The message counter emonTx4/5/6 firmware puts first (``Msg``, uint32 little-endian),
    or None for a payload shorter than that. Only meaningful for nodes that send one."""
    return struct.unpack_from("<I", payload)[0] if len(payload) >= 4 else None


# -- GPIO -----------------------------------------------------------------------------------------
def _import_gpiod():
    """The libgpiod v2 module; RadioError saying what to install when it is missing or v1."""
    return import_gpiod(RadioError)


def _gpio_hint(exc: OSError) -> str:
    return gpio_hint(exc, "gpio_chip", "the SPI driver owns CE0 = GPIO8 and CE1 = GPIO7 unless "
                                       "dtoverlay=spi0-cs moves them")


class RadioLines:
    """The radio's GPIO lines through libgpiod v2: reset and chip select as outputs, DIO0 as an
    input with rising-edge events.

    The outputs and DIO0 are requested separately: without the outputs the radio cannot be
    used (RadioError), without DIO0 edges it can, by polling, and ``edge_problem`` says why.
    ``gpiod`` may be given (tests pass a stand-in with the same calls); otherwise it is imported
    only when a line is needed, so a radio on the SPI device's own chip select, without reset
    and interrupt lines, runs without it.
    """

    CONSUMER = "oemgateway-rfm69"

    def __init__(self, pins: Pins, chip: str = "auto", gpiod=None):
        self.pins = pins
        self.chip = chip
        self._gpiod = gpiod
        self._outputs = None
        self._irq = None
        self._Value = None
        self.edge_problem: Optional[str] = None

    @property
    def edges(self) -> bool:
        """True when DIO0 edge events are available (waiting blocks on them)."""
        return self._irq is not None

    def open(self) -> None:
        outputs = [p for p in (self.pins.cs, self.pins.reset) if p is not None]
        if not outputs and self.pins.irq is None:
            self.edge_problem = "no interrupt pin is configured"
            return
        try:
            gpiod = self._gpiod or _import_gpiod()
        except RadioError as exc:
            if outputs:
                raise RadioError(f"{exc} (needed to drive GPIO{', GPIO'.join(map(str, outputs))})") from None
            self.edge_problem = str(exc)
            return
        chip = find_header_chip(gpiod) if self.chip == "auto" else self.chip
        Direction, Edge, Value = gpiod.line.Direction, gpiod.line.Edge, gpiod.line.Value
        self._Value = Value
        if outputs:
            config = {}
            if self.pins.cs is not None:    # high: not selected
                config[self.pins.cs] = gpiod.LineSettings(direction=Direction.OUTPUT,
                                                          output_value=Value.ACTIVE)
            if self.pins.reset is not None:  # low: running (the RFM69 resets on high)
                config[self.pins.reset] = gpiod.LineSettings(direction=Direction.OUTPUT,
                                                             output_value=Value.INACTIVE)
            try:
                self._outputs = gpiod.request_lines(chip, consumer=self.CONSUMER, config=config)
            except OSError as exc:
                names = ", ".join(f"GPIO{p}" for p in config)
                raise RadioError(f"cannot drive {names} on {chip}: {_gpio_hint(exc)}") from None
        if self.pins.irq is None:
            self.edge_problem = "no interrupt pin is configured"
            return
        try:
            self._irq = gpiod.request_lines(chip, consumer=self.CONSUMER, config={
                self.pins.irq: gpiod.LineSettings(direction=Direction.INPUT, edge_detection=Edge.RISING)})
            self.edge_problem = None
        except OSError as exc:
            self.edge_problem = f"no edge events on GPIO{self.pins.irq} of {chip}: {_gpio_hint(exc)}"

    def select(self) -> None:
        if self.pins.cs is not None:
            self._outputs.set_value(self.pins.cs, self._Value.INACTIVE)

    def deselect(self) -> None:
        if self.pins.cs is not None:
            self._outputs.set_value(self.pins.cs, self._Value.ACTIVE)

    def reset(self) -> bool:
        """Pulse the reset line; False when there is none."""
        if self.pins.reset is None:
            return False
        self._outputs.set_value(self.pins.reset, self._Value.ACTIVE)
        time.sleep(RESET_PULSE)
        self._outputs.set_value(self.pins.reset, self._Value.INACTIVE)
        time.sleep(RESET_WAIT)
        return True

    def wait_for_interrupt(self, timeout: float, wake: Optional[int] = None) -> bool:
        """Block until DIO0 rises, ``timeout`` passes or the file descriptor ``wake`` becomes
        readable; True if DIO0 rose. Edge events only. (``wake`` needs the request's ``fd``,
        which libgpiod 2 has; without one, only the timeout ends the wait.)"""
        fd = getattr(self._irq, "fd", None)
        if wake is None or fd is None:
            if not self._irq.wait_edge_events(timeout):
                return False
        elif fd not in select.select([fd, wake], [], [], timeout)[0]:
            return False
        self._irq.read_edge_events()
        return True

    def close(self) -> None:
        for request in (self._irq, self._outputs):
            if request is not None:
                try:
                    request.release()
                except Exception:   # already released; nothing else to do at close
                    pass
        self._irq = self._outputs = None


# -- SPI ------------------------------------------------------------------------------------------
class RegisterBus:
    """Register and FIFO access over spidev, with the chip select driven by hand when wired so."""

    def __init__(self, spi, bus: int, device: int, speed_hz: int, lines: RadioLines):
        self.spi = spi
        self.where = f"/dev/spidev{bus}.{device}"
        self._address = (bus, device)
        self._speed = speed_hz
        self._lines = lines
        self._open = False

    def open(self) -> None:
        if self.spi is None:
            try:
                import spidev
            except ImportError:
                raise RadioError("the spidev package is not installed: pip install spidev") from None
            self.spi = spidev.SpiDev()
        try:
            self.spi.open(*self._address)
        except OSError as exc:
            hint = {errno.ENOENT: "no such SPI device: enable SPI (dtparam=spi=on) and check spi_bus, "
                                  "spi_device",
                    errno.EACCES: "permission denied: add the user to the spi group"}
            raise RadioError(f"cannot open {self.where}: {hint.get(exc.errno, exc)}") from None
        self._open = True
        try:
            self.spi.max_speed_hz = self._speed
            self.spi.mode = 0
            if self._lines.pins.cs is not None:
                self.spi.no_cs = True
        except OSError as exc:
            raise RadioError(f"cannot set up {self.where}: {exc}") from None

    def transfer(self, data: List[int]) -> List[int]:
        self._lines.select()
        try:
            return self.spi.xfer2(data)
        except OSError as exc:
            raise RadioError(f"SPI transfer on {self.where} failed: {exc}") from None
        finally:
            self._lines.deselect()

    def read(self, address: int) -> int:
        return self.transfer([address & 0x7F, 0])[1]

    def write(self, address: int, value: int) -> None:
        self.transfer([address | 0x80, value & 0xFF])

    def read_burst(self, address: int, count: int) -> bytes:
        return bytes(self.transfer([address & 0x7F] + [0] * count)[1:])

    def write_burst(self, address: int, data: bytes) -> None:
        self.transfer([address | 0x80] + list(data))

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                self.spi.close()
            except OSError:
                pass


# -- receive-side helpers -------------------------------------------------------------------------
class DuplicateFilter:
    """Tells a node's retransmission from a new packet.

    A LowPowerLab node sends again when our ACK did not reach it, so the same packet can arrive
    two or three times within a few tens of milliseconds. A packet is a repeat when the same
    sender sent the same payload (or, with ``counter``, the same message counter) less than
    ``window`` seconds after the copy that was kept. Kept per sender, so retries of two nodes
    that interleave are both caught. ``window`` 0 keeps everything.
    """

    def __init__(self, window: float = 0.5, clock: Callable[[], float] = time.monotonic,
                 counter: Optional[Callable[[int, bytes], Optional[int]]] = None):
        self.window = window
        self._clock = clock
        self._counter = counter
        self._last: Dict[int, Tuple[object, float]] = {}

    def is_repeat(self, sender: int, payload: bytes) -> bool:
        """True if this is a repeat (drop it); otherwise remember it and return False."""
        now = self._clock()
        msg = self._counter(sender, payload) if self._counter else None
        key = ("msg", msg) if msg is not None else ("payload", bytes(payload))
        last = self._last.get(sender)
        if last is not None and last[0] == key and now - last[1] < self.window:
            return True
        self._last[sender] = (key, now)
        return False


class Watchdog:
    """Says when the radio has been silent so long that it should be re-initialised.

    emonhub re-initialises its RFM69 after 300 s without a packet, counting only once a first
    packet has arrived (a receiver with no nodes is not restarted for nothing); ``from_start``
    counts from each (re)initialisation instead. The listener calls ``started()`` after every
    initialisation, ``packet()`` for every packet, and asks ``expired()`` (or ``due_in()``, to
    schedule the next look).
    """

    def __init__(self, period: float = 300.0, clock: Callable[[], float] = time.monotonic,
                 from_start: bool = False):
        self.period = period
        self.from_start = from_start
        self._clock = clock
        self._since: Optional[float] = None

    def started(self) -> None:
        self._since = self._clock() if self.from_start else None

    def packet(self) -> None:
        self._since = self._clock()

    def due_in(self) -> Optional[float]:
        """Seconds until it expires (0 if it has), None while it is not counting."""
        if self._since is None:
            return None
        return max(0.0, self._since + self.period - self._clock())

    def expired(self) -> bool:
        return self.due_in() == 0.0


# -- the driver -----------------------------------------------------------------------------------
@dataclass
class RadioCounters:
    received: int = 0        # packets delivered
    duplicates: int = 0      # retransmissions dropped
    not_for_us: int = 0      # good packets addressed to another node
    acks_sent: int = 0
    acks_received: int = 0
    bad_length: int = 0
    bad_crc: int = 0
    wrong_network: int = 0   # JeeLib: another group's parity
    transmitted: int = 0
    channel_busy: int = 0    # transmissions sent after waiting CSMA_TIMEOUT for a quiet channel
    initialised: int = 0


# Registers that read back what was written (others hold triggers or status bits).
_PLAIN_REGISTERS = frozenset({REG_BITRATEMSB, REG_BITRATELSB, REG_FDEVMSB, REG_FDEVLSB, REG_FRFMSB,
                              REG_FRFMID, REG_FRFLSB, REG_SYNCCONFIG, REG_SYNCVALUE1, REG_SYNCVALUE2,
                              REG_PACKETCONFIG1, REG_PAYLOADLENGTH})
_COUNTER_OF = {BAD_LENGTH: "bad_length", BAD_CRC: "bad_crc", WRONG_NETWORK: "wrong_network"}


class Rfm69Radio:
    """One RFM69 module: ``open()``, then ``receive()`` in a loop, ``transmit()`` from any thread.

    ``spi`` is an unopened ``spidev.SpiDev`` (default) or a stand-in; ``gpiod`` the libgpiod v2
    module (default: imported when needed) or a stand-in; ``duplicates`` the filter applied to
    received packets (window 0 turns it off). RadioError and its subclasses are the only
    exceptions raised for hardware trouble; the listener re-initialises or reopens on them.
    """

    def __init__(self, settings: RadioSettings, spi=None, gpiod=None,
                 duplicates: Optional[DuplicateFilter] = None, mode_timeout: float = MODE_TIMEOUT,
                 tx_timeout: float = TX_TIMEOUT, poll_interval: float = POLL_INTERVAL,
                 csma_timeout: float = CSMA_TIMEOUT):
        self.settings = settings
        self.format = FORMATS[settings.format](settings)
        self.lines = RadioLines(settings.pins, settings.gpio_chip, gpiod)
        self.bus = RegisterBus(spi, settings.spi_bus, settings.spi_device, settings.spi_speed_hz,
                               self.lines)
        self.duplicates = duplicates if duplicates is not None else DuplicateFilter()
        self.counters = RadioCounters()
        self.mode_timeout = mode_timeout
        self.tx_timeout = tx_timeout
        self.poll_interval = poll_interval
        self.csma_timeout = csma_timeout
        self.version: Optional[int] = None
        self._lock = threading.RLock()
        self._pending: Deque[Result] = deque()
        self._open = False

    def __repr__(self) -> str:
        return f"<Rfm69Radio {self.settings.format} node {self.settings.node_id} on {self.bus.where}>"

    @property
    def broadcast_id(self) -> int:
        return self.format.broadcast

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def polling(self) -> bool:
        """True when packets are found by reading RegIrqFlags2 every ``poll_interval`` s."""
        return not self.lines.edges

    @property
    def edge_problem(self) -> Optional[str]:
        """Why DIO0 edge events are not used (for one log line), or None."""
        return self.lines.edge_problem

    # -- life cycle -----------------------------------------------------------------------------
    def open(self) -> None:
        """Take the GPIO lines and the SPI device, reset and configure the radio, start receiving."""
        with self._lock:
            try:
                self.lines.open()
                self.bus.open()
                self._open = True
                self._initialise()
            except BaseException:
                self.close()
                raise

    def reinitialise(self) -> None:
        """Reset and configure the radio again (the watchdog's remedy, and the one after a
        RadioNotResponding); the lines stay taken, packets already read are still delivered."""
        with self._lock:
            self._require_open()
            self._initialise()

    def close(self) -> None:
        """Put the radio to sleep (if it answers) and release the SPI device and GPIO lines.

        Stop the thread that calls ``receive`` first: it returns within its timeout.
        """
        with self._lock:
            if self._open:
                try:
                    self.bus.write(REG_OPMODE, MODE_SLEEP)
                except RadioError:
                    pass
            self._open = False
            self.bus.close()
            self.lines.close()

    def __enter__(self) -> "Rfm69Radio":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _require_open(self) -> None:
        if not self._open:
            raise RadioError("the radio is not open")

    def _initialise(self) -> None:
        self.lines.reset()
        self._check_presence()
        self.version = self.bus.read(REG_VERSION)
        if self.version != VERSION_SX1231:
            log.warning("%s: RegVersion reads 0x%02X (an SX1231/RFM69 reads 0x%02X): carrying on",
                        self, self.version, VERSION_SX1231)
        registers = self.format.registers()
        for address, value in registers:
            self.bus.write(address, value)
        if self.settings.aes_key:
            self.bus.write_burst(REG_AESKEY1, self.settings.aes_key)
        for address, value in registers:
            if address not in _PLAIN_REGISTERS:
                continue
            got = self.bus.read(address)
            if got != value:
                raise RadioError(f"register 0x{address:02X} reads 0x{got:02X} after 0x{value:02X} was "
                                 f"written: the SPI link to the radio on {self.bus.where} is unreliable")
        self._set_mode(MODE_STANDBY)
        self._start_receiving()
        self.counters.initialised += 1

    def _check_presence(self) -> None:
        """Write 0xAA, then 0x55, to RegSyncValue1 and read each back, retrying briefly."""
        deadline = time.monotonic() + PRESENCE_TIMEOUT
        for pattern in (0xAA, 0x55):
            while True:
                self.bus.write(REG_SYNCVALUE1, pattern)
                got = self.bus.read(REG_SYNCVALUE1)
                if got == pattern:
                    break
                if time.monotonic() > deadline:
                    cs = (f"chip select GPIO{self.settings.pins.cs}" if self.settings.pins.cs is not None
                          else "the SPI device's chip select")
                    raise RadioNotFound(f"no RFM69 answers on {self.bus.where} with {cs} (wrote "
                                        f"0x{pattern:02X} to RegSyncValue1, read back 0x{got:02X}): check "
                                        "that the radio is fitted and the SPI and pin settings")
                time.sleep(_SPIN)

    # -- chip states ----------------------------------------------------------------------------
    def _set_mode(self, mode: int) -> None:
        self.bus.write(REG_OPMODE, mode)
        self._wait_flag(REG_IRQFLAGS1, IRQ1_MODEREADY, self.mode_timeout,
                        lambda: f"the radio did not reach {MODE_NAMES[mode]} mode within "
                                f"{self.mode_timeout} s (ModeReady never set): it stopped answering")

    def _wait_flag(self, register: int, flag: int, timeout: float, message: Callable[[], str]) -> None:
        deadline = time.monotonic() + timeout
        while not self.bus.read(register) & flag:
            if time.monotonic() > deadline:
                raise RadioNotResponding(message())
            time.sleep(_SPIN)

    def _clear_fifo(self) -> None:
        self.bus.write(REG_IRQFLAGS2, IRQ2_FIFOOVERRUN)

    def _start_receiving(self) -> None:
        self._clear_fifo()
        self.bus.write(REG_DIOMAPPING1, DIO0_PAYLOADREADY)
        self._set_mode(MODE_RX)

    # -- receiving ------------------------------------------------------------------------------
    def receive(self, timeout: Optional[float] = 1.0, wake: Optional[int] = None) -> Optional[Result]:
        """The next Packet or BadPacket, or None if none came within ``timeout`` seconds, or
        the file descriptor ``wake`` became readable (how another thread stops a receiver
        promptly: it writes to a pipe; the pipe is not drained here).

        Blocks on the DIO0 edge (or polls, see ``polling``). ``timeout`` None waits for ever.
        Raises RadioError (RadioNotResponding) when the radio stops answering: ``reinitialise()``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                self._require_open()
                if not self._pending:
                    self._collect()
                if self._pending:
                    return self._pending.popleft()
            remaining = EDGE_RECHECK if deadline is None else deadline - time.monotonic()
            if remaining <= 0 or self._wait(remaining, wake):
                return None

    def _wait(self, remaining: float, wake: Optional[int]) -> bool:
        """Wait for DIO0 (or a poll interval); True if ``wake`` ended the wait."""
        if self.lines.edges:
            try:
                self.lines.wait_for_interrupt(min(remaining, EDGE_RECHECK), wake)
            except Exception:
                if self._open:   # released under us by close(): the caller sees "not open" next
                    raise
        elif wake is None:
            time.sleep(min(remaining, self.poll_interval))
        else:
            select.select([wake], [], [], min(remaining, self.poll_interval))
        return wake is not None and bool(select.select([wake], [], [], 0)[0])

    def _collect(self) -> None:
        """If the chip holds a packet: read it, ACK it if asked, and queue what is delivered.

        Called with the lock held, in receive mode.
        """
        flags = self.bus.read(REG_IRQFLAGS2)
        if not flags & IRQ2_PAYLOADREADY:
            return
        rssi = rssi_dbm(self.bus.read(REG_RSSIVALUE))
        self._set_mode(MODE_STANDBY)     # no new packet may overwrite the FIFO while it is read
        if self.settings.crc_errors and not flags & IRQ2_CRCOK:
            length = self.bus.read(REG_FIFO)
            result = BadPacket(BAD_CRC, f"CRC error in a packet with length byte {length}",
                               bytes([length]), rssi)
        else:
            length = self.bus.read(REG_FIFO)
            body = self.bus.read_burst(REG_FIFO, length) if length <= FIFO_SIZE else b""
            result = self.format.parse(bytes([length]) + body, rssi)
        if isinstance(result, Packet) and result.ack_requested and self.settings.auto_ack:
            self._send_frame(self.format.ack(result))
            self.counters.acks_sent += 1
            result = replace(result, acked=True)
        self._start_receiving()
        self._count(result)

    def _count(self, result) -> None:
        if isinstance(result, _Skipped):
            if result.why == "an ACK":
                self.counters.acks_received += 1
            else:
                self.counters.not_for_us += 1
            return
        if isinstance(result, BadPacket):
            setattr(self.counters, _COUNTER_OF[result.reason],
                    getattr(self.counters, _COUNTER_OF[result.reason]) + 1)
        elif self.duplicates.is_repeat(result.sender, result.payload):
            self.counters.duplicates += 1
            return
        else:
            self.counters.received += 1
        self._pending.append(result)

    # -- transmitting ---------------------------------------------------------------------------
    def transmit(self, target: int, payload: bytes, request_ack: bool = False) -> None:
        """Send ``payload`` to node ``target`` (``broadcast_id`` for all) and return to receiving.

        Waits (up to ``csma_timeout``) for a quiet channel, then for PacketSent. A packet that
        was waiting in the chip is read first and delivered by ``receive``. Raises ValueError
        for a payload or target the format cannot carry, RadioError when the radio fails.
        An ACK the node sends back is counted in ``counters.acks_received``.
        """
        frame = self.format.frame(target, bytes(payload), request_ack)
        with self._lock:
            self._require_open()
            self._collect()
            self._wait_for_quiet_channel()
            self._set_mode(MODE_STANDBY)
            self._send_frame(frame)
            self._start_receiving()
            self.counters.transmitted += 1

    def _wait_for_quiet_channel(self) -> None:
        deadline = time.monotonic() + self.csma_timeout
        while rssi_dbm(self.bus.read(REG_RSSIVALUE)) > CSMA_LIMIT_DBM:
            if time.monotonic() > deadline:
                self.counters.channel_busy += 1
                return
            time.sleep(_SPIN)
            self._collect()

    def _send_frame(self, frame: bytes) -> None:
        """Send FIFO bytes from standby; the radio is left in standby."""
        self._clear_fifo()
        self.bus.write(REG_DIOMAPPING1, DIO0_PACKETSENT)
        self.bus.write_burst(REG_FIFO, frame)
        self._set_mode(MODE_TX)
        self._wait_flag(REG_IRQFLAGS2, IRQ2_PACKETSENT, self.tx_timeout,
                        lambda: f"the radio did not finish sending within {self.tx_timeout} s "
                                "(PacketSent never set): it stopped answering")
        self._set_mode(MODE_STANDBY)
