"""A pulse total that survives restarts, kill -9 and power cuts, at a few flash writes an hour.

The total is an energy (or gas, water) meter reading: a reset to 0 corrupts every kWh feed
downstream, so it is kept in two places:

* a **mirror** on the tmpfs (``runtime_dir``), rewritten at every pulse: memory, no flash.
  It survives the gateway being killed (kill -9, a crash, the OOM killer), not a reboot;
* a **record** on the SD card (``state_dir``), written with ``fdatasync`` at most once every
  ``save_interval`` seconds while pulses come, and at a clean stop. A pulse that comes after a
  quiet spell of ``save_interval`` is saved at once, so a slow meter (gas, water) loses no
  pulse to a power cut; a fast one loses at most the last ``save_interval`` seconds of them.

Each file holds two slots of one 32-byte record (magic, sequence number, total, time, CRC32)
in separate 512-byte sectors, written in turn: a write torn by a power cut spoils one slot at
most, and the other still holds the previous total. The file is made at its full size once
(and its folder synced), so a save changes no metadata. At start the valid record with the
highest sequence number, of all four slots, wins. Flash cost: one 4 KiB block per save
(``bench/sensors.py --flash``: 256 KiB an hour at one pulse a second).
"""

import logging
import os
import struct
import time
import zlib
from typing import Optional, Tuple

from gateway.logs import LogThrottle

log = logging.getLogger("oemgateway.pulse")

_RECORD = struct.Struct("<4sQQdI")     # magic, sequence, total, unix time, crc32 of what precedes
_MAGIC = b"OGP1"
SLOT = 512                              # one sector per slot: a torn write spoils one slot only
SAVE_RETRY = 10.0                       # s before a failed save is tried again (at the soonest)


def _pack(seq: int, total: int, when: float) -> bytes:
    body = _RECORD.pack(_MAGIC, seq, total, when, 0)[:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def _unpack(data: bytes) -> Optional[Tuple[int, int, float]]:
    if len(data) < _RECORD.size:
        return None
    magic, seq, total, when, crc = _RECORD.unpack_from(data)
    if magic != _MAGIC or zlib.crc32(data[:_RECORD.size - 4]) != crc:
        return None
    return seq, total, when


def _sync_folder(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class TotalFile:
    """One file of two slots; ``write`` alternates them, ``read`` gives the newest valid one."""

    def __init__(self, path: str, sync: bool):
        self.path = path
        self.sync = sync
        self._fd: Optional[int] = None

    def read(self) -> Optional[Tuple[int, int, float]]:
        """(sequence, total, time) of the newest valid slot, or None (no file, both spoilt)."""
        try:
            with open(self.path, "rb") as f:
                data = f.read(2 * SLOT)
        except FileNotFoundError:
            return None
        records = [r for r in (_unpack(data[i * SLOT:(i + 1) * SLOT]) for i in (0, 1)) if r]
        return max(records) if records else None

    def write(self, seq: int, total: int, when: float) -> None:
        if self._fd is None:
            folder = os.path.dirname(self.path)
            os.makedirs(folder, mode=0o700, exist_ok=True)
            new = not os.path.exists(self.path)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
            if new and self.sync:   # the file's name, too, must survive a power cut
                os.pwrite(self._fd, bytes(2 * SLOT), 0)
                os.fdatasync(self._fd)
                _sync_folder(folder)
        os.pwrite(self._fd, _pack(seq, total, when), (seq % 2) * SLOT)
        if self.sync:
            os.fdatasync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class PulseTotal:
    """The running total of one pulse input, mirrored at every pulse and saved now and then.

    Not thread-safe: one thread (the listener's worker) owns it.
    """

    def __init__(self, mirror_path: str, record_path: str, save_interval: float,
                 clock=time.monotonic):
        self.mirror = TotalFile(mirror_path, sync=False)
        self.record = TotalFile(record_path, sync=True)
        self.save_interval = save_interval
        self.clock = clock
        self.total = 0
        self.seq = 0
        self.saved_seq = 0
        self.saves = 0                      # fdatasync'ed writes to the record (flash writes)
        self.save_errors = 0
        self.mirror_errors = 0
        self.restored_from = "nothing (starting at 0)"
        self._last_save = float("-inf")
        self._retry_at = float("-inf")        # after a failed save: not before this
        self._errors_logged = LogThrottle(log, logging.ERROR, 300.0)

    def load(self, initial: int = 0) -> int:
        """Restore the total: the newest of the mirror and the record; ``initial`` if neither
        exists (a new meter). Returns it."""
        record = self.record.read()
        found = [(r, where) for r, where in ((self.mirror.read(), "the tmpfs mirror"),
                                             (record, "the saved record")) if r]
        if found:
            (self.seq, self.total, _), where = max(found)
            self.saved_seq = record[0] if record else 0
            self.restored_from = where
        else:
            self.total = initial
        return self.total

    def add(self, pulses: int) -> None:
        """Count ``pulses`` more: mirrored at once, saved if the last save is old enough."""
        self.total += pulses
        self.seq += 1
        try:
            self.mirror.write(self.seq, self.total, time.time())
        except OSError as exc:
            self.mirror_errors += 1
            if self.mirror_errors == 1:
                log.error("cannot mirror the pulse total to %s: %s (it is saved every %g s instead)",
                          self.mirror.path, exc.strerror or exc, self.save_interval)
        if self.save_due_in() == 0:
            self.save()

    def save_due_in(self) -> Optional[float]:
        """Seconds until unsaved pulses must be saved (0: now), or None when all are saved."""
        if self.saved_seq == self.seq:
            return None
        return max(0.0, self._last_save + self.save_interval - self.clock(), self._retry_at - self.clock())

    def save(self) -> None:
        """Write the total to the record (fdatasync): one flash page. Errors are counted, the
        mirror still holds the total."""
        if self.saved_seq == self.seq:
            return
        self._last_save = self.clock()
        try:
            self.record.write(self.seq, self.total, time.time())
        except OSError as exc:
            self.save_errors += 1
            self._retry_at = self._last_save + max(self.save_interval, SAVE_RETRY)
            self._errors_logged("cannot save the pulse total %d to %s: %s (it is kept in memory and on the "
                                "tmpfs; trying again in %g s)", self.total, self.record.path, exc.strerror or exc,
                                max(self.save_interval, SAVE_RETRY))
            return
        self.saved_seq = self.seq
        self.saves += 1

    def close(self) -> None:
        self.save()
        self.mirror.close()
        self.record.close()
