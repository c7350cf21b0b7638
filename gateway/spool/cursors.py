"""Cursors and counters: each buffer's place in the spool, the file that keeps the places across
restarts, and the counters that always add up (accepted = delivered + queued + dropped)."""

import json
import logging
import struct
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from gateway.frame import Frame
from gateway.logs import LogThrottle
from gateway.spool.storage import Files

if TYPE_CHECKING:
    from gateway.spool.spool import Spool

log = logging.getLogger("oemgateway.spool")

CURSOR_FILE = "cursors"
CURSOR_SLOT = 32768
CURSOR_HEADER = struct.Struct("<4sQII")  # magic, generation, length, crc
CURSOR_MAGIC = b"OGC1"
DROP_REASONS = ("overflow", "rejected", "lost", "disk_error", "removed")
DROP_TEXT = {
    "overflow": "a size or age bound was reached (the oldest go first)",
    "lost": "damaged on disk, or not yet saved when the power went",
    "disk_error": "they could not be saved and memory was full",
    "removed": "the buffer was removed from the config",
}


@dataclass
class BufferStats:
    """A buffer's counters. Always: accepted = delivered + queued + sum(dropped)."""
    accepted: int = 0
    delivered: int = 0
    dropped: Dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    replayed: int = 0   # of those accepted, readings sent again because their place was lost
    retries: int = 0
    last_success: Optional[float] = None
    last_error: Optional[str] = None


class CursorStore:
    """Per-buffer cursors in one small file: two slots written alternately in place, each
    with a generation and a CRC, so a torn write always leaves the previous state readable."""

    def __init__(self, files: Files):
        self.files = files
        self.generation = 0
        self._dir_synced = False

    def load(self) -> Optional[dict]:
        """The newest intact state, ``{"head": last sequence number written, "cursors":
        {buffer: {"acked", "skips"}}, "corrections": [...]}``; None when the file is missing
        or neither slot is intact."""
        best: Tuple[int, Optional[dict]] = (-1, None)
        try:
            size = self.files.size(CURSOR_FILE)
        except (OSError, KeyError):
            return None
        for slot in range(2):
            if size < (slot + 1) * CURSOR_HEADER.size:
                continue
            raw = self.files.read(CURSOR_FILE, slot * CURSOR_SLOT, CURSOR_SLOT)
            try:
                magic, generation, length, crc = CURSOR_HEADER.unpack_from(raw)
                body = raw[CURSOR_HEADER.size:CURSOR_HEADER.size + length]
                if magic != CURSOR_MAGIC or zlib.crc32(body) != crc or len(body) != length:
                    continue
                state = json.loads(body)
            except (struct.error, ValueError):
                continue
            if generation > best[0]:
                best = (generation, state)
        self.generation = max(best[0], 0)
        return best[1]

    def save(self, state: dict, sync: bool = False) -> None:
        body = json.dumps(state, separators=(",", ":")).encode()
        if len(body) + CURSOR_HEADER.size > CURSOR_SLOT:
            raise OSError(27, "too many buffers for the cursor file")
        self.generation += 1
        data = CURSOR_HEADER.pack(CURSOR_MAGIC, self.generation, len(body), zlib.crc32(body)) + body
        self.files.pwrite(CURSOR_FILE, (self.generation % 2) * CURSOR_SLOT, data)
        if sync:
            self.files.sync(CURSOR_FILE)
            if not self._dir_synced:   # the file may be new: make its name durable too
                self.files.sync_dir()
                self._dir_synced = True


class Cursor:
    """One buffer's position in the spool: everything up to ``acked`` is done with.

    ``skips`` are ranges of readings that are not for it (accepted while it was inactive, or
    not held when its position had to be recovered).
    """

    def __init__(self, spool: "Spool", name: str, acked: int, skips: List[List[int]], stats: BufferStats):
        self.spool = spool
        self.name = name
        self.acked = acked
        self.skips = skips
        self.stats = stats
        self.recording = True
        self.max_items = 0
        self.inactive_since: Optional[int] = None
        self._in_flight: List[int] = []
        self._interrupted = False
        self.linger_for = 0   # while lingering: the readings it waits for (see Spool.append)
        self.drop_log = LogThrottle(log, logging.WARNING, 60.0)

    # -- the queue interface the delivery engine uses -----------------------------------
    def take(self, limit: int, block: bool = True) -> Optional[List[Frame]]:
        """Up to ``limit`` readings after the cursor; waits for some if ``block``.
        None when interrupted or when there is nothing to take."""
        batch = self.spool.read(self, limit, block)
        if not batch:
            return None
        self._in_flight = [seq for seq, _ in batch]
        return [frame for _, frame in batch]

    def ack(self, count: int) -> int:
        """The first ``count`` readings of the batch in flight are done with. Returns how many of
        them are the caller's to count: a bound may have dropped (and counted) the oldest of
        them while they were in flight."""
        settled, self._in_flight = self._in_flight[:count], []
        if not settled:
            return 0
        with self.spool._lock:
            still_queued = sum(1 for seq in settled if seq > self.acked)
            self.spool.advance(self, settled[-1])
        return still_queued

    def release(self) -> None:
        self._in_flight = []

    def wait(self, timeout: Optional[float]) -> bool:
        return self.spool.wait_interrupt(self, timeout)

    def linger(self, count: int, timeout: float) -> None:
        """Wait up to ``timeout`` s for ``count`` readings to be queued (see ``Delivery``)."""
        self.spool.wait_for_readings(self, count, timeout)

    def interrupt(self) -> None:
        self.spool.interrupt(self)

    def set_recording(self, recording: bool) -> None:
        """Whether readings accepted from now on are for this buffer (not while it is inactive)."""
        self.spool.set_recording(self, recording)

    def forget(self) -> None:
        """The buffer is removed from the config: drop what it holds, forget its place."""
        self.spool.unregister(self)

    def __len__(self) -> int:
        return self.spool.queued(self)

    def oldest_time(self) -> Optional[float]:
        return self.spool.oldest_time(self)


def _count_in(ranges: List[List[int]], after: int, through: int) -> int:
    """How many sequence numbers of ``ranges`` ([first, last] each) lie in (after, through]."""
    total = 0
    for start, end in ranges:
        lo, hi = max(start, after + 1), min(end, through)
        if hi >= lo:
            total += hi - lo + 1
    return total


def _merged_ranges(ranges: List[Tuple[int, int]]) -> List[List[int]]:
    """``ranges`` sorted, with overlapping or adjacent ones joined."""
    merged: List[List[int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return merged
