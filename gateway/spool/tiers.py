"""Tiers and segments: a folder of segment files (the hot tier on a tmpfs, the cold one on disk),
each segment a run of journal frames (``journal.py``) indexed the first time it is needed."""

import itertools
import logging
from typing import List, NamedTuple, Optional, Set, Tuple

from gateway.spool import journal
from gateway.spool.storage import Files

log = logging.getLogger("oemgateway.spool")


class Segment:
    """One segment file; its frames are indexed the first time they are needed."""

    def __init__(self, name: str, first_seq: int):
        self.name = name
        self.first_seq = first_seq
        self.entries: Optional[List[journal.Entry]] = None
        self.size = 0

    @property
    def last_seq(self) -> int:
        if not self.entries:
            return self.first_seq - 1
        last = self.entries[-1]
        return last.first_seq + last.count - 1


class Written(NamedTuple):
    """A frame ``Tier.write`` wrote: where it went (``new``: into a segment it created)."""
    segment: Segment
    entry: journal.Entry
    new: bool


class Tier:
    """A folder of segments (the hot or the cold one)."""

    def __init__(self, name: str, files: Files, segment_bytes: int):
        self.name = name
        self.files = files
        self.segment_bytes = segment_bytes
        self.segments: List[Segment] = []
        self.bytes = 0
        self.damaged_frames = 0
        self._unsynced: Set[Segment] = set()   # segments written to since the last sync
        self._new_files = False                 # ...and whether one was created meanwhile

    # -- recovery -----------------------------------------------------------------------
    def recover(self) -> None:
        """List segments; fully check only the newest (the one that may have a torn tail)."""
        names = sorted(n for n in self.files.listdir() if journal.segment_seq(n) is not None)
        for name in names:
            segment = Segment(name, journal.segment_seq(name))
            segment.size = self.files.size(name)
            self.segments.append(segment)
            self.bytes += segment.size
        while self.segments:
            last = self.segments[-1]
            self.index(last, truncate_tail=True)
            if last.entries:
                break

    def index(self, segment: Segment, truncate_tail: bool = False) -> None:
        """Read a segment's frames; set aside a file with nothing readable in it."""
        if segment.entries is not None:
            return
        data = self.files.read(segment.name, 0, segment.size)
        result = journal.scan(data)
        segment.entries = result.entries
        if result.damaged_bytes:
            self.damaged_frames += 1
            log.warning("spool %s: %s has %d damaged bytes; the intact frames around them are kept",
                        self.files.describe(), segment.name, result.damaged_bytes)
        if not result.entries:
            self._remove(segment, set_aside=segment.size > 0)
        elif truncate_tail and result.good_end < segment.size:
            self.files.truncate(segment.name, result.good_end)
            self.bytes -= segment.size - result.good_end
            segment.size = result.good_end

    def _remove(self, segment: Segment, set_aside: bool = False) -> None:
        if set_aside:
            log.warning("spool %s: %s has nothing readable: set aside", self.files.describe(), segment.name)
            self.files.set_aside(segment.name)
        else:
            self.files.unlink(segment.name)
        self.segments.remove(segment)
        self._unsynced.discard(segment)
        self.bytes -= segment.size

    # -- writing ------------------------------------------------------------------------
    def append(self, first_seq: int, readings: List[bytes], compress: bool) -> None:
        """Write consecutive readings and record them (``write`` then ``commit``)."""
        self.commit(self.write(first_seq, readings, compress))

    def write(self, first_seq: int, readings: List[bytes], compress: bool) -> List[Written]:
        """The file I/O half of ``append`` (no index changes): safe to run without the spool's
        lock by the one thread that writes this tier. The readings go as frames of at most
        ``journal.FRAME_READINGS``, one append per segment, a new segment begun when the last
        one is full; nothing is synced (``sync`` does that). After an error no byte written
        stays. Pass the result to ``commit``."""
        planned: List[Tuple[Written, bytes]] = []
        segment = self.segments[-1] if self.segments else None
        size = segment.size if segment else 0
        for entry, data in journal.encode_frames(first_seq, readings, compress):
            new = segment is None or (size > 0 and size + len(data) > self.segment_bytes)
            if new:
                segment, size = Segment(journal.segment_name(entry.first_seq), entry.first_seq), 0
                segment.entries = []
            entry.offset = size
            size += entry.length
            planned.append((Written(segment, entry, new), data))
        appended: List[Written] = []
        try:
            for segment, group in itertools.groupby(planned, key=lambda p: p[0].segment):
                group = list(group)
                self.files.append(segment.name, b"".join(data for _, data in group))
                appended.append(group[0][0])
        except OSError:
            for first in appended:   # leave no bytes the index does not know of
                if first.new:
                    self.files.unlink(first.segment.name)
                else:
                    self.files.truncate(first.segment.name, first.segment.size)
            raise
        return [written for written, _ in planned]

    def commit(self, written: List[Written]) -> None:
        for item in written:
            if item.new:
                self.segments.append(item.segment)
                self._new_files = True
            item.segment.entries.append(item.entry)
            item.segment.size += item.entry.length
            self.bytes += item.entry.length
            self._unsynced.add(item.segment)

    def sync(self) -> None:
        """Make what was written since the last sync durable: one fdatasync per file written
        to, and one of the folder when a file was created."""
        for segment in [s for s in self.segments if s in self._unsynced]:
            self.files.sync(segment.name)
            self._unsynced.discard(segment)
        if self._new_files:
            self.files.sync_dir()
            self._new_files = False

    def delete_through(self, seq: int) -> None:
        """Delete every segment whose readings all have sequence numbers <= ``seq``."""
        while self.segments:
            first = self.segments[0]
            if len(self.segments) > 1:
                end = self.segments[1].first_seq - 1
            else:
                self.index(first)
                if first not in self.segments:
                    continue
                end = first.last_seq
            if end > seq:
                return
            self._remove(first)


    # -- reading ------------------------------------------------------------------------
    @property
    def last_seq(self) -> int:
        for segment in reversed(self.segments):
            self.index(segment)
            if segment.entries:
                return segment.last_seq
        return 0

    def read(self, after: int, limit: int) -> List[Tuple[int, bytes]]:
        """Up to ``limit`` encoded readings with sequence numbers > ``after``, in order, from
        the first frame holding such readings (the result may start later than after + 1)."""
        out: List[Tuple[int, bytes]] = []
        for segment in list(self.segments):
            if segment is not self.segments[-1] and self._next_start(segment) <= after + 1:
                continue
            self.index(segment)
            if segment not in self.segments:  # set aside while indexing
                continue
            for entry in list(segment.entries):
                if entry.first_seq + entry.count - 1 <= after:
                    continue
                if out and entry.first_seq != out[-1][0] + 1:
                    return out  # a gap: let the caller decide what it means
                data = self.files.read(segment.name, entry.offset, entry.length)
                header = journal.parse_header(data)
                if header is None or not journal.frame_ok(header, data[journal.HEADER.size:]):
                    # Damaged since it was indexed: its readings are lost, the next frames not.
                    self.damaged_frames += 1
                    segment.entries.remove(entry)
                    if out:
                        return out
                    continue
                for seq, line in journal.iter_readings(data, entry):
                    if seq > after:
                        out.append((seq, line))
                if len(out) >= limit:
                    return out[:limit]
        return out

    def held(self) -> List[Tuple[int, int]]:
        """The ranges of sequence numbers (first, last) this tier's frames hold, in order.
        Reads every segment's index: only for the rare recovery that needs it."""
        ranges: List[Tuple[int, int]] = []
        for segment in list(self.segments):
            self.index(segment)
            for entry in segment.entries if segment in self.segments else ():
                ranges.append((entry.first_seq, entry.first_seq + entry.count - 1))
        return ranges

    def _next_start(self, segment: Segment) -> int:
        index = self.segments.index(segment)
        return self.segments[index + 1].first_seq
