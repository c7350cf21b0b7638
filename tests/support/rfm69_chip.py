"""A register-level model of the RFM69 (Semtech SX1231) behind the spidev interface.

What a driver sees of a real module, and nothing of the driver's own code:

* ``FakeSpiDev``: ``spidev.SpiDev``'s calls (``open``, ``max_speed_hz``, ``mode``, ``no_cs``,
  ``xfer2``, ``close``). A transfer reaches the chip only while its NSS pin is low: the GPIO
  line it is wired to (driven by hand, with ``no_cs`` set), or else the SPI device's own chip
  select. Byte 0 is the address (bit 7: write); registers auto-increment in a burst, the FIFO
  (0x00) does not.
* Registers 0x00-0x71 with the reset values the datasheet lists where they matter, a 66-byte
  FIFO, IRQ flags (ModeReady, PayloadReady, CrcOk, PacketSent, FifoNotEmpty, FifoOverrun;
  writing FifoOverrun clears the FIFO), RSSI, modes (sleep, standby, FS, TX, RX) with the
  FIFO cleared as the datasheet's table says (entering RX, and RX to TX; not RX to standby).
* DIO0 on a fake GPIO line: PayloadReady (mapping 01) or CrcOk (00) in RX, PacketSent (00) in
  TX; a rising level queues an edge event for whoever requested the line with edge detection.
* The reset pin: high holds the chip in reset (it does not answer); the falling edge restores
  every register to its reset value.

Packets arrive with ``inject(fifo_bytes, rssi_dbm, air)``: only in RX, with nothing unread in
the FIFO, and only when the sender's frequency, bit rate, sync bytes (network id / group) and
whitening match the registers; otherwise the packet is lost, as on air, and ``dropped`` says
why. AES: with the same key on both ends the FIFO holds the plain packet; with another key (or
AES on one end only) the chip still delivers, but the message decrypts to garbage (the CRC is
over the bytes on air, so it passes). A packet with a bad CRC is dropped by the chip unless
CrcAutoClearOff is set; then it is delivered with CrcOk clear. ``inject_raw`` puts any bytes in
the FIFO, for what a glitch could leave there. Sent packets are kept in ``transmitted``.

A dead radio: ``dead`` (ModeReady never sets after a mode change), ``stuck_tx`` (PacketSent
never sets), ``absent`` (nothing on the bus: reads give 0x00); ``ignored_writes`` loses the
writes to some registers, as a bad SPI link would.
"""

import hashlib
import threading
import time
from dataclasses import dataclass
from typing import List, Optional, Set, Tuple

from tests.support.fake_gpiod import FakeGpiod

# Register addresses and bits (SX1231 datasheet, section 6), kept apart from the driver's.
FIFO, OPMODE, VERSION, PALEVEL = 0x00, 0x01, 0x10, 0x11
RSSICONFIG, RSSIVALUE, DIOMAPPING1 = 0x23, 0x24, 0x25
IRQFLAGS1, IRQFLAGS2 = 0x27, 0x28
SYNCCONFIG, SYNCVALUE1 = 0x2E, 0x2F
PACKETCONFIG1, PAYLOADLENGTH, FIFOTHRESH, PACKETCONFIG2, AESKEY1 = 0x37, 0x38, 0x3C, 0x3D, 0x3E
SLEEP, STANDBY, FS, TX, RX = 0, 1, 2, 3, 4
FIFO_SIZE = 66

RESET_VALUES = {   # SX1231 datasheet register table (not re-read); all others 0x00
    0x01: 0x04, 0x03: 0x1A, 0x04: 0x0B, 0x05: 0x00, 0x06: 0x52, 0x07: 0xE4, 0x08: 0xC0,
    0x0A: 0x41, 0x0C: 0x02, 0x0D: 0x92, 0x0E: 0xF5, 0x0F: 0x20, 0x10: 0x24, 0x11: 0x9F,
    0x12: 0x09, 0x13: 0x1A, 0x18: 0x08, 0x19: 0x86, 0x1A: 0x8A, 0x1B: 0x40, 0x1C: 0x80,
    0x1D: 0x06, 0x1E: 0x10, 0x23: 0x02, 0x24: 0xFF, 0x26: 0x05, 0x29: 0xFF, 0x2D: 0x03,
    0x2E: 0x98, 0x2F: 0x01, 0x30: 0x01, 0x31: 0x01, 0x32: 0x01, 0x33: 0x01, 0x34: 0x01,
    0x35: 0x01, 0x36: 0x01, 0x37: 0x10, 0x38: 0x40, 0x3C: 0x8F, 0x3D: 0x02, 0x4E: 0x01,
    0x58: 0x1B, 0x5A: 0x55, 0x5C: 0x70, 0x6F: 0x30,
}


@dataclass(frozen=True)
class Air:
    """The sending radio's settings that must match the receiver's for a packet to arrive."""

    frf: int
    bitrate: int
    sync: bytes
    key: Optional[bytes] = None
    whitening: bool = False


OEM_KEY = b"89txbe4p8aik5kt3"
LPL_433 = Air(frf=0x6C4000, bitrate=0x0240, sync=b"\x2d\xd2", key=OEM_KEY)       # band 43, network 210
LPL_433_92 = Air(frf=0x6C7AE1, bitrate=0x0240, sync=b"\x2d\xd2", key=OEM_KEY)    # band 49
JEELIB_434 = Air(frf=0x6C8000, bitrate=0x028A, sync=b"\x2d\xd2", whitening=True)  # group 210


@dataclass(frozen=True)
class Sent:
    """A packet the chip transmitted: the FIFO bytes (length first) and its settings."""

    data: bytes
    air: Air
    pa_level: int


def garbled(message: bytes, sender_key: Optional[bytes], receiver_key: Optional[bytes]) -> bytes:
    """What decrypting with the wrong key (or not at all) leaves: fixed garbage for the pair."""
    stream = b""
    counter = 0
    while len(stream) < len(message):
        stream += hashlib.sha256(repr((sender_key, receiver_key, counter)).encode()).digest()
        counter += 1
    return bytes(a ^ b for a, b in zip(message, stream))


class FakeSpiDev:
    """``spidev.SpiDev`` for one chip model."""

    def __init__(self, chip: "Rfm69Chip"):
        self._chip = chip
        self.address: Optional[Tuple[int, int]] = None
        self.max_speed_hz = 0
        self.mode = 0
        self.no_cs = False
        self.bits_per_word = 8
        self._active = 0

    def open(self, bus: int, device: int) -> None:
        if self._chip.spi_error is not None:
            raise self._chip.spi_error
        if (bus, device) not in self._chip.spi_devices:
            raise FileNotFoundError(2, "No such file or directory")
        self.address = (bus, device)

    def close(self) -> None:
        self.address = None

    def xfer2(self, data: List[int]) -> List[int]:
        if self.address is None:
            raise OSError(9, "Bad file descriptor")
        if any(not isinstance(b, int) or not 0 <= b <= 255 for b in data):
            raise TypeError("Non-Int/Long value in arguments")
        self._active += 1
        try:
            time.sleep(0)    # a real transfer is an ioctl: other threads run meanwhile
            if self._active > 1:
                self._chip.overlapping_transfers += 1
            return self._chip.transfer(list(data), self)
        finally:
            self._active -= 1

    xfer = xfer2


class Rfm69Chip:
    """One RFM69 module wired to a fake GPIO chip: DIO0, optionally reset and NSS lines.

    ``cs`` is the GPIO line wired to NSS; None means NSS is the chip select of SPI device
    ``spi`` (then the driver must leave ``no_cs`` off).
    """

    def __init__(self, gpio: FakeGpiod, chip_path: str = "/dev/gpiochip0", dio0: Optional[int] = 25,
                 reset: Optional[int] = None, cs: Optional[int] = None, spi: Tuple[int, int] = (0, 0)):
        self._lock = threading.RLock()
        self.activity = threading.Condition(self._lock)   # notified on every SPI transfer
        self.flag_reads = 0
        self.gpio_chip = gpio.chips.get(chip_path) or gpio.add_chip(chip_path)
        self.dio0_line, self.reset_line, self.cs_line, self.spi = dio0, reset, cs, spi
        self.spi_devices: Set[Tuple[int, int]] = {(0, 0), (0, 1)}
        self.spi_error: Optional[OSError] = None
        self.dead = False
        self.stuck_tx = False
        self.absent = False
        self.ignored_writes: Set[int] = set()   # registers whose writes are lost (a bad SPI link)
        self.mode_ready_after_reads = 0     # ModeReady shows only after this many reads
        self.channel_rssi_dbm = -110.0      # what RSSI measures in RX with no packet
        self.busy_reads = 0                 # the next RSSI reads in RX hear a loud channel
        self.transmitted: List[Sent] = []
        self.dropped: List[Tuple[str, bytes]] = []
        self.register_writes: List[Tuple[int, int]] = []
        self.overlapping_transfers = 0
        self.in_reset = False
        self.resets = 0                     # reset pulses seen on the reset pin
        self._dio0 = False
        self._power_on()
        if reset is not None:
            self.gpio_chip.watch(reset, self._reset_pin)

    # -- state ----------------------------------------------------------------------------------
    def _power_on(self) -> None:
        self.regs = bytearray(0x72)
        for address, value in RESET_VALUES.items():
            self.regs[address] = value
        self.fifo = bytearray()
        self.mode = STANDBY
        self.mode_ready = True
        self._ready_countdown = 0
        self.payload_ready = self.crc_ok = self.packet_sent = self.fifo_overrun = False
        self.rssi_register = 0xFF
        self._update_dio0()

    def _reset_pin(self, level: bool) -> None:
        with self._lock:
            if level:
                self.in_reset = True
            elif self.in_reset:
                self.in_reset = False
                self.resets += 1
                self._power_on()

    def air(self) -> Air:
        """The settings a packet sent now would go out with (and must match to be received)."""
        regs = self.regs
        size = ((regs[SYNCCONFIG] >> 3) & 7) + 1 if regs[SYNCCONFIG] & 0x80 else 0
        return Air(frf=(regs[0x07] << 16) | (regs[0x08] << 8) | regs[0x09],
                   bitrate=(regs[0x03] << 8) | regs[0x04],
                   sync=bytes(regs[SYNCVALUE1:SYNCVALUE1 + size]),
                   key=self.aes_key, whitening=(regs[PACKETCONFIG1] >> 5) & 3 == 2)

    @property
    def aes_key(self) -> Optional[bytes]:
        return bytes(self.regs[AESKEY1:AESKEY1 + 16]) if self.regs[PACKETCONFIG2] & 0x01 else None

    @property
    def dio0(self) -> bool:
        return self._dio0

    def _update_dio0(self) -> None:
        mapping = self.regs[DIOMAPPING1] >> 6
        level = False
        if self.mode == RX:
            level = {0: self.crc_ok and self.payload_ready, 1: self.payload_ready}.get(mapping, False)
        elif self.mode == TX:
            level = {0: self.packet_sent, 1: True}.get(mapping, False)
        if level != self._dio0:
            self._dio0 = level
            if self.dio0_line is not None:
                self.gpio_chip.drive(self.dio0_line, level)

    # -- SPI ------------------------------------------------------------------------------------
    def _selected(self, spi: FakeSpiDev) -> bool:
        if self.cs_line is not None:
            return spi.no_cs and not self.gpio_chip.level(self.cs_line)
        return not spi.no_cs and spi.address == self.spi

    def transfer(self, data: List[int], spi: FakeSpiDev) -> List[int]:
        with self._lock:
            self.activity.notify_all()
            if self.absent or self.in_reset or not self._selected(spi):
                return [0] * len(data)
            address, write = data[0] & 0x7F, bool(data[0] & 0x80)
            out = [0]
            for index, byte in enumerate(data[1:]):
                target = address if address == FIFO else address + index
                if write:
                    out.append(self.regs[target] if target < len(self.regs) else 0)
                    self._write(target, byte)
                else:
                    out.append(self._read(target))
            self._update_dio0()
            return out

    def _read(self, address: int) -> int:
        if address == FIFO:
            if not self.fifo:
                return 0
            value = self.fifo.pop(0)
            if not self.fifo:
                self.payload_ready = self.crc_ok = False
            return value
        if address == IRQFLAGS1:
            if self._ready_countdown:
                self._ready_countdown -= 1
                return 0
            ready = self.mode_ready
            return ((0x80 if ready else 0) | (0x40 if ready and self.mode == RX else 0)
                    | (0x20 if ready and self.mode == TX else 0))
        if address == IRQFLAGS2:
            self.flag_reads += 1
            self.activity.notify_all()
            return ((0x40 if self.fifo else 0) | (0x10 if self.fifo_overrun else 0)
                    | (0x08 if self.packet_sent else 0) | (0x04 if self.payload_ready else 0)
                    | (0x02 if self.crc_ok else 0))
        if address == RSSIVALUE:
            if self.mode == RX and not self.payload_ready:
                loud = self.busy_reads > 0
                self.busy_reads = max(0, self.busy_reads - 1)
                return self._rssi_register(-60.0 if loud else self.channel_rssi_dbm)
            return self.rssi_register
        if address == RSSICONFIG:
            return 0x02
        return self.regs[address] if address < len(self.regs) else 0

    def _write(self, address: int, value: int) -> None:
        if address >= len(self.regs) or address in self.ignored_writes:
            return
        self.register_writes.append((address, value))
        if address == FIFO:
            if len(self.fifo) >= FIFO_SIZE:
                self.fifo_overrun = True
            else:
                self.fifo.append(value)
                self._send_if_ready()
        elif address == OPMODE:
            self.regs[OPMODE] = value & 0xFC
            self._enter((value >> 2) & 7)
        elif address in (VERSION, IRQFLAGS1, RSSIVALUE):
            pass
        elif address == IRQFLAGS2:
            if value & 0x10:
                self._clear_fifo()
        elif address == PACKETCONFIG2:
            self.regs[address] = value & ~0x04
            if value & 0x04 and self.mode == RX:    # RestartRx
                self._clear_fifo()
        elif address == RSSICONFIG:
            pass
        else:
            self.regs[address] = value

    def _clear_fifo(self) -> None:
        self.fifo.clear()
        self.fifo_overrun = self.payload_ready = self.crc_ok = False

    def _enter(self, mode: int) -> None:
        old = self.mode
        if mode == RX or (old == RX and mode == TX) or old == TX:
            self._clear_fifo()
        if old == TX or mode == TX:
            self.packet_sent = False
        self.mode = mode
        self.mode_ready = not self.dead
        self._ready_countdown = self.mode_ready_after_reads
        if mode == TX:
            self._send_if_ready()

    def _send_if_ready(self) -> None:
        if self.mode != TX or not self.fifo or self.stuck_tx or self.packet_sent:
            return
        threshold = self.regs[FIFOTHRESH]
        if not threshold & 0x80 and len(self.fifo) <= threshold & 0x7F:
            return     # TxStartCondition 0: wait for FifoLevel
        if len(self.fifo) < self.fifo[0] + 1:
            return     # the rest of the packet is still being written
        size = self.fifo[0] + 1
        data, self.fifo = bytes(self.fifo[:size]), self.fifo[size:]
        self.transmitted.append(Sent(data, self.air(), self.regs[PALEVEL]))
        self.packet_sent = True

    @staticmethod
    def _rssi_register(dbm: float) -> int:
        return max(0, min(255, round(-2 * dbm)))

    # -- over the air ---------------------------------------------------------------------------
    def _lost_because(self, data: bytes, air: Air) -> Optional[str]:
        mine = self.air()
        if self.absent or self.in_reset:
            return "no radio"
        if self.mode != RX or not self.mode_ready:
            return "not receiving"
        if self.payload_ready or self.fifo:
            return "the FIFO still holds a packet"
        if air.frf != mine.frf:
            return "frequency"
        if air.bitrate != mine.bitrate:
            return "bit rate"
        if air.sync != mine.sync:
            return "network"
        if air.whitening != mine.whitening:
            return "crc"    # de-whitened wrongly, the CRC cannot match
        if not 1 <= data[0] <= self.regs[PAYLOADLENGTH]:
            return "length"
        return None

    def inject(self, data: bytes, rssi_dbm: float = -50.0, air: Air = LPL_433, crc_ok: bool = True) -> bool:
        """A packet arrives over the air: ``data`` is its plain FIFO content, length byte first.

        Returns True if the chip delivered it (PayloadReady set); otherwise ``dropped`` says why.
        """
        data = bytes(data)
        assert len(data) == data[0] + 1, "the length byte must match the packet"
        with self._lock:
            reason = self._lost_because(data, air)
            crc_on = bool(self.regs[PACKETCONFIG1] & 0x10)
            keep_bad = bool(self.regs[PACKETCONFIG1] & 0x08)
            if reason is None and crc_on and not crc_ok and not keep_bad:
                reason = "crc"
            if reason is not None:
                self.dropped.append((reason, data))
                return False
            message = data[1:]
            if air.key != self.aes_key:
                message = garbled(message, air.key, self.aes_key)
            self._fill(bytes([data[0]]) + message, rssi_dbm, crc_ok or not crc_on)
            return True

    def inject_raw(self, fifo: bytes, rssi_dbm: float = -50.0, crc_ok: bool = True) -> bool:
        """Any bytes in the FIFO with PayloadReady set (in RX only), as a glitch could leave."""
        with self._lock:
            if self.absent or self.in_reset or self.mode != RX or self.payload_ready:
                self.dropped.append(("not receiving", bytes(fifo)))
                return False
            self._fill(bytes(fifo)[:FIFO_SIZE], rssi_dbm, crc_ok)
            return True

    def _fill(self, fifo: bytes, rssi_dbm: float, crc_ok: bool) -> None:
        self.fifo = bytearray(fifo)
        self.payload_ready = True
        self.crc_ok = crc_ok
        self.rssi_register = self._rssi_register(rssi_dbm)
        self._update_dio0()

    def wait_for(self, predicate, timeout: float = 5.0) -> bool:
        """Block until ``predicate()`` holds, checked at every SPI transfer."""
        with self.activity:
            return self.activity.wait_for(predicate, timeout)

    def spidev(self) -> FakeSpiDev:
        return FakeSpiDev(self)
